//! Per-second samples of a run: what the subscribers received (forwarded packets and bytes),
//! what publishers sent, loss after repair, latency, layer switches, the server's CPU and RSS
//! and the harness's CPU. Pool counters are cumulative per participant, so each sample is the
//! difference to the previous snapshot of the same participant (latency histograms too).
//!
//! "Forwarded" is what the harness's subscribers received: the server has no counters of its
//! own to read here (no metrics endpoint), so packets the server sent but the kernel dropped
//! on the way count as loss, not as forwarded. Never touches the pool or the server: it is
//! handed snapshots and readings.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::snapshot::{ParticipantState, PoolSnapshot};
use crate::procstat::CpuTime;
use crate::report::Percentiles;
use crate::sinks::new_histogram;

/// The server process as read from /proc at the time of a snapshot (None: not known, e.g.
/// `--target` without `--server-pid`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerReading {
    pub cpu: Option<CpuTime>,
    pub rss_bytes: Option<u64>,
}

/// One interval (about a second) of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the run started, at the end of the interval.
    pub t_s: f64,
    pub interval_s: f64,
    /// `joining`, `warmup`, `measure` (ramp steps: `measure` with `step` set).
    pub phase: String,
    pub step: Option<usize>,
    pub connected: usize,
    pub joining: usize,
    pub failed: usize,
    pub forwarded_packets: u64,
    /// The video part of `forwarded_packets`.
    #[serde(default)]
    pub forwarded_video_packets: u64,
    pub forwarded_bytes: u64,
    pub forwarded_pps: f64,
    pub forwarded_mbps: f64,
    /// Packets the publishers sent (all simulcast layers), i.e. what the server received.
    pub published_packets: u64,
    pub expected: u64,
    pub lost: u64,
    pub layer_switches: u64,
    /// Datagrams the harness's sockets refused to send (buffer full): the harness is behind.
    pub send_drops: u64,
    pub server_cpu_us: Option<u64>,
    /// Server CPU in % of one CPU.
    pub server_cpu_percent: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    pub harness_cpu_us: u64,
    /// Harness CPU as a share of its CPUs (1.0 = all of them busy).
    pub harness_cpu_share: f64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    /// Latency of this interval, merged over the verifying subscribers.
    #[serde(skip, default = "new_histogram")]
    pub latency: Histogram<u64>,
}

#[derive(Debug, Clone)]
struct Seen {
    received: u64,
    video: u64,
    bytes: u64,
    sent: u64,
    lost: u64,
    expected: u64,
    switches: u64,
    send_drops: u64,
    latency: Option<Histogram<u64>>,
}

/// Turns successive snapshots into samples.
pub struct Meter {
    start: Instant,
    harness_cores: usize,
    prev: HashMap<u64, Seen>,
    prev_at: Option<Instant>,
    prev_server: Option<CpuTime>,
    prev_harness: Duration,
    join_ms: Histogram<u64>,
    joined: HashSet<u64>,
    failed: HashSet<u64>,
}

impl Meter {
    pub fn new(start: Instant, harness_cores: usize) -> Meter {
        Meter {
            start,
            harness_cores: harness_cores.max(1),
            prev: HashMap::new(),
            prev_at: None,
            prev_server: None,
            prev_harness: Duration::ZERO,
            join_ms: new_histogram(),
            joined: HashSet::new(),
            failed: HashSet::new(),
        }
    }

    /// Sets the baseline without producing a sample (call once before the first join).
    pub fn prime(&mut self, snap: &PoolSnapshot, server: ServerReading) {
        self.prev_at = Some(snap.at);
        self.prev_server = server.cpu;
        self.prev_harness = snap.harness_cpu;
    }

