//! [`KeyframeRequestCoalescer`]: one per published track, on the publisher's shard. Every
//! asker — local subscriptions waiting for a switch, subscribers' PLI/FIR, other shards'
//! `KeyframeRequest`s, NACK give-ups — goes through `should_send`, so the publisher gets at
//! most one PLI per layer per interval (300 ms by default) no matter how many subscribers
//! want one or how often. A keyframe arriving does not reopen the interval: a subscriber
//! flooding PLIs would otherwise turn each keyframe round trip into a new one, and the
//! publisher's uplink (and every other subscriber's downlink) into keyframes.
//!
//! Owns: the last-sent time per layer. Must never: read the clock or send anything itself.

use std::time::{Duration, Instant};

use super::layer::MAX_LAYERS;

/// Default minimum spacing of keyframe requests for one layer.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
pub struct KeyframeRequestCoalescer {
    interval: Duration,
    last_sent: [Option<Instant>; MAX_LAYERS],
}

impl Default for KeyframeRequestCoalescer {
    fn default() -> Self {
        Self::new(DEFAULT_INTERVAL)
    }
}

impl KeyframeRequestCoalescer {
    pub fn new(interval: Duration) -> Self {
        KeyframeRequestCoalescer {
            interval,
            last_sent: [None; MAX_LAYERS],
        }
    }

    /// Someone wants a keyframe on `layer` (0 for a track without simulcast). True means
    /// "send the PLI/FIR now" and starts a new interval; false means one is already on its
    /// way. A layer index out of range is never requested.
    pub fn should_send(&mut self, now: Instant, layer: u8) -> bool {
        let Some(last) = self.last_sent.get_mut(usize::from(layer)) else {
            return false;
        };
        match *last {
            Some(t) if now.saturating_duration_since(t) < self.interval => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_askers_one_request_per_layer_per_interval() {
        let t0 = Instant::now();
        let mut c = KeyframeRequestCoalescer::default();
        let mut sent = [0u32; 3];
        // 50 subscribers ask for every layer every 10 ms for 1 s.
        for ms in (0..1000u64).step_by(10) {
            let now = t0 + Duration::from_millis(ms);
            for _ in 0..50 {
                for l in 0..3u8 {
                    if c.should_send(now, l) {
                        sent[usize::from(l)] += 1;
                    }
                }
            }
        }
        // At 0, 300, 600 and 900 ms.
        assert_eq!(sent, [4, 4, 4]);
    }

    #[test]
    fn layers_are_independent_and_interval_is_configurable() {
        let t0 = Instant::now();
        let mut c = KeyframeRequestCoalescer::new(Duration::from_millis(100));
        assert!(c.should_send(t0, 0));
        assert!(c.should_send(t0, 1));
        assert!(!c.should_send(t0 + Duration::from_millis(99), 0));
        assert!(c.should_send(t0 + Duration::from_millis(100), 0));
        assert!(!c.should_send(t0, 3));
    }
}
