//! A small simulated bottleneck for the bandwidth-estimate scenarios, in virtual time.
//!
//! Sender: "video" at `min(estimate, desired)` (`desired` when the estimate is `None`), as
//! 30 fps frames sent as one burst each (an SFU forwards frames unpaced), plus the probes
//! the estimator asks for, spread evenly over their duration. Link: a FIFO queue with a
//! byte limit that drops at the tail, drained at `capacity_bps`, then a fixed one-way
//! delay; optionally a token bucket in front of it (`burst_bytes`: a shaper like `tc tbf`
//! lets that many bytes through at once after a quiet spell). Receiver: transport-cc feedback every 50/75/100 ms built from what arrived (or a
//! receiver report every second, or nothing), back over an uncongested path with the same
//! delay. A capacity change applies to packets queued after it. Optionally the link reorders:
//! `reorder_percent` % of the packets (chosen at random, with a fixed seed) spend
//! `reorder_extra` longer on the way, so later packets overtake them; the receiver then
//! reports them as Chrome does, missing in the feedback that covers them before they came
//! and again, received, in the next one (its window goes back to the late packet).

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use shardcast_rtp::bwe::{BweConfig, PacketResult, ProbeClusterId, SendSideBwe};
use shardcast_rtp::report::ReportBlock;

const TICK: Duration = Duration::from_micros(250);
const FRAME_INTERVAL: Duration = Duration::from_micros(33_333);
const MTU: usize = 1200;
/// The receiver's clock has its own base.
const REMOTE_BASE: Duration = Duration::from_secs(4_000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    TransportCc,
    ReceiverReports,
    Nothing,
}

pub struct Link {
    pub capacity_bps: u64,
    pub queue_limit: usize,
    pub one_way: Duration,
    /// A token bucket's depth (0: none): tokens accrue at `capacity_bps` up to this many
    /// bytes, and a packet that finds enough tokens leaves at once.
    pub burst_bytes: usize,
    /// Bytes the link counts per packet beyond what the sender does (IP, UDP and Ethernet
    /// headers: 42 under `tc` on a veth; the estimator counts RTP packets).
    pub overhead_bytes: usize,
    /// Packets (in %) held `reorder_extra` longer after the queue (0: the link keeps order).
    pub reorder_percent: u32,
    pub reorder_extra: Duration,
    rng: u64,
    tokens: f64,
    tokens_at: Option<Instant>,
    queue: VecDeque<(Instant, usize)>,
    queued_bytes: usize,
    last_departure: Option<Instant>,
    /// (arrival at receiver, seq), in order.
    in_flight: VecDeque<(Instant, u64)>,
}

impl Link {
    fn send(&mut self, now: Instant, seq: u64, bytes: usize) -> bool {
        let bytes = bytes + self.overhead_bytes;
        while self.queue.front().is_some_and(|(t, _)| *t <= now) {
            let (_, b) = self.queue.pop_front().unwrap();
            self.queued_bytes -= b;
        }
        if self.queued_bytes + bytes > self.queue_limit {
            return false;
        }
        let start = self.last_departure.map_or(now, |t| t.max(now));
        let departure = if self.burst_bytes == 0 {
            start + Duration::from_secs_f64(bytes as f64 * 8.0 / self.capacity_bps as f64)
        } else {
            let byte_rate = self.capacity_bps as f64 / 8.0;
            let accrued = self
                .tokens_at
                .map_or(self.burst_bytes as f64, |at| {
                    self.tokens + start.saturating_duration_since(at).as_secs_f64() * byte_rate
                })
                .min(self.burst_bytes as f64);
            if accrued >= bytes as f64 {
                self.tokens = accrued - bytes as f64;
                self.tokens_at = Some(start);
                start
            } else {
                let wait = Duration::from_secs_f64((bytes as f64 - accrued) / byte_rate);
                self.tokens = 0.0;
                self.tokens_at = Some(start + wait);
                start + wait
            }
        };
        self.last_departure = Some(departure);
        self.queue.push_back((departure, bytes));
        self.queued_bytes += bytes;
        let mut arrival = departure + self.one_way;
        // xorshift64: a fixed, reproducible choice of the packets to hold back.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        if (self.rng % 100) < u64::from(self.reorder_percent) {
            arrival += self.reorder_extra;
        }
        // In arrival order (a held packet lets the next ones pass).
        let at = self
            .in_flight
            .iter()
            .rposition(|(t, _)| *t <= arrival)
            .map_or(0, |i| i + 1);
        self.in_flight.insert(at, (arrival, seq));
        true
    }

    /// How long a packet sent now would wait in the queue.
    pub fn queue_delay(&self, now: Instant) -> Duration {
        self.last_departure
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub t: f64,
    pub estimate: Option<u64>,
    pub capacity: u64,
    pub queue_ms: f64,
    pub sent: u64,
    pub dropped: u64,
}

