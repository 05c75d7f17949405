//! The loss-based limit (libwebrtc's classic send_side_bandwidth_estimation rule), fed by
//! transport-cc results when the client sends them and by receiver reports otherwise.
//! It is a cap that only exists while loss says so: `None` means loss does not constrain.
//!
//! Must never: invent a limit from one lossy report (it takes two in a row over 10%), start
//! from anything but the rate actually sent, or keep state per source beyond
//! `MAX_RR_SOURCES` (the least recently reported source is forgotten at the cap).
//!
//! Constants, and why:
//! - a loss sample covers at least 20 packets (libwebrtc's kLimitNumPackets): fewer make a
//!   single loss look like 10%;
//! - over 10%: the limit becomes (or goes down to) `min(limit, sent) * (1 - loss / 2)`, at
//!   most once per 300 ms + RTT (the time for the previous decrease to show);
//! - 2%..10%: hold (random loss on a wireless link is not congestion; a full queue losing
//!   a few percent is the delay-based side's business, see `SendSideBwe`);
//! - under 2%: the limit grows 8%/s + 1 kbit/s, as libwebrtc's loss-based rule does;
//! - 10 s with no sample at or above 2% releases the limit (back to `None`): a client with
//!   no delay feedback must not stay throttled by an old episode;
//! - probing is held back for 2 s after a lossy sample.

use crate::report::ReportBlock;

const MIN_PACKETS_PER_SAMPLE: u32 = 20;
const HIGH_LOSS: f64 = 0.10;
const LOW_LOSS: f64 = 0.02;
const HIGH_SAMPLES_TO_LIMIT: u32 = 2;
const DECREASE_INTERVAL_US: i64 = 300_000;
const INCREASE_PER_SECOND: f64 = 1.08;
const INCREASE_STEP_BPS: f64 = 1_000.0;
const RELEASE_AFTER_US: i64 = 10_000_000;
const QUIET_BEFORE_PROBING_US: i64 = 2_000_000;
/// Streams tracked for receiver-report loss (one report block per stream we send).
pub(super) const MAX_RR_SOURCES: usize = 32;
/// More packets than this between two reports of one stream is a lie or a restart.
const MAX_EXPECTED_PER_REPORT: i64 = 1 << 20;

/// Packet counts accumulated until they make a sample.
#[derive(Debug, Default)]
pub(super) struct LossWindow {
    received: u64,
    lost: u64,
}

impl LossWindow {
    /// Adds counts; returns the loss fraction once at least 20 packets are in.
    pub fn add(&mut self, received: u32, lost: u32) -> Option<f64> {
        self.received = self.received.saturating_add(u64::from(received));
        self.lost = self.lost.saturating_add(u64::from(lost));
        let total = self.received.saturating_add(self.lost);
        if total < u64::from(MIN_PACKETS_PER_SAMPLE) {
            return None;
        }
        let fraction = self.lost as f64 / total as f64;
        *self = Self::default();
        Some(fraction)
    }
}

#[derive(Debug, Default)]
pub(super) struct LossBased {
    limit: Option<f64>,
    high_streak: u32,
    last_decrease_us: Option<i64>,
    last_update_us: Option<i64>,
    last_loss_us: Option<i64>,
}

impl LossBased {
    pub fn limit(&self) -> Option<f64> {
        self.limit
    }

    pub fn on_sample(&mut self, now_us: i64, loss: f64, sent_bps: f64, rtt_us: i64, floor: f64) {
        if loss > HIGH_LOSS {
            self.high_streak += 1;
            self.last_loss_us = Some(now_us);
            let base = match self.limit {
                None if self.high_streak >= HIGH_SAMPLES_TO_LIMIT && sent_bps > 0.0 => sent_bps,
                Some(limit) => {
                    let due = self.last_decrease_us.is_none_or(|t| {
                        now_us.saturating_sub(t)
                            >= DECREASE_INTERVAL_US.saturating_add(rtt_us.max(0))
                    });
                    if !due {
                        return;
                    }
                    if sent_bps > 0.0 {
                        limit.min(sent_bps)
                    } else {
                        limit
                    }
                }
                None => return,
            };
            let limit = (base * (1.0 - loss / 2.0)).max(floor);
            tracing::debug!(loss, limit, "bwe: loss-based limit down");
            self.limit = Some(limit);
            self.last_decrease_us = Some(now_us);
            self.last_update_us = Some(now_us);
            return;
        }
        self.high_streak = 0;
        if loss >= LOW_LOSS {
            self.last_loss_us = Some(now_us);
            return;
        }
        if let Some(limit) = self.limit {
            let elapsed = now_us
                .saturating_sub(self.last_update_us.unwrap_or(now_us))
                .max(0);
            let factor = INCREASE_PER_SECOND.powf((elapsed as f64 / 1e6).min(1.0));
            self.limit = Some(limit * factor + INCREASE_STEP_BPS);
            self.last_update_us = Some(now_us);
        }
        self.release_if_due(now_us);
    }

