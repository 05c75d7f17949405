//! Published tracks and subscriptions: the routing tables of one shard.
//!
//! A `PublishedTrack` lives on the shard of its publisher (or, for a track published on
//! another shard, as a remote entry holding only this shard's subscribers). A `Subscription`
//! is one subscriber's view of one track: its outgoing m-line and SSRC, its layer state and
//! its rewriters. Must never touch str0m or sockets.

use std::time::{Duration, Instant};

use smallvec::SmallVec;
use str0m::media::{Mid, Pt};
use str0m::rtp::Ssrc;

use crate::api::{LayerIndex, LayerPreference, MediaKind, TrackInfo};
use crate::forward::codec::Vp8Rewriter;
use crate::forward::keyframe::KeyframeRequestCoalescer;
use crate::forward::layer::{LayerConfig, LayerMonitor, LayerSelector};
use crate::forward::rewrite::StreamRewriter;
use crate::ids::{PeerId, ShardId};

pub struct PublishedTrack {
    pub info: TrackInfo,
    /// The local publisher; `None` for a track published on another shard.
    pub publisher: Option<PeerId>,
    pub mid: Option<Mid>,
    pub subscribers: SmallVec<[PeerId; 8]>,
    pub remote_shards: SmallVec<[ShardId; 4]>,
    /// Per-layer bitrate and liveness of a video track, as its packets reach this shard: on
    /// the publisher's shard from str0m, on a subscriber's shard from the hand-off (so a
    /// layer the queue drops looks like a layer the network drops). `None` for audio.
    pub monitor: Option<LayerMonitor>,
    pub muted: bool,
    /// Every keyframe request for this track (local subscriptions, other shards) passes
    /// through here; created on first use with the core's configured interval.
    keyframe_requests: Option<KeyframeRequestCoalescer>,
}

impl PublishedTrack {
    pub fn new(info: TrackInfo, publisher: Option<PeerId>, mid: Option<Mid>) -> Self {
        PublishedTrack {
            publisher,
            mid,
            subscribers: SmallVec::new(),
            remote_shards: SmallVec::new(),
            monitor: (info.kind == MediaKind::Video)
                .then(|| LayerMonitor::new(LayerConfig::default())),
            muted: false,
            keyframe_requests: None,
            info,
        }
    }

    /// The track's keyframe-request coalescer, spacing requests by `interval`.
    pub fn keyframe_requests(&mut self, interval: Duration) -> &mut KeyframeRequestCoalescer {
        self.keyframe_requests
            .get_or_insert_with(|| KeyframeRequestCoalescer::new(interval))
    }

    /// One packet of `layer` arrived: update its state, and let a keyframe reopen the
    /// layer for the next request.
    pub fn on_packet(&mut self, now: Instant, layer: LayerIndex, bytes: usize, keyframe: bool) {
        if let Some(m) = self.monitor.as_mut() {
            m.on_packet(now, layer, bytes);
        }
        if keyframe {
            if let Some(k) = self.keyframe_requests.as_mut() {
                k.on_keyframe(layer);
            }
        }
    }

    pub fn layer_count(&self) -> usize {
        self.info.rids.len().clamp(1, 3)
    }
}

/// One subscriber's view of one track.
pub struct Subscription {
    /// What the subscriber asked for; the selector gets it with each allocation.
    pub preference: LayerPreference,
    /// The sendonly m-line carrying it, once offered.
    pub mid: Option<Mid>,
    /// Our outgoing SSRC on that m-line, once the subscriber answered.
    pub ssrc: Option<Ssrc>,
    /// Publisher pt → subscriber pt, learned per codec.
    pub pt_map: SmallVec<[(Pt, Pt); 2]>,
    pub rewriter: Option<StreamRewriter>,
    pub vp8: Vp8Rewriter,
    /// Extended outgoing seq (str0m wants the ROC too).
    pub out_seq: Option<u64>,
    /// Video: the layer filter (which layer, when to switch, which keyframe it waits for).
    /// Unused for audio, which is never layer-filtered.
    pub selector: LayerSelector,
    /// Audio: the next forwarded packet starts a new rewrite segment (resume after a mute
    /// or a new outgoing stream). Video gets the same from the selector's `ForwardSwitched`.
    pub resume_pending: bool,
}

impl Subscription {
    pub fn new() -> Self {
        Subscription {
            preference: LayerPreference::default(),
            mid: None,
            ssrc: None,
            pt_map: SmallVec::new(),
            rewriter: None,
            vp8: Vp8Rewriter::new(),
            out_seq: None,
            selector: {
                // Until the first allocation (no estimate yet): the lowest layer.
                let mut s = LayerSelector::new(LayerConfig::default());
                s.set_budget(Some(0));
                s
            },
            resume_pending: true,
        }
    }

    /// Start over on the next packet (a new outgoing stream, an unmute): audio opens a new
    /// segment, video waits for a keyframe of its target layer.
    pub fn restart(&mut self) {
        self.resume_pending = true;
        self.selector.restart();
    }

    /// The video layer being forwarded (`None`: audio, nothing yet, or paused).
    pub fn forwarded_layer(&self) -> Option<LayerIndex> {
        self.selector.current()
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

impl Default for Subscription {
    fn default() -> Self {
        Self::new()
    }
}
