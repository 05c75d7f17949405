//! The core's public vocabulary: what goes in (commands, cross-shard messages) and what comes
//! out (`Output`, `CoreEvent`). Plain data; the shard maps `CoreEvent` onto the node API's
//! `NodeEvent` (crate `shardcast-dataplane` depends on this crate, not the other way round).
//! The types a node-API call carries unchanged into the core (`MediaKind`, `PeerRole`,
//! `CreatePeer`, `LayerPreference`) are defined here once, with their serde form, and
//! re-exported by `shardcast_dataplane::node`. Their JSON is the node API's wire format
//! (and, for `MediaKind`, the signaling protocol's): `"audio"`, `"publish"`, `"bind_tracks"`,
//! ... must not change.
//!
//! Nothing here may hold a reference into a peer or allocate per packet except the
//! `Arc<[u8]>` payload str0m already gave us (shared, never copied).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use str0m::format::CodecSpec;

use crate::ids::{PeerId, RoomId, ShardId, TrackId};

/// Simulcast layer index: 0 is the lowest spatial layer (the first rid the publisher lists).
pub type LayerIndex = u8;

/// Audio or video (`"audio"`, `"video"` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Audio,
    Video,
}

impl From<str0m::media::MediaKind> for MediaKind {
    fn from(k: str0m::media::MediaKind) -> Self {
        match k {
            str0m::media::MediaKind::Audio => MediaKind::Audio,
            str0m::media::MediaKind::Video => MediaKind::Video,
        }
    }
}

impl From<MediaKind> for str0m::media::MediaKind {
    fn from(k: MediaKind) -> Self {
        match k {
            MediaKind::Audio => str0m::media::MediaKind::Audio,
            MediaKind::Video => str0m::media::MediaKind::Video,
        }
    }
}

/// Which way media flows for a new peer (`"both"`, `"publish"`, `"subscribe"`, `"play"` on
/// the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRole {
    /// Publishes and subscribes (a conference participant).
    Both,
    /// Only publishes (WHIP).
    Publish,
    /// Only receives; subscriptions add m-lines through server offers (a WebSocket viewer).
    Subscribe,
    /// Only receives, into the m-lines of its own offer and never through a server offer
    /// (WHEP): a subscription takes a free offered m-line of its kind, and an unsubscribed
    /// one frees its line for the next track (a broadcaster who comes later or reconnects).
    Play,
}

impl PeerRole {
    /// Whether media the peer sends is ignored (it only receives).
    pub fn receives_only(self) -> bool {
        matches!(self, PeerRole::Subscribe | PeerRole::Play)
    }
}

impl fmt::Display for PeerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerRole::Both => "both",
            PeerRole::Publish => "publish",
            PeerRole::Subscribe => "subscribe",
            PeerRole::Play => "play",
        })
    }
}

/// A peer to create, at two stages: as the node API receives it, the tracks to bind named by
/// id (`CreatePeer<TrackId>`, `shardcast_dataplane::node::CreatePeer`), and as
/// `ShardCore::create_peer` takes it once the media node has looked those tracks up
/// (`CreatePeer<TrackInfo>`: a track may live on another shard).
#[derive(Debug, Clone, Serialize, Deserialize)]
// `bind_tracks` defaults to empty: no `T: Default` needed (serde would infer one).
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct CreatePeer<T> {
    pub room: RoomId,
    /// The participant's identity inside the room; the msid stream id of the tracks it
    /// publishes.
    pub identity: String,
    pub role: PeerRole,
    /// The client's SDP offer.
    pub offer: String,
    /// For receive-only offers (WHEP): published tracks to bind to the offer's recvonly
    /// m-lines in the answer: each such m-line, in SDP order, gets the next unbound track of
    /// its kind (audio to audio, video to video) as its outgoing stream, with no server
    /// offer. m-lines left over are answered `inactive`; tracks left over are not bound.
    #[serde(default)]
    pub bind_tracks: Vec<T>,
    /// Whether what the peer sends on its room-data channels reaches the room (the control
    /// plane's `canChat`); receiving needs no grant. Absent on the wire: allowed.
    #[serde(default = "allowed")]
    pub can_send_data: bool,
    /// The room's video codecs, most preferred first, as lower-case encoding names (`"vp9"`,
    /// `"vp8"`, `"h264"`): the answers to this peer's offers list those first, so a publisher
    /// sends the first of them it offered. Empty: the offer's own order.
    #[serde(default)]
    pub video_codecs: Vec<String>,
}

fn allowed() -> bool {
    true
}

/// Everything a subscriber's shard must know about a published track to subscribe to it.
/// For a track published on another shard, `track.shard()` differs from this shard and
/// media arrives through `handle_shard_message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    pub track: TrackId,
    pub room: RoomId,
    /// The publisher's identity: the msid stream id the subscriber sees.
    pub publisher_identity: String,
    pub kind: MediaKind,
    /// Simulcast rids, lowest layer first; empty for a single-layer track.
    pub rids: Vec<String>,
}

/// A subscriber's wish for one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerPreference {
    /// Highest layer the subscriber wants (e.g. from its tile size). `None` = best available.
    pub max_layer: Option<LayerIndex>,
    /// Hidden tiles pause the subscription (nothing is forwarded).
    pub visible: bool,
}