    /// Drops the limit after 10 s without loss.
    pub fn release_if_due(&mut self, now_us: i64) {
        if self.release_at_us().is_some_and(|t| now_us >= t) {
            tracing::debug!("bwe: loss-based limit released");
            self.limit = None;
        }
    }

    pub fn release_at_us(&self) -> Option<i64> {
        self.limit?;
        Some(
            self.last_loss_us
                .unwrap_or(0)
                .saturating_add(RELEASE_AFTER_US),
        )
    }

    /// A probe proved `bps` gets through: the limit is at least that.
    pub fn raise_to(&mut self, bps: f64) {
        if let Some(limit) = self.limit.as_mut() {
            *limit = limit.max(bps);
        }
    }

    /// Until when probing should wait after the last lossy sample.
    pub fn quiet_until_us(&self) -> Option<i64> {
        self.last_loss_us
            .map(|t| t.saturating_add(QUIET_BEFORE_PROBING_US))
    }
}

#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    ext_highest_seq: u32,
    cumulative_lost: i32,
    seen_us: i64,
}

/// Turns report blocks into packet counts (expected, lost since the previous block of the
/// same stream), so streams weigh by their packets: a silent audio stream's 0% cannot mask
/// the video's 20%.
#[derive(Debug, Default)]
pub(super) struct ReportCounts {
    sources: [Option<Source>; MAX_RR_SOURCES],
}

impl ReportCounts {
    /// (received, lost) since this stream's previous block; the first block of a stream
    /// only sets its baseline.
    pub fn add(&mut self, now_us: i64, block: &ReportBlock) -> (u32, u32) {
        let next = Source {
            ssrc: block.ssrc,
            ext_highest_seq: block.ext_highest_seq,
            cumulative_lost: block.cumulative_lost,
            seen_us: now_us,
        };
        let known = self
            .sources
            .iter_mut()
            .flatten()
            .find(|s| s.ssrc == block.ssrc);
        let Some(prev) = known else {
            self.insert(next);
            return (0, 0);
        };
        let expected = i64::from(block.ext_highest_seq.wrapping_sub(prev.ext_highest_seq) as i32);
        let lost = i64::from(block.cumulative_lost) - i64::from(prev.cumulative_lost);
        *prev = next;
        if expected <= 0 || expected > MAX_EXPECTED_PER_REPORT {
            return (0, 0);
        }
        let lost = lost.clamp(0, expected);
        // Both fit: expected is at most 2^20.
        ((expected - lost) as u32, lost as u32)
    }

