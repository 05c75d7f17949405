//! The node API over HTTP: how a control plane drives a media node running as its own
//! process (`shardcast medianode`).
//!
//! Wire form (private network; `Authorization: Bearer <token>` on every request, a token for
//! the one node it is sent to, minted from the cluster secret: `credential`; a missing,
//! foreign or stale one → `401 {"error": {"code": "credential_*", ..}}`):
//! - `POST /node/v1/call` with one [`NodeCall`] (JSON, tagged by `op`) → `200 {"ok": value}`
//!   or `4xx/5xx {"error": NodeError}`: one RPC endpoint mirroring `MediaNodeApi` method by
//!   method, so the two implementations cannot drift apart in shape.
//! - `GET /node/v1/events[?epoch=E&after=N]` → a chunked NDJSON stream of [`StreamLine`]s
//!   (one JSON object per line, an empty line every 10 s as keep-alive). The node numbers its
//!   events 1, 2, 3, .. within an *epoch* (one per node API server start) and keeps the last
//!   ones (`eventlog::DEFAULT_REPLAY`) for replay. The first line is either `resume` (the
//!   events after `N` of epoch `E` follow, replayed from the buffer, then live) or `snapshot`
//!   (the node's peers, their connection state, published tracks and unanswered server offer,
//!   and each room's active speaker, as of seq `S`; events after `S` follow) when `E` is another epoch (a restarted node) or
//!   `N` has already left the buffer. So a client that reconnects sees every event exactly
//!   once, in order, or (after a long gap) the state it missed, from which it synthesizes
//!   the missing events (`resync`).
//!
//! `server` wraps any `MediaNodeApi` (the in-process `MediaNode`) in an axum router, with an
//! `eventlog::EventLog` that numbers, buffers and models its events; `client::RemoteNode`
//! implements `MediaNodeApi` on reqwest.

pub mod client;
pub mod credential;
pub mod eventlog;
pub mod registry;
pub mod resync;
pub mod server;

use serde::{Deserialize, Serialize};
use shardcast_dataplane::node::{
    CreatePeer, LayerPreference, NodeEvent, PeerId, PeerSnapshot, RoomSpeaker, TrackId,
    TrackSnapshot,
};

pub const CALL_PATH: &str = "/node/v1/call";
pub const EVENTS_PATH: &str = "/node/v1/events";

/// One node API call.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum NodeCall {
    CreatePeer {
        request: CreatePeer,
    },
    Renegotiate {
        peer: PeerId,
        offer: String,
    },
    AcceptAnswer {
        peer: PeerId,
        answer: String,
    },
    AddCandidates {
        peer: PeerId,
        candidates: Vec<String>,
    },
    Subscribe {
        subscriber: PeerId,
        track: TrackId,
    },
    Unsubscribe {
        subscriber: PeerId,
        track: TrackId,
    },
    SetPreference {
        subscriber: PeerId,
        track: TrackId,
        preference: LayerPreference,
    },
    SetTrackMuted {
        track: TrackId,
        muted: bool,
    },
    SetCanSendData {
        peer: PeerId,
        allowed: bool,
    },
    ClosePeer {
        peer: PeerId,
    },
    Load,
    Snapshot,
}

/// One line of the event stream (`GET /node/v1/events`), tagged by `line`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub enum StreamLine {
    /// First line: the events with seq > `after` of `epoch` follow, none missing.
    Resume { epoch: String, after: u64 },
    /// First line: the requested point cannot be resumed; this is the node's state as of
    /// `seq`, and the events with seq > `seq` follow.
    Snapshot {
        epoch: String,
        seq: u64,
        peers: Vec<PeerState>,
        /// Each room's current active speaker (absent from older nodes).
        #[serde(default)]
        speakers: Vec<RoomSpeaker>,
    },
    /// One node event and its sequence number.
    Event { seq: u64, event: NodeEvent },
}

/// A live peer in a snapshot (the node's own snapshot type: same fields on the wire).
pub type PeerState = PeerSnapshot;
/// A published track in a snapshot.
pub type TrackState = TrackSnapshot;

/// Query of `GET /node/v1/events`: where a reconnecting client left off.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResumeFrom {
    pub epoch: Option<String>,
    pub after: Option<u64>,
}