    pub fn observe(
        &mut self,
        snap: &PoolSnapshot,
        server: ServerReading,
        phase: &str,
        step: Option<usize>,
    ) -> Sample {
        let interval = self
            .prev_at
            .map(|p| snap.at.saturating_duration_since(p))
            .unwrap_or(Duration::ZERO);
        let mut s = Sample {
            t_s: snap.at.saturating_duration_since(self.start).as_secs_f64(),
            interval_s: interval.as_secs_f64(),
            phase: phase.to_string(),
            step,
            connected: 0,
            joining: 0,
            failed: 0,
            forwarded_packets: 0,
            forwarded_video_packets: 0,
            forwarded_bytes: 0,
            forwarded_pps: 0.0,
            forwarded_mbps: 0.0,
            published_packets: 0,
            expected: 0,
            lost: 0,
            layer_switches: 0,
            send_drops: 0,
            server_cpu_us: None,
            server_cpu_percent: None,
            server_rss_bytes: server.rss_bytes,
            harness_cpu_us: 0,
            harness_cpu_share: 0.0,
            latency_p50_us: 0,
            latency_p99_us: 0,
            latency: new_histogram(),
        };
        for p in &snap.participants {
            match &p.state {
                ParticipantState::Joining => s.joining += 1,
                ParticipantState::Connected => s.connected += 1,
                ParticipantState::Failed(_) => {
                    s.failed += 1;
                    self.failed.insert(p.id.0);
                }
                ParticipantState::Left => {}
            }
            if let Some(first) = p.first_media {
                if self.joined.insert(p.id.0) {
                    let ms = first.saturating_duration_since(p.join_started).as_millis() as u64;
                    // The histogram's floor is 1: a sub-millisecond join counts as 1 ms.
                    let _ = self.join_ms.record(ms.max(1));
                }
            }
            let now = Seen {
                received: p.packets_received,
                video: p.video_packets_received,
                bytes: p.bytes_received,
                sent: p.packets_sent,
                lost: p.lost_after_repair,
                expected: p.expected,
                switches: p.layer_switches,
                send_drops: p.send_drops,
                latency: p.latency_us.clone(),
            };
            let before = self.prev.get(&p.id.0);
            let d = |f: fn(&Seen) -> u64| f(&now).saturating_sub(before.map(f).unwrap_or(0));
            s.forwarded_packets += d(|x| x.received);
            s.forwarded_video_packets += d(|x| x.video);
            s.forwarded_bytes += d(|x| x.bytes);
            s.published_packets += d(|x| x.sent);
            s.lost += d(|x| x.lost);
            s.expected += d(|x| x.expected);
            s.layer_switches += d(|x| x.switches);
            s.send_drops += d(|x| x.send_drops);
            if let Some(h) = &now.latency {
                let mut delta = h.clone();
                if let Some(old) = before.and_then(|b| b.latency.as_ref()) {
                    // Cumulative histograms only grow; if one did not, take it whole.
                    if delta.subtract(old).is_err() {
                        delta = h.clone();
                    }
                }
                let _ = s.latency.add(&delta);
            }
            self.prev.insert(p.id.0, now);
        }
        let secs = interval.as_secs_f64();
        if secs > 0.0 {
            s.forwarded_pps = s.forwarded_packets as f64 / secs;
            s.forwarded_mbps = s.forwarded_bytes as f64 * 8.0 / secs / 1e6;
        }
        if let (Some(a), Some(b)) = (self.prev_server, server.cpu) {
            let used = b.since(&a).total();
            s.server_cpu_us = Some(used.as_micros() as u64);
            if secs > 0.0 {
                s.server_cpu_percent = Some(100.0 * used.as_secs_f64() / secs);
            }
        }
        let harness = snap.harness_cpu.saturating_sub(self.prev_harness);
        s.harness_cpu_us = harness.as_micros() as u64;
        if secs > 0.0 {
            s.harness_cpu_share = harness.as_secs_f64() / secs / self.harness_cores as f64;
        }
        let p = Percentiles::from_histogram(&s.latency);
        s.latency_p50_us = p.p50;
        s.latency_p99_us = p.p99;
        self.prev_at = Some(snap.at);
        if server.cpu.is_some() {
            self.prev_server = server.cpu;
        }
        self.prev_harness = snap.harness_cpu;
        s
    }

    /// Join time (join call → first media) of every participant seen with media so far.
    pub fn join_ms(&self) -> &Histogram<u64> {
        &self.join_ms
    }

