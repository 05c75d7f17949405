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

use crate::api::{LayerIndex, LayerPreference, TrackInfo};
use crate::forward::codec::Vp8Rewriter;
use crate::forward::keyframe::KeyframeRequestCoalescer;
use crate::forward::rewrite::StreamRewriter;
use crate::ids::{PeerId, ShardId};

/// A layer is "arriving" if a packet of it came within this window.
pub const LAYER_ALIVE: Duration = Duration::from_millis(1000);

/// What the core knows about one incoming layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerState {
    pub last_packet: Option<Instant>,
    pub last_keyframe: Option<Instant>,
    /// Bytes in the current measuring window and the rate of the last full window.
    pub window_start: Option<Instant>,
    pub window_bytes: u64,
    pub bitrate_bps: u64,
}

impl LayerState {
    pub fn on_packet(&mut self, now: Instant, bytes: usize, keyframe: bool) {
        self.last_packet = Some(now);
        if keyframe {
            self.last_keyframe = Some(now);
        }
        let start = *self.window_start.get_or_insert(now);
        self.window_bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Duration::from_millis(500) {
            self.bitrate_bps = self.window_bytes * 8 * 1_000_000 / elapsed.as_micros() as u64;
            self.window_bytes = 0;
            self.window_start = Some(now);
        }
    }

    pub fn arriving(&self, now: Instant) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_ALIVE)
    }
}

pub struct PublishedTrack {
    pub info: TrackInfo,
    /// The local publisher; `None` for a track published on another shard.
    pub publisher: Option<PeerId>,
    pub mid: Option<Mid>,
    pub subscribers: SmallVec<[PeerId; 8]>,
    pub remote_shards: SmallVec<[ShardId; 4]>,
    pub layers: [LayerState; 3],
    pub muted: bool,
    /// Every keyframe request for this track (local subscriptions, other shards) passes
    /// through here; created on first use with the core's configured interval.
    keyframe_requests: Option<KeyframeRequestCoalescer>,
}

impl PublishedTrack {
    pub fn new(info: TrackInfo, publisher: Option<PeerId>, mid: Option<Mid>) -> Self {
        PublishedTrack {
            info,
            publisher,
            mid,
            subscribers: SmallVec::new(),
            remote_shards: SmallVec::new(),
            layers: [LayerState::default(); 3],
            muted: false,
            keyframe_requests: None,
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
        if let Some(l) = self.layers.get_mut(usize::from(layer)) {
            l.on_packet(now, bytes, keyframe);
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
    /// Layer being forwarded; `None` until the first keyframe (video) or packet (audio).
    pub current: Option<LayerIndex>,
    /// Layer we want to switch to at its next keyframe.
    pub target: LayerIndex,
    /// The next forwarded packet starts a new segment (switch or resume).
    pub switch_pending: bool,
    /// When `target` last moved up (hold time against oscillation).
    pub last_up: Option<Instant>,
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
            current: None,
            target: 0,
            switch_pending: true,
            last_up: None,
        }
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
