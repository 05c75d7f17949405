//! What a run reports: figures over a measured window of samples, ramp steps and the knee,
//! the JSON report (schema in docs/PERFORMANCE.md) and the human table. Pure arithmetic over
//! samples; never measures anything itself.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::aggregate::Spread;
use super::measure::Sample;
use crate::floor_run::FloorResult;
use crate::loadgen::Frames;
use crate::report::{PerSecond, Percentiles};
use crate::scenario::{Group, Ramp, Scenario};
use crate::sinks::new_histogram;
use crate::srtp::Profile;

/// Figures over one measured window (consecutive samples).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Window {
    pub window_s: f64,
    pub forwarded_packets: u64,
    /// The video part of `forwarded_packets`.
    #[serde(default)]
    pub forwarded_video_packets: u64,
    pub forwarded_pps: f64,
    pub forwarded_mbps: f64,
    /// Packets/s the publishers sent (all simulcast layers): the server's input.
    pub published_pps: f64,
    /// Server CPU (user + sys, all threads) / forwarded packets; None without a server PID.
    pub cpu_us_per_forwarded_packet: Option<f64>,
    pub server_cpu_percent: Option<f64>,
    pub latency_us: Percentiles,
    pub loss_ratio: f64,
    pub lost: u64,
    pub expected: u64,
    pub layer_switches: u64,
    pub send_drops: u64,
    pub harness_cpu_share: f64,
    /// Connected participants and server RSS at the end of the window.
    pub connected: usize,
    pub server_rss_bytes: Option<u64>,
}

impl Window {
    pub fn of(samples: &[Sample]) -> Window {
        let mut w = Window::default();
        let mut latency = new_histogram();
        let mut cpu_us: Option<u64> = Some(0);
        let mut published = 0u64;
        let mut bytes = 0u64;
        for s in samples {
            w.window_s += s.interval_s;
            w.forwarded_packets += s.forwarded_packets;
            w.forwarded_video_packets += s.forwarded_video_packets;
            bytes += s.forwarded_bytes;
            published += s.published_packets;
            w.lost += s.lost;
            w.expected += s.expected;
            w.layer_switches += s.layer_switches;
            w.send_drops += s.send_drops;
            cpu_us = cpu_us.zip(s.server_cpu_us).map(|(a, b)| a + b);
            let _ = latency.add(&s.latency);
        }
        if samples.is_empty() {
            cpu_us = None;
        }
        if let Some(last) = samples.last() {
            w.connected = last.connected;
            w.server_rss_bytes = last.server_rss_bytes;
        }
        let secs = w.window_s;
        if secs > 0.0 {
            w.forwarded_pps = w.forwarded_packets as f64 / secs;
            w.forwarded_mbps = bytes as f64 * 8.0 / secs / 1e6;
            w.published_pps = published as f64 / secs;
            w.server_cpu_percent = cpu_us.map(|c| c as f64 / 1e4 / secs);
            // Shares are per interval; weight each by its length.
            let share: f64 = samples
                .iter()
                .map(|s| s.harness_cpu_share * s.interval_s)
                .sum();
            w.harness_cpu_share = share / secs;
        }
        if w.forwarded_packets > 0 {
            w.cpu_us_per_forwarded_packet = cpu_us.map(|c| c as f64 / w.forwarded_packets as f64);
        }
        if w.expected > 0 {
            w.loss_ratio = w.lost as f64 / w.expected as f64;
        }
        w.latency_us = Percentiles::from_histogram(&latency);
        w
    }

    /// Below the ramp's limits: loss and p99 latency (no latency samples = no verdict on it).
    pub fn within(&self, ramp: &Ramp) -> bool {
        self.loss_ratio <= ramp.max_loss
            && (self.latency_us.samples == 0
                || self.latency_us.p99 as f64 <= ramp.max_p99_ms * 1000.0)
    }
}