    fn insert(&mut self, source: Source) {
        let slot = match self.sources.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                let oldest = self
                    .sources
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, s)| s.map_or(i64::MIN, |s| s.seen_us));
                oldest.map_or(0, |(i, _)| i)
            }
        };
        if let Some(s) = self.sources.get_mut(slot) {
            *s = Some(source);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn a_window_needs_twenty_packets() {
        let mut w = LossWindow::default();
        assert_eq!(w.add(10, 1), None);
        assert_eq!(w.add(8, 1), Some(2.0 / 20.0));
        assert_eq!(w.add(0, 0), None, "emptied after a sample");
        assert_eq!(w.add(u32::MAX, u32::MAX), Some(0.5));
    }

    #[test]
    fn sustained_high_loss_limits_from_the_sent_rate() {
        let mut l = LossBased::default();
        l.on_sample(0, 0.2, 3e6, 100_000, 50e3);
        assert_eq!(l.limit(), None, "one lossy report is not enough");
        l.on_sample(S, 0.2, 3e6, 100_000, 50e3);
        assert_close(l.limit(), 3e6 * 0.9);
        // Sending less than the limit now: the next decrease starts from what was sent.
        l.on_sample(2 * S, 0.2, 2e6, 100_000, 50e3);
        assert_close(l.limit(), 2e6 * 0.9);
        // Too soon for another decrease (300 ms + RTT).
        l.on_sample(2 * S + 200_000, 0.5, 2e6, 100_000, 50e3);
        assert_close(l.limit(), 2e6 * 0.9);
    }

    fn assert_close(limit: Option<f64>, expected: f64) {
        let limit = limit.expect("a limit");
        assert!((limit - expected).abs() < 1e-3, "{limit} vs {expected}");
    }

    #[test]
    fn moderate_loss_holds_and_low_loss_grows_then_releases() {
        let mut l = LossBased::default();
        l.on_sample(0, 0.3, 1e6, 0, 0.0);
        l.on_sample(S, 0.3, 1e6, 0, 0.0);
        let limit = l.limit().unwrap();
        l.on_sample(2 * S, 0.05, 1e6, 0, 0.0);
        assert_eq!(l.limit(), Some(limit));
        l.on_sample(3 * S, 0.0, 1e6, 0, 0.0);
        let grown = l.limit().unwrap();
        assert!((grown - (limit * 1.08 + 1000.0)).abs() < 1.0, "{grown}");
        // Last loss (5%) at 2 s: released at 12 s, not before.
        for s in 4..12 {
            l.on_sample(s * S, 0.0, 1e6, 0, 0.0);
        }
        assert!(l.limit().is_some());
        assert_eq!(l.release_at_us(), Some(12 * S));
        l.release_if_due(12 * S);
        assert_eq!(l.limit(), None);
    }

    #[test]
    fn nothing_sent_means_no_limit_to_start_from() {
        let mut l = LossBased::default();
        for s in 0..5 {
            l.on_sample(s * S, 0.5, 0.0, 0, 0.0);
        }
        assert_eq!(l.limit(), None);
    }

    fn block(ssrc: u32, ext_highest_seq: u32, cumulative_lost: i32) -> ReportBlock {
        ReportBlock {
            ssrc,
            ext_highest_seq,
            cumulative_lost,
            ..ReportBlock::default()
        }
    }

    #[test]
    fn report_blocks_become_counts_per_stream() {
        let mut c = ReportCounts::default();
        assert_eq!(c.add(0, &block(1, 1000, 5)), (0, 0), "baseline");
        assert_eq!(c.add(0, &block(2, 70_000, 0)), (0, 0));
        assert_eq!(c.add(S, &block(1, 1300, 65)), (240, 60));
        assert_eq!(c.add(S, &block(2, 70_050, 0)), (50, 0));
        // Sequence wrap of the 16-bit part is just cycles in the extended number.
        assert_eq!(c.add(2 * S, &block(2, 70_050 + 100, 3)), (97, 3));
    }

    #[test]
    fn lying_report_blocks_count_nothing() {
        let mut c = ReportCounts::default();
        c.add(0, &block(1, 1000, 0));
        assert_eq!(c.add(1, &block(1, 900, 0)), (0, 0), "going backwards");
        assert_eq!(
            c.add(2, &block(1, 900 + (1 << 21), 0)),
            (0, 0),
            "absurd jump"
        );
        assert_eq!(
            c.add(3, &block(1, 900 + (1 << 21) + 10, -500)),
            (10, 0),
            "negative loss"
        );
        assert_eq!(
            c.add(4, &block(1, 900 + (1 << 21) + 20, i32::MAX)),
            (0, 10),
            "more lost than sent"
        );
    }

    #[test]
    fn sources_are_bounded_and_the_oldest_goes() {
        let mut c = ReportCounts::default();
        for ssrc in 0..(MAX_RR_SOURCES as u32 + 10) {
            c.add(i64::from(ssrc), &block(ssrc, 100, 0));
        }
        assert_eq!(c.sources.iter().flatten().count(), MAX_RR_SOURCES);
        // ssrc 0 was forgotten: its next block is a new baseline.
        assert_eq!(c.add(100, &block(0, 200, 0)), (0, 0));
        let last = MAX_RR_SOURCES as u32 + 9;
        assert_eq!(c.add(100, &block(last, 200, 0)), (100, 0));
    }
}
