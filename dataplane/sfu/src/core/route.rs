//! Route, the second stage of the packet path: one opened media packet from a local publisher
//! (`ingress.rs`) or from another shard → the track's bookkeeping (layer monitor, keyframe
//! coalescing, active speaker, packet history) → one hand-off per other shard with
//! subscribers → per local subscription the layer filter and the sequence/timestamp rewrite,
//! then `egress.rs` writes and seals the copy.
//!
//! Must never copy a payload: the `Arc<[u8]>` ingress allocated is shared by every
//! subscriber, the history and every shard. Must never panic on packet contents.

use std::sync::Arc;
use std::time::Instant;

use str0m::format::CodecSpec;
use tracing::trace;

use crate::api::{
    CoreEvent, LayerIndex, MediaKind, MediaPacket, Output, PauseReason, ShardMessage,
};
use crate::core::egress::{out_format, send_media};
use crate::core::ShardCore;
use crate::forward::layer::{LayerView, Verdict};
use crate::forward::red::RedLayout;
use crate::forward::rewrite::Stale;
use crate::forward::vp9::SvcPacket;
use crate::ids::{PeerId, TrackId};
use crate::track::OutFormat;

/// The fields of one packet the subscriptions need, borrowed from wherever it came from.
#[derive(Clone, Copy)]
pub(crate) struct Fwd<'a> {
    pub track: TrackId,
    pub layer: LayerIndex,
    /// The rewriter's segment key: the publisher's SSRC of this layer on its own shard, a
    /// pseudo-SSRC per layer on other shards.
    pub source: u32,
    /// Extended incoming sequence number of the layer (the history's key).
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub keyframe: bool,
    pub codec: CodecSpec,
    /// RED (RFC 2198): where its blocks are (checked at ingress).
    pub red: Option<RedLayout>,
    /// Video: the track's layers as the selectors see them now (taken once per packet).
    pub layers: Option<LayerView>,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub payload: &'a Arc<[u8]>,
    /// VP9 SVC: the packet's layers, for each subscription's `SvcFilter`.
    pub svc: Option<SvcPacket>,
}

/// The rewriter's segment key of a layer on a subscriber shard.
fn remote_source(track: TrackId, layer: LayerIndex) -> u32 {
    (track.0 as u32)
        .wrapping_mul(4)
        .wrapping_add(u32::from(layer))
}

impl ShardCore {
    /// A media packet of local publisher `from`, its layer's SSRC `source`.
    pub(crate) fn route_local(&mut self, now: Instant, from: PeerId, source: u32, m: MediaPacket) {
        // Active speaker: RFC 6464 levels of the room's audio.
        if let Some(level) = m.audio_level {
            let room = self.peers.get(&from).map(|p| p.room.clone());
            if let Some(room) = room.and_then(|r| self.rooms.get_mut(&r)) {
                room.speaker.feed(now, from, level, m.voice_activity);
            }
        }
        let Some(t) = self.tracks.get(&m.track) else {
            return;
        };
        let remote = if t.muted {
            Default::default()
        } else {
            t.remote_shards.clone()
        };
        for shard in remote {
            self.stats.rtp_to_shards += 1;
            self.out.push_back(Output::ToShard {
                shard,
                msg: ShardMessage::Media(m.clone()),
            });
        }
        self.route(now, source, &m);
    }

    /// A packet handed over by the publisher's shard.
    pub(crate) fn route_remote(&mut self, now: Instant, m: MediaPacket) {
        let source = remote_source(m.track, m.layer);
        if m.payload.is_empty() {
            self.skip_padding(m.track, source, m.seq as u16);
            return;
        }
        self.route(now, source, &m);
    }

    /// A padding-only packet of a local publisher: close its slot for local subscribers,
    /// and tell the other shards (an empty payload) so theirs do the same.
    pub(crate) fn route_padding(
        &mut self,
        track: TrackId,
        layer: LayerIndex,
        source: u32,
        seq: u64,
    ) {
        self.skip_padding(track, source, seq as u16);
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let Some(codec) = t.codec else {
            return; // no media yet: nobody's sequence has a slot to close
        };
        for shard in t.remote_shards.clone() {
            self.out.push_back(Output::ToShard {
                shard,
                msg: ShardMessage::Media(MediaPacket {
                    track,
                    layer,
                    codec,
                    seq,
                    timestamp: 0,
                    marker: false,
                    keyframe: false,
                    red: None,
                    audio_level: None,
                    voice_activity: None,
                    av1: None,
                    arrival: self.next_tick,
                    payload: Arc::from(&[][..]),
                }),
            });
        }
    }