    /// Participants seen in the Failed state at least once.
    pub fn failed_joins(&self) -> usize {
        self.failed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::snapshot::{ParticipantId, ParticipantSnapshot};

    pub(crate) fn participant(id: u64, at: Instant) -> ParticipantSnapshot {
        ParticipantSnapshot {
            id: ParticipantId(id),
            group: "g".into(),
            state: ParticipantState::Connected,
            join_started: at,
            first_media: None,
            packets_received: 0,
            bytes_received: 0,
            packets_sent: 0,
            lost_after_repair: 0,
            expected: 0,
            layer_switches: 0,
            latency_us: None,
            audio_packets_received: 0,
            video_packets_received: 0,
            video_packets_per_layer: [0; 4],
            video_tracks: 0,
            datagrams_received: 0,
            datagram_bytes_received: 0,
            datagrams_sent: 0,
            datagram_bytes_sent: 0,
            send_drops: 0,
        }
    }

    fn cpu(ms: u64) -> ServerReading {
        ServerReading {
            cpu: Some(CpuTime {
                user: Duration::from_millis(ms),
                system: Duration::ZERO,
            }),
            rss_bytes: Some(1 << 20),
        }
    }

    #[test]
    fn samples_are_deltas_of_cumulative_counters() {
        let t0 = Instant::now();
        let mut m = Meter::new(t0, 1);
        let mut a = participant(1, t0);
        let mut b = participant(2, t0);
        a.first_media = Some(t0 + Duration::from_millis(120));
        b.state = ParticipantState::Joining;
        m.prime(
            &PoolSnapshot {
                at: t0,
                participants: vec![],
                harness_cpu: Duration::ZERO,
            },
            cpu(0),
        );
        let mut hist = new_histogram();
        for v in [100u64, 200, 300] {
            hist.record(v).unwrap();
        }
        a.packets_received = 1000;
        a.bytes_received = 1_000_000;
        a.expected = 1000;
        a.latency_us = Some(hist.clone());
        let s1 = m.observe(
            &PoolSnapshot {
                at: t0 + Duration::from_secs(1),
                participants: vec![a.clone(), b.clone()],
                harness_cpu: Duration::from_millis(250),
            },
            cpu(100),
            "measure",
            None,
        );
        assert_eq!(s1.forwarded_packets, 1000);
        assert!((s1.forwarded_pps - 1000.0).abs() < 1e-6);
        assert!((s1.forwarded_mbps - 8.0).abs() < 1e-6);
        assert_eq!((s1.connected, s1.joining), (1, 1));
        assert_eq!(s1.server_cpu_us, Some(100_000));
        assert!((s1.server_cpu_percent.unwrap() - 10.0).abs() < 1e-6);
        assert!((s1.harness_cpu_share - 0.25).abs() < 1e-6);
        assert_eq!(s1.latency.len(), 3);

        // Second interval: a got 500 more, lost 5; its histogram gained one 5 ms sample.
        a.packets_received = 1500;
        a.bytes_received = 1_500_000;
        a.expected = 1505;
        a.lost_after_repair = 5;
        a.layer_switches = 2;
        hist.record(5000).unwrap();
        a.latency_us = Some(hist);
        b.state = ParticipantState::Connected;
        b.first_media = Some(t0 + Duration::from_millis(1300));
        b.packets_received = 10;
        let s2 = m.observe(
            &PoolSnapshot {
                at: t0 + Duration::from_secs(2),
                participants: vec![a, b],
                harness_cpu: Duration::from_millis(300),
            },
            cpu(150),
            "measure",
            None,
        );
        assert_eq!(s2.forwarded_packets, 510);
        assert_eq!((s2.lost, s2.expected, s2.layer_switches), (5, 505, 2));
        assert_eq!(s2.latency.len(), 1, "only the new sample");
        assert!(
            (4990..=5010).contains(&s2.latency_p99_us),
            "{}",
            s2.latency_p99_us
        );
        assert_eq!(s2.server_cpu_us, Some(50_000));
        assert_eq!(s2.connected, 2);
        // Join times: 120 ms and 1300 ms.
        assert_eq!(m.join_ms().len(), 2);
        assert_eq!(m.join_ms().min(), 120);
        assert!((1299..=1301).contains(&m.join_ms().max()));
    }

    #[test]
    fn failed_participants_are_counted_once() {
        let t0 = Instant::now();
        let mut m = Meter::new(t0, 2);
        let mut p = participant(7, t0);
        p.state = ParticipantState::Failed("ice".into());
        for i in 1..=3 {
            let s = m.observe(
                &PoolSnapshot {
                    at: t0 + Duration::from_secs(i),
                    participants: vec![p.clone()],
                    harness_cpu: Duration::ZERO,
                },
                ServerReading::default(),
                "joining",
                None,
            );
            assert_eq!(s.failed, 1);
            assert_eq!(s.server_cpu_us, None);
        }
        assert_eq!(m.failed_joins(), 1);
        assert!(m.join_ms().is_empty());
    }
}
