//! One floor measurement: start the floor as its own process (pinned to the server CPUs),
//! drive it with the load generator, count at the sinks, and charge the floor process's CPU
//! (user + sys, all threads, from /proc/PID/stat) to the packets forwarded in the window.

use std::net::SocketAddrV4;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::child::ChildGuard;
use crate::loadgen::{Frames, LoadGen, LoadSpec};
use crate::procstat;
use crate::report::{PerSecond, Percentiles};
use crate::sinks::{new_histogram, Sinks};
use crate::srtp::Profile;

/// What to measure.
#[derive(Debug, Clone)]
pub struct FloorSpec {
    pub rate_pps: u64,
    /// Part of the rate as whole video frames (see `loadgen`); None: evenly paced.
    pub frames: Option<Frames>,
    pub fanout: usize,
    pub payload: usize,
    pub profile: Profile,
    pub warmup: Duration,
    pub duration: Duration,
    pub server_cpus: Option<String>,
    pub harness_cpus: Vec<usize>,
    /// One in N packets per sink is decrypted for latency.
    pub sample_every: u64,
    /// `sendmmsg` (the floor's own loop), or a dataplane driver backend (`io_uring`,
    /// `portable`, `auto`).
    pub io: String,
}

/// The floor's figures for one run; a section of the JSON report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloorResult {
    pub profile: Profile,
    pub io_backend: String,
    pub input_pps: u64,
    /// The input's video frames (fps, packets each); absent: evenly paced input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<Frames>,
    pub fanout: usize,
    pub payload_bytes: usize,
    pub window_s: f64,
    pub forwarded_pps: f64,
    pub forwarded_mbps: f64,
    pub floor_cpu_us_per_packet: f64,
    /// The floor process's CPU over the window, in % of one CPU.
    pub floor_cpu_percent: f64,
    pub loss_ratio: f64,
    pub latency_us: Percentiles,
    pub harness_cpu_percent: f64,
    pub harness_saturated: bool,
    /// Sampled packets that did not open with the floor's SRTP or carried no probe.
    pub corrupt_samples: u64,
    pub per_second: Vec<PerSecond>,
    /// The floor's own counters, printed by it at exit.
    pub floor_counters: String,
}

/// Runs the floor binary `exe` (this program) under load; see the module docs.
pub fn measure(exe: &Path, spec: &FloorSpec) -> anyhow::Result<FloorResult> {
    let epoch = Instant::now();
    let harness_cpu = spec.harness_cpus.first().copied();
    let sinks = Sinks::start(
        spec.fanout,
        spec.profile,
        epoch,
        spec.sample_every,
        harness_cpu,
    )?;
    let destinations: Vec<String> = sinks.addrs().iter().map(|a| a.to_string()).collect();

    let mut cmd = Command::new(exe);
    cmd.args(["floor-serve", "--listen", "127.0.0.1:0", "--profile"])
        .arg(spec.profile.short())
        .args(["--io", &spec.io])
        .arg("--to")
        .arg(destinations.join(","));
    if let Some(cpus) = &spec.server_cpus {
        cmd.args(["--cpus", cpus]);
    }
    let mut floor = ChildGuard::spawn("floor", cmd)?;
    let line = floor
        .next_line()
        .ok_or_else(|| anyhow::anyhow!("the floor exited before it was listening"))?;
    let target: SocketAddrV4 = line
        .strip_prefix("listening ")
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("unexpected first line from the floor: {line:?}"))?;

    let load = LoadGen::start(
        LoadSpec {
            target,
            rate_pps: spec.rate_pps,
            payload: spec.payload,
            profile: spec.profile,
            ssrc: 0x5ca1_ab1e,
            frames: spec.frames,
        },
        epoch,
        harness_cpu,
    )?;

    std::thread::sleep(spec.warmup);
    let pid = floor.pid();
    let (cpu0, self0, sunk0, t0) = (
        procstat::cpu_of(pid),
        procstat::cpu_of_self(),
        sinks.totals(),
        Instant::now(),
    );
    std::thread::sleep(spec.duration);
    let (cpu1, self1, sunk1, t1) = (
        procstat::cpu_of(pid),
        procstat::cpu_of_self(),
        sinks.totals(),
        Instant::now(),
    );
    let load = load.stop()?;
    // Let the last packets through the floor before the sinks stop counting.
    std::thread::sleep(Duration::from_millis(300));
    let sinks = sinks.stop();
    let counters = floor.finish(Duration::from_secs(3)).join(" ");

    let window = t1 - t0;
    let forwarded = sunk1.0 - sunk0.0;
    let bytes = sunk1.1 - sunk0.1;
    // Latency from the seconds that overlap the window.
    let first = t0.duration_since(epoch).as_secs() as usize;
    let last = t1.duration_since(epoch).as_secs() as usize;
    let mut latency = new_histogram();
    let mut per_second = Vec::new();
    for (second, slot) in sinks.slots.iter().enumerate() {
        per_second.push(PerSecond::from_slot(second, slot));
        if (first..=last).contains(&second) {
            latency.add(&slot.latency_us).ok();
        }
    }
    let secs = window.as_secs_f64();
    let forwarded_pps = forwarded as f64 / secs;
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b.since(&a).total(),
        _ => anyhow::bail!("could not read /proc/{pid}/stat"),
    };
    let harness = self1.since(&self0).total();
    let harness_cores = spec.harness_cpus.len().max(1) as f64;
    let harness_cpu_percent = 100.0 * harness.as_secs_f64() / secs / harness_cores;
    let received_total: u64 = sinks.slots.iter().map(|s| s.packets).sum();
    let expected = load.sent * spec.fanout as u64;
    let loss_ratio = if expected == 0 {
        0.0
    } else {
        1.0 - (received_total as f64 / expected as f64).min(1.0)
    };
    let lagging = load.max_lag > spec.rate_pps / 10 + 10;
    Ok(FloorResult {
        profile: spec.profile,
        // The floor prints the backend it really used (auto resolved) in its counters.
        io_backend: counters
            .split_whitespace()
            .find_map(|w| w.strip_prefix("io="))
            .unwrap_or(&spec.io)
            .to_string(),
        input_pps: spec.rate_pps,
        frames: spec.frames,
        fanout: spec.fanout,
        payload_bytes: spec.payload,
        window_s: secs,
        forwarded_pps,
        forwarded_mbps: bytes as f64 * 8.0 / secs / 1e6,
        floor_cpu_us_per_packet: per_packet_us(cpu, forwarded as f64),
        floor_cpu_percent: 100.0 * cpu.as_secs_f64() / secs,
        loss_ratio,
        latency_us: Percentiles::from_histogram(&latency),
        harness_cpu_percent,
        harness_saturated: harness_cpu_percent > 85.0 || lagging,
        corrupt_samples: sinks.corrupt,
        per_second,
        floor_counters: counters,
    })
}

fn per_packet_us(cpu: Duration, packets: f64) -> f64 {
    if packets <= 0.0 {
        return 0.0;
    }
    cpu.as_secs_f64() * 1e6 / packets
}

/// The run with the median CPU per packet (the machine is shared: single runs are noisy).
pub fn median(runs: &[FloorResult]) -> Option<&FloorResult> {
    let mut sorted: Vec<&FloorResult> = runs.iter().collect();
    sorted.sort_by(|a, b| {
        a.floor_cpu_us_per_packet
            .total_cmp(&b.floor_cpu_us_per_packet)
    });
    sorted.get(sorted.len() / 2).copied()
}
