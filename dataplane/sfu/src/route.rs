//! The packet path: one decrypted RTP packet from a publisher (or from another shard) →
//! layer filter, rewrite and `write_rtp` for each local subscription, and one hand-off per
//! other shard with subscribers. Also keyframe requests toward publishers and the per-
//! subscriber layer choice: `forward::layer` does the choosing (a `LayerMonitor` per video
//! track, a `LayerSelector` per video subscription, the `LayerAllocator` per subscriber);
//! this file only feeds it and acts on its verdicts.
//!
//! Must never copy a payload: the `Arc<[u8]>` str0m decrypted into is shared by every
//! subscriber and shard. Must never panic on packet contents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use str0m::format::{Codec, CodecSpec};
use str0m::media::{KeyframeRequestKind, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use tracing::trace;

use crate::api::{LayerIndex, MediaKind, MediaPacket, Output, ShardMessage};
use crate::core::ShardCore;
use crate::forward::codec::{is_keyframe, VideoCodec};
use crate::forward::layer::{LayerAllocator, Verdict, VideoDemand, MAX_LAYERS};
use crate::forward::rewrite::Stale;
use crate::ids::{PeerId, TrackId};
use crate::stats::DropReason;
use crate::track::Subscription;

/// Downlink share set aside per audio subscription before video is placed ("audio first"):
/// Opus at its usual rates plus RTP/SRTP headers stays under this.
const AUDIO_RESERVE_BPS: u64 = 50_000;

/// How often a subscriber held below its wanted layers makes str0m probe for more (see
/// `update_bwe_target`). WebRTC's own periodic probes in an application-limited state are
/// 5 s apart; these are as short, and only while someone waits for a better layer.
const BWE_PROBE_EVERY: Duration = Duration::from_secs(2);

/// The fields of one packet the subscriptions need, borrowed from wherever it came from.
struct Fwd<'a> {
    track: TrackId,
    layer: LayerIndex,
    in_ssrc: u32,
    seq: u16,
    timestamp: u32,
    marker: bool,
    keyframe: bool,
    codec: CodecSpec,
    audio_level: Option<i8>,
    voice_activity: Option<bool>,
    arrival: Instant,
    payload: &'a Arc<[u8]>,
}

fn video_codec(codec: Codec) -> Option<VideoCodec> {
    match codec {
        Codec::Vp8 => Some(VideoCodec::Vp8),
        Codec::Vp9 => Some(VideoCodec::Vp9),
        Codec::H264 => Some(VideoCodec::H264),
        _ => None,
    }
}

