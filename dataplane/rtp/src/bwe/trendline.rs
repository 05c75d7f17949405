//! The overuse detector: a trendline over the smoothed accumulated delay variation of the
//! last 20 groups, compared against an adaptive threshold (libwebrtc's trendline_estimator).
//! Its slope is roughly `(send rate - capacity) / capacity`: positive while a queue grows.
//!
//! Must never: allocate after construction (the window is a ring of fixed size), or flag
//! overuse on one noisy group (it needs more than 10 ms and two samples over threshold
//! with a rising trend).
//!
//! Constants (libwebrtc's, kept because its threshold adaptation was tuned with them):
//! - window 20 groups (about 0.7 s of 30 fps frames), smoothing 0.9;
//! - the trend is scaled by `min(samples, 60) * 4` before comparing with the threshold, so
//!   the first samples weigh less;
//! - threshold starts at 12.5, adapts towards |modified trend| by 0.039/ms when under it and
//!   0.0087/ms when over it (slowly up, faster down), clamped to 6..600, and ignores jumps
//!   more than 15 above it (a sudden capacity drop must not raise the bar);
//! - overuse needs the trend over threshold for more than 10 ms of send time, in at least
//!   two consecutive samples, with the trend not falling.

const WINDOW: usize = 20;
const SMOOTHING: f64 = 0.9;
const THRESHOLD_GAIN: f64 = 4.0;
const MIN_DELTAS_FOR_FULL_GAIN: u32 = 60;
const MAX_DELTAS_COUNTED: u32 = 1000;
const INITIAL_THRESHOLD: f64 = 12.5;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
const MAX_ADAPT_OFFSET: f64 = 15.0;
const MAX_ADAPT_STEP_MS: f64 = 100.0;
const THRESHOLD_RANGE: (f64, f64) = (6.0, 600.0);
const OVERUSE_TIME_MS: f64 = 10.0;

/// What the delay trend says about the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Usage {
    Normal,
    Overusing,
    Underusing,
}

#[derive(Debug)]
pub(super) struct Trendline {
    /// (arrival ms since the first sample, smoothed delay ms), oldest first.
    window: [(f64, f64); WINDOW],
    len: usize,
    head: usize,
    first_arrival_ms: Option<f64>,
    deltas: u32,
    accumulated: f64,
    smoothed: f64,
    prev_trend: f64,
    threshold: f64,
    last_threshold_ms: Option<f64>,
    /// Send time spent over the threshold, `None` when not over it.
    overusing_ms: Option<f64>,
    overuse_count: u32,
    usage: Usage,
}

impl Trendline {
    pub fn new() -> Self {
        Self {
            window: [(0.0, 0.0); WINDOW],
            len: 0,
            head: 0,
            first_arrival_ms: None,
            deltas: 0,
            accumulated: 0.0,
            smoothed: 0.0,
            prev_trend: 0.0,
            threshold: INITIAL_THRESHOLD,
            last_threshold_ms: None,
            overusing_ms: None,
            overuse_count: 0,
            usage: Usage::Normal,
        }
    }

    pub fn reset(&mut self) {
        *self = Self::new();
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// A full window since the last reset: "normal" means something only from then on.
    pub fn warmed_up(&self) -> bool {
        self.len == WINDOW
    }

    #[cfg(test)]
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    pub fn update(&mut self, arrival_delta_ms: f64, send_delta_ms: f64, arrival_ms: f64) {
        let delta = arrival_delta_ms - send_delta_ms;
        self.deltas = (self.deltas + 1).min(MAX_DELTAS_COUNTED);
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        self.accumulated += delta;
        self.smoothed = SMOOTHING * self.smoothed + (1.0 - SMOOTHING) * self.accumulated;
        self.push((arrival_ms - first, self.smoothed));
        let mut trend = self.prev_trend;
        if self.len == WINDOW {
            trend = self.slope().unwrap_or(trend);
        }
        self.detect(trend, send_delta_ms, arrival_ms);
    }

    fn push(&mut self, point: (f64, f64)) {
        if let Some(slot) = self.window.get_mut((self.head + self.len) % WINDOW) {
            *slot = point;
        }
        if self.len < WINDOW {
            self.len += 1;
        } else {
            self.head = (self.head + 1) % WINDOW;
        }
    }

    fn points(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        (0..self.len).filter_map(|k| self.window.get((self.head + k) % WINDOW).copied())
    }

    /// Least-squares slope of smoothed delay over arrival time.
    fn slope(&self) -> Option<f64> {
        let n = self.len as f64;
        let (sx, sy) = self
            .points()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let (num, den) = self.points().fold((0.0, 0.0), |(num, den), (x, y)| {
            (num + (x - mx) * (y - my), den + (x - mx) * (x - mx))
        });
        (den != 0.0 && num.is_finite() && den.is_finite()).then(|| num / den)
    }

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now_ms: f64) {
        if self.deltas < 2 {
            self.usage = Usage::Normal;
            return;
        }
        let modified =
            f64::from(self.deltas.min(MIN_DELTAS_FOR_FULL_GAIN)) * trend * THRESHOLD_GAIN;
        if modified > self.threshold {
            let over = match self.overusing_ms {
                // Assume we have been over for half the time since the previous sample.
                None => send_delta_ms / 2.0,
                Some(t) => t + send_delta_ms,
            };
            self.overusing_ms = Some(over);
            self.overuse_count += 1;
            if over > OVERUSE_TIME_MS && self.overuse_count > 1 && trend >= self.prev_trend {
                self.overusing_ms = Some(0.0);
                self.overuse_count = 0;
                self.usage = Usage::Overusing;
            }
        } else if modified < -self.threshold {
            self.overusing_ms = None;
            self.overuse_count = 0;
            self.usage = Usage::Underusing;
        } else {
            self.overusing_ms = None;
            self.overuse_count = 0;
            self.usage = Usage::Normal;
        }
        self.prev_trend = trend;
        self.adapt_threshold(modified, now_ms);
    }