/// One ramp step: the group's size, how it settled and its window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub step: usize,
    pub per_room: u32,
    pub participants: u64,
    pub good: bool,
    /// Seconds this step's settling phase took; `settled` false: `--settle-max` was reached.
    #[serde(default)]
    pub settle_s: f64,
    #[serde(default)]
    pub settled: bool,
    pub figures: Window,
}

/// The last good step before the first bad one (None: the first step was already bad).
pub fn knee(steps: &[Step]) -> Option<&Step> {
    let first_bad = steps.iter().position(|s| !s.good).unwrap_or(steps.len());
    first_bad.checked_sub(1).map(|i| &steps[i])
}

/// Participants in the run when `group` has `per_room` per room.
pub fn participants_at(sc: &Scenario, group: usize, per_room: u32) -> u64 {
    sc.groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            u64::from(g.rooms) * u64::from(if i == group { per_room } else { g.per_room })
        })
        .sum()
}

/// Subscribers per published track, averaged over publishers: the floor's fan-out.
pub fn mean_fanout(sc: &Scenario, per_room: &[u32]) -> f64 {
    let (mut publishers, mut receivers) = (0u64, 0u64);
    for room in 0..sc.rooms() {
        let present = |g: &&Group| room < g.rooms;
        let index = |g: &Group| sc.groups.iter().position(|x| x.name == g.name).unwrap_or(0);
        let subscribers: u64 = sc
            .groups
            .iter()
            .filter(present)
            .filter(|g| g.subscribe)
            .map(|g| u64::from(per_room[index(g)]))
            .sum();
        for g in sc.groups.iter().filter(present).filter(|g| g.publishes()) {
            let n = u64::from(per_room[index(g)]);
            publishers += n;
            // A publisher that subscribes does not receive its own tracks.
            receivers += n * subscribers.saturating_sub(u64::from(g.subscribe));
        }
    }
    if publishers == 0 {
        0.0
    } else {
        receivers as f64 / publishers as f64
    }
}

/// The floor's input frames for a window: the publishers' frame rate and the video packets
/// each subscriber got per frame of one publisher (`rate_pps` is one publisher's stream as
/// each subscriber receives it). None when nothing publishes video or no video arrived.
pub fn floor_frames(sc: &Scenario, w: &Window, rate_pps: u64) -> Option<Frames> {
    let fps = sc
        .groups
        .iter()
        .filter_map(|g| g.video.spec())
        .map(|v| v.fps)
        .max()?;
    if w.forwarded_packets == 0 || w.forwarded_video_packets == 0 || fps == 0 {
        return None;
    }
    let video_pps = rate_pps as f64 * w.forwarded_video_packets as f64 / w.forwarded_packets as f64;
    let packets = (video_pps / f64::from(fps)).round().max(1.0) as u32;
    Some(Frames { fps, packets })
}

/// Join time percentiles, ms.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct JoinMs {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub joined: u64,
    pub failed: u64,
}

