//! The delay-based rate: additive-increase / multiplicative-decrease driven by the overuse
//! detector and the acknowledged throughput (libwebrtc's aimd_rate_control, simplified: no
//! ALR, no network-state estimate).
//!
//! Must never: raise the rate far beyond what the receiver is shown to get (1.5x the
//! acknowledged throughput + 10 kbit/s), or decrease more often than once per round trip
//! unless the throughput collapsed.
//!
//! Constants, and why:
//! - decrease to 0.85x the acknowledged throughput (GCC's beta): just under what got
//!   through, so the queue the overuse built can drain;
//! - multiplicative increase of 8%/s while the link capacity is unknown, additive (about one
//!   packet per response time, response time = RTT + 100 ms, at least 4 kbit/s per second)
//!   once an overuse has shown where the capacity is;
//! - the link capacity is an average of the throughputs seen at overuse (weight 0.05) with
//!   a normalised variance clamped to 0.4..2.5; it is forgotten when the throughput leaves
//!   its 3-sigma band (the link changed, so go back to discovering fast);
//! - further decreases wait one RTT (clamped to 10..200 ms) unless the throughput fell
//!   under half the estimate; with no throughput known yet, an overuse halves the rate at
//!   most every 200 ms.

use super::trendline::Usage;

const BETA: f64 = 0.85;
const INCREASE_PER_SECOND: f64 = 1.08;
const MIN_MULTIPLICATIVE_STEP_BPS: f64 = 1_000.0;
const MIN_ADDITIVE_BPS_PER_SECOND: f64 = 4_000.0;
const RESPONSE_BACKOFF_US: i64 = 100_000;
const FRAMES_PER_SECOND: f64 = 30.0;
const PACKET_BITS: f64 = 1200.0 * 8.0;
const THROUGHPUT_HEADROOM: f64 = 1.5;
const THROUGHPUT_SLACK_BPS: f64 = 10_000.0;
const REDUCTION_INTERVAL_US: (i64, i64) = (10_000, 200_000);
const INITIAL_REDUCTION_INTERVAL_US: i64 = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Hold,
    Increase,
    Decrease,
}

#[derive(Debug)]
pub(super) struct Aimd {
    bps: f64,
    floor: f64,
    ceiling: f64,
    phase: Phase,
    capacity: LinkCapacity,
    last_change_us: Option<i64>,
    latest_throughput: f64,
}

impl Aimd {
    pub fn new(initial: f64, floor: f64, ceiling: f64) -> Self {
        Self {
            bps: initial,
            floor,
            ceiling,
            phase: Phase::Hold,
            capacity: LinkCapacity::default(),
            last_change_us: None,
            latest_throughput: initial,
        }
    }

    pub fn bps(&self) -> f64 {
        self.bps
    }

    /// One step with the detector's verdict and the acknowledged throughput (if known).
    pub fn update(&mut self, usage: Usage, throughput: Option<f64>, now_us: i64, rtt_us: i64) {
        let throughput = throughput.unwrap_or(self.latest_throughput);
        self.latest_throughput = throughput;
        match usage {
            Usage::Overusing => self.phase = Phase::Decrease,
            Usage::Underusing => self.phase = Phase::Hold,
            Usage::Normal if self.phase == Phase::Hold => {
                self.last_change_us = Some(now_us);
                self.phase = Phase::Increase;
            }
            Usage::Normal => {}
        }
        match self.phase {
            Phase::Hold => {}
            Phase::Increase => self.increase(throughput, now_us, rtt_us),
            Phase::Decrease => self.decrease(throughput, now_us),
        }
        self.bps = self.bps.clamp(self.floor, self.ceiling);
    }

    fn increase(&mut self, throughput: f64, now_us: i64, rtt_us: i64) {
        if throughput > self.capacity.upper() {
            self.capacity.reset();
        }
        let limit = THROUGHPUT_HEADROOM * throughput + THROUGHPUT_SLACK_BPS;
        if self.bps < limit {
            let elapsed_s = seconds(now_us.saturating_sub(self.last_change_us.unwrap_or(now_us)));
            let step = if self.capacity.estimate().is_some() {
                self.additive_per_second(rtt_us) * elapsed_s
            } else {
                let eta = INCREASE_PER_SECOND.powf(elapsed_s.min(1.0));
                (self.bps * (eta - 1.0)).max(MIN_MULTIPLICATIVE_STEP_BPS)
            };
            self.bps = (self.bps + step).min(limit);
        }
        self.last_change_us = Some(now_us);
    }

