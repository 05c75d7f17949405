//! One probe cluster: which packets belong to it and what rate their feedback shows
//! (libwebrtc's probe_bitrate_estimator, for one cluster).
//!
//! There is no pacer: the caller spreads the cluster's padding over its duration as best
//! it can, and media sent meanwhile counts as part of the cluster (as libwebrtc's pacer
//! tags every packet it sends during a probe), so the measure is the rate of everything
//! that went out in the window: from the first tagged packet for the whole duration (at
//! least 40 ms, over one 30 fps frame interval; [`super::probe`] sizes it) plus 5 ms. A
//! window that closed when the padding was out (24 ms) often held padding alone, which
//! arrived compressed behind the previous frame and failed validation in the simulated link.
//!
//! Must never: count a packet of another cluster, or call a result valid on too little:
//! at least 5 packets and 80% of what was sent received, both intervals under 1 s, and a
//! receive rate at most twice the send rate (arrivals compressed by a queue that held them
//! say nothing about the probe).
//!
//! The measure: send rate = bytes / (last send - first send) and receive rate = bytes /
//! (last arrival - first arrival), each leaving out the packet at the interval's edge. A
//! receive rate under 90% of the send rate means the link was saturated: the result is 95%
//! of the receive rate, and the receive rate is the link's capacity. Otherwise the result
//! is the smaller of the two. A cluster sent as one burst (under 1 ms) is all dispersion,
//! saturated by construction. The result is capped at the cluster's target.
//!
//! The receive rate is the smaller of the whole cluster's and its later half's (the
//! packets sent from half the duration on, when at least 5 of them arrived). A shaper with
//! a token bucket (`tc tbf ... burst 10kb`, a provider's policer) passes the start of a
//! probe at the probe's own rate until the bucket is empty; only what arrives after that
//! shows the bottleneck, and over the whole cluster the burst counts as capacity.

use super::ProbeClusterId;

pub(super) const MIN_DURATION_US: i64 = 40_000;
const ATTRIBUTION_SLACK_US: i64 = 5_000;
pub(super) const MIN_PACKETS: u32 = 5;
const MIN_RECEIVED_SHARE: f64 = 0.8;
const MAX_INTERVAL_US: i64 = 1_000_000;
const BURST_US: i64 = 1_000;
const MAX_RECEIVE_TO_SEND: f64 = 2.0;
const SATURATED_BELOW: f64 = 0.9;
const SATURATED_SHARE: f64 = 0.95;

/// How a cluster ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Outcome {
    /// `capacity`: the receive rate, when the cluster saturated the link.
    Measured {
        bps: f64,
        capacity: Option<f64>,
    },
    Failed,
}

#[derive(Debug)]
pub(super) struct Cluster {
    pub id: u32,
    pub target_bps: f64,
    pub created_us: i64,
    duration_us: i64,
    /// Set by the first tagged packet: until then nothing is attributed.
    open_until_us: Option<i64>,
    /// When the first tagged packet went out.
    start_us: i64,
    sent: u32,
    received: u32,
    lost: u32,
    bytes: u64,
    first_sent_us: i64,
    last_sent: (i64, u64),
    first_arrival: (i64, u64),
    last_arrival_us: i64,
    /// The later half (packets sent from `start_us + duration_us / 2` on): the first
    /// arrival, and the packets and bytes received after it.
    later_first_arrival_us: Option<i64>,
    later_packets: u32,
    later_bytes: u64,
}

impl Cluster {
    pub fn new(id: u32, target_bps: f64, created_us: i64, duration_us: i64) -> Self {
        Self {
            id,
            target_bps,
            created_us,
            duration_us: duration_us.max(MIN_DURATION_US),
            open_until_us: None,
            start_us: 0,
            sent: 0,
            received: 0,
            lost: 0,
            bytes: 0,
            first_sent_us: 0,
            last_sent: (0, 0),
            first_arrival: (0, 0),
            last_arrival_us: 0,
            later_first_arrival_us: None,
            later_packets: 0,
            later_bytes: 0,
        }
    }