/// The `run` JSON report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub scenario: String,
    pub description: String,
    pub started_unix_s: u64,
    /// Requested measured seconds (each ramp step: `step_secs`).
    pub duration: u64,
    pub io_backend: String,
    pub shards: usize,
    /// Extra `shardcast serve` arguments the harness passed (`--server-arg`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_args: Vec<String>,
    pub server_cpus: Option<String>,
    pub harness_cpus: Option<String>,
    pub participants: u64,
    pub rooms: u32,
    pub forwarded_pps: f64,
    pub forwarded_mbps: f64,
    pub published_pps: f64,
    pub cpu_us_per_forwarded_packet: Option<f64>,
    pub server_cpu_percent: Option<f64>,
    pub floor_cpu_us_per_packet: Option<f64>,
    pub ratio_to_floor: Option<f64>,
    pub latency_us: Percentiles,
    pub loss_ratio: f64,
    pub join_ms: JoinMs,
    pub server_rss_bytes: Option<u64>,
    pub rss_bytes_per_participant: Option<f64>,
    pub layer_switches: u64,
    pub harness_saturated: bool,
    pub harness_cpu_share: f64,
    /// Seconds the settling phase before the window took (with --ramp: the reported step's).
    #[serde(default)]
    pub settle_s: f64,
    /// false: the load was not steady when `--settle-max` ended the settling phase.
    #[serde(default)]
    pub settled: bool,
    /// The SRTP profile the harness's clients negotiated with the server (DTLS), as str0m
    /// reported it; None when no client reported one (e.g. the library used without the
    /// CLI's log capture).
    #[serde(default)]
    pub srtp_profile: Option<Profile>,
    /// Participants the server lists as joined in the scenario's rooms after the window: a
    /// cross-check of `window.connected`; None in dev mode (`--target` without a key).
    pub server_participants: Option<u64>,
    pub warnings: Vec<String>,
    pub window: Window,
    pub steps: Vec<Step>,
    pub knee: Option<Step>,
    pub floor: Option<FloorResult>,
    pub per_second: Vec<Sample>,
    /// Whole runs folded into this report (`--repeat`); the figures above are their medians.
    #[serde(default = "one")]
    pub repeat: usize,
    /// Index in `runs` of the median run (by forwarded_pps): window, steps, floor and
    /// per_second above are that run's.
    #[serde(default)]
    pub median_run: usize,
    /// Median, min and max over the runs of each folded figure (keys: the field names,
    /// `latency_us.p99` for nested ones).
    #[serde(default)]
    pub spread: BTreeMap<String, Spread>,
    /// Every run's full report (their own `runs` empty).
    #[serde(default)]
    pub runs: Vec<RunReport>,
}

fn one() -> usize {
    1
}

impl RunReport {
    /// The loss ratio in %, with the runs' range when there were several.
    fn ranged_percent(&self, key: &str, ratio: f64) -> String {
        match self.spread.get(key) {
            Some(s) if self.repeat > 1 => format!(
                "{:.4} ({:.4}–{:.4})",
                ratio * 100.0,
                s.min * 100.0,
                s.max * 100.0
            ),
            _ => format!("{:.4}", ratio * 100.0),
        }
    }

    /// The series the SVG plot draws.
    pub fn plot_series(&self) -> Vec<PerSecond> {
        self.per_second
            .iter()
            .enumerate()
            .map(|(i, s)| PerSecond {
                second: i,
                packets: s.forwarded_pps.round() as u64,
                mbps: s.forwarded_mbps,
                latency_p50_us: s.latency_p50_us,
                latency_p99_us: s.latency_p99_us,
            })
            .collect()
    }

    /// `value` with the runs' range when there were several: `22.4 (20.1–25.0)`.
    fn ranged(&self, key: &str, value: Option<f64>, digits: usize) -> String {
        let Some(v) = value else {
            return "n/a".to_string();
        };
        match self.spread.get(key) {
            Some(s) if self.repeat > 1 => {
                format!("{v:.digits$} ({:.digits$}–{:.digits$})", s.min, s.max)
            }
            _ => format!("{v:.digits$}"),
        }
    }

