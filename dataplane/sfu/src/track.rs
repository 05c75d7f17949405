//! Published tracks and subscriptions: the routing tables of one shard.
//!
//! A `PublishedTrack` lives on the shard of its publisher (or, for a track published on
//! another shard, as a remote entry holding only this shard's subscribers); it keeps the
//! track's packet history (one payload copy per packet, for every subscriber's NACKs) and
//! the publisher's clock per layer. A `Subscription` is one subscriber's view of one track:
//! its outgoing m-line and SSRC, its layer state, its rewriters and what it sent. Must
//! never touch str0m or sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcast_rtp::recv::PacketHistory;
use shardcast_rtp::rtp::ExtIds;
use smallvec::SmallVec;
use str0m::media::{Mid, Pt};

use crate::api::{LayerClock, LayerIndex, LayerPreference, MediaKind, TrackInfo};
use crate::forward::codec::PictureIdRewriter;
use crate::forward::keyframe::KeyframeRequestCoalescer;
use crate::forward::layer::MAX_LAYERS;
use crate::forward::layer::{LayerConfig, LayerMonitor, LayerSelector, LayerView, Verdict};
use crate::forward::rewrite::StreamRewriter;
use crate::forward::vp9::{SvcFilter, SvcPacket, SvcTrack, Vp9Descriptor};
use crate::ids::{PeerId, ShardId};
use crate::transport::sent::SentRing;

/// Packet history per video layer: about a second of a 2.5 Mbit/s layer, which covers the
/// NACKs a subscriber can still use (libwebrtc gives a packet up after ~1 s).
const HISTORY_PACKETS: usize = 512;
const HISTORY_AGE: Duration = Duration::from_millis(1500);
const HISTORY_BYTES: usize = 1 << 20;

/// One layer's recent packets: the shared payload of each, by extended sequence number.
pub type LayerHistory = PacketHistory<Arc<[u8]>>;

pub struct PublishedTrack {
    pub info: TrackInfo,
    /// The local publisher; `None` for a track published on another shard.
    pub publisher: Option<PeerId>,
    pub subscribers: SmallVec<[PeerId; 8]>,
    pub remote_shards: SmallVec<[ShardId; 4]>,
    /// Per-layer bitrate and liveness of a video track, as its packets reach this shard: on
    /// the publisher's shard from str0m, on a subscriber's shard from the hand-off (so a
    /// layer the queue drops looks like a layer the network drops). `None` for audio.
    pub monitor: Option<LayerMonitor>,
    pub muted: bool,
    /// The codec of the last packet routed (None before the first).
    pub codec: Option<str0m::format::CodecSpec>,
    /// Video: the last second of packets per layer (by extended incoming sequence number),
    /// one shared payload each, to answer subscribers' NACKs. `None` for audio.
    pub history: Option<Box<[LayerHistory; MAX_LAYERS]>>,
    /// Per layer, the publisher's capture clock mapped onto ours: the NTP time (our clock)
    /// of one RTP timestamp, from the publisher's sender reports.
    pub clocks: [Option<LayerClock>; MAX_LAYERS],
    /// Every keyframe request for this track (local subscriptions, other shards) passes
    /// through here; created on first use with the core's configured interval.
    keyframe_requests: Option<KeyframeRequestCoalescer>,
    /// VP9 without simulcast: its spatial/temporal layering, once packets show one.
    pub svc: SvcTrack,
}

impl PublishedTrack {
    pub fn new(info: TrackInfo, publisher: Option<PeerId>) -> Self {
        PublishedTrack {
            publisher,
            subscribers: SmallVec::new(),
            remote_shards: SmallVec::new(),
            monitor: (info.kind == MediaKind::Video)
                .then(|| LayerMonitor::new(LayerConfig::default())),
            muted: false,
            codec: None,
            history: (info.kind == MediaKind::Video).then(|| {
                Box::new(std::array::from_fn(|_| {
                    PacketHistory::new(HISTORY_PACKETS, HISTORY_AGE, HISTORY_BYTES)
                }))
            }),
            clocks: [None; MAX_LAYERS],
            keyframe_requests: None,
            svc: SvcTrack::default(),
            info,
        }
    }

    /// The track's keyframe-request coalescer, spacing requests by `interval`.
    pub fn keyframe_requests(&mut self, interval: Duration) -> &mut KeyframeRequestCoalescer {
        self.keyframe_requests
            .get_or_insert_with(|| KeyframeRequestCoalescer::new(interval))
    }

    /// One packet of `layer` arrived: update its bitrate and liveness.
    pub fn on_packet(&mut self, now: Instant, layer: LayerIndex, bytes: usize) {
        if let Some(m) = self.monitor.as_mut() {
            m.on_packet(now, layer, bytes);
        }
    }

