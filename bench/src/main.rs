//! `shardcast-bench`: the load harness CLI. A thin wrapper over the library.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shardcast_bench::floor::{self, FloorConfig, FloorCounters};
use shardcast_bench::floor_run::{self, FloorResult, FloorSpec};
use shardcast_bench::floor_server_io;
use shardcast_bench::loadgen::Frames;
use shardcast_bench::pin;
use shardcast_bench::run::orchestrate::{self, RunOptions};
use shardcast_bench::run::setup::Credentials;
use shardcast_bench::scenario::Scenario;
use shardcast_bench::srtp::Profile;
use shardcast_dataplane::driver::IoBackend;

#[derive(Parser)]
#[command(
    name = "shardcast-bench",
    about = "Shardcast load harness and forwarding floor"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure the floor: a forwarder with no WebRTC logic (open once, then per destination
    /// write the header and seal as the server does, with shardcast-rtp), driven by a paced
    /// load generator.
    Floor(FloorArgs),
    /// Run a scenario against `shardcast serve` (started here, or --target) with real WebRTC
    /// clients; measure throughput, CPU per packet, latency, loss, joins, RSS and the floor.
    Run(RunArgs),
    /// Run a scenario (one with churn) for minutes against a started `shardcast serve` while
    /// sampling its RSS, open fds, threads, store bytes and /metrics gauges; fail if any
    /// grows by more than --max-growth after the warm-up.
    Soak(SoakArgs),
    /// (internal) The floor forwarder process itself; stops when stdin closes.
    #[command(hide = true)]
    FloorServe(FloorServeArgs),
}

#[derive(clap::Args)]
struct SoakArgs {
    /// Scenario file (bench/scenarios/soak.toml).
    scenario: PathBuf,
    /// Minutes of load after everyone joined.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Seconds between samples of the server.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    /// Seconds from the start before samples are compared.
    #[arg(long, default_value_t = 120)]
    warmup_secs: u64,
    /// Allowed growth of each series after the warm-up (0.05 = 5%).
    #[arg(long, default_value_t = 0.05)]
    max_growth: f64,
    /// Media I/O backend of the started server: io_uring, portable or auto.
    #[arg(long, default_value = "auto")]
    io_backend: String,
    /// CPUs for the server (taskset -c), e.g. "0".
    #[arg(long)]
    server_cpus: Option<String>,
    /// CPUs for the client pool's threads, e.g. "1".
    #[arg(long)]
    harness_cpus: Option<String>,
    /// The `shardcast` binary (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Use target/release/shardcast rather than the one in this binary's directory.
    #[arg(long)]
    release: bool,
    /// Write the JSON report (every sample and the verdicts) here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct FloorArgs {
    /// Incoming packets per second (one stream).
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// Send part of the rate as video frames: FPS bursts a second of --frame-packets each.
    #[arg(long, requires = "frame_packets")]
    fps: Option<u32>,
    /// Packets per video frame (with --fps).
    #[arg(long, requires = "fps")]
    frame_packets: Option<u32>,
    /// Destinations each packet is forwarded to.
    #[arg(long, default_value_t = 10)]
    fanout: usize,
    /// RTP payload bytes.
    #[arg(long, default_value_t = 1200)]
    payload: usize,
    /// SRTP profile: cm (AES_128_CM_SHA1_80), gcm (AEAD_AES_128_GCM) or gcm256
    /// (AEAD_AES_256_GCM).
    #[arg(long, default_value = "gcm")]
    profile: Profile,
    /// Measured seconds (after warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// CPUs for the floor process, e.g. "0".
    #[arg(long)]
    server_cpus: Option<String>,
    /// CPUs for the load generator and sinks, e.g. "1".
    #[arg(long)]
    harness_cpus: Option<String>,
    /// Decrypt one in N packets per sink for latency.
    #[arg(long, default_value_t = 8)]
    sample_every: u64,
    /// Repeat the measurement and report the median (by CPU per packet).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// I/O of the floor: `sendmmsg` (its own loop) or the server's driver: `io_uring`,
    /// `portable`, `auto` (io_uring when the kernel allows it).
    #[arg(long, default_value = "auto")]
    io: String,
    /// Write the result(s) as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw forwarded packets/s and latency per second of the median run as SVG here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario file (bench/scenarios/*.toml).
    scenario: PathBuf,
    /// Measured seconds after everyone joined and a warm-up (default: the scenario's).
    #[arg(long)]
    duration: Option<u64>,
    /// Warm-up seconds between the last join and the measured window.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Write the JSON report here (schema: docs/PERFORMANCE.md).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw forwarded packets/s and latency p50/p99 per second as SVG here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// A running server's base URL (e.g. http://127.0.0.1:7880) instead of starting one.
    #[arg(long)]
    target: Option<String>,
    /// With --target: the tenant API key as ID:SECRET (default: dev mode's /dev/token).
    #[arg(long, env = "SHARDCAST_BENCH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// With --target: the server's PID, to charge its CPU and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Media I/O backend of the started server: io_uring, portable or auto.
    #[arg(long, default_value = "auto")]
    io_backend: String,
    /// Media shards of the started server.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// One more argument for the started `shardcast serve` (repeat for several), e.g.
    /// `--server-arg=--congestion-control=false`; the report lists them in `server_args`.
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    server_args: Vec<String>,
    /// CPUs for the server (taskset -c) and the floor, e.g. "0".
    #[arg(long)]
    server_cpus: Option<String>,
    /// CPUs for the client pool's threads (one thread per CPU listed), e.g. "1".
    #[arg(long)]
    harness_cpus: Option<String>,
    /// Raise the scenario's [ramp] group step by step until loss or p99 go over the limit.
    #[arg(long)]
    ramp: bool,
    /// Skip the floor measurement.
    #[arg(long)]
    no_floor: bool,
    /// The `shardcast` binary (default: next to this one).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Use target/release/shardcast rather than the one in this binary's directory.
    #[arg(long)]
    release: bool,
    /// Seconds to wait for a phase's joins to connect before measuring anyway.
    #[arg(long, default_value_t = 30)]
    join_timeout: u64,
    /// Longest settling phase, in seconds, between the warm-up and each window: it ends when
    /// for 3 s no layer switched and forwarded packets/s stayed within ±5% of their 3 s mean.
    /// 0 skips settling (the report then says settled: false).
    #[arg(long, default_value_t = 30)]
    settle_max: u64,
    /// Run the whole scenario N times (fresh server and floor each) and report medians with
    /// min–max; every run's report is in the JSON's `runs`.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// The floor's SRTP profile (cm, gcm, gcm256); default: the one the harness's clients
    /// negotiated with the server.
    #[arg(long)]
    floor_profile: Option<Profile>,
}