    fn adapt_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.last_threshold_ms.get_or_insert(now_ms);
        self.last_threshold_ms = Some(now_ms);
        let magnitude = modified.abs();
        if !magnitude.is_finite() || magnitude > self.threshold + MAX_ADAPT_OFFSET {
            return;
        }
        let k = if magnitude < self.threshold {
            K_DOWN
        } else {
            K_UP
        };
        let dt = (now_ms - last).clamp(0.0, MAX_ADAPT_STEP_MS);
        self.threshold += k * (magnitude - self.threshold) * dt;
        self.threshold = self.threshold.clamp(THRESHOLD_RANGE.0, THRESHOLD_RANGE.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds groups 33 ms apart whose arrival spacing is `33 + growth` ms.
    fn feed(t: &mut Trendline, groups: usize, growth_ms: f64, start_ms: f64) -> Vec<Usage> {
        (0..groups)
            .map(|i| {
                t.update(
                    33.0 + growth_ms,
                    33.0,
                    start_ms + (i as f64 + 1.0) * (33.0 + growth_ms),
                );
                t.usage()
            })
            .collect()
    }

    /// Known answer: with a constant variation `d` per group, the accumulated delay is a
    /// ramp of slope d/(33+d) and the smoothed delay follows it with the same slope (after
    /// the filter's start-up), so the fitted slope approaches d/(33+d).
    #[test]
    fn slope_of_a_linear_queue_build_up() {
        let mut t = Trendline::new();
        feed(&mut t, 200, 3.3, 0.0);
        let slope = t.slope().unwrap();
        let expected = 3.3 / 36.3;
        assert!((slope - expected).abs() < 1e-3, "{slope} vs {expected}");
    }

    #[test]
    fn steady_delay_is_normal_and_growing_delay_is_overuse() {
        let mut t = Trendline::new();
        let steady = feed(&mut t, 60, 0.0, 0.0);
        assert!(steady.iter().all(|u| *u == Usage::Normal));
        // 10% over capacity: 3.3 ms more queue per 33 ms frame.
        let growing = feed(&mut t, 30, 3.3, 60.0 * 33.0);
        let first = growing.iter().position(|u| *u == Usage::Overusing);
        assert!(first.is_some_and(|i| i < 15), "{growing:?}");
    }

    #[test]
    fn draining_queue_is_underuse() {
        let mut t = Trendline::new();
        feed(&mut t, 60, 0.0, 0.0);
        let draining = feed(&mut t, 30, -3.3, 60.0 * 33.0);
        assert_eq!(draining.last(), Some(&Usage::Underusing));
    }

    /// A single late group (one delayed frame) is noise, not overuse.
    #[test]
    fn one_spike_is_not_overuse() {
        let mut t = Trendline::new();
        feed(&mut t, 60, 0.0, 0.0);
        let mut x = 60.0 * 33.0;
        let mut seen = Vec::new();
        for d in [15.0, -15.0, 0.0, 0.0, 0.0] {
            x += 33.0 + d;
            t.update(33.0 + d, 33.0, x);
            seen.push(t.usage());
        }
        assert!(!seen.contains(&Usage::Overusing), "{seen:?}");
    }

    #[test]
    fn threshold_stays_in_range_under_absurd_input() {
        let mut t = Trendline::new();
        for i in 0..500 {
            let d = if i % 2 == 0 { 1e12 } else { -1e12 };
            t.update(d, 0.0, i as f64 * 1e9);
        }
        assert!((THRESHOLD_RANGE.0..=THRESHOLD_RANGE.1).contains(&t.threshold()));
        for i in 0..500 {
            t.update(f64::MAX, f64::MIN, i as f64);
        }
        assert!((THRESHOLD_RANGE.0..=THRESHOLD_RANGE.1).contains(&t.threshold()));
    }
}
