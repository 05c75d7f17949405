//! The run itself: server up, rooms and tokens, the pool joining on the timeline, a sample
//! every second, phases (joining → warm-up → settling → measure, repeated per ramp step),
//! then the floor at a matching rate and fan-out on the negotiated SRTP profile, and the
//! report; `run_repeated` does all of that N times and folds the reports (`aggregate`).
//!
//! Owns the order of things and the control thread's loop. Must never do packet work (the
//! pool's threads do) or arithmetic on figures (`measure`, `summary` do).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::aggregate;
use super::measure::{Meter, Sample, ServerReading};
use super::negotiated;
use super::server::{self, Server, ServerSpec};
use super::settle::{Settled, Settler};
use super::setup::{Credentials, Setup};
use super::summary::{
    floor_frames, knee, mean_fanout, participants_at, JoinMs, RunReport, Step, Window,
};
use super::timeline::{Action, Seat, Timeline};
use crate::floor_run::{self, FloorResult, FloorSpec};
use crate::pool::{JoinSpec, ParticipantId, ParticipantState, Pool, PoolConfig, Signaling};
use crate::report::Percentiles;
use crate::scenario::{Scenario, SignalingKind};
use crate::srtp::Profile;

/// Everything `run` needs (the CLI's flags, resolved).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub scenario: Scenario,
    /// Measured seconds (per ramp step: the ramp's `step_secs`).
    pub duration: Duration,
    pub warmup: Duration,
    /// A running server (`--target`); None = start `shardcast serve`.
    pub target: Option<String>,
    pub credentials: Option<Credentials>,
    pub server_pid: Option<u32>,
    pub server_bin: Option<PathBuf>,
    pub release: bool,
    pub io_backend: String,
    pub shards: usize,
    /// Extra arguments for the started `shardcast serve`.
    pub server_args: Vec<String>,
    pub server_cpus: Option<String>,
    pub harness_cpus: Vec<usize>,
    pub ramp: bool,
    pub floor: bool,
    /// This program (it runs the floor as `floor-serve`).
    pub exe: PathBuf,
    /// Longest wait for the joins of a phase to connect before measuring anyway.
    pub join_timeout: Duration,
    /// Longest settling phase (see `settle`) before each window; zero: no settling.
    pub settle_max: Duration,
    /// The floor's SRTP profile; None: the one the clients negotiated.
    pub floor_profile: Option<Profile>,
}

/// The floor's profile when no client reported one and none was asked for: what str0m 0.25
/// peers negotiate with each other (dimpl offers and prefers AEAD_AES_256_GCM).
pub const DEFAULT_NEGOTIATED: Profile = Profile::AeadAes256Gcm;

enum Phase {
    Joining { last_issued: Option<Instant> },
    Warmup { until: Instant, settler: Settler },
    Settling { settler: Settler },
    Measure { from: usize, settled: Settled },
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Joining { .. } => "joining",
            Phase::Warmup { .. } => "warmup",
            Phase::Settling { .. } => "settling",
            Phase::Measure { .. } => "measure",
        }
    }
}

/// Joins one seat (minting its token unless pre-minted); the pool's id for it.
type JoinFn<'a> = dyn Fn(&Seat, &mut HashMap<Seat, String>) -> anyhow::Result<ParticipantId> + 'a;

/// What the loop hands back.
struct Measured {
    samples: Vec<Sample>,
    steps: Vec<Step>,
    window: Window,
    /// How the reported window's settling went (ramp: the reported step's).
    settled: Settled,
    per_room: Vec<u32>,
    meter: Meter,
    max_lag: Duration,
    warnings: Vec<String>,
}

/// `run` `repeat` times (a fresh server and floor each time) and the folded report.
pub fn run_repeated(opts: &RunOptions, repeat: usize) -> anyhow::Result<RunReport> {
    let repeat = repeat.max(1);
    let mut runs = Vec::with_capacity(repeat);
    for i in 0..repeat {
        let r = run(opts)?;
        if repeat > 1 {
            eprintln!(
                "run {}/{repeat}: {:.0} pps forwarded, {} µs CPU/packet, ratio to floor {}, settled {} in {:.0} s",
                i + 1,
                r.forwarded_pps,
                r.cpu_us_per_forwarded_packet
                    .map_or("n/a".into(), |v| format!("{v:.3}")),
                r.ratio_to_floor.map_or("n/a".into(), |v| format!("{v:.2}")),
                r.settled,
                r.settle_s
            );
        }
        runs.push(r);
    }
    aggregate::combine(runs).ok_or_else(|| anyhow::anyhow!("no runs"))
}