impl ShardCore {
    /// A packet str0m decrypted for publisher `from`.
    pub(crate) fn route_local(&mut self, now: Instant, from: PeerId, packet: RtpPacket) {
        self.stats.rtp_in += 1;
        let ssrc = packet.header.ssrc;
        let pt = packet.header.payload_type;
        let Some((route, codec)) = self
            .with_peer(from, |p| Some((p.route_of(ssrc)?, p.codec_of(pt)?)))
            .flatten()
        else {
            trace!(peer = %from, %ssrc, "rtp for unmapped ssrc");
            self.stats.drop(DropReason::UnknownSsrc);
            return;
        };
        if packet.payload.is_empty() {
            // Padding / probes carry no media: not forwarded, so close the hole they would
            // leave in each subscriber's outgoing sequence (it could never be repaired). Other
            // shards' subscribers have the same hole: tell them, with the empty payload.
            self.skip_padding(route.track, *ssrc, packet.header.sequence_number);
            let remote = self
                .tracks
                .get(&route.track)
                .map(|t| t.remote_shards.clone())
                .unwrap_or_default();
            for shard in remote {
                self.out.push_back(Output::ToShard {
                    shard,
                    msg: ShardMessage::Media(MediaPacket {
                        track: route.track,
                        layer: route.layer,
                        codec,
                        seq: *packet.seq_no,
                        timestamp: packet.header.timestamp,
                        marker: packet.header.marker,
                        keyframe: false,
                        audio_level: None,
                        voice_activity: None,
                        arrival: packet.timestamp,
                        payload: packet.payload.clone(),
                    }),
                });
            }
            return;
        }
        let keyframe = video_codec(codec.codec)
            .is_some_and(|c| is_keyframe(c, &packet.payload).unwrap_or(false));
        let ext = &packet.header.ext_vals;
        let fwd = Fwd {
            track: route.track,
            layer: route.layer,
            in_ssrc: *ssrc,
            seq: packet.header.sequence_number,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
            keyframe,
            codec,
            audio_level: ext.audio_level,
            voice_activity: ext.voice_activity,
            arrival: packet.timestamp,
            payload: &packet.payload,
        };
        // Active speaker: RFC 6464 levels of the room's audio.
        if let Some(level) = fwd.audio_level {
            let room = self.peers.get(&from).map(|p| p.room.clone());
            if let Some(room) = room.and_then(|r| self.rooms.get_mut(&r)) {
                room.speaker.feed(now, from, level, fwd.voice_activity);
            }
        }
        let remote = match self.tracks.get_mut(&fwd.track) {
            Some(t) => {
                t.on_packet(now, fwd.layer, fwd.payload.len(), keyframe);
                if t.muted {
                    return;
                }
                t.remote_shards.clone()
            }
            None => return,
        };
        for shard in remote {
            self.stats.rtp_to_shards += 1;
            self.out.push_back(Output::ToShard {
                shard,
                msg: ShardMessage::Media(MediaPacket {
                    track: fwd.track,
                    layer: fwd.layer,
                    codec: fwd.codec,
                    seq: *packet.seq_no,
                    timestamp: fwd.timestamp,
                    marker: fwd.marker,
                    keyframe,
                    audio_level: fwd.audio_level,
                    voice_activity: fwd.voice_activity,
                    arrival: fwd.arrival,
                    payload: packet.payload.clone(),
                }),
            });
        }
        self.fan_out(now, &fwd);
    }

    /// A packet handed over by the publisher's shard.
    pub(crate) fn route_remote(&mut self, now: Instant, m: MediaPacket) {
        // A pseudo-SSRC per layer keeps the rewriter's per-source segments apart.
        let in_ssrc = (m.track.0 as u32)
            .wrapping_mul(4)
            .wrapping_add(u32::from(m.layer));
        if m.payload.is_empty() {
            self.skip_padding(m.track, in_ssrc, m.seq as u16);
            return;
        }
        let Some(t) = self.tracks.get_mut(&m.track) else {
            return;
        };
        t.on_packet(now, m.layer, m.payload.len(), m.keyframe);
        let fwd = Fwd {
            track: m.track,
            layer: m.layer,
            in_ssrc,
            seq: m.seq as u16,
            timestamp: m.timestamp,
            marker: m.marker,
            keyframe: m.keyframe,
            codec: m.codec,
            audio_level: m.audio_level,
            voice_activity: m.voice_activity,
            arrival: m.arrival,
            payload: &m.payload,
        };
        self.fan_out(now, &fwd);
    }