impl Default for LayerPreference {
    fn default() -> Self {
        Self {
            max_layer: None,
            visible: true,
        }
    }
}

/// Events for the node API (the shard maps them to `NodeEvent`).
#[derive(Debug, Clone, PartialEq)]
pub enum CoreEvent {
    PeerConnected {
        peer: PeerId,
    },
    PeerClosed {
        peer: PeerId,
        reason: CloseReason,
    },
    TrackPublished {
        peer: PeerId,
        room: RoomId,
        track: TrackId,
        kind: MediaKind,
        identity: String,
        rids: Vec<String>,
        /// The publisher's m-line (`a=mid`): what a client names the track by before it
        /// knows the track id (e.g. to say it carries a screen).
        mid: String,
    },
    TrackUnpublished {
        peer: PeerId,
        room: RoomId,
        track: TrackId,
    },
    ActiveSpeaker {
        room: RoomId,
        peer: PeerId,
    },
    /// A subscriber's video of `track` paused (audio goes on), or resumed (`paused: false`),
    /// for `reason`.
    VideoPaused {
        peer: PeerId,
        track: TrackId,
        paused: bool,
        reason: PauseReason,
    },
    /// A server-initiated offer; answer with `ShardCore::accept_answer`.
    Offer {
        peer: PeerId,
        sdp: String,
    },
}

/// Why a subscription's video is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    /// The subscriber's downlink estimate cannot carry the track's lowest layer.
    #[default]
    Bandwidth,
    /// The subscriber did not negotiate the publisher's codec (e.g. an H.264-only client and
    /// a VP8 publisher): nothing of this track can reach it until a renegotiation adds it.
    Codec,
}

/// Why a peer went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// `close_peer` was called.
    Requested,
    /// ICE consent expired / str0m declared the connection dead.
    Disconnected,
    /// The remote closed DTLS.
    RemoteClosed,
    /// str0m returned an error we cannot recover from.
    Error,
    /// Handling this peer panicked; the peer was dropped, the shard went on.
    Panic,
    /// ICE/DTLS did not complete within `CoreConfig::connect_timeout` of the answer.
    ConnectTimeout,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Requested => "requested",
            CloseReason::Disconnected => "disconnected",
            CloseReason::RemoteClosed => "remote_closed",
            CloseReason::Error => "error",
            CloseReason::Panic => "panic",
            CloseReason::ConnectTimeout => "connect_timeout",
        }
    }
}

/// A decrypted media packet handed to another shard: the publisher's shard decrypts once,
/// each subscriber shard re-encrypts for its own subscribers.
#[derive(Debug, Clone)]
pub struct MediaPacket {
    pub track: TrackId,
    pub layer: LayerIndex,
    pub codec: CodecSpec,
    /// Extended (ROC-carrying) incoming sequence number of the layer.
    pub seq: u64,
    /// RTP timestamp as received.
    pub timestamp: u32,
    pub marker: bool,
    pub keyframe: bool,
    /// RFC 2198 RED: the payload is redundant audio whose blocks are `codec` (checked at
    /// ingress); `None` for a plain payload.
    pub red: Option<crate::forward::red::RedLayout>,
    /// RFC 6464 level (-dBov) when the packet carried one.
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    /// AV1: the frame's layers from its dependency descriptor (None without one, or before
    /// the stream's first template structure).
    pub av1: Option<crate::forward::av1::FrameLayers>,
    /// Arrival time on the publisher's shard.
    pub arrival: Instant,
    pub payload: Arc<[u8]>,
}

/// One point of a publisher's capture clock, in our NTP time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerClock {
    /// Our NTP time (64-bit) at which the publisher's clock read `rtp_ts`.
    pub ntp: u64,
    pub rtp_ts: u32,
}

/// Typed cross-shard messages.
#[derive(Debug, Clone)]
pub enum ShardMessage {
    Media(MediaPacket),
    /// A subscriber on another shard needs a keyframe of `layer`.
    KeyframeRequest {
        track: TrackId,
        layer: LayerIndex,
    },
    /// The publisher's capture clock for one layer, from its sender report, mapped onto
    /// our NTP time: subscriber shards write their sender reports from it.
    SenderClock {
        track: TrackId,
        layer: LayerIndex,
        clock: LayerClock,
    },
    /// The track's publisher went away: subscribers on other shards drop their subscriptions.
    TrackEnded {
        track: TrackId,
    },
    /// A room-data message for the room's members on the receiving shard: `envelope` as
    /// they get it (`data::envelope`), on their channel of `kind`; `from` is not among them.
    Data {
        room: RoomId,
        kind: crate::data::DataKind,
        from: PeerId,
        envelope: Arc<[u8]>,
    },
}

/// What the shard must do next (datagrams come out of `ShardCore::drain_datagrams`).
#[derive(Debug)]
pub enum Output {
    /// Hand a message to another shard (drop and count if its queue is full).
    ToShard {
        shard: ShardId,
        msg: ShardMessage,
    },
    /// Hand a copy of the message to every other shard of the node that has peers (a room's
    /// members may be on any of them; the core does not know which).
    ToEveryShard {
        msg: ShardMessage,
    },
    Event(CoreEvent),
    /// Nothing more now; call `handle_timeout` at this instant.
    Timeout(Instant),
}