    /// Layer choices: simulcast layers, or an SVC stream's (see `forward::vp9::SvcShape`).
    pub fn layer_count(&self) -> usize {
        let simulcast = self.info.rids.len().clamp(1, 3);
        if self.svc.is_layered() {
            simulcast.max(self.svc.shape().choices())
        } else {
            simulcast
        }
    }

    /// A VP9 packet of a track without simulcast, with layer indices, or an AV1 one whose
    /// dependency descriptor named its layers: what every subscription's `SvcFilter` reads
    /// of it (parsed once per packet). The monitor then counts it under its layer choice,
    /// cumulatively. `None` for anything else.
    pub fn svc_packet(&mut self, m: &crate::api::MediaPacket) -> Option<SvcPacket> {
        if self.info.rids.len() > 1 {
            return None;
        }
        let p = match (m.codec.codec, m.av1) {
            (str0m::format::Codec::Vp9, _) => {
                // Ingress dropped (and counted) packets whose descriptor does not parse.
                let d = Vp9Descriptor::parse(&m.payload).ok()?;
                self.svc.on_packet(&d, m.timestamp)?
            }
            (str0m::format::Codec::Av1, Some(l)) => self.svc.on_av1(&l, m.keyframe, m.timestamp)?,
            _ => return None,
        };
        if let Some(m) = self.monitor.as_mut() {
            m.set_cumulative(true);
        }
        Some(p)
    }
}

/// A mid's bytes for the RTP header extension (at most 16, RFC 8843 allows any length
/// but str0m keeps 16).
#[derive(Debug, Clone, Copy)]
pub struct MidWire {
    bytes: [u8; 16],
    len: u8,
}

