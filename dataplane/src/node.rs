//! The node API: what the control plane asks of a media node.
//!
//! One trait, two implementations: `InProcessNode` (all-in-one `shardcast serve`, calls go
//! straight to the shards over their command queues) and the control plane's HTTP client for a
//! media node running as its own process. Both must behave the same; the types here are the
//! wire types of the remote form too, so they are plain serde data. Those the core takes as
//! they are (`PeerRole`, `CreatePeer`, `LayerPreference`, `MediaKind`) are defined once in
//! `shardcast_sfu::api` and re-exported here.
//!
//! Server-initiated offers (when a subscription adds or removes an m-line) are not return
//! values: they arrive as `NodeEvent::Offer` so that one outstanding offer per peer is the
//! node's business, not the caller's.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub use shardcast_sfu::api::{LayerIndex, LayerPreference, MediaKind, PauseReason, PeerRole};
pub use shardcast_sfu::ids::{PeerId, RoomId, TrackId};

/// What `create_peer` is asked: the tracks to bind named by id; the media node looks them up
/// and hands the core a `CreatePeer<TrackInfo>` (one type, defined in `shardcast_sfu::api`).
pub type CreatePeer = shardcast_sfu::api::CreatePeer<TrackId>;

/// A boxed future, so the trait stays object safe (`Arc<dyn MediaNodeApi>`).
pub type NodeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, NodeError>> + Send + 'a>>;

/// What the control plane can ask of a media node.
pub trait MediaNodeApi: Send + Sync + 'static {
    /// Create a peer connection from a client's SDP offer; returns the SDP answer.
    fn create_peer(&self, request: CreatePeer) -> NodeFuture<'_, CreatedPeer>;
    /// The client re-offers (e.g. it added a track, or an ICE restart); returns the answer.
    fn renegotiate(&self, peer: PeerId, offer: String) -> NodeFuture<'_, String>;
    /// The client's answer to a server offer delivered as `NodeEvent::Offer`.
    fn accept_answer(&self, peer: PeerId, answer: String) -> NodeFuture<'_, ()>;
    /// Candidates the client trickled after its offer (`candidate:…` strings, RFC 8839);
    /// a malformed one is `BadSdp` and none of them is added.
    fn add_candidates(&self, peer: PeerId, candidates: Vec<String>) -> NodeFuture<'_, ()>;
    /// Forward `track` to `subscriber`. May lead to a `NodeEvent::Offer` for the subscriber.
    fn subscribe(&self, subscriber: PeerId, track: TrackId) -> NodeFuture<'_, ()>;
    /// Stop forwarding `track` to `subscriber` and remove its m-line (renegotiation follows).
    fn unsubscribe(&self, subscriber: PeerId, track: TrackId) -> NodeFuture<'_, ()>;
    /// Quality / visibility preference of one subscription.
    fn set_preference(
        &self,
        subscriber: PeerId,
        track: TrackId,
        preference: LayerPreference,
    ) -> NodeFuture<'_, ()>;
    /// Host control: stop (muted = true) or resume forwarding a published track to everyone.
    fn set_track_muted(&self, track: TrackId, muted: bool) -> NodeFuture<'_, ()>;
    /// Grant or revoke a peer's right to send room data on its data channels (the control
    /// plane's `canChat`; `CreatePeer::can_send_data` sets it at creation).
    fn set_can_send_data(&self, peer: PeerId, allowed: bool) -> NodeFuture<'_, ()>;
    /// Close a peer and free all its state. Unknown peers are not an error.
    fn close_peer(&self, peer: PeerId) -> NodeFuture<'_, ()>;
    /// Current load, for placement.
    fn load(&self) -> NodeFuture<'_, NodeLoad>;
    /// A receiver of every event from now on. Each caller gets its own receiver.
    fn events(&self) -> tokio::sync::broadcast::Receiver<NodeEvent>;
    /// The state the node's events describe, now: live peers, their tracks and unanswered
    /// server offers, and each room's active speaker. For a reader of `events()` that lagged
    /// (lost events) to catch up.
    fn snapshot(&self) -> NodeFuture<'_, NodeSnapshot>;
}

/// What a node's events add up to at one moment (see [`MediaNodeApi::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSnapshot {
    /// Live peers, by id.
    pub peers: Vec<PeerSnapshot>,
    /// Per room, the peer of its last `ActiveSpeaker` event, while that peer lives.
    pub speakers: Vec<RoomSpeaker>,
}

/// A live peer in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerSnapshot {
    pub peer: PeerId,
    /// `PeerConnected` was sent.
    pub connected: bool,
    /// Its published tracks, in publishing order.
    pub tracks: Vec<TrackSnapshot>,
    /// The last server offer (`NodeEvent::Offer`) not yet followed by an answer or a client
    /// offer.
    pub pending_offer: Option<String>,
}

