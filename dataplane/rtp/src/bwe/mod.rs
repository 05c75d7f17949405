//! The send-side bandwidth estimate of one transport: how much this subscriber's downlink
//! takes, for the layer allocator. GCC as libwebrtc's goog_cc does it, smaller:
//!
//! - [`history`]: the sent-packet ring transport-cc feedback is matched against;
//! - [`delay`]: the delay-based rate. [`arrival`] groups acknowledged packets (5 ms send
//!   bursts, so a forwarded frame is one sample) into delay variations, [`trendline`]
//!   turns them into overuse / normal / underuse, and [`aimd`] moves the rate from that
//!   and the [`acked`] (acknowledged) throughput;
//! - [`loss`]: a loss-based cap, from transport-cc results (of packets sent outside any
//!   probe's window: a probe's own overflow is its result's business) or, without them, from
//!   receiver reports;
//! - [`probe`]: when to send bursts of padding that look for capacity above the estimate,
//!   up to what the application wants; [`cluster`] measures one burst's delivery rate.
//!
//! The estimate is `min(delay-based, REMB, loss-based)`, each only where it exists, clamped
//! to `[min_bps, max_bps]`; `None` when none exists: a client that sends neither
//! transport-cc nor REMB, and reports no loss, is not throttled by a made-up number.
//!
//! There is no pacer: packets leave as frames arrive, so the estimate only picks layers and
//! asks for probes. Time is always passed in; nothing here reads the clock. All state is
//! bounded: the ring (4096 packets), 256 packets waiting to count as lost, one probe
//! cluster, 32 report sources, fixed windows.
//!
//! Must never: panic or loop without bound on feedback (lying sequence numbers, arrival
//! times going backwards or jumping hours, 65 000 results at once), allocate per packet
//! (the feedback scratch is allocated once, at the ring's size), or report an estimate
//! outside `[min_bps, max_bps]`.
//!
//! Constants chosen here (the others are in their modules):
//! - RTT defaults to 200 ms until measured (libwebrtc's AIMD default), then an EWMA (1/8)
//!   of per-feedback minimum `now - send time` and of receiver-report RTTs;
//! - the floor is at least 10 kbit/s, so a decrease never reaches zero;
//! - a packet transport-cc reports missing counts as lost only if it is still missing
//!   `REORDER_GRACE` (200 ms) later: a reordered packet is reported missing by the feedback
//!   that covers it before it came and received by the next (Chrome's feedback window goes
//!   back to it), every 50-250 ms. Counted at once, 10% of the packets 25 ms late read as
//!   2-5% loss, which holds probing back and, after a layer drop, kept a viewer on a 100 ms
//!   path off its top layer (tests/bwe_scenarios.rs, `a_long_reordering_path_keeps_the_top_layer`).
//!   At most `MISSING_MAX` wait; past that, a missing packet counts at once.
//! - a standing queue drains: loss of 2% or more while the RTT stands 100 ms or more above
//!   its floor (the lowest sample of the last 5-10 s) backs the delay-based rate off as an
//!   overuse does (to 0.85x the acknowledged rate). A drop-tail queue kept full by a sender
//!   a few percent over the capacity shows no delay gradient and loses only a few percent,
//!   and the loss rule at best brings the rate down to the capacity, where the queue stays
//!   full: after lying feedback had let the queue fill (`bwe_hostile`), the estimate stayed
//!   7% over the capacity with the queue at its 250 ms limit. Loss is required because a
//!   longer path (a route change) raises the RTT the same way without a queue.

mod acked;
mod aimd;
mod arrival;
mod cluster;
mod delay;
mod history;
mod loss;
mod probe;
mod trendline;

use std::time::{Duration, Instant};

use crate::report::ReportBlock;
use arrival::Ack;
use cluster::Outcome;
use delay::DelayBased;
use history::{Matched, SentHistory, HISTORY_CAPACITY};
use loss::{LossBased, LossWindow, ReportCounts};
use probe::{ProbeContext, Prober};

const DEFAULT_RTT_US: i64 = 200_000;
const RTT_SMOOTHING: f64 = 0.125;
const MIN_FLOOR_BPS: u64 = 10_000;
const REORDER_GRACE_US: i64 = 200_000;
const MISSING_MAX: usize = 256;
const RTT_FLOOR_BUCKET_US: i64 = 5_000_000;
const STANDING_QUEUE_US: i64 = 100_000;
const STANDING_QUEUE_LOSS: f64 = 0.02;

