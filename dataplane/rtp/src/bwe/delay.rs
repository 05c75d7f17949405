//! The delay-based estimate (libwebrtc's delay_based_bwe): acknowledged packets, in arrival
//! order, go through [`super::arrival`] grouping into the [`super::trendline`] detector and
//! the [`super::acked`] throughput; at the end of each feedback the [`super::aimd`] rate
//! moves by the detector's verdict, or a probe result sets it.
//!
//! Must never: increase on a detector that knows nothing yet, or aim a decrease at a
//! throughput that predates a probe the link just passed.
//!
//! Constants, and why:
//! - no transport-cc feedback with received packets for 2 s resets the detector
//!   (libwebrtc's stream timeout): what it learnt describes a queue that has drained since;
//! - the rate does not increase until the detector has a full window (20 groups) since its
//!   last reset: a fresh detector says "normal" because it knows nothing. While writing
//!   tests/bwe_hostile.rs, feedback whose arrival times kept jumping reset it every 250 ms,
//!   the rate crept over the capacity unseen and filled the drop-tail queue; a full queue
//!   shows no delay gradient, only loss in the 2-10% band the loss-based rule holds in,
//!   and the estimate stayed above capacity after the lies stopped;
//! - for 1 s after a probe result raised the rate, or saturated the link, the throughput
//!   the AIMD works from is at least that result: the acknowledged bitrate is smoothed and
//!   still shows the rate before the probe (or only the media's, far under the link), so
//!   an overuse right after — often the probe's own queue — would aim at 0.85x a rate the
//!   link has just been shown to exceed (seen in the simulated link before group delay
//!   moved to first packets, and in CI: a viewer's estimate cut under its lowest layer);
//! - while a probe is in flight, an overuse lowers the rate to no less than the media rate
//!   when the probe started (the media alone was not overusing, or the probe would not have
//!   started): a confirming probe (24 kB, up to 500 ms) fills a shaper's queue by design,
//!   and an overuse during it aimed at 0.85x the media alone (a viewer capped at 360 kbit/s
//!   on its quarter layer: 236 kbit/s acknowledged) cut the estimate to 201 kbit/s, under
//!   the layer the link carried. A floor at 0.85x the estimate the probe started from was
//!   tried first: too high where that estimate already overshot the link (the simulated
//!   cross-shard call then lost media on a 400 kbit/s downlink in half its runs);
//! - a probe only ever raises the rate: one that measured less may just have been mixed
//!   with little media, and decreases are the detector's business.

use super::acked::AckedBitrate;
use super::aimd::Aimd;
use super::arrival::{Ack, Grouped, InterArrival};
use super::trendline::{Trendline, Usage};

const FEEDBACK_TIMEOUT_US: i64 = 2_000_000;
const PROBE_THROUGHPUT_HOLD_US: i64 = 1_000_000;

#[derive(Debug)]
pub(super) struct DelayBased {
    inter_arrival: InterArrival,
    trendline: Trendline,
    aimd: Aimd,
    acked: AckedBitrate,
    /// The last probe result that raised the rate or saturated the link, and when.
    probed: Option<(f64, i64)>,
    /// The media rate when the probe cluster in flight started (see `set_probe_in_flight`).
    probing_media: Option<f64>,
    last_feedback_us: Option<i64>,
}

impl DelayBased {
    pub fn new(initial: f64, floor: f64, ceiling: f64) -> Self {
        Self {
            inter_arrival: InterArrival::default(),
            trendline: Trendline::new(),
            aimd: Aimd::new(initial, floor, ceiling),
            acked: AckedBitrate::new(),
            probed: None,
            probing_media: None,
            last_feedback_us: None,
        }
    }

    pub fn bps(&self) -> f64 {
        self.aimd.bps()
    }

    /// A probe cluster is in flight (sent, its result not known yet), started while the
    /// media alone went at `media_bps` without overuse (a probe starts only then): an
    /// overuse meanwhile is the probe's own queue, and lowers the rate to no less than that
    /// media rate until the result is in (then the usual rule applies again).
    pub fn set_probe_in_flight(&mut self, media_bps: Option<f64>) {
        self.probing_media = media_bps;
    }

    /// The upper end of the band where overuse has lately been seen to start, if known.
    pub fn link_capacity(&self) -> Option<f64> {
        self.aimd.capacity_upper()
    }

    pub fn overusing(&self) -> bool {
        self.trendline.usage() == Usage::Overusing
    }

    /// A feedback with received packets begins. Returns whether the detector restarted.
    pub fn begin_feedback(&mut self, now_us: i64) -> bool {
        let silent = self
            .last_feedback_us
            .is_some_and(|t| now_us.saturating_sub(t) > FEEDBACK_TIMEOUT_US);
        self.last_feedback_us = Some(now_us);
        if silent {
            self.inter_arrival.reset();
            self.trendline.reset();
        }
        silent
    }