impl PeerSnapshot {
    pub fn new(peer: PeerId) -> Self {
        Self {
            peer,
            connected: false,
            tracks: Vec::new(),
            pending_offer: None,
        }
    }
}

/// Follows one event in a model of live peers: the one place that says what connect,
/// close, publish, unpublish and offer do to it (the shards' snapshot state, the node API's
/// event log and `RemoteNode`'s record of what it told its callers all keep this model).
/// Returns the peer a `PeerClosed` removed, so the caller can forget its room speakers;
/// `ActiveSpeaker` is left to the caller.
pub fn follow_peers(
    peers: &mut std::collections::BTreeMap<PeerId, PeerSnapshot>,
    ev: &NodeEvent,
) -> Option<PeerId> {
    match ev {
        NodeEvent::PeerConnected { peer } => {
            peers
                .entry(*peer)
                .or_insert_with(|| PeerSnapshot::new(*peer))
                .connected = true;
        }
        NodeEvent::PeerClosed { peer, .. } => {
            peers.remove(peer);
            return Some(*peer);
        }
        NodeEvent::TrackPublished {
            peer,
            room,
            track,
            kind,
            rids,
            mid,
        } => {
            let p = peers
                .entry(*peer)
                .or_insert_with(|| PeerSnapshot::new(*peer));
            if !p.tracks.iter().any(|t| t.track == *track) {
                p.tracks.push(TrackSnapshot {
                    room: room.clone(),
                    track: *track,
                    kind: *kind,
                    rids: rids.clone(),
                    mid: mid.clone(),
                });
            }
        }
        NodeEvent::TrackUnpublished { peer, track, .. } => {
            if let Some(p) = peers.get_mut(peer) {
                p.tracks.retain(|t| t.track != *track);
            }
        }
        NodeEvent::Offer { peer, sdp } => {
            peers
                .entry(*peer)
                .or_insert_with(|| PeerSnapshot::new(*peer))
                .pending_offer = Some(sdp.clone());
        }
        // Moments, not state of the peer model (a paused video is told to the client at
        // once and resumed the same way).
        NodeEvent::ActiveSpeaker { .. } | NodeEvent::VideoPaused { .. } => {}
    }
    None
}

/// A published track in a snapshot (the fields of `NodeEvent::TrackPublished`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackSnapshot {
    pub room: RoomId,
    pub track: TrackId,
    pub kind: MediaKind,
    pub rids: Vec<String>,
    #[serde(default)]
    pub mid: String,
}

/// A room's current active speaker (the fields of `NodeEvent::ActiveSpeaker`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSpeaker {
    pub room: RoomId,
    pub peer: PeerId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedPeer {
    pub peer: PeerId,
    pub answer: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLoad {
    pub shards: u32,
    pub peers: u32,
    pub rooms: u32,
    pub tracks: u32,
    pub subscriptions: u32,
    /// Forwarded RTP packets per second over the last report interval, all shards.
    pub forwarded_pps: u64,
    /// 0.0 ..= 1.0: the larger of the fullest shard's share of its peer capacity and `cpu`.
    pub utilization: f32,
    /// 0.0 ..= 1.0: the shard threads' CPU time over wall time in their last second, averaged
    /// over the shards (measured load: what a room's peers cost, not how many they are).
    #[serde(default)]
    pub cpu: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeEvent {
    PeerConnected {
        peer: PeerId,
    },
    PeerClosed {
        peer: PeerId,
        reason: String,
    },
    TrackPublished {
        peer: PeerId,
        room: RoomId,
        track: TrackId,
        kind: MediaKind,
        /// Simulcast rids the publisher declared; empty for a single-layer track.
        rids: Vec<String>,
        /// The publisher's m-line (`a=mid`; empty from a node before this field).
        #[serde(default)]
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
    /// A server-initiated SDP offer for `peer`; answer it with `accept_answer`.
    Offer {
        peer: PeerId,
        sdp: String,
    },
    /// `peer`'s video of `track` paused (audio goes on), or resumed (`paused: false`), for
    /// `reason` (`bandwidth` from a node before this field).
    VideoPaused {
        peer: PeerId,
        track: TrackId,
        paused: bool,
        #[serde(default)]
        reason: PauseReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", content = "message", rename_all = "snake_case")]
pub enum NodeError {
    #[error("malformed SDP: {0}")]
    BadSdp(String),
    #[error("unknown peer {0}")]
    UnknownPeer(PeerId),
    #[error("unknown track {0}")]
    UnknownTrack(TrackId),
    #[error("negotiation state does not allow this: {0}")]
    BadState(String),
    #[error("node is full")]
    Full,
    #[error("node unavailable: {0}")]
    Unavailable(String),
}