#[derive(clap::Args)]
struct FloorServeArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Comma-separated destinations.
    #[arg(long, value_delimiter = ',')]
    to: Vec<SocketAddrV4>,
    #[arg(long, default_value = "gcm")]
    profile: Profile,
    #[arg(long)]
    cpus: Option<String>,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// I/O: `sendmmsg` (the floor's own recvmmsg/sendmmsg loop) or the server's driver:
    /// `io_uring`, `portable`, `auto`.
    #[arg(long, default_value = "auto")]
    io: String,
}

fn main() -> anyhow::Result<()> {
    use tracing_subscriber::layer::{Layer, SubscriberExt};
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        // Counts the SRTP profile each client connection negotiated (`run` floors on it).
        .with(shardcast_bench::run::negotiated::layer())
        .init();
    match Cli::parse().command {
        Cmd::Floor(args) => floor_cmd(args),
        Cmd::FloorServe(args) => floor_serve(args),
        Cmd::Run(args) => run_cmd(args),
        Cmd::Soak(args) => soak_cmd(args),
    }
}

fn cpu_list(text: &Option<String>) -> anyhow::Result<Vec<usize>> {
    match text {
        Some(t) => pin::parse_cpu_list(t).map_err(anyhow::Error::msg),
        None => Ok(Vec::new()),
    }
}