    fn decrease(&mut self, throughput: f64, now_us: i64) {
        let mut target = BETA * throughput;
        if target > self.bps {
            if let Some(capacity) = self.capacity.estimate() {
                target = BETA * capacity;
            }
        }
        if target < self.bps {
            self.bps = target;
        }
        if throughput < self.capacity.lower() {
            self.capacity.reset();
        }
        self.capacity.update(throughput, 0.05);
        self.phase = Phase::Hold;
        self.last_change_us = Some(now_us);
    }

    /// About one average packet per response time, per second.
    fn additive_per_second(&self, rtt_us: i64) -> f64 {
        let bits_per_frame = self.bps / FRAMES_PER_SECOND;
        let packets_per_frame = (bits_per_frame / PACKET_BITS).ceil().max(1.0);
        let packet_bits = bits_per_frame / packets_per_frame;
        let response_s = seconds(rtt_us.max(0).saturating_add(RESPONSE_BACKOFF_US));
        (packet_bits / response_s).max(MIN_ADDITIVE_BPS_PER_SECOND)
    }

    /// The upper end (3 sigma) of the link capacity band, while one is known.
    pub fn capacity_upper(&self) -> Option<f64> {
        self.capacity.estimate().map(|_| self.capacity.upper())
    }

    /// Whether an overuse may lower the rate again now.
    pub fn time_to_reduce_further(&self, now_us: i64, throughput: f64, rtt_us: i64) -> bool {
        let interval = rtt_us.clamp(REDUCTION_INTERVAL_US.0, REDUCTION_INTERVAL_US.1);
        match self.last_change_us {
            None => true,
            Some(t) if now_us.saturating_sub(t) >= interval => true,
            Some(_) => throughput < 0.5 * self.bps,
        }
    }

    /// Overuse before any throughput is known: halve, at most every 200 ms.
    pub fn halve_if_due(&mut self, now_us: i64) {
        let due = self
            .last_change_us
            .is_none_or(|t| now_us.saturating_sub(t) >= INITIAL_REDUCTION_INTERVAL_US);
        if due {
            self.set(self.bps / 2.0, now_us);
        }
    }

    /// A probe saturated the link at `bps`: that is where the capacity is (weight 0.5, as
    /// libwebrtc's OnProbeRate), so increases from here are additive.
    pub fn on_probed_capacity(&mut self, bps: f64) {
        self.capacity.update(bps, 0.5);
    }

    /// A measured rate (a probe) replaces the estimate.
    pub fn set(&mut self, bps: f64, now_us: i64) {
        self.bps = bps.clamp(self.floor, self.ceiling);
        self.last_change_us = Some(now_us);
    }
}

/// Where overuse has been seen to start, in kbit/s (the variance formula is unit-bound).
#[derive(Debug, Default)]
struct LinkCapacity {
    kbps: Option<f64>,
    deviation: f64,
}

impl LinkCapacity {
    fn update(&mut self, sample_bps: f64, alpha: f64) {
        let sample = sample_bps / 1000.0;
        let estimate = match self.kbps {
            None => sample,
            Some(e) => (1.0 - alpha) * e + alpha * sample,
        };
        let norm = estimate.max(1.0);
        let error = estimate - sample;
        self.deviation =
            ((1.0 - alpha) * self.deviation + alpha * error * error / norm).clamp(0.4, 2.5);
        self.kbps = Some(estimate);
    }

    fn reset(&mut self) {
        self.kbps = None;
    }

    fn estimate(&self) -> Option<f64> {
        self.kbps.map(|k| k * 1000.0)
    }

    fn spread_kbps(&self, e: f64) -> f64 {
        3.0 * (self.deviation * e).sqrt()
    }

    fn upper(&self) -> f64 {
        self.kbps
            .map_or(f64::INFINITY, |e| (e + self.spread_kbps(e)) * 1000.0)
    }

    fn lower(&self) -> f64 {
        self.kbps
            .map_or(0.0, |e| (e - self.spread_kbps(e)).max(0.0) * 1000.0)
    }
}