impl MidWire {
    pub fn new(mid: &Mid) -> Self {
        let s: &str = mid;
        let len = s.len().min(16);
        let mut bytes = [0u8; 16];
        bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        MidWire {
            bytes,
            len: len as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// How one format of the publisher's goes out on a subscription's m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    /// The payload as received, under the subscriber's payload type for its codec.
    Plain(u8),
    /// RED (RFC 2198) kept: the subscriber's RED payload type on this m-line, and its
    /// payload type for the primary codec, which every block's header is set to.
    Red { pt: u8, blocks: u8 },
    /// RED to a subscriber that did not negotiate it: the primary block alone, under the
    /// subscriber's payload type for the primary codec.
    Primary(u8),
}

impl OutFormat {
    /// The payload type on the wire.
    pub fn pt(self) -> u8 {
        match self {
            OutFormat::Plain(pt) | OutFormat::Primary(pt) | OutFormat::Red { pt, .. } => pt,
        }
    }
}

/// One subscriber's view of one track.
pub struct Subscription {
    /// What the subscriber asked for; the selector gets it with each allocation.
    pub preference: LayerPreference,
    /// The sendonly m-line carrying it, once offered (set with `set_mid`).
    pub mid: Option<Mid>,
    /// `mid` as the header extension writes it, converted once: str0m's `Mid` checks and
    /// trims its padded bytes on every read, which is per copy on the egress path.
    pub mid_wire: Option<MidWire>,
    /// How it goes out, once the subscriber answered.
    pub egress: Option<Egress>,
    /// Publisher format (codec, RED or not; see `egress::format_key`) → how it goes out,
    /// learned on its first packet.
    pub pt_map: SmallVec<[(Pt, OutFormat); 2]>,
    pub rewriter: Option<StreamRewriter>,
    /// VP8 / VP9 picture id and TL0PICIDX numbering.
    pub pictures: PictureIdRewriter,
    /// VP9 SVC: which spatial/temporal layers pass (the selector picks the choice).
    pub svc: SvcFilter,
    /// Extended outgoing seq (str0m wants the ROC too).
    pub out_seq: Option<u64>,
    /// Video: the layer filter (which layer, when to switch, which keyframe it waits for).
    /// Unused for audio, which is never layer-filtered.
    pub selector: LayerSelector,
    /// Audio: the next forwarded packet starts a new rewrite segment (resume after a mute
    /// or a new outgoing stream). Video gets the same from the selector's `ForwardSwitched`.
    pub resume_pending: bool,
    /// Video: whether the subscriber was last told its video is paused for bandwidth.
    pub told_paused: bool,
    /// The node was told this subscriber cannot get the track's codec (see `route`).
    pub told_codec_missing: bool,
}

impl Subscription {
    pub fn set_mid(&mut self, mid: Mid) {
        self.mid = Some(mid);
        self.mid_wire = Some(MidWire::new(&mid));
    }

    pub fn new() -> Self {
        Subscription {
            preference: LayerPreference::default(),
            mid: None,
            mid_wire: None,
            egress: None,
            pt_map: SmallVec::new(),
            rewriter: None,
            pictures: PictureIdRewriter::new(),
            svc: SvcFilter::new(),
            out_seq: None,
            selector: {
                // Until the first allocation (no estimate yet): the lowest layer.
                let mut s = LayerSelector::new(LayerConfig::default());
                s.set_budget(Some(0));
                s
            },
            resume_pending: true,
            told_paused: false,
            told_codec_missing: false,
        }
    }

    /// Start over on the next packet (a new outgoing stream, an unmute): audio opens a new
    /// segment, video waits for a keyframe of its target layer.
    pub fn restart(&mut self) {
        self.resume_pending = true;
        self.selector.restart();
    }

    /// The video layer (simulcast stream) being forwarded (`None`: audio, nothing yet, or
    /// paused); an SVC stream is layer 0.
    pub fn forwarded_layer(&self) -> Option<LayerIndex> {
        if self.svc.is_active() {
            return self.svc.ceiling().map(|_| 0);
        }
        self.selector.current()
    }

    /// The layer (simulcast stream) a keyframe is needed on, while a switch is pending. Ask
    /// every time a packet arrives or a timer fires; the coalescer keeps the rate down.
    pub fn keyframe_needed(&self) -> Option<LayerIndex> {
        if self.svc.is_active() {
            return self.svc.keyframe_needed(&self.selector).then_some(0);
        }
        self.selector.keyframe_needed()
    }

    /// The layer filter for one video packet of `layer` (`keyframe`: it starts one): the
    /// selector's verdict, or for an SVC packet the `SvcFilter`'s. Also the marker bit to send
    /// (SVC: the end of the picture as this subscriber gets it).
    pub fn filter(
        &mut self,
        now: Instant,
        view: &LayerView,
        layer: LayerIndex,
        keyframe: bool,
        svc: Option<&SvcPacket>,
        marker: bool,
    ) -> (Verdict, bool) {
        match svc {
            Some(p) => {
                let v = self.svc.on_packet(now, &mut self.selector, view, p);
                (v.verdict, marker || v.marker)
            }
            None => (
                self.selector.on_packet_with(now, view, layer, keyframe),
                marker,
            ),
        }
    }

    /// Whether it forwards RED (about twice the audio bitrate).
    pub fn sends_red(&self) -> bool {
        self.pt_map
            .iter()
            .any(|(_, f)| matches!(f, OutFormat::Red { .. }))
    }

    /// Extend a 16-bit outgoing seq to the 64-bit form str0m takes (ROC in the upper bits).
    pub fn extend_out_seq(&mut self, seq: u16) -> u64 {
        let ext = match self.out_seq {
            None => u64::from(seq),
            Some(last) => {
                let base = last & !0xffff;
                let cand = base | u64::from(seq);
                // Pick the candidate closest to the last value.
                let up = cand.wrapping_add(1 << 16);
                let down = cand.wrapping_sub(1 << 16);
                [cand, up, down]
                    .into_iter()
                    .filter(|c| *c < (1u64 << 48))
                    .min_by_key(|c| c.abs_diff(last))
                    .unwrap_or(cand)
            }
        };
        if self.out_seq.is_none_or(|l| ext > l) {
            self.out_seq = Some(ext);
        }
        ext
    }
}

/// One outgoing stream: what a subscription needs to write and repair its packets.
pub struct Egress {
    pub ssrc: u32,
    /// RFC 4588 retransmissions: our RTX SSRC, when the subscriber negotiated RTX.
    pub rtx_ssrc: Option<u32>,
    /// The header extension ids the subscriber negotiated on this m-line.
    pub ext: ExtIds,
    /// Next RTX sequence number, extended (the ROC of the RTX stream is in the high bits).
    pub rtx_seq: u64,
    /// Video: what was sent, by outgoing sequence number (for NACKs).
    pub sent: Option<SentRing>,
    /// For sender reports.
    pub packets: u32,
    pub octets: u32,
    /// The last timestamp sent and when.
    pub last: Option<(u32, Instant)>,
}

impl Egress {
    pub fn new(ssrc: u32, rtx_ssrc: Option<u32>, ext: ExtIds, video: bool) -> Self {
        Egress {
            ssrc,
            rtx_ssrc,
            ext,
            rtx_seq: u64::from(fastrand::u16(..)),
            sent: video.then(SentRing::new),
            packets: 0,
            octets: 0,
            last: None,
        }
    }
}

impl Egress {
    /// The next RTX sequence number and its rollover counter.
    pub fn next_rtx(&mut self) -> (u16, u32) {
        let s = self.rtx_seq;
        self.rtx_seq += 1;
        (s as u16, (s >> 16) as u32)
    }
}

impl Default for Subscription {
    fn default() -> Self {
        Self::new()
    }
}