/// Limits and start of one transport's estimate, in bits/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BweConfig {
    /// Where the delay-based estimate starts (and what the first probe multiplies).
    pub initial_bps: u64,
    /// The estimate never goes below this (raised to 10 kbit/s if lower).
    pub min_bps: u64,
    /// The estimate never goes above this (raised to `min_bps` if lower).
    pub max_bps: u64,
}

/// Names the packets of one probe, in [`SendSideBwe::on_packet_sent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeClusterId(pub u32);

/// One packet's fate from transport-cc feedback. `arrival` is on the remote clock (an
/// arbitrary but consistent base within one transport), `None` = reported lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketResult {
    pub transport_seq: u64,
    pub arrival: Option<Duration>,
}

/// A probe the caller should send now: padding (or RTX) packets totalling `bytes` spread
/// evenly over `duration`, each tagged with `id` in [`SendSideBwe::on_packet_sent`].
/// `bytes` is what the media being sent lacks to make `target_bps` over `duration` (media
/// sent meanwhile counts as part of the probe); `packets` is how many 1200-byte packets
/// that is (at least 5); smaller packets are fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCluster {
    pub id: ProbeClusterId,
    pub target_bps: u64,
    pub bytes: usize,
    pub packets: usize,
    pub duration: Duration,
}

/// What the estimator ignored or did, for the caller's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BweStats {
    /// Feedback about a sequence number never sent, or no longer in the ring.
    pub feedback_unknown: u64,
    /// Feedback about a packet sent more than 10 s before.
    pub feedback_stale: u64,
    /// Feedback repeating what was already reported.
    pub feedback_duplicate: u64,
    /// Packets reported lost, then received.
    pub feedback_late: u64,
    /// Times the delay detector started over (remote clock jump, reordering, silence).
    pub delay_resets: u64,
    pub probes_sent: u64,
    pub probes_succeeded: u64,
    pub probes_failed: u64,
    /// Probes dropped unsent, to be asked for again ([`SendSideBwe::abandon_probe`]).
    pub probes_abandoned: u64,
}

/// What one feedback reported, of packets still in the ring.
struct Counted {
    received: u32,
    lost: u32,
    /// (received, lost) of the packets sent outside any probe's window: the loss-based
    /// limit's sample. A probe that found the link's capacity overflowed its queue by
    /// design, and the loss it caused (its padding's and the media's sent meanwhile) says
    /// nothing the probe's own result does not; counted, a confirming probe on a shaped
    /// link cut the limit below the layer the link carries, and the video paused (CI,
    /// tests/e2e/downlink.rs, 2026-12-07).
    outside_probes: (u32, u32),
}

/// One received packet of a feedback, before sorting by arrival.
#[derive(Debug, Clone, Copy)]
struct Acked {
    sent_us: i64,
    arrival_us: i64,
    bytes: u32,
    cluster: Option<u32>,
}

/// The send-side bandwidth estimate of one transport. See the module documentation.
pub struct SendSideBwe {
    floor: f64,
    ceiling: f64,
    origin: Option<Instant>,
    /// The latest `now` seen, in micros since `origin` (for `poll_timeout`).
    latest_us: i64,
    history: SentHistory,
    delay: DelayBased,
    loss: LossBased,
    feedback_loss: LossWindow,
    /// Media packets reported missing, not yet counted lost: (transport seq, reported at).
    missing: std::collections::VecDeque<(u64, i64)>,
    report_loss: LossWindow,
    report_counts: ReportCounts,
    prober: Prober,
    scratch: Vec<Acked>,
    rtt_us: Option<f64>,
    rtt_floor: RttFloor,
    transport_cc: bool,
    feedback_seen: bool,
    remb: Option<f64>,
    desired: f64,
    stats: BweStats,
}

impl SendSideBwe {
    pub fn new(config: BweConfig) -> Self {
        let floor = config.min_bps.max(MIN_FLOOR_BPS) as f64;
        let ceiling = (config.max_bps as f64).max(floor);
        let initial = (config.initial_bps as f64).clamp(floor, ceiling);
        Self {
            floor,
            ceiling,
            origin: None,
            latest_us: 0,
            history: SentHistory::new(),
            delay: DelayBased::new(initial, floor, ceiling),
            loss: LossBased::default(),
            feedback_loss: LossWindow::default(),
            missing: std::collections::VecDeque::with_capacity(MISSING_MAX),
            report_loss: LossWindow::default(),
            report_counts: ReportCounts::default(),
            prober: Prober::default(),
            scratch: Vec::with_capacity(HISTORY_CAPACITY),
            rtt_us: None,
            rtt_floor: RttFloor::default(),
            transport_cc: false,
            feedback_seen: false,
            remb: None,
            desired: 0.0,
            stats: BweStats::default(),
        }
    }