fn floor_cmd(args: FloorArgs) -> anyhow::Result<()> {
    if let Some(cpus) = &args.server_cpus {
        pin::parse_cpu_list(cpus).map_err(anyhow::Error::msg)?;
    }
    let spec = FloorSpec {
        rate_pps: args.rate,
        frames: args
            .fps
            .zip(args.frame_packets)
            .map(|(fps, packets)| Frames {
                fps: fps.max(1),
                packets: packets.max(1),
            }),
        fanout: args.fanout.max(1),
        payload: args.payload,
        profile: args.profile,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration.max(1)),
        server_cpus: args.server_cpus.clone(),
        harness_cpus: cpu_list(&args.harness_cpus)?,
        sample_every: args.sample_every,
        io: args.io.clone(),
    };
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut runs: Vec<FloorResult> = Vec::new();
    for i in 0..args.repeat.max(1) {
        let result = floor_run::measure(&exe, &spec)?;
        eprintln!(
            "run {}: {:.0} pps out, {:.2} µs CPU/packet, floor CPU {:.0}%, loss {:.4}%, harness {:.0}%",
            i + 1,
            result.forwarded_pps,
            result.floor_cpu_us_per_packet,
            result.floor_cpu_percent,
            result.loss_ratio * 100.0,
            result.harness_cpu_percent
        );
        runs.push(result);
    }
    let median = floor_run::median(&runs).context("no runs")?;
    print_floor(median);
    if let Some(path) = &args.json {
        let doc = serde_json::json!({ "floor": median, "runs": runs });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        let title = format!(
            "floor: {} pps x {} ({})",
            median.input_pps,
            median.fanout,
            median.profile.name()
        );
        shardcast_bench::plot::write_svg(path, &title, &median.per_second)?;
    }
    Ok(())
}

fn run_cmd(args: RunArgs) -> anyhow::Result<()> {
    let mut scenario = Scenario::load(&args.scenario)?;
    if let Some(d) = args.duration {
        anyhow::ensure!(d > 0, "--duration must be at least 1");
        scenario.duration_secs = d;
    }
    if args.ramp && scenario.ramp.is_none() {
        anyhow::bail!("--ramp: {} has no [ramp] section", args.scenario.display());
    }
    if let Some(cpus) = &args.server_cpus {
        pin::parse_cpu_list(cpus).map_err(anyhow::Error::msg)?;
    }
    let credentials = args
        .api_key
        .as_deref()
        .map(Credentials::parse)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--api-key: {e}"))?;
    let opts = RunOptions {
        duration: scenario.duration(),
        scenario,
        warmup: Duration::from_secs(args.warmup),
        target: args.target,
        credentials,
        server_pid: args.server_pid,
        server_bin: args.server_bin,
        release: args.release,
        io_backend: args.io_backend,
        shards: args.shards.max(1),
        server_args: args.server_args,
        server_cpus: args.server_cpus,
        harness_cpus: cpu_list(&args.harness_cpus)?,
        ramp: args.ramp,
        floor: !args.no_floor,
        exe: std::env::current_exe().context("locating this executable")?,
        join_timeout: Duration::from_secs(args.join_timeout),
        settle_max: Duration::from_secs(args.settle_max),
        floor_profile: args.floor_profile,
    };
    let report = orchestrate::run_repeated(&opts, args.repeat)?;
    report.print_table();
    if report.harness_saturated {
        eprintln!("WARNING: the harness, not the server, may be the bottleneck");
    }
    if !report.settled && args.settle_max > 0 {
        eprintln!("WARNING: the load had not settled when the window opened (--settle-max)");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        // With --repeat: the median run's series (the top level carries it).
        let title = if report.repeat > 1 {
            format!(
                "{}: forwarded packets/s and latency (io {}, median of {} runs: run {})",
                report.scenario,
                report.io_backend,
                report.repeat,
                report.median_run + 1
            )
        } else {
            format!(
                "{}: forwarded packets/s and latency (io {})",
                report.scenario, report.io_backend
            )
        };
        shardcast_bench::plot::write_svg(path, &title, &report.plot_series())?;
    }
    Ok(())
}