    /// A packet went out; returns this cluster's id if it belongs to it.
    pub fn on_sent(&mut self, now_us: i64, tag: Option<ProbeClusterId>) -> Option<u32> {
        let belongs = match tag {
            Some(ProbeClusterId(id)) if id == self.id => {
                if self.open_until_us.is_none() {
                    self.start_us = now_us;
                    self.open_until_us =
                        Some(now_us.saturating_add(self.duration_us + ATTRIBUTION_SLACK_US));
                }
                true
            }
            // Another cluster's (one that already ended): plain media.
            Some(_) => false,
            None => self.open_until_us.is_some_and(|t| now_us <= t),
        };
        belongs.then(|| {
            self.sent = self.sent.saturating_add(1);
            self.id
        })
    }

    pub fn on_lost(&mut self) {
        self.lost = self.lost.saturating_add(1);
    }

    pub fn on_received(&mut self, sent_us: i64, arrival_us: i64, bytes: u32) {
        let bytes = u64::from(bytes);
        if self.received == 0 {
            self.first_sent_us = sent_us;
            self.last_sent = (sent_us, bytes);
            self.first_arrival = (arrival_us, bytes);
            self.last_arrival_us = arrival_us;
        } else {
            self.first_sent_us = self.first_sent_us.min(sent_us);
            if sent_us >= self.last_sent.0 {
                self.last_sent = (sent_us, bytes);
            }
            if arrival_us < self.first_arrival.0 {
                self.first_arrival = (arrival_us, bytes);
            }
            self.last_arrival_us = self.last_arrival_us.max(arrival_us);
        }
        self.received = self.received.saturating_add(1);
        self.bytes = self.bytes.saturating_add(bytes);
        if sent_us >= self.start_us.saturating_add(self.duration_us / 2) {
            match self.later_first_arrival_us {
                None => self.later_first_arrival_us = Some(arrival_us),
                Some(first) if arrival_us >= first => {
                    self.later_packets = self.later_packets.saturating_add(1);
                    self.later_bytes = self.later_bytes.saturating_add(bytes);
                }
                // Arrived before the one taken as the later half's first: reordered, left out.
                Some(_) => {}
            }
        }
    }

    /// The outcome once the window closed and enough is known, else `None`.
    pub fn outcome(&self, now_us: i64) -> Option<Outcome> {
        if self.open_until_us.is_none_or(|t| now_us <= t) {
            return None;
        }
        let needed = MIN_PACKETS.max((f64::from(self.sent) * MIN_RECEIVED_SHARE).ceil() as u32);
        if self.received >= needed {
            return Some(self.measure().map_or(Outcome::Failed, |(bps, capacity)| {
                Outcome::Measured { bps, capacity }
            }));
        }
        (self.received.saturating_add(self.lost) >= self.sent).then_some(Outcome::Failed)
    }

    /// The rate the cluster proved, and the link capacity if it saturated the link.
    fn measure(&self) -> Option<(f64, Option<f64>)> {
        let send_us = self.last_sent.0.saturating_sub(self.first_sent_us);
        let receive_us = self.last_arrival_us.saturating_sub(self.first_arrival.0);
        if receive_us <= 0
            || receive_us > MAX_INTERVAL_US
            || !(0..=MAX_INTERVAL_US).contains(&send_us)
        {
            return None;
        }
        let whole_bps = rate(self.bytes.saturating_sub(self.first_arrival.1), receive_us);
        let receive_bps = match self.later_first_arrival_us {
            Some(first) if self.later_packets >= MIN_PACKETS - 1 => {
                let later_us = self.last_arrival_us.saturating_sub(first);
                if later_us > 0 {
                    whole_bps.min(rate(self.later_bytes, later_us))
                } else {
                    whole_bps
                }
            }
            _ => whole_bps,
        };
        if send_us >= BURST_US {
            let send_bps = rate(self.bytes.saturating_sub(self.last_sent.1), send_us);
            if receive_bps > MAX_RECEIVE_TO_SEND * send_bps {
                return None;
            }
            if receive_bps >= SATURATED_BELOW * send_bps {
                return Some((send_bps.min(receive_bps).min(self.target_bps), None));
            }
        }
        let bps = (SATURATED_SHARE * receive_bps).min(self.target_bps);
        Some((bps, Some(receive_bps)))
    }
}