    /// A padding-only packet of `track` (source `in_ssrc`): each local subscription sending
    /// that source closes its slot.
    fn skip_padding(&mut self, track: TrackId, in_ssrc: u32, seq: u16) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        for sub in t.subscribers.iter() {
            if let Some(r) = self
                .subs
                .get_mut(&(*sub, track))
                .and_then(|s| s.rewriter.as_mut())
            {
                r.skip(in_ssrc, seq);
            }
        }
    }

    fn fan_out(&mut self, now: Instant, fwd: &Fwd<'_>) {
        let Some(t) = self.tracks.get(&fwd.track) else {
            return;
        };
        let kind = t.info.kind;
        // Small vec on the stack for typical rooms; the borrow of `tracks` must end before
        // subscribers' str0m instances are touched.
        let subscribers: smallvec::SmallVec<[PeerId; 16]> = t.subscribers.iter().copied().collect();
        for sub in subscribers {
            self.forward_to(now, sub, kind, fwd);
        }
    }

    fn forward_to(&mut self, now: Instant, sub_id: PeerId, kind: MediaKind, fwd: &Fwd<'_>) {
        let Some(sub) = self.subs.get_mut(&(sub_id, fwd.track)) else {
            return;
        };
        let Some(ssrc) = sub.ssrc else {
            self.stats.rtp_filtered += 1;
            return;
        };
        // Layer filter (video) and pause.
        let mut keyframe_wanted = None;
        let switch = match kind {
            MediaKind::Audio => std::mem::take(&mut sub.resume_pending),
            MediaKind::Video => {
                let Some(mon) = self.tracks.get(&fwd.track).and_then(|t| t.monitor.as_ref()) else {
                    return;
                };
                let verdict = sub.selector.on_packet(now, mon, fwd.layer, fwd.keyframe);
                keyframe_wanted = sub.selector.keyframe_needed();
                match verdict {
                    Verdict::Forward => false,
                    Verdict::ForwardSwitched => {
                        trace!(sub = %sub_id, track = %fwd.track, to = fwd.layer, "layer switch");
                        true
                    }
                    Verdict::Drop => {
                        // Not forwarded: if it belongs to the segment being sent (a pause),
                        // close its slot so the subscriber sees no gap; other layers' packets
                        // are not in that segment and leave nothing to close.
                        if let Some(r) = sub.rewriter.as_mut() {
                            r.skip(fwd.in_ssrc, fwd.seq);
                        }
                        self.stats.rtp_filtered += 1;
                        if let Some(layer) = keyframe_wanted {
                            self.request_keyframe(now, fwd.track, layer, false);
                        }
                        return;
                    }
                }
            }
        };
        let clock_rate = fwd.codec.clock_rate.get();
        let rewriter = sub
            .rewriter
            .get_or_insert_with(|| crate::forward::rewrite::StreamRewriter::new(clock_rate));
        let out = match rewriter.rewrite(now, fwd.in_ssrc, fwd.seq, fwd.timestamp, switch) {
            Ok(o) => o,
            Err(Stale::OldSource) | Err(Stale::BeforeSegment) => {
                self.stats.rtp_filtered += 1;
                return;
            }
        };
        let seq = sub.extend_out_seq(out.seq);
        let vp8_patch = if fwd.codec.codec == Codec::Vp8 {
            vp8_patch(sub, fwd.payload, out.new_segment)
        } else {
            None
        };
        let mid = sub.mid;
        let cached_pt = sub
            .pt_map
            .iter()
            .find(|(p, _)| *p == pt_key(&fwd.codec))
            .map(|(_, s)| *s);
        let codec = fwd.codec;
        let res = self.with_peer(sub_id, |p| {
            let pt = match cached_pt {
                Some(pt) => pt,
                None => subscriber_pt(p, mid, &codec)?,
            };
            let ext = ExtensionValues {
                audio_level: fwd.audio_level,
                voice_activity: fwd.voice_activity,
                ..Default::default()
            };
            let mut write = RtpWrite::new(pt, seq.into(), out.ts, fwd.arrival, fwd.payload.clone())
                .marker(fwd.marker)
                .nackable(kind == MediaKind::Video)
                .ext_vals(ext);
            if let Some(patch) = vp8_patch {
                write = write.vp8_patch(patch);
            }
            let mut api = p.rtc.direct_api();
            let tx = api.stream_tx(&ssrc)?;
            tx.write_rtp(write);
            Some(pt)
        });
        match res {
            Some(Some(pt)) => {
                if cached_pt.is_none() {
                    if let Some(sub) = self.subs.get_mut(&(sub_id, fwd.track)) {
                        sub.pt_map.push((pt_key(&fwd.codec), pt));
                    }
                }
                self.stats.rtp_forwarded += 1;
                self.mark_dirty(sub_id);
            }
            _ => self.stats.rtp_filtered += 1,
        }
        // Still waiting for the target layer's keyframe while the current one flows.
        if let Some(layer) = keyframe_wanted {
            self.request_keyframe(now, fwd.track, layer, false);
        }
    }

    /// Ask the publisher of `track` for a keyframe of `layer`, at most once per layer per
    /// `keyframe_request_interval` whoever asks (local subscriptions and other shards go
    /// through the track's `KeyframeRequestCoalescer`; a keyframe arriving reopens the
    /// layer). `force` bypasses the coalescing (a new subscriber must not wait).
    pub(crate) fn request_keyframe(
        &mut self,
        now: Instant,
        track: TrackId,
        layer: LayerIndex,
        force: bool,
    ) {
        let interval = self.config.keyframe_request_interval;
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if t.info.kind != MediaKind::Video {
            return;
        }
        if usize::from(layer) >= t.layer_count() {
            return;
        }
        // A forced request still starts an interval, so the askers right behind it wait.
        let due = t.keyframe_requests(interval).should_send(now, layer);
        if !due && !force {
            return;
        }
        let (publisher, mid) = (t.publisher, t.mid);
        let rid = t
            .info
            .rids
            .get(layer as usize)
            .map(|r| str0m::media::Rid::from(r.as_str()));
        self.stats.keyframe_requests_sent += 1;
        match (publisher, mid) {
            (Some(pubr), Some(mid)) => {
                self.with_peer(pubr, |p| {
                    let mut api = p.rtc.direct_api();
                    if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
                        rx.request_keyframe(KeyframeRequestKind::Pli);
                    }
                });
                self.mark_dirty(pubr);
            }
            _ => self.out.push_back(Output::ToShard {
                shard: track.shard(),
                msg: ShardMessage::KeyframeRequest { track, layer },
            }),
        }
    }

    /// Re-choose the layers of every video subscription of `subscriber`: split its downlink
    /// estimate (minus audio) across them with the `LayerAllocator`, hand each selector its
    /// budget and preference, and ask for the keyframes the chosen switches need. Called on
    /// every estimate, preference change and core tick; not on the packet path.
    pub(crate) fn update_layers_of(&mut self, now: Instant, subscriber: PeerId) {
        let Some(peer) = self.peers.get(&subscriber) else {
            return;
        };
        let estimate = peer.downlink_estimate.map(|b| b.as_u64());
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
        let bwe = self.config.bwe_initial_kbps > 0;
        let mut keyframes: SmallVec<[(TrackId, u8); 4]> = SmallVec::new();
        // Some visible subscription is held below the best layer it allows by its budget.
        let mut held_down = false;
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
            // Without BWE nothing constrains the choice; with it, until the first estimate,
            // a zero budget keeps the subscription on its lowest layer.
            let budget = bwe.then(|| estimate.map_or(0, |_| budget));
            sub.selector.set_preference(sub.preference);
            sub.selector.set_budget(budget);
            sub.selector.update(now, mon);
            let cap = sub.preference.max_layer.map_or(MAX_LAYERS - 1, usize::from);
            let best = (0..=cap.min(MAX_LAYERS - 1))
                .rev()
                .find(|l| demand_bps(&video, track, *l) > 0);
            held_down |= sub.preference.visible
                && matches!((sub.selector.target(), best), (Some(t), Some(b)) if usize::from(t) < b);
            if let (Some(layer), Some(_)) = (sub.selector.keyframe_needed(), sub.ssrc) {
                keyframes.push((*track, layer));
            }
        }
        for (track, layer) in keyframes {
            self.request_keyframe(now, track, layer, false);
        }
        self.update_bwe_target(now, subscriber, &demands, held_down);
    }

    /// Tell str0m's estimator what `subscriber` could use at best (each visible video
    /// subscription's highest allowed layer with the allocator's margin, plus audio), so it
    /// probes for that much and no more: probing for bandwidth nobody will use only causes
    /// loss.
    ///
    /// While a subscription is `held_down` by its budget, str0m's estimator alone climbs back
    /// slowly after the link recovers: we send only the low layer, a steady share of the
    /// estimate that is neither application-limited (no ALR probes) nor enough to move the
    /// delay-based estimate (capped at 1.5x what is acknowledged), so only its 15 s
    /// "stagnant" probe gets it out. str0m probes when the desired bitrate *rises* above the
    /// estimate (an allocation probe at up to 2x the estimate, then exponential probes while
    /// they succeed), so every `BWE_PROBE_EVERY` we lower the desired bitrate to the estimate
    /// for one core tick and restore it on the next: a few probe packets at twice the
    /// estimate, which on a link that is really full cost one short burst.
    fn update_bwe_target(
        &mut self,
        now: Instant,
        subscriber: PeerId,
        demands: &[VideoDemand],
        held_down: bool,
    ) {
        if self.config.bwe_initial_kbps == 0 {
            return;
        }
        let margin = u64::from(LayerAllocator::default().margin_pct);
        let audio = self.peers.get(&subscriber).map_or(0, |p| {
            p.subscriptions.len().saturating_sub(demands.len()) as u64 * AUDIO_RESERVE_BPS
        });
        let video: u64 = demands
            .iter()
            .filter(|d| d.pref.visible)
            .map(|d| {
                let cap = d.pref.max_layer.map_or(MAX_LAYERS - 1, usize::from);
                d.layer_bps.iter().take(cap + 1).max().copied().unwrap_or(0) * margin / 100
            })
            .sum();
        let min = str0m::bwe::Bitrate::bps(self.config.bwe_min_kbps * 1000);
        let desired = (video + audio).max(self.config.bwe_initial_kbps * 1000);
        self.with_peer(subscriber, |p| {
            let estimate = p.downlink_estimate.map_or(0, |b| b.as_u64());
            let probe_due = held_down
                && estimate > 0
                && estimate < desired
                && p.bwe_probe_at.is_none_or(|at| now >= at);
            if probe_due {
                p.bwe_probe_at = Some(now + BWE_PROBE_EVERY);
                p.bwe_desired = estimate;
                p.rtc
                    .bwe()
                    .set_bitrate(min, str0m::bwe::Bitrate::bps(estimate));
            } else if p.bwe_desired.abs_diff(desired) * 10 > p.bwe_desired {
                // Only tell str0m when it moved by more than 10%: it re-plans probes.
                p.bwe_desired = desired;
                p.rtc
                    .bwe()
                    .set_bitrate(min, str0m::bwe::Bitrate::bps(desired));
            }
        });
    }
}