    /// One received packet, in arrival order. Returns whether the grouping restarted.
    pub fn on_received(&mut self, ack: Ack, bytes: u32) -> bool {
        self.acked.update(ack.arrival_us, bytes);
        match self.inter_arrival.add(ack) {
            Grouped::Pending => false,
            Grouped::Delta(d) => {
                self.trendline
                    .update(d.arrival_delta_ms, d.send_delta_ms, d.arrival_ms);
                false
            }
            Grouped::Reset => {
                self.trendline.reset();
                true
            }
        }
    }

    /// A queue stands (the caller saw loss with the RTT well above its floor): back off as
    /// an overuse does, from the acknowledged rate, at most once per reduction interval.
    pub fn drain(&mut self, now_us: i64, rtt_us: i64) {
        let Some(throughput) = self.acked.bps() else {
            return;
        };
        if self.aimd.time_to_reduce_further(now_us, throughput, rtt_us) {
            let from = self.aimd.bps();
            self.aimd
                .update(Usage::Overusing, Some(throughput), now_us, rtt_us);
            tracing::debug!(
                throughput,
                from,
                to = self.aimd.bps(),
                "bwe: standing queue, draining"
            );
        }
    }

    /// The end of a feedback: move the rate. `probe` is a probe's result and, if it
    /// saturated the link, the capacity it found. Returns the probe result if it was taken
    /// into account (not while overusing).
    pub fn update(
        &mut self,
        now_us: i64,
        probe: Option<(f64, Option<f64>)>,
        rtt_us: i64,
    ) -> Option<f64> {
        let usage = self.trendline.usage();
        // A probe that saturated the link measured what gets through now. The queue it built
        // often shows as an overuse in the same or the next feedback, and the media alone
        // may be well under the link (an SFU viewer on its lowest layer): aimed at 0.85x the
        // media's throughput, such an overuse cut a viewer capped at 360 kbit/s to 196
        // kbit/s and the SFU paused a video the link carried (CI, tests/e2e/downlink.rs).
        let mut held = self
            .probed
            .filter(|(_, at)| now_us.saturating_sub(*at) < PROBE_THROUGHPUT_HOLD_US);
        if let Some((bps, Some(_))) = probe {
            if held.is_none_or(|(b, _)| bps > b) {
                held = Some((bps, now_us));
                self.probed = held;
            }
        }
        let probed = held.map(|(bps, _)| bps);
        let throughput = match (self.acked.bps(), probed) {
            (Some(a), Some(p)) => Some(a.max(p)),
            (a, p) => a.or(p),
        };
        if usage == Usage::Overusing {
            match throughput {
                Some(t) if self.aimd.time_to_reduce_further(now_us, t, rtt_us) => {
                    let from = self.aimd.bps();
                    self.aimd.update(usage, Some(t), now_us, rtt_us);
                    // Never above where the rate was: an overuse does not raise it.
                    if let Some(floor) = self.probing_media.map(|m| m.min(from)) {
                        if self.aimd.bps() < floor {
                            self.aimd.set(floor, now_us);
                        }
                    }
                    tracing::debug!(
                        throughput = t,
                        acked = ?self.acked.bps(),
                        from,
                        to = self.aimd.bps(),
                        "bwe: overuse"
                    );
                }
                Some(_) => {}
                None => self.aimd.halve_if_due(now_us),
            }
            return None;
        }
        if let Some((bps, capacity)) = probe {
            if let Some(capacity) = capacity {
                self.aimd.on_probed_capacity(capacity);
            }
            if bps > self.aimd.bps() {
                self.aimd.set(bps, now_us);
                self.probed = Some((bps, now_us));
            }
            return Some(bps);
        }
        if usage != Usage::Normal || self.trendline.warmed_up() {
            self.aimd.update(usage, throughput, now_us, rtt_us);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: i64 = 100_000;

    /// Frames of four 1250-byte packets every 33 ms (1.2 Mbit/s), arriving 20 ms later
    /// plus `extra(frame)` of queueing; a feedback every three frames.
    fn feed(d: &mut DelayBased, frames: std::ops::Range<i64>, extra: impl Fn(i64) -> i64) {
        feed_packets(d, frames, 4, 1250, extra);
    }

    /// As `feed`, with `packets` of `bytes` per frame.
    fn feed_packets(
        d: &mut DelayBased,
        frames: std::ops::Range<i64>,
        packets: i64,
        bytes: u32,
        extra: impl Fn(i64) -> i64,
    ) {
        for f in frames {
            let sent_us = f * 33_333;
            for p in 0..packets {
                let arrival_us = sent_us + 20_000 + extra(f) + p * 1_000;
                d.on_received(
                    Ack {
                        sent_us,
                        arrival_us,
                        feedback_us: sent_us + 60_000,
                    },
                    bytes,
                );
            }
            if f % 3 == 2 {
                d.update(sent_us + 60_000, None, RTT);
            }
        }
    }

    #[test]
    fn no_increase_before_the_detector_has_a_window() {
        let mut d = DelayBased::new(1e6, 10e3, 10e6);
        feed(&mut d, 0..20, |_| 0);
        assert_eq!(d.bps(), 1e6, "20 frames are 19 deltas: not warm yet");
        feed(&mut d, 20..60, |_| 0);
        assert!(d.bps() > 1e6);
    }

    #[test]
    fn a_growing_queue_brings_the_rate_under_the_throughput() {
        let mut d = DelayBased::new(2e6, 10e3, 10e6);
        feed(&mut d, 0..60, |_| 0);
        assert!(!d.overusing());
        // From frame 60 on, 5 ms more queue per frame.
        feed(&mut d, 60..80, |f| (f - 59).max(0) * 5_000);
        assert!(d.bps() < 1.2e6 * 0.9, "{}", d.bps());
    }

    #[test]
    fn a_probe_raises_and_holds_the_throughput_floor() {
        let mut d = DelayBased::new(1e6, 10e3, 10e6);
        feed(&mut d, 0..60, |_| 0);
        assert_eq!(
            d.update(2_000_000, Some((3e6, Some(3.1e6))), RTT),
            Some(3e6)
        );
        assert_eq!(d.bps(), 3e6);
        // An overuse right after aims at 0.85x the probe's rate, not the old 1.2 Mbit/s.
        feed(&mut d, 60..75, |f| (f - 59).max(0) * 5_000);
        assert!(d.bps() > 2e6, "{}", d.bps());
        // A lower probe result does not lower the rate.
        let mut d = DelayBased::new(2e6, 10e3, 10e6);
        assert_eq!(d.update(0, Some((1e6, None)), RTT), Some(1e6));
        assert_eq!(d.bps(), 2e6);
    }

    #[test]
    fn an_overuse_after_a_saturating_probe_aims_under_what_the_probe_got_through() {
        // An SFU viewer's lowest layer and audio, 240 kbit/s, on a link that carries 300.
        let mut d = DelayBased::new(500e3, 10e3, 10e6);
        feed_packets(&mut d, 0..60, 1, 1000, |_| 0);
        // A probe saturated the link at 300 kbit/s; the queue it built reads as overuse.
        assert_eq!(
            d.update(2_000_000, Some((300e3, Some(310e3))), RTT),
            Some(300e3)
        );
        assert_eq!(
            d.bps(),
            500e3,
            "a lower result does not lower the rate by itself"
        );
        feed_packets(&mut d, 60..75, 1, 1000, |f| (f - 59).max(0) * 5_000);
        assert!(
            d.bps() >= 0.85 * 300e3 - 1.0,
            "aimed at the media's throughput (0.85x 240 kbit/s) instead: {}",
            d.bps()
        );
    }

    #[test]
    fn an_overuse_while_a_probe_is_in_flight_keeps_the_media_rate() {
        // 240 kbit/s of media, the estimate at 300: a probe's queue reads as overuse.
        let mut d = DelayBased::new(300e3, 10e3, 10e6);
        feed_packets(&mut d, 0..60, 1, 1000, |_| 0);
        d.set_probe_in_flight(Some(240e3));
        feed_packets(&mut d, 60..75, 1, 1000, |f| (f - 59).max(0) * 5_000);
        assert!((d.bps() - 240e3).abs() < 1.0, "{}", d.bps());
        // ... however many overuses the probe's queue causes: with the probe's padding the
        // throughput rises over the rate, and the decrease then aims at the link capacity
        // band, which the first overuse fed with the media's 240 kbit/s.
        feed_packets(&mut d, 75..90, 2, 800, |f| (f - 59).max(0) * 5_000);
        assert!((d.bps() - 240e3).abs() < 1.0, "{}", d.bps());
        // Once its result is in, an overuse aims at 0.85x the throughput again.
        d.set_probe_in_flight(None);
        feed_packets(&mut d, 90..105, 1, 1000, |f| (f - 59).max(0) * 5_000);
        assert!(d.bps() < 0.9 * 240e3, "{}", d.bps());
    }

    #[test]
    fn silence_restarts_the_detector() {
        let mut d = DelayBased::new(1e6, 10e3, 10e6);
        assert!(!d.begin_feedback(0));
        assert!(!d.begin_feedback(2_000_000));
        assert!(d.begin_feedback(4_000_001));
    }
}