pub struct Sim {
    pub start: Instant,
    pub now: Instant,
    pub bwe: SendSideBwe,
    pub link: Link,
    pub feedback: Feedback,
    pub desired_bps: u64,
    /// Open loop: send this rate whatever the estimate says.
    pub fixed_rate: Option<u64>,
    /// An SFU's sender instead of an encoder's (empty: the rate follows the estimate):
    /// `audio_bps` always, plus the best of these video layers that fits under the estimate
    /// minus audio (the lowest if none does), switched to 300 ms after it is chosen down
    /// (the keyframe a switch waits for) and 1 s up.
    pub layers: Vec<u64>,
    pub audio_bps: u64,
    layer_rate: Option<u64>,
    layer_pending: Option<(u64, Instant)>,
    seq: u64,
    next_frame: Instant,
    probe_packets: VecDeque<(Instant, ProbeClusterId, usize)>,
    // Receiver state.
    /// Arrivals by sequence number, kept until they are well behind the highest.
    received: BTreeMap<u64, Instant>,
    next_report_seq: u64,
    highest_received: Option<u64>,
    received_count: u64,
    next_feedback: Instant,
    feedback_count: u64,
    reverse: VecDeque<(Instant, Vec<PacketResult>, Option<ReportBlock>)>,
    next_poll: Option<Instant>,
    // Bookkeeping.
    pub sent_packets: u64,
    pub dropped_packets: u64,
    pub probe_targets: Vec<(f64, u64)>,
    pub trace: Vec<Sample>,
    next_sample: Instant,
}

pub fn config(initial_bps: u64) -> BweConfig {
    BweConfig {
        initial_bps,
        min_bps: 50_000,
        max_bps: 20_000_000,
    }
}

impl Sim {
    pub fn new(config: BweConfig, feedback: Feedback, capacity_bps: u64, desired_bps: u64) -> Self {
        Self::with_delay(
            config,
            feedback,
            capacity_bps,
            desired_bps,
            Duration::from_millis(40),
        )
    }

    pub fn with_delay(
        config: BweConfig,
        feedback: Feedback,
        capacity_bps: u64,
        desired_bps: u64,
        one_way: Duration,
    ) -> Self {
        let start = Instant::now();
        let mut bwe = SendSideBwe::new(config);
        bwe.set_transport_cc(feedback == Feedback::TransportCc);
        bwe.set_desired(start, desired_bps);
        Self {
            start,
            now: start,
            bwe,
            link: Link {
                capacity_bps,
                // 250 ms of the starting capacity: a typical access-link buffer.
                queue_limit: (capacity_bps / 8 / 4) as usize,
                one_way,
                burst_bytes: 0,
                overhead_bytes: 0,
                reorder_percent: 0,
                reorder_extra: Duration::ZERO,
                rng: 0x9e37_79b9_7f4a_7c15,
                tokens: 0.0,
                tokens_at: None,
                queue: VecDeque::new(),
                queued_bytes: 0,
                last_departure: None,
                in_flight: VecDeque::new(),
            },
            feedback,
            desired_bps,
            fixed_rate: None,
            layers: Vec::new(),
            audio_bps: 0,
            layer_rate: None,
            layer_pending: None,
            seq: 0,
            next_frame: start,
            probe_packets: VecDeque::new(),
            received: BTreeMap::new(),
            next_report_seq: 0,
            highest_received: None,
            received_count: 0,
            next_feedback: start + Duration::from_millis(50),
            feedback_count: 0,
            reverse: VecDeque::new(),
            next_poll: Some(start),
            sent_packets: 0,
            dropped_packets: 0,
            probe_targets: Vec::new(),
            trace: Vec::new(),
            next_sample: start,
        }
    }