    /// The transport negotiated transport-cc: the estimate starts at `initial_bps` (and
    /// probing may start) before the first feedback, instead of being `None` until then.
    pub fn set_transport_cc(&mut self, negotiated: bool) {
        self.transport_cc = negotiated;
    }

    /// Every RTP packet sent on the transport (media, RTX, padding), with its size on the
    /// wire. `transport_seq` is the transport-wide counter, written into the transport-cc
    /// extension where negotiated; call it for every packet even without transport-cc, so
    /// the loss-based estimate knows the rate actually sent. The caller numbers them
    /// consecutively.
    pub fn on_packet_sent(
        &mut self,
        now: Instant,
        transport_seq: u64,
        bytes: usize,
        probe: Option<ProbeClusterId>,
    ) {
        let now_us = self.micros(now);
        let cluster = self.prober.on_sent(now_us, probe);
        self.history.on_sent(now_us, transport_seq, bytes, cluster);
    }

    /// Results from one transport-cc feedback, in any order.
    pub fn on_transport_feedback(&mut self, now: Instant, results: &[PacketResult]) {
        let now_us = self.micros(now);
        let Counted {
            received,
            lost,
            outside_probes,
        } = self.match_feedback(now_us, results);
        if self.scratch.is_empty() && lost == 0 && outside_probes.1 == 0 {
            return;
        }
        self.feedback_seen = true;
        if received > 0 && self.delay.begin_feedback(now_us) {
            self.stats.delay_resets += 1;
        }
        self.scratch
            .sort_unstable_by_key(|a| (a.arrival_us, a.sent_us));
        if let Some(rtt) = self
            .scratch
            .iter()
            .map(|a| now_us.saturating_sub(a.sent_us))
            .min()
        {
            self.on_rtt_sample(now_us, rtt);
        }
        for a in &self.scratch {
            if let Some(id) = a.cluster {
                self.prober
                    .on_received(id, a.sent_us, a.arrival_us, a.bytes);
            }
            let ack = Ack {
                sent_us: a.sent_us,
                arrival_us: a.arrival_us,
                feedback_us: now_us,
            };
            if self.delay.on_received(ack, a.bytes) {
                self.stats.delay_resets += 1;
            }
        }
        if let Some(fraction) = self.feedback_loss.add(outside_probes.0, outside_probes.1) {
            let sent = self.history.sent_bps(now_us);
            self.loss
                .on_sample(now_us, fraction, sent, self.rtt(), self.floor);
            if fraction >= STANDING_QUEUE_LOSS && self.standing_queue() {
                self.delay.drain(now_us, self.rtt());
            }
        }
        // Taken before the outcome: an overuse in the feedback that ends a probe is still
        // that probe's queue.
        self.delay
            .set_probe_in_flight(self.prober.in_flight_media());
        let probe = self
            .prober
            .take_outcome(now_us)
            .and_then(|o| self.count_probe(o));
        if let Some(bps) = self.delay.update(now_us, probe, self.rtt()) {
            // A probe that got through proves the loss-based limit too low.
            self.loss.raise_to(bps);
        }
        self.loss.release_if_due(now_us);
        tracing::trace!(estimate = ?self.estimate(), "bwe: feedback");
    }