fn seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: i64 = 100_000;

    #[test]
    fn ramps_up_eight_percent_per_second_while_capacity_is_unknown() {
        let mut a = Aimd::new(1e6, 10e3, 100e6);
        let mut t = 0;
        a.update(Usage::Normal, Some(1e6), t, RTT);
        // Throughput follows the estimate (an application sending what it is allowed).
        for _ in 0..10 {
            t += 100_000;
            a.update(Usage::Normal, Some(a.bps()), t, RTT);
        }
        let expected = 1e6 * 1.08;
        assert!(
            (a.bps() - expected).abs() < 2e3,
            "{} vs {expected}",
            a.bps()
        );
    }

    #[test]
    fn increase_is_capped_by_acknowledged_throughput() {
        let mut a = Aimd::new(1e6, 10e3, 100e6);
        for i in 0..100 {
            a.update(Usage::Normal, Some(400e3), i * 100_000, RTT);
        }
        assert!(
            a.bps() <= 1e6,
            "no increase while sending far less: {}",
            a.bps()
        );
        let mut a = Aimd::new(300e3, 10e3, 100e6);
        for i in 0..200 {
            a.update(Usage::Normal, Some(300e3), i * 100_000, RTT);
        }
        assert!(
            (a.bps() - 460e3).abs() < 1.0,
            "1.5 x 300k + 10k: {}",
            a.bps()
        );
    }

    #[test]
    fn overuse_decreases_to_beta_times_throughput_then_holds() {
        let mut a = Aimd::new(2e6, 10e3, 100e6);
        a.update(Usage::Overusing, Some(1.8e6), 0, RTT);
        assert!((a.bps() - 0.85 * 1.8e6).abs() < 1.0);
        // Normal right after an overuse: hold → increase starts from zero elapsed time.
        let before = a.bps();
        a.update(Usage::Normal, Some(1.6e6), 1_000, RTT);
        assert!(a.bps() - before <= MIN_ADDITIVE_BPS_PER_SECOND);
        // An overuse never raises the rate, even when the throughput is above it.
        let mut a = Aimd::new(1e6, 10e3, 100e6);
        a.update(Usage::Overusing, Some(3e6), 0, RTT);
        assert_eq!(a.bps(), 1e6);
    }

    #[test]
    fn additive_increase_near_known_capacity() {
        let mut a = Aimd::new(2e6, 10e3, 100e6);
        a.update(Usage::Overusing, Some(2e6), 0, RTT);
        let start = a.bps();
        let mut t = 0;
        for _ in 0..10 {
            t += 100_000;
            a.update(Usage::Normal, Some(a.bps()), t, RTT);
        }
        // ~9.4 kbit per packet / 0.2 s response time = ~47 kbit/s per second, not 8%/s.
        let grown = a.bps() - start;
        assert!(grown > 20e3 && grown < 50e3, "{grown}");
    }

    #[test]
    fn reductions_wait_one_rtt_unless_throughput_collapsed() {
        let mut a = Aimd::new(2e6, 10e3, 100e6);
        a.update(Usage::Overusing, Some(2e6), 0, RTT);
        assert!(!a.time_to_reduce_further(50_000, 1.5e6, RTT));
        assert!(a.time_to_reduce_further(100_000, 1.5e6, RTT));
        assert!(a.time_to_reduce_further(50_000, 0.5e6, RTT));
    }

    #[test]
    fn a_probed_capacity_makes_increases_additive() {
        let mut a = Aimd::new(2.85e6, 10e3, 100e6);
        a.on_probed_capacity(3e6);
        a.update(Usage::Normal, Some(2.85e6), 0, RTT);
        for i in 1..=10 {
            a.update(Usage::Normal, Some(a.bps()), i * 100_000, RTT);
        }
        let grown = a.bps() - 2.85e6;
        assert!(grown < 100e3, "8%/s would be 228 kbit/s: {grown}");
    }

    #[test]
    fn stays_within_floor_and_ceiling() {
        let mut a = Aimd::new(1e6, 100e3, 2e6);
        a.update(Usage::Overusing, Some(0.0), 0, RTT);
        assert_eq!(a.bps(), 100e3);
        a.set(1e12, 1);
        assert_eq!(a.bps(), 2e6);
        a.halve_if_due(1_000_000);
        assert_eq!(a.bps(), 1e6);
        a.halve_if_due(1_100_000);
        assert_eq!(a.bps(), 1e6, "at most every 200 ms");
    }
}
