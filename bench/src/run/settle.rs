//! When the load is steady enough to measure: after the joins and the warm-up, simulcast
//! viewers are still climbing layers (str0m's bandwidth estimate ramps over ~5–20 s), so a
//! window opened then measures a moving target. The settling phase waits until, for
//! [`STEADY_SECS`] consecutive seconds, no subscriber reported a layer switch and the forwarded
//! packets/s stayed within ±[`TOLERANCE`] of their trailing [`MEAN_SECS`]-second mean; a cap
//! (`--settle-max`) ends the wait unsettled.
//!
//! Sans-IO: fed per-second figures, answers when settling is over. Never reads the pool, the
//! server or the clock.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Consecutive steady seconds that end the settling phase.
pub const STEADY_SECS: usize = 3;
/// Seconds of the trailing mean a second's packets/s is compared with (that second included).
pub const MEAN_SECS: usize = 3;
/// Largest relative distance from the trailing mean that still counts as steady.
pub const TOLERANCE: f64 = 0.05;

/// How settling ended.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Settled {
    /// Seconds spent settling (the sum of the samples' intervals).
    pub settle_s: f64,
    /// false: the cap was reached before the load was steady.
    pub settled: bool,
}

/// The settle detector for one phase (a run, or one ramp step).
#[derive(Debug, Clone)]
pub struct Settler {
    max_s: f64,
    /// packets/s of the last `MEAN_SECS` seconds (warm-up seconds included: they feed the
    /// mean, but only seconds of the settling phase count as steady).
    recent: VecDeque<f64>,
    steady: usize,
    elapsed_s: f64,
}

impl Settler {
    pub fn new(max: Duration) -> Settler {
        Settler {
            max_s: max.as_secs_f64(),
            recent: VecDeque::with_capacity(MEAN_SECS),
            steady: 0,
            elapsed_s: 0.0,
        }
    }

    fn push(&mut self, pps: f64) {
        if self.recent.len() == MEAN_SECS {
            self.recent.pop_front();
        }
        self.recent.push_back(pps);
    }

    /// A second from before the settling phase (warm-up): feeds the trailing mean only.
    pub fn prime(&mut self, forwarded_pps: f64) {
        self.push(forwarded_pps);
    }

    /// Settling is over before it began: the cap is zero.
    pub fn immediate(&self) -> Option<Settled> {
        (self.max_s <= 0.0).then_some(Settled {
            settle_s: 0.0,
            settled: false,
        })
    }

    /// One second of the settling phase; `Some` when settling is over (steady, or capped).
    pub fn observe(
        &mut self,
        interval_s: f64,
        forwarded_pps: f64,
        layer_switches: u64,
    ) -> Option<Settled> {
        self.push(forwarded_pps);
        self.elapsed_s += interval_s;
        let mean = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
        let steady = layer_switches == 0
            && self.recent.len() == MEAN_SECS
            && (forwarded_pps - mean).abs() <= TOLERANCE * mean;
        self.steady = if steady { self.steady + 1 } else { 0 };
        if self.steady >= STEADY_SECS {
            return Some(Settled {
                settle_s: self.elapsed_s,
                settled: true,
            });
        }
        // A small tolerance: intervals are about a second, not exactly.
        (self.elapsed_s >= self.max_s - 0.05).then_some(Settled {
            settle_s: self.elapsed_s,
            settled: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `(pps, switches)` seconds; the index (1-based) and outcome of the first `Some`.
    fn feed(s: &mut Settler, seconds: &[(f64, u64)]) -> Option<(usize, Settled)> {
        seconds
            .iter()
            .enumerate()
            .find_map(|(i, &(pps, sw))| s.observe(1.0, pps, sw).map(|o| (i + 1, o)))
    }

    #[test]
    fn steady_load_settles_after_three_seconds() {
        let mut s = Settler::new(Duration::from_secs(30));
        for pps in [1000.0, 1010.0] {
            s.prime(pps);
        }
        let got = feed(&mut s, &[(1000.0, 0), (990.0, 0), (1005.0, 0), (1000.0, 0)]);
        assert_eq!(
            got,
            Some((
                3,
                Settled {
                    settle_s: 3.0,
                    settled: true
                }
            ))
        );
        // Without warm-up seconds the first two have no 3 s mean yet: two more seconds.
        let mut cold = Settler::new(Duration::from_secs(30));
        let got = feed(&mut cold, &[(1000.0, 0); 6]);
        assert_eq!(got.map(|(i, o)| (i, o.settled)), Some((5, true)));
    }

    #[test]
    fn a_layer_switch_or_a_climb_resets_the_count() {
        let mut s = Settler::new(Duration::from_secs(30));
        for _ in 0..3 {
            s.prime(1000.0);
        }
        // Two steady seconds, then a switch: the count starts over.
        let got = feed(
            &mut s,
            &[
                (1000.0, 0),
                (1000.0, 0),
                (1000.0, 1),
                (1000.0, 0),
                (1000.0, 0),
            ],
        );
        assert_eq!(got, None, "only two steady seconds since the switch");
        assert_eq!(
            s.observe(1.0, 1000.0, 0).map(|o| o.settle_s),
            Some(6.0),
            "the third steady second after the switch"
        );

        // Viewers climbing layers: +10% a second is never within 5% of the 3 s mean.
        let mut climbing = Settler::new(Duration::from_secs(30));
        let mut pps = 1000.0;
        for _ in 0..10 {
            pps *= 1.1;
            assert_eq!(climbing.observe(1.0, pps, 0), None);
        }
        // It levels off: steady 3 s after the mean has caught up.
        let got = feed(&mut climbing, &[(pps, 0); 6]).unwrap();
        assert!(got.1.settled);
        assert!((3..=5).contains(&got.0), "{got:?}");
    }

    #[test]
    fn the_cap_ends_settling_unsettled() {
        let mut s = Settler::new(Duration::from_secs(5));
        let wobble: Vec<(f64, u64)> = (0..20)
            .map(|i| (if i % 2 == 0 { 1000.0 } else { 1200.0 }, 0))
            .collect();
        let got = feed(&mut s, &wobble);
        assert_eq!(
            got,
            Some((
                5,
                Settled {
                    settle_s: 5.0,
                    settled: false
                }
            ))
        );
        assert_eq!(
            Settler::new(Duration::ZERO).immediate(),
            Some(Settled {
                settle_s: 0.0,
                settled: false
            })
        );
        assert_eq!(Settler::new(Duration::from_secs(1)).immediate(), None);
        // Nothing forwarded at all (an idle scenario) is steady too.
        let mut idle = Settler::new(Duration::from_secs(30));
        assert_eq!(feed(&mut idle, &[(0.0, 0); 5]).map(|(i, _)| i), Some(5));
    }
}