fn rate(bytes: u64, us: i64) -> f64 {
    bytes as f64 * 8e6 / us as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: ProbeClusterId = ProbeClusterId(9);

    /// `n` packets of `size` sent evenly over 40 ms through a bottleneck of `capacity`
    /// (an empty queue at start) and 20 ms of propagation.
    fn run(n: i64, size: u32, capacity: f64) -> Option<Outcome> {
        let mut c = Cluster::new(ID.0, 3e6, 0, MIN_DURATION_US);
        let spacing = MIN_DURATION_US / n;
        let mut link_free = 0i64;
        for k in 0..n {
            let t = k * spacing;
            assert_eq!(c.on_sent(t, Some(ID)), Some(ID.0));
            link_free = t.max(link_free) + (f64::from(size) * 8e6 / capacity) as i64;
            c.on_received(t, link_free + 20_000, size);
        }
        c.outcome(200_000)
    }

    #[test]
    fn unsaturated_measures_what_was_sent() {
        let Some(Outcome::Measured { bps, capacity }) = run(10, 1500, 10e6) else {
            panic!()
        };
        assert!((bps - 3e6).abs() < 0.1e6, "{bps}");
        assert_eq!(capacity, None);
    }

    #[test]
    fn saturated_measures_the_bottleneck() {
        let Some(Outcome::Measured { bps, capacity }) = run(10, 1500, 2e6) else {
            panic!()
        };
        assert!((bps - 0.95 * 2e6).abs() < 0.05e6, "{bps}");
        assert!(
            capacity.is_some_and(|c| (c - 2e6).abs() < 0.05e6),
            "{capacity:?}"
        );
    }

    /// 600 kbit/s for 300 ms into a 300 kbit/s shaper with a 7.5 kB bucket, full at the
    /// start: the first 200 ms pass at 600 (the bucket drains at 300), the rest leaves at
    /// 300 behind a growing queue. Over the whole cluster the receive rate reads ≈ 420 and
    /// "unsaturated" would be near; the later half shows the 300.
    #[test]
    fn a_token_buckets_burst_is_not_capacity() {
        const DURATION: i64 = 300_000;
        let mut c = Cluster::new(ID.0, 600e3, 0, DURATION);
        let size = 1500u32;
        let spacing = i64::from(size) * 8 * 1_000_000 / 600_000; // 20 ms
        let (mut tokens, mut link_free) = (7_500.0f64, 0i64);
        let mut last_t = 0i64;
        for k in 0..DURATION / spacing {
            let t = k * spacing;
            assert_eq!(c.on_sent(t, Some(ID)), Some(ID.0));
            let start = t.max(link_free);
            tokens = (tokens + (start - last_t) as f64 * 300e3 / 8e6).min(7_500.0);
            last_t = start;
            let leave = if tokens >= f64::from(size) {
                tokens -= f64::from(size);
                start
            } else {
                let wait = ((f64::from(size) - tokens) * 8e6 / 300e3) as i64;
                tokens = 0.0;
                last_t = start + wait;
                start + wait
            };
            link_free = leave;
            c.on_received(t, leave + 20_000, size);
        }
        let Some(Outcome::Measured { bps, capacity }) = c.outcome(1_000_000) else {
            panic!()
        };
        assert!(
            capacity.is_some_and(|c| (c - 300e3).abs() < 30e3),
            "{capacity:?}"
        );
        assert!(bps < 300e3, "{bps}");
    }

    #[test]
    fn a_burst_measures_dispersion() {
        let mut c = Cluster::new(ID.0, 3e6, 0, MIN_DURATION_US);
        for k in 0..8 {
            c.on_sent(0, Some(ID));
            // 1.5 Mbit/s bottleneck: 1000 bytes every 5.33 ms.
            c.on_received(0, 10_000 + k * 5_333, 1000);
        }
        let Some(Outcome::Measured { bps, .. }) = c.outcome(100_000) else {
            panic!()
        };
        assert!((bps - 0.95 * 1.5e6).abs() < 0.02e6, "{bps}");
    }

    #[test]
    fn media_in_the_window_belongs_to_the_cluster() {
        let mut c = Cluster::new(ID.0, 3e6, 0, MIN_DURATION_US);
        assert_eq!(
            c.on_sent(0, None),
            None,
            "not open before the first tagged packet"
        );
        assert_eq!(c.on_sent(1, Some(ID)), Some(ID.0));
        assert_eq!(c.on_sent(2, None), Some(ID.0));
        assert_eq!(
            c.on_sent(2, Some(ProbeClusterId(ID.0 + 7))),
            None,
            "another cluster's"
        );
        assert_eq!(
            c.on_sent(MIN_DURATION_US, None),
            Some(ID.0),
            "open for the whole duration"
        );
        assert_eq!(
            c.on_sent(MIN_DURATION_US + ATTRIBUTION_SLACK_US + 2, None),
            None,
            "closed"
        );
    }

    #[test]
    fn too_little_or_too_lossy_is_no_result() {
        let mut c = Cluster::new(ID.0, 3e6, 0, MIN_DURATION_US);
        for k in 0..10 {
            c.on_sent(k * 4_000, Some(ID));
        }
        assert_eq!(c.outcome(10_000), None, "still sending");
        for k in 0..10 {
            if k % 3 == 0 {
                c.on_lost();
            } else {
                c.on_received(k * 4_000, 20_000 + k * 4_000, 1000);
            }
        }
        assert_eq!(c.outcome(100_000), Some(Outcome::Failed), "6 of 10");
        // Four packets are too few to say anything, even all received.
        let mut c = Cluster::new(ID.0, 3e6, 0, MIN_DURATION_US);
        for k in 0..4 {
            c.on_sent(k * 4_000, Some(ID));
            c.on_received(k * 4_000, 20_000 + k * 4_000, 1000);
        }
        assert_eq!(c.outcome(100_000), Some(Outcome::Failed));
    }

    /// Arrivals more than twice as fast as the sending: held back and released by a
    /// queue, not a measure of anything.
    #[test]
    fn compressed_arrivals_are_no_result() {
        let mut c = Cluster::new(ID.0, 3e6, 0, MIN_DURATION_US);
        for k in 0..6 {
            c.on_sent(k * 8_000, Some(ID));
            c.on_received(k * 8_000, 60_000 + k * 1_000, 1000);
        }
        assert_eq!(c.outcome(100_000), Some(Outcome::Failed));
    }

    #[test]
    fn absurd_arrival_times_are_no_result() {
        let mut c = Cluster::new(ID.0, 3e6, 0, MIN_DURATION_US);
        for k in 0..6 {
            c.on_sent(k * 8_000, Some(ID));
            c.on_received(k * 8_000, if k == 3 { i64::MAX } else { k }, 1000);
        }
        assert_eq!(c.outcome(100_000), Some(Outcome::Failed));
        let mut c = Cluster::new(ID.0, 3e6, 0, MIN_DURATION_US);
        for k in 0..6 {
            c.on_sent(k * 8_000, Some(ID));
            c.on_received(k * 8_000, 5_000, 1000);
        }
        assert_eq!(
            c.outcome(100_000),
            Some(Outcome::Failed),
            "all at one instant"
        );
    }
}