    pub fn print_table(&self) {
        let opt = |key: &str, v: Option<f64>, digits: usize| self.ranged(key, v, digits);
        let int = |key: &str, v: u64| self.ranged(key, Some(v as f64), 0);
        println!(
            "scenario {} — {} participants in {} rooms, io {}, {} shard(s)",
            self.scenario, self.participants, self.rooms, self.io_backend, self.shards
        );
        if !self.server_args.is_empty() {
            println!("  server arguments: {}", self.server_args.join(" "));
        }
        if self.repeat > 1 {
            println!(
                "  {} runs: medians (min–max); ratio = median of per-run ratios; window, series and floor of run {}",
                self.repeat,
                self.median_run + 1
            );
        }
        println!(
            "  settling          {:>10} s  ({})",
            opt("settle_s", Some(self.settle_s), 1),
            if self.settled {
                "steady"
            } else {
                "NOT steady: --settle-max reached"
            }
        );
        println!("  window            {:>10.1} s", self.window.window_s);
        println!(
            "  forwarded         {:>10} pps  {} Mbps  (received by subscribers)",
            opt("forwarded_pps", Some(self.forwarded_pps), 0),
            opt("forwarded_mbps", Some(self.forwarded_mbps), 1)
        );
        println!(
            "  published         {:>10} pps",
            opt("published_pps", Some(self.published_pps), 0)
        );
        println!(
            "  server CPU        {:>10} µs/packet  ({}% of a CPU)",
            opt(
                "cpu_us_per_forwarded_packet",
                self.cpu_us_per_forwarded_packet,
                3
            ),
            opt("server_cpu_percent", self.server_cpu_percent, 0)
        );
        println!(
            "  floor             {:>10} µs/packet  ratio {}  ({})",
            opt("floor_cpu_us_per_packet", self.floor_cpu_us_per_packet, 3),
            opt("ratio_to_floor", self.ratio_to_floor, 2),
            self.floor
                .as_ref()
                .map(|f| f.profile.name())
                .unwrap_or("no floor")
        );
        println!(
            "  latency µs        p50 {}  p99 {}  p99.9 {}  ({} samples)",
            int("latency_us.p50", self.latency_us.p50),
            int("latency_us.p99", self.latency_us.p99),
            int("latency_us.p999", self.latency_us.p999),
            self.latency_us.samples
        );
        if let Some(f) = &self.floor {
            let input = match f.frames {
                Some(fr) => format!("{} frames/s of {} packets", fr.fps, fr.packets),
                None => "evenly paced".to_string(),
            };
            println!(
                "  floor latency µs  p50 {}  p99 {}  (input {} pps, {input})",
                f.latency_us.p50, f.latency_us.p99, f.input_pps
            );
        }
        println!(
            "  loss after repair {:>10} %",
            self.ranged_percent("loss_ratio", self.loss_ratio)
        );
        println!(
            "  join ms           p50 {}  p99 {}  max {}  ({} joined, {} failed)",
            int("join_ms.p50", self.join_ms.p50),
            int("join_ms.p99", self.join_ms.p99),
            int("join_ms.max", self.join_ms.max),
            self.join_ms.joined,
            self.join_ms.failed
        );
        println!(
            "  RSS               {:>10} bytes/participant",
            opt(
                "rss_bytes_per_participant",
                self.rss_bytes_per_participant,
                0
            )
        );
        println!(
            "  layer switches    {:>10}",
            int("layer_switches", self.layer_switches)
        );
        println!(
            "  harness CPU       {:>10.0} % of its CPUs",
            self.harness_cpu_share * 100.0
        );
        if let Some(p) = self.srtp_profile {
            println!("  SRTP negotiated   {:>10}", p.name());
        }
        for s in &self.steps {
            println!(
                "  ramp step {:>2}: {:>5}/room  {:>9.0} pps  loss {:.3}%  p99 {} µs  settle {:.0} s{}  {}",
                s.step,
                s.per_room,
                s.figures.forwarded_pps,
                s.figures.loss_ratio * 100.0,
                s.figures.latency_us.p99,
                s.settle_s,
                if s.settled { "" } else { " (capped)" },
                if s.good { "ok" } else { "over the limit" }
            );
        }
        if !self.steps.is_empty() {
            match &self.knee {
                Some(k) => println!(
                    "  knee: {} per room ({} participants)",
                    k.per_room, k.participants
                ),
                None => println!("  knee: none (the first step was already over the limit)"),
            }
        }
        for w in &self.warnings {
            println!("  WARNING: {w}");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::run::measure::Sample;

    pub(crate) fn sample(pps: u64, lost: u64, expected: u64, latency: &[u64]) -> Sample {
        let mut h = new_histogram();
        for v in latency {
            h.record(*v).unwrap();
        }
        Sample {
            t_s: 0.0,
            interval_s: 1.0,
            phase: "measure".into(),
            step: None,
            connected: 10,
            joining: 0,
            failed: 0,
            forwarded_packets: pps,
            forwarded_video_packets: pps * 3 / 4,
            forwarded_bytes: pps * 1000,
            forwarded_pps: pps as f64,
            forwarded_mbps: pps as f64 * 8e-3,
            published_packets: pps / 10,
            expected,
            lost,
            layer_switches: 1,
            send_drops: 0,
            server_cpu_us: Some(pps * 4),
            server_cpu_percent: None,
            server_rss_bytes: Some(50 << 20),
            harness_cpu_us: 500_000,
            harness_cpu_share: 0.25,
            latency_p50_us: 0,
            latency_p99_us: 0,
            latency: h,
        }
    }

    #[test]
    fn window_sums_and_merges() {
        let samples = vec![
            sample(1000, 0, 1000, &[100; 98]),
            sample(3000, 30, 3000, &[20_000, 20_000]),
        ];
        let w = Window::of(&samples);
        assert_eq!(w.window_s, 2.0);
        assert_eq!(w.forwarded_packets, 4000);
        assert_eq!(w.forwarded_pps, 2000.0);
        assert_eq!(w.forwarded_mbps, 16.0);
        assert_eq!(w.published_pps, 200.0);
        assert_eq!(w.cpu_us_per_forwarded_packet, Some(4.0));
        assert!((w.server_cpu_percent.unwrap() - 0.8).abs() < 1e-9);
        assert!((w.loss_ratio - 30.0 / 4000.0).abs() < 1e-12);
        assert_eq!(w.latency_us.samples, 100);
        assert_eq!(w.latency_us.p50, 100);
        assert!(
            (19_990..=20_100).contains(&w.latency_us.p99),
            "{:?}",
            w.latency_us
        );
        assert!((19_990..=20_100).contains(&w.latency_us.p999));
        assert_eq!(w.layer_switches, 2);
        // 0.5 s of CPU per second on 2 CPUs (share 0.25).
        assert!((w.harness_cpu_share - 0.25).abs() < 1e-9);
        assert_eq!(w.connected, 10);
    }

    #[test]
    fn unknown_server_cpu_gives_no_per_packet_figure() {
        let mut s = sample(1000, 0, 1000, &[]);
        s.server_cpu_us = None;
        let w = Window::of(&[sample(1000, 0, 1000, &[]), s]);
        assert_eq!(w.cpu_us_per_forwarded_packet, None);
        assert_eq!(w.latency_us, Percentiles::default());
        assert_eq!(Window::of(&[]), Window::default());
    }

    /// A finished report whose window forwarded `pps` (for aggregation tests).
    pub(crate) fn report(pps: f64) -> RunReport {
        let mut window = Window::of(&[sample(1000, 0, 1000, &[100; 10])]);
        window.forwarded_pps = pps;
        RunReport {
            scenario: "t".into(),
            description: String::new(),
            started_unix_s: 0,
            duration: 1,
            io_backend: "portable".into(),
            shards: 1,
            server_args: Vec::new(),
            server_cpus: None,
            harness_cpus: None,
            participants: 3,
            rooms: 1,
            forwarded_pps: pps,
            forwarded_mbps: pps * 8e-3,
            published_pps: pps / 2.0,
            cpu_us_per_forwarded_packet: Some(4.0),
            server_cpu_percent: Some(10.0),
            floor_cpu_us_per_packet: Some(2.0),
            ratio_to_floor: Some(2.0),
            latency_us: window.latency_us,
            loss_ratio: 0.0,
            join_ms: JoinMs {
                p50: 100,
                p99: 200,
                max: 250,
                joined: 3,
                failed: 0,
            },
            server_rss_bytes: Some(50 << 20),
            rss_bytes_per_participant: Some(1e5),
            layer_switches: 0,
            harness_saturated: false,
            harness_cpu_share: 0.25,
            settle_s: 3.0,
            settled: true,
            srtp_profile: Some(Profile::AeadAes256Gcm),
            server_participants: Some(3),
            warnings: Vec::new(),
            window,
            steps: Vec::new(),
            knee: None,
            floor: None,
            per_second: Vec::new(),
            repeat: 1,
            median_run: 0,
            spread: BTreeMap::new(),
            runs: Vec::new(),
        }
    }

    fn step(i: usize, loss: f64, p99_ms: u64) -> Step {
        let samples = vec![sample(
            10_000,
            (loss * 10_000.0) as u64,
            10_000,
            &[p99_ms * 1000; 10],
        )];
        let ramp = Ramp {
            group: "v".into(),
            step: 50,
            step_secs: 1,
            max_per_room: 1000,
            max_loss: 0.01,
            max_p99_ms: 50.0,
        };
        let figures = Window::of(&samples);
        Step {
            step: i,
            per_room: 50 * (i as u32 + 1),
            participants: 50 * (i as u64 + 1),
            good: figures.within(&ramp),
            settle_s: 3.0,
            settled: true,
            figures,
        }
    }

    #[test]
    fn knee_is_the_last_good_step_before_the_first_bad() {
        let steps = vec![
            step(0, 0.0, 1),
            step(1, 0.005, 10),
            step(2, 0.02, 10),
            step(3, 0.0, 1),
        ];
        assert!(steps[0].good && steps[1].good && !steps[2].good && steps[3].good);
        assert_eq!(knee(&steps).map(|s| s.per_room), Some(100));
        let latency_bound = vec![step(0, 0.0, 1), step(1, 0.0, 60)];
        assert!(!latency_bound[1].good, "p99 60 ms is over 50 ms");
        assert_eq!(knee(&latency_bound).map(|s| s.step), Some(0));
        assert_eq!(knee(&[step(0, 0.5, 1)]), None);
        // Never over the limit: the last step (the maximum) is the knee.
        assert_eq!(knee(&steps[..2]).map(|s| s.step), Some(1));
    }

    #[test]
    fn fanout_counts_receivers_per_publisher() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let load = |n: &str| Scenario::load(&dir.join(format!("{n}.toml"))).unwrap();
        let per_room = |s: &Scenario| s.groups.iter().map(|g| g.per_room).collect::<Vec<_>>();
        let webinar = load("webinar-1x200");
        assert_eq!(mean_fanout(&webinar, &per_room(&webinar)), 200.0);
        let conf = load("conference-8");
        assert_eq!(mean_fanout(&conf, &per_room(&conf)), 7.0);
        let audio = load("audio-500");
        // 8 speakers, each heard by the 7 other speakers and 492 listeners.
        assert_eq!(mean_fanout(&audio, &per_room(&audio)), 499.0);
        let rooms = load("rooms-50x4");
        assert_eq!(mean_fanout(&rooms, &per_room(&rooms)), 3.0);
        // Ramp: 350 viewers.
        assert_eq!(mean_fanout(&webinar, &[1, 350]), 350.0);
        assert_eq!(participants_at(&webinar, 1, 350), 351);
    }

    #[test]
    fn floor_frames_follow_the_video_share_and_the_publishers_fps() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let load = |n: &str| Scenario::load(&dir.join(format!("{n}.toml"))).unwrap();
        let window = |packets: u64, video: u64| Window {
            forwarded_packets: packets,
            forwarded_video_packets: video,
            ..Window::default()
        };
        // webinar: 233 pps per viewer, 79% video -> 184 video pps = 30 frames of 6.
        let webinar = load("webinar-1x200");
        assert_eq!(
            floor_frames(&webinar, &window(233_000, 184_000), 233),
            Some(Frames {
                fps: 30,
                packets: 6
            })
        );
        // Audio only, or no video arrived: evenly paced.
        assert_eq!(floor_frames(&load("audio-500"), &window(1000, 0), 50), None);
        assert_eq!(floor_frames(&webinar, &window(1000, 0), 50), None);
        // A trickle of video still comes as frames of at least one packet.
        assert_eq!(
            floor_frames(&webinar, &window(1000, 100), 60),
            Some(Frames {
                fps: 30,
                packets: 1
            })
        );
    }
}