pub fn run(opts: &RunOptions) -> anyhow::Result<RunReport> {
    let sc = &opts.scenario;
    // Connections str0m reports from here on are this run's (see `negotiated`).
    let seen_before = negotiated::Counts::now();
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let server = match &opts.target {
        Some(_) => None,
        None => {
            let bin = server::locate_binary(opts.server_bin.as_deref(), opts.release)?;
            Some(Server::start(&ServerSpec {
                bin,
                io_backend: opts.io_backend.clone(),
                shards: opts.shards,
                extra_args: opts.server_args.clone(),
                cpus: opts.server_cpus.clone(),
                log_filter: None,
                env: Vec::new(),
            })?)
        }
    };
    let (base_url, credentials) = match &server {
        Some(s) => (
            s.base_url.clone(),
            Credentials::ApiKey {
                id: s.api_key.api_key.clone(),
                secret: s.api_key.api_secret.clone(),
            },
        ),
        None => (
            opts.target.clone().expect("target when no server"),
            opts.credentials.clone().unwrap_or(Credentials::Dev),
        ),
    };
    let server_pid = server.as_ref().map(|s| s.pid()).or(opts.server_pid);
    let read_server = || {
        server_pid
            .map(server::reading_of)
            .unwrap_or(ServerReading::default())
    };
    let setup = Setup::new(&base_url, credentials)?;
    let tag = format!("{:04x}", fastrand::u16(..));
    let room_name = |room: u32| format!("bench-{}-{tag}-{room}", sc.name);
    for room in 0..sc.rooms() {
        setup.create_room(&room_name(room))?;
    }
    // Tokens of the initial participants are minted before the clock starts, so the join
    // schedule is not held up by REST calls; later ones (churn, ramp) as they join.
    let mut tokens: HashMap<Seat, String> = HashMap::new();
    for (g, group) in sc.groups.iter().enumerate() {
        for room in 0..group.rooms {
            for seat in 0..group.per_room {
                let s = Seat {
                    group: g,
                    room,
                    seat,
                    generation: 0,
                };
                let token = setup.token(
                    &room_name(room),
                    &s.identity(&group.name),
                    group.publishes(),
                )?;
                tokens.insert(s, token);
            }
        }
    }

    let pool = Pool::start(PoolConfig {
        threads: opts.harness_cpus.len().max(1),
        cpus: (!opts.harness_cpus.is_empty()).then(|| opts.harness_cpus.clone()),
        bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
    })?;
    let baseline_rss = read_server().rss_bytes;
    let join = |seat: &Seat, tokens: &mut HashMap<Seat, String>| -> anyhow::Result<ParticipantId> {
        let group = &sc.groups[seat.group];
        let room = room_name(seat.room);
        let token = match tokens.remove(seat) {
            Some(t) => t,
            None => setup.token(&room, &seat.identity(&group.name), group.publishes())?,
        };
        Ok(pool.join(JoinSpec {
            group: group.name.clone(),
            base_url: base_url.clone(),
            room,
            token,
            password: None,
            audio: group.audio,
            video: group.video,
            subscribe: group.subscribe,
            max_layer: group.max_layer,
            verify: seat.seat.is_multiple_of(group.verify_one_in),
            signaling: match group.signaling {
                SignalingKind::Websocket => Signaling::WebSocket,
                SignalingKind::WhipWhep => Signaling::WhipWhep,
            },
            transport_cc: group.transport_cc,
        }))
    };

    let measured = control_loop(opts, &pool, &read_server, &mut tokens, &join)?;
    let seen = negotiated::Counts::now().since(&seen_before);
    let negotiated = seen.most_used();
    let rooms: Vec<String> = (0..sc.rooms()).map(room_name).collect();
    let server_participants = setup.joined_participants(&rooms);
    let backend = server
        .as_ref()
        .and_then(|s| s.backend())
        .unwrap_or_else(|| opts.io_backend.clone());
    let final_snapshot = pool.shutdown();
    let mut warnings = measured.warnings;
    if !measured.settled.settled && !opts.settle_max.is_zero() {
        warnings.push(format!(
            "the load was not steady after {:.0} s of settling (--settle-max): layers or packets/s still moving in the window",
            measured.settled.settle_s
        ));
    }
    if seen.seen().len() > 1 {
        warnings.push(format!(
            "clients negotiated different SRTP profiles: {:?}",
            seen.seen()
        ));
    }
    let floor_profile = match (opts.floor_profile, negotiated) {
        (Some(p), _) => p,
        (None, Some(p)) => p,
        (None, None) => {
            if opts.floor {
                warnings.push(format!(
                    "no client reported its SRTP profile; the floor assumes {}",
                    DEFAULT_NEGOTIATED.name()
                ));
            }
            DEFAULT_NEGOTIATED
        }
    };
    let mut reasons: Vec<&str> = final_snapshot
        .participants
        .iter()
        .filter_map(|p| match &p.state {
            ParticipantState::Failed(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    for why in reasons.iter().take(3) {
        warnings.push(format!("a participant failed: {why}"));
    }
    if let Some(s) = &server {
        if measured.window.forwarded_packets == 0 {
            warnings.push(format!(
                "nothing was forwarded; the server log ends:\n{}",
                s.log_tail(15)
            ));
        }
    }
    // The server stops before the floor runs: they must not share the CPU.
    drop(server);

    let w = &measured.window;
    let lagging = measured.max_lag > Duration::from_secs(1);
    if lagging {
        warnings.push(format!(
            "the harness fell behind its schedule by up to {:.1} s",
            measured.max_lag.as_secs_f64()
        ));
    }
    if w.harness_cpu_share > 0.9 {
        warnings.push(format!(
            "the harness used {:.0}% of its CPUs: it, not the server, may be the bottleneck",
            w.harness_cpu_share * 100.0
        ));
    }
    if w.send_drops > 0 {
        warnings.push(format!(
            "the harness's sockets refused {} datagrams (send buffer full)",
            w.send_drops
        ));
    }
    let harness_saturated = lagging || w.harness_cpu_share > 0.9 || w.send_drops > 0;

    let floor = if opts.floor && w.forwarded_pps > 0.0 {
        let fanout = mean_fanout(sc, &measured.per_room).round().max(1.0) as usize;
        let payload = if w.forwarded_packets > 0 {
            (w.forwarded_mbps * 1e6 / 8.0 / w.forwarded_pps) as usize
        } else {
            1200
        };
        let rate_pps = (w.forwarded_pps / fanout as f64).round().max(1.0) as u64;
        let spec = FloorSpec {
            rate_pps,
            // Video arrives a frame at a time, as the publishers sent it.
            frames: floor_frames(sc, w, rate_pps),
            fanout,
            // The subscribers' mean RTP payload per packet (audio and video mixed).
            payload: payload.clamp(40, 1200),
            profile: floor_profile,
            warmup: Duration::from_secs(1),
            duration: opts
                .duration
                .clamp(Duration::from_secs(2), Duration::from_secs(10)),
            server_cpus: opts.server_cpus.clone(),
            harness_cpus: opts.harness_cpus.clone(),
            sample_every: 8,
            io: backend.clone(),
        };
        match floor_run::measure(&opts.exe, &spec) {
            Ok(f) => Some(f),
            Err(e) => {
                warnings.push(format!("the floor did not run: {e:#}"));
                None
            }
        }
    } else {
        None
    };

    let mut report = build_report(
        opts,
        started_unix_s,
        backend,
        baseline_rss,
        server_participants,
        harness_saturated,
        warnings,
        floor,
        measured.meter.join_ms(),
        measured.meter.failed_joins(),
        measured.window,
        measured.steps,
        measured.samples,
    );
    report.settle_s = measured.settled.settle_s;
    report.settled = measured.settled.settled;
    report.srtp_profile = negotiated;
    Ok(report)
}

/// The control loop: joins and leaves on time, a sample each second, phase changes.
fn control_loop(
    opts: &RunOptions,
    pool: &Pool,
    read_server: &dyn Fn() -> ServerReading,
    tokens: &mut HashMap<Seat, String>,
    join: &JoinFn,
) -> anyhow::Result<Measured> {
    let sc = &opts.scenario;
    let start = Instant::now();
    let mut meter = Meter::new(start, opts.harness_cpus.len().max(1));
    meter.prime(&pool.snapshot(), read_server());
    let mut timeline = Timeline::new(sc, start);
    let ramp = if opts.ramp { sc.ramp.clone() } else { None };
    let ramp_group = ramp
        .as_ref()
        .and_then(|r| sc.groups.iter().position(|g| g.name == r.group));
    let duration_s = match &ramp {
        Some(r) => r.step_secs,
        None => opts.duration.as_secs().max(1),
    } as usize;
    let progress = ProgressBar::new(
        (sc.participants() as f64 / sc.join_rate_per_sec) as u64
            + opts.warmup.as_secs()
            + super::settle::STEADY_SECS as u64
            + duration_s as u64,
    );
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut ids: HashMap<(usize, u32, u32), ParticipantId> = HashMap::new();
    let mut phase = Phase::Joining { last_issued: None };
    let mut samples: Vec<Sample> = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut warnings = Vec::new();
    let mut next_sample = start + Duration::from_secs(1);
    let mut max_lag = Duration::ZERO;
    let (window, settled) = loop {
        let now = Instant::now();
        for action in timeline.poll(now) {
            match action {
                Action::Join(seat) => {
                    let id = join(&seat, tokens)?;
                    ids.insert(seat.place(), id);
                }
                Action::Leave(seat) => {
                    if let Some(id) = ids.remove(&seat.place()) {
                        pool.leave(id);
                    }
                }
            }
        }
        if let Phase::Joining { last_issued } = &mut phase {
            if timeline.pending() == 0 && last_issued.is_none() {
                *last_issued = Some(Instant::now());
            }
        }
        if now < next_sample {
            std::thread::sleep((next_sample - now).min(Duration::from_millis(5)));
            continue;
        }
        max_lag = max_lag.max(now - next_sample);
        next_sample = (next_sample + Duration::from_secs(1)).max(now);
        let snap = pool.snapshot();
        let step = ramp.as_ref().map(|_| steps.len());
        let sample = meter.observe(&snap, read_server(), phase.name(), step);
        progress.set_position(start.elapsed().as_secs());
        progress.set_message(format!(
            "{} {}/{} connected, {:.0} pps, server {:.0}%",
            phase.name(),
            sample.connected,
            sample.connected + sample.joining,
            sample.forwarded_pps,
            sample.server_cpu_percent.unwrap_or(0.0)
        ));
        let sample_pps = sample.forwarded_pps;
        samples.push(sample);
        let now = Instant::now();
        match &phase {
            Phase::Joining {
                last_issued: Some(last),
            } => {
                let waiting = snap.participants.iter().any(|p| {
                    matches!(p.state, ParticipantState::Joining) && p.join_started <= *last
                });
                if !waiting || now - *last > opts.join_timeout {
                    if waiting {
                        warnings.push(format!(
                            "some joins had not connected {} s after the last was issued; measuring anyway",
                            opts.join_timeout.as_secs()
                        ));
                    }
                    phase = Phase::Warmup {
                        until: now + opts.warmup,
                        settler: Settler::new(opts.settle_max),
                    };
                }
            }
            Phase::Joining { last_issued: None } => {}
            Phase::Warmup { until, settler } => {
                let mut settler = settler.clone();
                settler.prime(sample_pps);
                if now < *until {
                    phase = Phase::Warmup {
                        until: *until,
                        settler,
                    };
                } else if let Some(settled) = settler.immediate() {
                    phase = Phase::Measure {
                        from: samples.len(),
                        settled,
                    };
                } else {
                    phase = Phase::Settling { settler };
                }
            }
            Phase::Settling { settler } => {
                let mut settler = settler.clone();
                let last = samples.last().expect("a sample was just pushed");
                match settler.observe(last.interval_s, last.forwarded_pps, last.layer_switches) {
                    Some(settled) => {
                        phase = Phase::Measure {
                            from: samples.len(),
                            settled,
                        }
                    }
                    None => phase = Phase::Settling { settler },
                }
            }
            Phase::Measure { from, settled } => {
                if samples.len() - from < duration_s {
                    continue;
                }
                let settled = *settled;
                let figures = Window::of(&samples[*from..]);
                let (Some(r), Some(g)) = (&ramp, ramp_group) else {
                    break (figures, settled);
                };
                let per_room = timeline.per_room(g);
                let good = figures.within(r);
                steps.push(Step {
                    step: steps.len(),
                    per_room,
                    participants: participants_at(sc, g, per_room),
                    good,
                    settle_s: settled.settle_s,
                    settled: settled.settled,
                    figures,
                });
                let raised = good
                    .then(|| timeline.raise(g, r.step, r.max_per_room, now))
                    .flatten();
                if raised.is_none() {
                    let chosen = knee(&steps).unwrap_or(&steps[0]);
                    break (
                        chosen.figures.clone(),
                        Settled {
                            settle_s: chosen.settle_s,
                            settled: chosen.settled,
                        },
                    );
                }
                progress.set_length(progress.length().unwrap_or(0) + duration_s as u64 * 2);
                phase = Phase::Joining { last_issued: None };
            }
        }
    };
    progress.finish_and_clear();
    let per_room = match (&ramp, ramp_group) {
        (Some(_), Some(g)) => {
            let mut v: Vec<u32> = sc.groups.iter().map(|g| g.per_room).collect();
            v[g] = knee(&steps).unwrap_or(&steps[0]).per_room;
            v
        }
        _ => sc.groups.iter().map(|g| g.per_room).collect(),
    };
    Ok(Measured {
        samples,
        steps,
        window,
        settled,
        per_room,
        meter,
        max_lag: max_lag.max(timeline.max_lag()),
        warnings,
    })
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    opts: &RunOptions,
    started_unix_s: u64,
    io_backend: String,
    baseline_rss: Option<u64>,
    server_participants: Option<u64>,
    harness_saturated: bool,
    warnings: Vec<String>,
    floor: Option<FloorResult>,
    join_ms: &hdrhistogram::Histogram<u64>,
    failed: usize,
    window: Window,
    steps: Vec<Step>,
    per_second: Vec<Sample>,
) -> RunReport {
    let sc = &opts.scenario;
    let floor_us = floor.as_ref().map(|f| f.floor_cpu_us_per_packet);
    let ratio = window
        .cpu_us_per_forwarded_packet
        .zip(floor_us)
        .and_then(|(ours, f)| (f > 0.0).then(|| ours / f));
    let rss_per = window
        .server_rss_bytes
        .zip(baseline_rss)
        .and_then(|(end, base)| {
            (window.connected > 0)
                .then(|| end.saturating_sub(base) as f64 / window.connected as f64)
        });
    let join = Percentiles::from_histogram(join_ms);
    let knee = knee(&steps).cloned();
    RunReport {
        scenario: sc.name.clone(),
        description: sc.description.clone(),
        started_unix_s,
        duration: opts.duration.as_secs(),
        io_backend,
        shards: opts.shards,
        server_args: opts.server_args.clone(),
        server_cpus: opts.server_cpus.clone(),
        harness_cpus: (!opts.harness_cpus.is_empty()).then(|| {
            opts.harness_cpus
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        }),
        participants: sc.participants(),
        rooms: sc.rooms(),
        forwarded_pps: window.forwarded_pps,
        forwarded_mbps: window.forwarded_mbps,
        published_pps: window.published_pps,
        cpu_us_per_forwarded_packet: window.cpu_us_per_forwarded_packet,
        server_cpu_percent: window.server_cpu_percent,
        floor_cpu_us_per_packet: floor_us,
        ratio_to_floor: ratio,
        latency_us: window.latency_us,
        loss_ratio: window.loss_ratio,
        join_ms: JoinMs {
            p50: join.p50,
            p99: join.p99,
            max: if join_ms.is_empty() { 0 } else { join_ms.max() },
            joined: join_ms.len(),
            failed: failed as u64,
        },
        server_rss_bytes: window.server_rss_bytes,
        rss_bytes_per_participant: rss_per,
        layer_switches: window.layer_switches,
        harness_saturated,
        harness_cpu_share: window.harness_cpu_share,
        server_participants,
        warnings,
        window,
        steps,
        knee,
        floor,
        per_second,
        // Set by `run` (settling, the negotiated profile) and `aggregate` (the rest).
        settle_s: 0.0,
        settled: false,
        srtp_profile: None,
        repeat: 1,
        median_run: 0,
        spread: Default::default(),
        runs: Vec::new(),
    }
}