    pub fn secs(&self) -> f64 {
        (self.now - self.start).as_secs_f64()
    }

    pub fn set_desired(&mut self, bps: u64) {
        self.desired_bps = bps;
        self.bwe.set_desired(self.now, bps);
    }

    pub fn run_until(&mut self, secs: f64) {
        while self.secs() < secs {
            self.step();
        }
    }

    fn send(&mut self, bytes: usize, probe: Option<ProbeClusterId>) {
        let seq = self.seq;
        self.seq += 1;
        self.bwe.on_packet_sent(self.now, seq, bytes, probe);
        self.sent_packets += 1;
        if !self.link.send(self.now, seq, bytes) {
            self.dropped_packets += 1;
        }
    }

    fn step(&mut self) {
        self.now += TICK;
        let now = self.now;
        let mut input = false;

        // Receiver side.
        while self.link.in_flight.front().is_some_and(|(t, _)| *t <= now) {
            let (arrival, seq) = self.link.in_flight.pop_front().unwrap();
            self.received.insert(seq, arrival);
            // A packet older than what feedback already covered is reported again: the
            // window goes back to it (Chrome's RemoteEstimatorProxy does the same).
            if seq < self.next_report_seq {
                self.next_report_seq = seq;
            }
            self.highest_received = Some(self.highest_received.map_or(seq, |h| h.max(seq)));
            self.received_count += 1;
        }
        if now >= self.next_feedback {
            self.build_feedback();
        }

        // Back at the sender.
        while self.reverse.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, results, block) = self.reverse.pop_front().unwrap();
            if !results.is_empty() {
                self.bwe.on_transport_feedback(now, &results);
            }
            if let Some(block) = block {
                self.bwe
                    .on_receiver_report(now, &[block], Some(self.link.one_way * 2));
            }
            input = true;
        }
        if input || self.next_poll.is_some_and(|t| t <= now) {
            if let Some(cluster) = self.bwe.poll_probe(now) {
                self.probe_targets.push((self.secs(), cluster.target_bps));
                let n = cluster.packets.max(1);
                let size = cluster.bytes.div_ceil(n);
                for k in 0..n {
                    let at = now + cluster.duration * k as u32 / n as u32;
                    self.probe_packets.push_back((at, cluster.id, size));
                }
            }
            self.next_poll = self.bwe.poll_timeout();
        }
        while self
            .probe_packets
            .front()
            .is_some_and(|(t, _, _)| *t <= now)
        {
            let (_, id, size) = self.probe_packets.pop_front().unwrap();
            self.send(size, Some(id));
        }

        // The application: one frame burst every 33 ms.
        if now >= self.next_frame {
            self.next_frame += FRAME_INTERVAL;
            let allowed = self
                .bwe
                .estimate()
                .map_or(self.desired_bps, |e| e.min(self.desired_bps));
            let rate = match self.fixed_rate {
                Some(r) => r,
                None if !self.layers.is_empty() => self.layered_rate(now),
                None => allowed,
            };
            let frame = (rate as f64 / 30.0 / 8.0) as usize;
            let packets = frame.div_ceil(MTU).max(1);
            for _ in 0..packets {
                self.send(frame / packets, None);
            }
        }

        if now >= self.next_sample {
            self.next_sample += Duration::from_millis(100);
            self.trace.push(Sample {
                t: self.secs(),
                estimate: self.bwe.estimate(),
                capacity: self.link.capacity_bps,
                queue_ms: self.link.queue_delay(now).as_secs_f64() * 1000.0,
                sent: self.sent_packets,
                dropped: self.dropped_packets,
            });
        }
    }

    /// The layered sender's rate now (see `layers`).
    fn layered_rate(&mut self, now: Instant) -> u64 {
        let budget = self
            .bwe
            .estimate()
            .map_or(u64::MAX, |e| e.saturating_sub(self.audio_bps));
        let best = self
            .layers
            .iter()
            .copied()
            .filter(|&l| l <= budget)
            .max()
            .unwrap_or(self.layers[0]);
        let current = *self.layer_rate.get_or_insert(best);
        if best == current {
            self.layer_pending = None;
        } else {
            let since = match self.layer_pending {
                Some((l, t)) if l == best => t,
                _ => {
                    self.layer_pending = Some((best, now));
                    now
                }
            };
            let wait = if best < current { 300 } else { 1000 };
            if now - since >= Duration::from_millis(wait) {
                self.layer_rate = Some(best);
                self.layer_pending = None;
            }
        }
        self.layer_rate.unwrap_or(best) + self.audio_bps
    }

    fn build_feedback(&mut self) {
        let now = self.now;
        self.feedback_count += 1;
        match self.feedback {
            Feedback::TransportCc => {
                self.next_feedback =
                    now + Duration::from_millis(50 + 25 * (self.feedback_count % 3));
                let Some(highest) = self.highest_received else {
                    return;
                };
                let mut results = Vec::new();
                for seq in self.next_report_seq..=highest {
                    let arrival = self
                        .received
                        .get(&seq)
                        .map(|t| *t - self.start + REMOTE_BASE);
                    results.push(PacketResult {
                        transport_seq: seq,
                        arrival,
                    });
                }
                self.next_report_seq = highest + 1;
                // Arrivals far behind can no longer be reported again.
                self.received = self.received.split_off(&highest.saturating_sub(1000));
                self.reverse
                    .push_back((now + self.link.one_way, results, None));
            }
            Feedback::ReceiverReports => {
                self.next_feedback = now + Duration::from_secs(1);
                self.received.clear();
                let Some(highest) = self.highest_received else {
                    return;
                };
                let expected = highest + 1;
                let block = ReportBlock {
                    ssrc: 0x5eed,
                    ext_highest_seq: highest as u32,
                    cumulative_lost: (expected - self.received_count) as i32,
                    ..ReportBlock::default()
                };
                self.reverse
                    .push_back((now + self.link.one_way, Vec::new(), Some(block)));
            }
            Feedback::Nothing => {
                self.next_feedback = now + Duration::from_secs(1);
                self.received.clear();
            }
        }
    }

    /// The first sample at or after `from` that satisfies `f`.
    pub fn first(&self, from: f64, f: impl Fn(&Sample) -> bool) -> Option<Sample> {
        self.trace.iter().find(|s| s.t >= from && f(s)).copied()
    }

    /// Samples with `from <= t < to`.
    pub fn window(&self, from: f64, to: f64) -> impl Iterator<Item = &Sample> {
        self.trace.iter().filter(move |s| s.t >= from && s.t < to)
    }

    /// Fraction of packets dropped at the queue between two times.
    pub fn loss_between(&self, from: f64, to: f64) -> f64 {
        let mut w = self.window(from, to);
        let (Some(a), Some(b)) = (w.next(), self.window(from, to).last()) else {
            return 0.0;
        };
        let sent = b.sent - a.sent;
        if sent == 0 {
            0.0
        } else {
            (b.dropped - a.dropped) as f64 / sent as f64
        }
    }

    /// The trace, every 500 ms, for failure messages.
    pub fn dump(&self) -> String {
        self.trace
            .iter()
            .step_by(5)
            .map(|s| {
                format!(
                    "t={:5.1} est={:>9} cap={:>8} queue={:6.1}ms dropped={}\n",
                    s.t,
                    s.estimate.map_or("none".into(), |e| e.to_string()),
                    s.capacity,
                    s.queue_ms,
                    s.dropped
                )
            })
            .collect()
    }
}