    /// Matches results against the ring into `scratch`; returns the counts.
    fn match_feedback(&mut self, now_us: i64, results: &[PacketResult]) -> Counted {
        self.scratch.clear();
        let (mut received, mut lost) = (0u32, 0u32);
        let mut outside_probes = (0u32, 0u32);
        for r in results {
            let (packet, late) =
                match self
                    .history
                    .on_feedback(now_us, r.transport_seq, r.arrival.is_some())
                {
                    Matched::Fresh { packet, late } => (packet, late),
                    Matched::Unknown => {
                        self.stats.feedback_unknown += 1;
                        continue;
                    }
                    Matched::Stale => {
                        self.stats.feedback_stale += 1;
                        continue;
                    }
                    Matched::Duplicate => {
                        self.stats.feedback_duplicate += 1;
                        continue;
                    }
                };
            let Some(arrival) = r.arrival else {
                lost = lost.saturating_add(1);
                match packet.cluster {
                    Some(id) => self.prober.on_lost(id),
                    // Lost if still missing after the grace (it may only be late).
                    None if self.missing.len() < MISSING_MAX => {
                        self.missing.push_back((r.transport_seq, now_us))
                    }
                    None => outside_probes.1 = outside_probes.1.saturating_add(1),
                }
                continue;
            };
            if late {
                // Reported missing before (counted lost only if this came after the
                // grace); its arrival still tells about delay.
                self.stats.feedback_late += 1;
            } else {
                received = received.saturating_add(1);
                if packet.cluster.is_none() {
                    outside_probes.0 = outside_probes.0.saturating_add(1);
                }
            }
            // Each packet is fresh once per feedback, so this stays within the ring's size;
            // the check only makes "never reallocates" independent of that argument.
            if self.scratch.len() < self.scratch.capacity() {
                self.scratch.push(Acked {
                    sent_us: packet.sent_us,
                    arrival_us: i64::try_from(arrival.as_micros()).unwrap_or(i64::MAX),
                    bytes: packet.bytes,
                    cluster: packet.cluster,
                });
            }
        }
        while let Some(&(seq, at)) = self.missing.front() {
            if now_us.saturating_sub(at) < REORDER_GRACE_US {
                break;
            }
            self.missing.pop_front();
            if self.history.still_lost(seq) {
                outside_probes.1 = outside_probes.1.saturating_add(1);
            }
        }
        Counted {
            received,
            lost,
            outside_probes,
        }
    }

    fn count_probe(&mut self, outcome: Outcome) -> Option<(f64, Option<f64>)> {
        match outcome {
            Outcome::Measured { bps, capacity } => {
                self.stats.probes_succeeded += 1;
                Some((bps, capacity))
            }
            Outcome::Failed => {
                self.stats.probes_failed += 1;
                None
            }
        }
    }

    /// REMB from a client that sends no transport-cc (used as the estimate then; with
    /// transport-cc, a cap on it).
    pub fn on_remb(&mut self, now: Instant, bps: u64) {
        let now_us = self.micros(now);
        self.remb = Some((bps as f64).clamp(self.floor, self.ceiling));
        self.loss.release_if_due(now_us);
    }

    /// The report blocks of one receiver (or sender) report that are about our streams,
    /// and the RTT from LSR/DLSR if one was computed. Loss counts come from each stream's
    /// extended highest sequence number and cumulative loss since its previous block, so
    /// streams weigh by their packets (the first block of a stream only sets its baseline).
    /// Used for loss only while no transport-cc feedback has been seen.
    pub fn on_receiver_report(
        &mut self,
        now: Instant,
        blocks: &[ReportBlock],
        rtt: Option<Duration>,
    ) {
        let now_us = self.micros(now);
        if let Some(rtt) = rtt {
            self.on_rtt_sample(now_us, i64::try_from(rtt.as_micros()).unwrap_or(i64::MAX));
        }
        if self.feedback_seen {
            return;
        }
        let (mut received, mut lost) = (0u32, 0u32);
        for block in blocks.iter().take(loss::MAX_RR_SOURCES) {
            let (r, l) = self.report_counts.add(now_us, block);
            received = received.saturating_add(r);
            lost = lost.saturating_add(l);
        }
        if let Some(fraction) = self.report_loss.add(received, lost) {
            let sent = self.history.sent_bps(now_us);
            self.loss
                .on_sample(now_us, fraction, sent, self.rtt(), self.floor);
        }
        self.loss.release_if_due(now_us);
    }

    /// Current estimate in bits/s; `None` = unconstrained: no transport-cc feedback (nor
    /// [`Self::set_transport_cc`]), no REMB and no loss-based limit.
    pub fn estimate(&self) -> Option<u64> {
        let mut estimate = (self.feedback_seen || self.transport_cc).then(|| self.delay.bps());
        for cap in [self.remb, self.loss.limit()].into_iter().flatten() {
            estimate = Some(estimate.map_or(cap, |e| e.min(cap)));
        }
        estimate.map(|e| e.clamp(self.floor, self.ceiling).round() as u64)
    }

    /// What the application could use at best right now (sum of the best layers wanted).
    /// Probing only goes up to this: probing for bandwidth nobody will use only causes loss.
    /// Until it is set nothing is probed.
    pub fn set_desired(&mut self, now: Instant, desired_bps: u64) {
        let now_us = self.micros(now);
        let new = desired_bps as f64;
        let estimate = self.estimate().map_or(self.delay.bps(), |e| e as f64);
        self.prober.on_desired(now_us, self.desired, new, estimate);
        self.desired = new;
    }

