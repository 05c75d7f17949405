//! Layer allocation per subscriber: its downlink estimate (from its transport's send-side
//! estimator) minus audio, split across its video subscriptions by `forward::layer`'s
//! `LayerAllocator`; each subscription's `LayerSelector` gets its budget and preference.
//! Runs on every estimate change, preference change and core tick — never per packet.
//! Also tells the estimator what the subscriber could use, so it probes for no more, and
//! the node when a subscription's video pauses because the estimate cannot carry its lowest
//! layer (and when it resumes).
//!
//! Must never decide per packet (the selector does) or touch str0m.

use std::time::Instant;

use smallvec::SmallVec;

use super::ShardCore;
use crate::api::{CoreEvent, Output, PauseReason};
use crate::forward::layer::{LayerAllocator, VideoDemand, MAX_LAYERS};
use crate::ids::{PeerId, TrackId};

/// Downlink share set aside per audio subscription before video is placed ("audio first"):
/// Opus at its usual rates plus RTP/SRTP headers stays under this.
const AUDIO_RESERVE_BPS: u64 = 50_000;
/// What RED adds to that: one redundant Opus frame per packet (libwebrtc's default of one
/// block at Opus's usual 32 kbit/s) in the same packet, so no extra headers. Reserving a
/// second full audio stream instead (100 kbit/s in all) paused the video of a viewer on a
/// 300 kbit/s link that carries the quarter layer and RED audio (tests/e2e/downlink.rs).
const RED_REDUNDANCY_BPS: u64 = 32_000;

/// What the estimator is told the subscriber wants, over what its best layers need
/// ([`ShardCore::update_bwe_target`]): the estimator's "worth probing" step (10%) and a
/// little more.
const PROBE_HEADROOM_PCT: u64 = 115;

impl ShardCore {
    /// Re-choose the layers of every video subscription of `subscriber`: split its downlink
    /// estimate (minus audio) across them with the `LayerAllocator`, hand each selector its
    /// budget and preference, and ask for the keyframes the chosen switches need. Called on
    /// every estimate, preference change and core tick; not on the packet path.
    pub(crate) fn update_layers_of(&mut self, now: Instant, subscriber: PeerId) {
        let Some(peer) = self.peers.get(&subscriber) else {
            return;
        };
        let estimate = peer.downlink_estimate.map(|b| b.as_u64());
        let may_pause = peer.transport.as_ref().is_some_and(|t| t.transport_cc);
        let mut audio_bps = 0;
        let mut video: SmallVec<[(TrackId, VideoDemand); 8]> = SmallVec::new();
        for track in peer.subscriptions.iter().copied() {
            let (Some(t), Some(sub)) =
                (self.tracks.get(&track), self.subs.get(&(subscriber, track)))
            else {
                continue;
            };
            let Some(mon) = t.monitor.as_ref() else {
                audio_bps += AUDIO_RESERVE_BPS;
                if sub.sends_red() {
                    audio_bps += RED_REDUNDANCY_BPS;
                }
                continue;
            };
            let mut layer_bps = [0u64; MAX_LAYERS];
            for (l, bps) in layer_bps.iter_mut().enumerate().take(t.layer_count()) {
                if mon.is_arriving(now, l as u8) {
                    *bps = mon.bitrate(l as u8);
                }
            }
            let demand = VideoDemand {
                pref: sub.preference,
                layer_bps,
            };
            video.push((track, demand));
        }
        let demands: SmallVec<[VideoDemand; 8]> = video.iter().map(|(_, d)| *d).collect();
        let mut budgets: SmallVec<[u64; 8]> = smallvec::smallvec![0; demands.len()];
        if let Some(e) = estimate {
            LayerAllocator::default().allocate(e, audio_bps, &demands, &mut budgets);
        }
        let mut keyframes: SmallVec<[(TrackId, u8); 4]> = SmallVec::new();
        let mut pauses: SmallVec<[(TrackId, bool); 2]> = SmallVec::new();
        for ((track, _), budget) in video.iter().zip(budgets.iter().copied()) {
            let (Some(t), Some(sub)) = (
                self.tracks.get(track),
                self.subs.get_mut(&(subscriber, *track)),
            ) else {
                continue;
            };
            let Some(mon) = t.monitor.as_ref() else {
                continue;
            };
            // No estimate (congestion control off, or a subscriber without transport-cc or
            // REMB that loses nothing): nothing constrains the choice.
            sub.selector.set_preference(sub.preference);
            sub.selector.set_may_pause(may_pause);
            sub.selector.set_budget(estimate.map(|_| budget));
            sub.selector.update(now, mon);
            // The selector also decides on every packet: tell what changed since we last
            // told, whichever path changed it.
            let paused = sub.selector.paused_for_bandwidth();
            if paused != sub.told_paused {
                sub.told_paused = paused;
                pauses.push((*track, paused));
            }
            if let (Some(layer), Some(_)) = (sub.keyframe_needed(), sub.egress.as_ref()) {
                keyframes.push((*track, layer));
            }
        }
        for (track, paused) in pauses {
            tracing::debug!(peer = %subscriber, %track, paused, ?estimate, "video paused for bandwidth");
            self.out.push_back(Output::Event(CoreEvent::VideoPaused {
                peer: subscriber,
                track,
                paused,
                reason: PauseReason::Bandwidth,
            }));
        }
        for (track, layer) in keyframes {
            self.request_keyframe(now, track, layer, false);
        }
        self.update_bwe_target(now, subscriber, audio_bps, &demands);
    }

    /// Tell the subscriber's estimator what it could use at best (each visible video
    /// subscription's highest allowed layer with the allocator's margin, plus audio's
    /// reserve), so it probes for that much and no more: probing for bandwidth nobody will
    /// use only causes loss. Only a change of more than 10% is passed on (the estimator
    /// re-plans probes).
    ///
    /// Passed on with [`PROBE_HEADROOM_PCT`]: the estimator stops probing once its estimate
    /// is within 10% of what is wanted, and the selectors switch up (or resume a paused
    /// video) only when the estimate reaches the layer's need with margin. Without it, a
    /// subscriber whose paused video needs 550 kbit/s sat at an estimate of 530 (too little to
    /// resume, too close to probe; sending only audio, the AIMD may not rise above 1.5x
    /// what is sent), for good (dataplane/sfu/tests/rtcp.rs,
    /// `video_pauses_while_the_downlink_cannot_carry_the_lowest_layer_and_audio_goes_on`).
    fn update_bwe_target(
        &mut self,
        now: Instant,
        subscriber: PeerId,
        audio: u64,
        demands: &[VideoDemand],
    ) {
        let margin = u64::from(LayerAllocator::default().margin_pct);
        let Some(peer) = self.peers.get_mut(&subscriber) else {
            return;
        };
        let video: u64 = demands
            .iter()
            .filter(|d| d.pref.visible)
            .map(|d| {
                let cap = d.pref.max_layer.map_or(MAX_LAYERS - 1, usize::from);
                d.layer_bps.iter().take(cap + 1).max().copied().unwrap_or(0) * margin / 100
            })
            .sum();
        let desired = (video + audio) * PROBE_HEADROOM_PCT / 100;
        let Some(bwe) = peer.transport.as_mut().and_then(|t| t.bwe.as_mut()) else {
            return;
        };
        if peer.bwe_desired.abs_diff(desired) * 10 > peer.bwe_desired.max(1) {
            peer.bwe_desired = desired;
            bwe.set_desired(now, desired);
        }
    }
}