fn soak_cmd(args: SoakArgs) -> anyhow::Result<()> {
    use shardcast_bench::run::server::{locate_binary, ServerSpec};
    use shardcast_bench::soak::{soak, SoakOptions};
    anyhow::ensure!(args.minutes > 0, "--minutes must be at least 1");
    anyhow::ensure!(args.sample_secs > 0, "--sample-secs must be at least 1");
    let mut scenario = Scenario::load(&args.scenario)?;
    scenario.duration_secs = args.minutes * 60;
    let spec = ServerSpec {
        bin: locate_binary(args.server_bin.as_deref(), args.release)?,
        io_backend: args.io_backend.clone(),
        shards: 1,
        extra_args: Vec::new(),
        cpus: args.server_cpus.clone(),
        log_filter: None,
        env: Vec::new(),
    };
    let run = RunOptions {
        duration: scenario.duration(),
        scenario,
        warmup: Duration::from_secs(2),
        target: None,
        credentials: None,
        server_pid: None,
        server_bin: None,
        release: args.release,
        io_backend: args.io_backend,
        shards: 1,
        server_args: Vec::new(),
        server_cpus: args.server_cpus,
        harness_cpus: cpu_list(&args.harness_cpus)?,
        ramp: false,
        floor: false,
        exe: std::env::current_exe().context("locating this executable")?,
        join_timeout: Duration::from_secs(30),
        // Churn never settles; the soak judges growth, not a steady window.
        settle_max: Duration::ZERO,
        floor_profile: None,
    };
    let report = soak(
        &SoakOptions {
            run,
            sample_every: Duration::from_secs(args.sample_secs),
            warmup: Duration::from_secs(args.warmup_secs),
            max_growth: args.max_growth,
        },
        &spec,
    )?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    anyhow::ensure!(
        report.passed,
        "the soak failed: a series grew (see the table)"
    );
    Ok(())
}

fn print_floor(r: &FloorResult) {
    println!(
        "floor ({} profile {}, io {})",
        r.fanout,
        r.profile.name(),
        r.io_backend
    );
    println!(
        "  input             {:>10} pps × fan-out {}",
        r.input_pps, r.fanout
    );
    println!(
        "  forwarded         {:>10.0} pps  {:>8.1} Mbps",
        r.forwarded_pps, r.forwarded_mbps
    );
    println!(
        "  CPU per packet    {:>10.3} µs   (floor at {:.0}% of a CPU)",
        r.floor_cpu_us_per_packet, r.floor_cpu_percent
    );
    println!("  loss              {:>10.4} %", r.loss_ratio * 100.0);
    println!(
        "  latency µs        p50 {}  p99 {}  p99.9 {}  ({} samples)",
        r.latency_us.p50, r.latency_us.p99, r.latency_us.p999, r.latency_us.samples
    );
    println!("  harness CPU       {:>10.0} %", r.harness_cpu_percent);
    if r.harness_saturated {
        println!("  WARNING: the harness, not the floor, may be the bottleneck");
    }
}

fn floor_serve(args: FloorServeArgs) -> anyhow::Result<()> {
    if let Some(cpus) = &args.cpus {
        let cpus = pin::parse_cpu_list(cpus).map_err(anyhow::Error::msg)?;
        if !pin::pin_current_thread(cpus[0]) {
            tracing::warn!(cpu = cpus[0], "could not pin the floor");
        }
    }
    let config = FloorConfig {
        listen: args.listen,
        destinations: args.to,
        profile: args.profile,
        batch: args.batch.max(1),
    };
    let socket = floor::bind(config.listen)?;
    println!("listening {}", socket.local_addr()?);
    let backend: Option<IoBackend> = match args.io.as_str() {
        "sendmmsg" => None,
        other => Some(other.parse().map_err(anyhow::Error::msg)?),
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        // stdin closing (the parent finished or died) is the cue to stop.
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            stop.store(true, Ordering::Relaxed);
        });
    }
    let counters = FloorCounters::default();
    let io = match backend {
        None => {
            floor::serve(&socket, &config, &stop, &counters)?;
            "sendmmsg".to_string()
        }
        Some(b) => floor_server_io::serve(socket, b, &config, &stop, &counters)?.to_string(),
    };
    println!(
        "io={io} received={} forwarded={} dropped_bad={} dropped_send={}",
        counters.received.load(Ordering::Relaxed),
        counters.forwarded.load(Ordering::Relaxed),
        counters.dropped_bad.load(Ordering::Relaxed),
        counters.dropped_send.load(Ordering::Relaxed)
    );
    Ok(())
}
