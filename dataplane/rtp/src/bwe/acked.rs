//! The acknowledged bitrate: what the receiver actually got, from transport-cc arrival
//! times (libwebrtc's acknowledged_bitrate_estimator / bitrate_estimator). The decrease
//! aims just under it and the increase may not run far ahead of it.
//!
//! Must never: be fooled by the remote clock (time going backwards restarts the window; a
//! gap longer than a window starts a fresh one instead of averaging over silence).
//!
//! Constants, and why (libwebrtc's): bytes are summed over arrival windows of 500 ms for
//! the first sample, then 150 ms; each window's rate updates a Bayesian estimate whose
//! sample variance grows with its distance from the estimate (scale 10, so one odd window
//! moves it little) and whose own variance grows by 5 per update (the rate can change).
//!
//! One change: the distance is relative to the larger of estimate and sample, not to the
//! estimate (libwebrtc's default; its `uncertainty_symmetry_cap` exists for this). Relative
//! to a low estimate, a rise looks hugely uncertain: after a layer switch from 0.5 to 2.5
//! Mbit/s, or feedback that starved it, the estimate took many seconds to follow, and an
//! overuse meanwhile cut the rate to 0.85x the stale value (seen in the simulated link,
//! tests/bwe_hostile.rs).

const INITIAL_WINDOW_US: i64 = 500_000;
const WINDOW_US: i64 = 150_000;
const UNCERTAINTY_SCALE: f64 = 10.0;
const INITIAL_VARIANCE: f64 = 50.0;
const VARIANCE_GROWTH: f64 = 5.0;

#[derive(Debug)]
pub(super) struct AckedBitrate {
    estimate: Option<f64>,
    variance: f64,
    sum_bytes: u64,
    window_us: i64,
    prev_arrival_us: Option<i64>,
}

impl AckedBitrate {
    pub fn new() -> Self {
        Self {
            estimate: None,
            variance: INITIAL_VARIANCE,
            sum_bytes: 0,
            window_us: 0,
            prev_arrival_us: None,
        }
    }

    pub fn bps(&self) -> Option<f64> {
        self.estimate
    }

    /// One received packet, in arrival order.
    pub fn update(&mut self, arrival_us: i64, bytes: u32) {
        let window = if self.estimate.is_some() {
            WINDOW_US
        } else {
            INITIAL_WINDOW_US
        };
        let Some(sample) = self.window_sample(arrival_us, bytes, window) else {
            return;
        };
        let Some(estimate) = self.estimate else {
            self.estimate = Some(sample);
            return;
        };
        let uncertainty =
            UNCERTAINTY_SCALE * (estimate - sample).abs() / estimate.max(sample).max(1.0);
        let sample_var = uncertainty * uncertainty;
        let predicted_var = self.variance + VARIANCE_GROWTH;
        let next = (sample_var * estimate + predicted_var * sample) / (sample_var + predicted_var);
        self.estimate = Some(next.max(0.0));
        self.variance = sample_var * predicted_var / (sample_var + predicted_var);
    }

    /// Adds the packet to the current window; returns the window's rate when one completed.
    fn window_sample(&mut self, arrival_us: i64, bytes: u32, window: i64) -> Option<f64> {
        if let Some(prev) = self.prev_arrival_us {
            let step = arrival_us.saturating_sub(prev);
            if step < 0 {
                self.sum_bytes = 0;
                self.window_us = 0;
            } else {
                self.window_us = self.window_us.saturating_add(step);
                if step > window {
                    // Nothing arrived for over a window: start afresh, keeping the phase.
                    self.sum_bytes = 0;
                    self.window_us %= window;
                }
            }
        }
        self.prev_arrival_us = Some(arrival_us);
        let mut sample = None;
        if self.window_us >= window {
            sample = Some(self.sum_bytes as f64 * 8.0 * 1e6 / window as f64);
            self.window_us -= window;
            self.sum_bytes = 0;
        }
        self.sum_bytes = self.sum_bytes.saturating_add(u64::from(bytes));
        sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1200-byte packets every 4.8 ms = 2 Mbit/s.
    fn feed(a: &mut AckedBitrate, from_us: i64, to_us: i64, every_us: i64) {
        let mut t = from_us;
        while t < to_us {
            a.update(t, 1200);
            t += every_us;
        }
    }

    #[test]
    fn measures_a_constant_rate() {
        let mut a = AckedBitrate::new();
        feed(&mut a, 0, 400_000, 4_800);
        assert_eq!(a.bps(), None, "the first window is 500 ms");
        feed(&mut a, 400_800, 3_000_000, 4_800);
        let bps = a.bps().unwrap();
        assert!((bps - 2e6).abs() < 0.05e6, "{bps}");
    }

    #[test]
    fn follows_a_drop_within_about_a_second() {
        let mut a = AckedBitrate::new();
        feed(&mut a, 0, 3_000_000, 4_800);
        // Now 0.5 Mbit/s: one packet every 19.2 ms.
        feed(&mut a, 3_000_000, 4_000_000, 19_200);
        let bps = a.bps().unwrap();
        assert!(bps < 0.8e6, "{bps}");
    }

    /// 0.5 Mbit/s for a long time, then 2.5 (a layer switch): followed within a second.
    #[test]
    fn follows_a_rise_about_as_fast_as_a_drop() {
        let mut a = AckedBitrate::new();
        feed(&mut a, 0, 10_000_000, 19_200);
        assert!((a.bps().unwrap() - 0.5e6).abs() < 0.05e6);
        feed(&mut a, 10_000_000, 11_000_000, 3_840);
        let bps = a.bps().unwrap();
        assert!(bps > 2e6, "{bps}");
    }

    #[test]
    fn remote_clock_going_back_or_jumping_does_not_make_up_rates() {
        let mut a = AckedBitrate::new();
        feed(&mut a, 0, 2_000_000, 4_800);
        let before = a.bps().unwrap();
        // Back by an hour, then forward by two: no window spans the jump.
        feed(&mut a, -3_600_000_000, -3_599_000_000, 4_800);
        feed(&mut a, 7_200_000_000, 7_201_000_000, 4_800);
        let after = a.bps().unwrap();
        assert!((after - before).abs() < 0.1e6, "{before} {after}");
        a.update(i64::MAX, u32::MAX);
        a.update(i64::MIN, u32::MAX);
        assert!(a.bps().unwrap().is_finite());
    }
}