/// The bitrate of `layer` in `track`'s demand (0: not arriving).
fn demand_bps(video: &[(TrackId, VideoDemand)], track: &TrackId, layer: usize) -> u64 {
    video
        .iter()
        .find(|(t, _)| t == track)
        .map_or(0, |(_, d)| d.layer_bps[layer])
}

/// Codec identity used to map a publisher's payload type onto the subscriber's.
fn pt_key(spec: &CodecSpec) -> Pt {
    // The codec enum and clock rate identify it well enough; pack them in a Pt-sized key.
    let c = match spec.codec {
        Codec::Opus => 1,
        Codec::Vp8 => 2,
        Codec::Vp9 => 3,
        Codec::H264 => 4,
        _ => 5,
    };
    Pt::from(c)
}

/// The subscriber's payload type for `codec` on m-line `mid`.
fn subscriber_pt(
    p: &mut crate::peer::Peer,
    mid: Option<str0m::media::Mid>,
    codec: &CodecSpec,
) -> Option<Pt> {
    let mid = mid?;
    let media = p.rtc.media(mid)?;
    let remote: smallvec::SmallVec<[Pt; 8]> = media.remote_pts().iter().copied().collect();
    let params = p.rtc.codec_config().find(|params| {
        let s = params.spec();
        s.codec == codec.codec
            && (remote.is_empty() || remote.contains(&params.pt()))
            && (codec.codec != Codec::H264
                || s.format.profile_level_id == codec.format.profile_level_id)
    });
    let params = params.or_else(|| {
        p.rtc
            .codec_config()
            .find(|params| params.spec().codec == codec.codec && remote.contains(&params.pt()))
    })?;
    Some(params.pt())
}

/// The VP8 picture id / TL0PICIDX patch that keeps them continuous for this subscriber.
fn vp8_patch(
    sub: &mut Subscription,
    payload: &[u8],
    new_segment: bool,
) -> Option<str0m::rtp::Vp8Patch> {
    // The rewriter works in place; run it on a stack copy of the descriptor only (at most
    // 6 bytes + the payload header byte) so the shared payload stays untouched.
    let mut head = [0u8; 8];
    let n = payload.len().min(head.len());
    head[..n].copy_from_slice(&payload[..n]);
    sub.vp8.rewrite(&mut head[..n], new_segment).ok()?;
    let d = crate::forward::codec::Vp8Descriptor::parse(&head[..n]).ok()?;
    let original = str0m::rtp::Vp8Descriptor::parse(payload).ok()?;
    let mut builder = original.patch();
    if let Some((pid, _, _)) = d.picture_id {
        builder = builder.picture_id(pid);
    }
    if let Some((tl0, _)) = d.tl0_pic_idx {
        builder = builder.tl0_pic_idx(tl0);
    }
    builder.build().ok()
}
