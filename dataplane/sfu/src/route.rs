//! The packet path: one decrypted RTP packet from a publisher (or from another shard) →
//! layer filter, rewrite and `write_rtp` for each local subscription, and one hand-off per
//! other shard with subscribers. Also keyframe requests toward publishers and the per-
//! subscriber layer choice.
//!
//! Must never copy a payload: the `Arc<[u8]>` str0m decrypted into is shared by every
//! subscriber and shard. Must never panic on packet contents.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::{Codec, CodecSpec};
use str0m::media::{KeyframeRequestKind, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};
use tracing::trace;

use crate::api::{LayerIndex, MediaKind, MediaPacket, Output, ShardMessage};
use crate::core::ShardCore;
use crate::forward::codec::{is_keyframe, VideoCodec};
use crate::forward::rewrite::Stale;
use crate::ids::{PeerId, TrackId};
use crate::stats::DropReason;
use crate::track::Subscription;

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
            // leave in each subscriber's outgoing sequence (it could never be repaired).
            let subs = self
                .tracks
                .get(&route.track)
                .map(|t| t.subscribers.clone())
                .unwrap_or_default();
            for sub in subs {
                if let Some(s) = self.subs.get_mut(&(sub, route.track)) {
                    if let Some(r) = s.rewriter.as_mut() {
                        r.skip(*ssrc, packet.header.sequence_number);
                    }
                }
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
        let Some(t) = self.tracks.get_mut(&m.track) else {
            return;
        };
        t.on_packet(now, m.layer, m.payload.len(), m.keyframe);
        // A pseudo-SSRC per layer keeps the rewriter's per-source segments apart.
        let fwd = Fwd {
            track: m.track,
            layer: m.layer,
            in_ssrc: (m.track.0 as u32)
                .wrapping_mul(4)
                .wrapping_add(u32::from(m.layer)),
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
        let switch = match kind {
            MediaKind::Audio => std::mem::take(&mut sub.switch_pending),
            MediaKind::Video => {
                if !sub.preference.visible {
                    sub.current = None;
                    sub.switch_pending = true;
                    self.stats.rtp_filtered += 1;
                    return;
                }
                if sub.current != Some(fwd.layer) {
                    if fwd.layer == sub.target && fwd.keyframe {
                        trace!(sub = %sub_id, track = %fwd.track, from = ?sub.current, to = fwd.layer, "layer switch");
                        sub.current = Some(fwd.layer);
                        sub.switch_pending = true;
                    } else {
                        self.stats.rtp_filtered += 1;
                        return;
                    }
                }
                std::mem::take(&mut sub.switch_pending)
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
        if usize::from(layer) >= t.layers.len() {
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

    /// Re-choose the target layer of every video subscription of `subscriber`.
    pub(crate) fn update_layers_of(&mut self, now: Instant, subscriber: PeerId) {
        let tracks = match self.peers.get(&subscriber) {
            Some(p) => p.subscriptions.clone(),
            None => return,
        };
        // What this subscriber could use at best: the estimator probes for that much and
        // no more (probing for bandwidth nobody will use only causes loss on thin links).
        let mut desired: u64 = 0;
        for track in &tracks {
            self.update_layer_choice(now, subscriber, *track);
            if let Some(t) = self.tracks.get(track) {
                desired += match t.info.kind {
                    MediaKind::Audio => 50_000,
                    MediaKind::Video => {
                        let top = (0..t.layer_count())
                            .map(|l| t.layers[l].bitrate_bps)
                            .max()
                            .unwrap_or(0);
                        top * 115 / 100
                    }
                };
            }
        }
        let min = self.config.bwe_min_kbps * 1000;
        let desired = desired.max(self.config.bwe_initial_kbps * 1000);
        if self.config.bwe_initial_kbps > 0 {
            self.with_peer(subscriber, |p| {
                // Only tell str0m when it moved by more than 10%: it re-plans probes.
                if p.bwe_desired.abs_diff(desired) * 10 > p.bwe_desired {
                    p.bwe_desired = desired;
                    p.rtc.bwe().set_bitrate(
                        str0m::bwe::Bitrate::bps(min),
                        str0m::bwe::Bitrate::bps(desired),
                    );
                }
            });
        }
    }

    /// Choose the layer `subscriber` should get for `track` and request its keyframe when
    /// it differs from what is forwarded.
    pub(crate) fn update_layer_choice(&mut self, now: Instant, subscriber: PeerId, track: TrackId) {
        let Some(peer) = self.peers.get(&subscriber) else {
            return;
        };
        let estimate = peer.downlink_estimate.map(|b| b.as_u64());
        let video_subs = peer
            .subscriptions
            .iter()
            .filter(|t| {
                self.tracks
                    .get(t)
                    .is_some_and(|t| t.info.kind == MediaKind::Video)
            })
            .count()
            .max(1) as u64;
        let audio_subs =
            peer.subscriptions.len() as u64 - video_subs.min(peer.subscriptions.len() as u64);
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        if t.info.kind != MediaKind::Video {
            return;
        }
        let Some(sub) = self.subs.get_mut(&(subscriber, track)) else {
            return;
        };
        if !sub.preference.visible {
            return;
        }
        // Audio first: reserve its share, split the rest evenly across video.
        let budget = estimate.map(|e| e.saturating_sub(audio_subs * 50_000) / video_subs);
        let max = sub
            .preference
            .max_layer
            .unwrap_or(u8::MAX)
            .min(t.layer_count() as u8 - 1);
        let arriving: smallvec::SmallVec<[u8; 3]> = (0..t.layer_count() as u8)
            .filter(|l| t.layers[*l as usize].arriving(now))
            .collect();
        let Some(&lowest) = arriving.first() else {
            return;
        };
        let mut target = lowest;
        for &l in arriving.iter().filter(|l| **l <= max) {
            let rate = t.layers[l as usize].bitrate_bps;
            let fits = match budget {
                // A layer not measured yet (first half second) does not fit: start low.
                Some(b) if rate > 0 => rate * 115 / 100 <= b,
                // Headroom: keep 15% margin so a layer at the edge does not oscillate.
                _ => false,
            };
            if fits || l == lowest {
                target = l;
            }
        }
        // Going up waits a hold time after the last change; going down is immediate.
        if target > sub.target {
            if sub.last_up.is_some_and(|at| {
                now.saturating_duration_since(at) < std::time::Duration::from_secs(2)
            }) {
                return;
            }
            sub.last_up = Some(now);
        }
        sub.target = target;
        if sub.current != Some(target) && sub.ssrc.is_some() {
            self.request_keyframe(now, track, target, false);
        }
    }
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