    /// A probe the caller should send now, if one is due. Also runs the timers: call it
    /// when [`Self::poll_timeout`] is reached, and after each input.
    pub fn poll_probe(&mut self, now: Instant) -> Option<ProbeCluster> {
        let now_us = self.micros(now);
        self.loss.release_if_due(now_us);
        if let Some(outcome) = self.prober.expire(now_us) {
            self.count_probe(outcome);
        }
        let cluster = self.prober.poll(now_us, self.probe_context(now_us));
        if cluster.is_some() {
            self.stats.probes_sent += 1;
        }
        cluster
    }

    /// The caller could not send a single packet of probe `id` (nothing to carry its
    /// padding yet): it is dropped without a result, and the same probe is asked for again
    /// shortly (see [`probe`]'s module documentation).
    pub fn abandon_probe(&mut self, now: Instant, id: ProbeClusterId) {
        let now_us = self.micros(now);
        if self.prober.abandon(now_us, id.0) {
            self.stats.probes_abandoned += 1;
        }
    }

    /// When to call [`Self::poll_probe`] again without new input (a probe due, a probe's
    /// result timing out, the loss-based limit's release), if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let origin = self.origin?;
        let now_us = self.latest_us;
        let probe = self.prober.next_wake_us(now_us, self.probe_context(now_us));
        let wake = [probe, self.loss.release_at_us()]
            .into_iter()
            .flatten()
            .min()?;
        origin.checked_add(Duration::from_micros(u64::try_from(wake).unwrap_or(0)))
    }

    /// Counters of what was ignored and done.
    pub fn stats(&self) -> BweStats {
        self.stats
    }

    fn probe_context(&self, now_us: i64) -> ProbeContext {
        ProbeContext {
            estimate: self.estimate().map_or(self.delay.bps(), |e| e as f64),
            sent_bps: self.history.sent_bps(now_us),
            desired: self.desired,
            ceiling: self.ceiling,
            can_probe: (self.feedback_seen || self.transport_cc) && !self.delay.overusing(),
            not_before_us: self.loss.quiet_until_us().unwrap_or(0),
            link_capacity: self.delay.link_capacity(),
        }
    }

    fn on_rtt_sample(&mut self, now_us: i64, rtt_us: i64) {
        let clamped = rtt_us.clamp(0, 60_000_000);
        self.rtt_floor.add(now_us, clamped);
        let sample = clamped as f64;
        let smoothed = self
            .rtt_us
            .map_or(sample, |s| s + RTT_SMOOTHING * (sample - s));
        self.rtt_us = Some(smoothed);
    }

    fn rtt(&self) -> i64 {
        self.rtt_us.map_or(DEFAULT_RTT_US, |r| r as i64)
    }

    /// Whether the smoothed RTT stands `STANDING_QUEUE_US` or more above its floor.
    fn standing_queue(&self) -> bool {
        match (self.rtt_us, self.rtt_floor.get()) {
            (Some(rtt), Some(floor)) => rtt as i64 - floor >= STANDING_QUEUE_US,
            _ => false,
        }
    }

    /// Local micros since the first `now` this estimator saw (earlier instants count as 0).
    fn micros(&mut self, now: Instant) -> i64 {
        let origin = *self.origin.get_or_insert(now);
        let us =
            i64::try_from(now.saturating_duration_since(origin).as_micros()).unwrap_or(i64::MAX);
        self.latest_us = self.latest_us.max(us);
        us
    }
}

/// The lowest RTT sample of the last 5-10 s (two 5 s buckets): the path's round trip without
/// a queue, as far as the recent samples show it.
#[derive(Debug, Default, Clone, Copy)]
struct RttFloor {
    /// (bucket start, lowest sample in it).
    current: Option<(i64, i64)>,
    previous: Option<i64>,
}

impl RttFloor {
    fn add(&mut self, now_us: i64, rtt_us: i64) {
        self.current = match self.current {
            Some((start, low)) if now_us.saturating_sub(start) < RTT_FLOOR_BUCKET_US => {
                Some((start, low.min(rtt_us)))
            }
            Some((_, low)) => {
                self.previous = Some(low);
                Some((now_us, rtt_us))
            }
            None => Some((now_us, rtt_us)),
        };
    }

    fn get(&self) -> Option<i64> {
        let current = self.current.map(|(_, low)| low);
        match (current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