    /// The track's own bookkeeping, then each local subscription.
    fn route(&mut self, now: Instant, source: u32, m: &MediaPacket) {
        let Some(t) = self.tracks.get_mut(&m.track) else {
            return;
        };
        let svc = t.svc_packet(m);
        t.on_packet(now, svc.map_or(m.layer, |p| p.choice), m.payload.len());
        t.codec = Some(m.codec);
        if t.muted {
            return;
        }
        if let Some(h) = t
            .history
            .as_mut()
            .and_then(|h| h.get_mut(usize::from(m.layer)))
        {
            h.insert(m.seq, now, m.payload.len(), m.payload.clone());
        }
        let fwd = Fwd {
            track: m.track,
            layer: m.layer,
            source,
            seq: m.seq,
            timestamp: m.timestamp,
            marker: m.marker,
            keyframe: m.keyframe,
            codec: m.codec,
            red: m.red,
            layers: t.monitor.as_ref().map(|mon| mon.view(now)),
            audio_level: m.audio_level,
            voice_activity: m.voice_activity,
            payload: &m.payload,
            svc,
        };
        let kind = t.info.kind;
        // Copied out so the borrow of `tracks` ends before subscribers are touched, into a
        // buffer the core keeps (no allocation per packet, whatever the fan-out).
        let mut subscribers = std::mem::take(&mut self.route_scratch);
        subscribers.clear();
        subscribers.extend_from_slice(&t.subscribers);
        for sub in &subscribers {
            self.forward_to(now, *sub, kind, &fwd);
        }
        self.route_scratch = subscribers;
    }

    /// A packet of `track` (source `source`) that is not forwarded: each local subscription
    /// sending that source closes its slot.
    fn skip_padding(&mut self, track: TrackId, source: u32, seq: u16) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        for sub in t.subscribers.iter() {
            if let Some(r) = self
                .subs
                .get_mut(&(*sub, track))
                .and_then(|s| s.rewriter.as_mut())
            {
                r.skip(source, seq);
            }
        }
    }

    /// One subscription: layer filter, rewrite, then egress. The subscription and its peer
    /// are looked up once per copy and handed to egress.
    fn forward_to(&mut self, now: Instant, sub_id: PeerId, kind: MediaKind, fwd: &Fwd<'_>) {
        let ShardCore {
            peers,
            subs,
            tx,
            payload_scratch,
            epoch,
            stats,
            out,
            ..
        } = self;
        let Some(sub) = subs.get_mut(&(sub_id, fwd.track)) else {
            return;
        };
        let mut keyframe_wanted = None;
        let mut marker = fwd.marker;
        let forwarded = 'copy: {
            if sub.egress.is_none() {
                break 'copy false;
            }
            let switch = match kind {
                MediaKind::Audio => std::mem::take(&mut sub.resume_pending),
                MediaKind::Video => {
                    let Some(layers) = &fwd.layers else {
                        return;
                    };
                    let verdict;
                    (verdict, marker) = sub.filter(
                        now,
                        layers,
                        fwd.layer,
                        fwd.keyframe,
                        fwd.svc.as_ref(),
                        fwd.marker,
                    );
                    keyframe_wanted = sub.keyframe_needed();
                    match verdict {
                        Verdict::Forward => false,
                        Verdict::ForwardSwitched => {
                            trace!(sub = %sub_id, track = %fwd.track, to = fwd.layer, "layer switch");
                            true
                        }
                        Verdict::Drop => {
                            // Not forwarded: if it belongs to the segment being sent (a
                            // pause), close its slot so the subscriber sees no gap; other
                            // layers' packets are not in that segment and leave nothing to
                            // close.
                            if let Some(r) = sub.rewriter.as_mut() {
                                r.skip(fwd.source, fwd.seq as u16);
                            }
                            break 'copy false;
                        }
                    }
                }
            };
            let Some(peer) = peers.get_mut(&sub_id) else {
                break 'copy false;
            };
            let format = out_format(peer, sub, &fwd.codec, fwd.red.is_some());
            // The subscriber did not negotiate this codec: tell once, and again once a
            // renegotiation adds it.
            if format.is_none() != sub.told_codec_missing {
                sub.told_codec_missing = format.is_none();
                out.push_back(Output::Event(CoreEvent::VideoPaused {
                    peer: sub_id,
                    track: fwd.track,
                    paused: sub.told_codec_missing,
                    reason: PauseReason::Codec,
                }));
            }
            let Some(format) = format else {
                break 'copy false;
            };
            // RED with no primary data (only redundancy) leaves a subscriber without RED
            // nothing to play: its slot is closed instead, as for padding.
            if let (OutFormat::Primary(_), Some(red)) = (format, fwd.red) {
                if red.primary_is_empty(fwd.payload) {
                    if let Some(r) = sub.rewriter.as_mut() {
                        r.skip(fwd.source, fwd.seq as u16);
                    }
                    break 'copy false;
                }
            }
            let clock_rate = fwd.codec.clock_rate.get();
            let rewriter = sub
                .rewriter
                .get_or_insert_with(|| crate::forward::rewrite::StreamRewriter::new(clock_rate));
            let out = match rewriter.rewrite(now, fwd.source, fwd.seq as u16, fwd.timestamp, switch)
            {
                Ok(o) => o,
                Err(Stale::OldSource) | Err(Stale::BeforeSegment) => {
                    keyframe_wanted = None;
                    break 'copy false;
                }
            };
            // SVC: the end of the picture moves to the top layer this subscriber gets.
            let marked;
            let fwd = if marker == fwd.marker {
                fwd
            } else {
                marked = Fwd { marker, ..*fwd };
                &marked
            };
            send_media(
                now,
                *epoch,
                tx,
                payload_scratch,
                peer,
                sub,
                fwd,
                format,
                out,
            )
        };
        if forwarded {
            stats.rtp_forwarded += 1;
        } else {
            stats.rtp_filtered += 1;
        }
        // Still waiting for the target layer's keyframe (while the current one flows, or
        // while this packet was dropped for it).
        if let Some(layer) = keyframe_wanted {
            self.request_keyframe(now, fwd.track, layer, false);
        }
    }
}
