//! The node API over HTTP: how a control plane drives a media node running as its own
//! process (`shardcast medianode`).
//!
//! Wire form (private network, `Authorization: Bearer <cluster secret>` on every request):
//! - `POST /node/v1/call` with one [`NodeCall`] (JSON, tagged by `op`) → `200 {"ok": value}`
//!   or `4xx/5xx {"error": NodeError}`: one RPC endpoint mirroring `MediaNodeApi` method by
//!   method, so the two implementations cannot drift apart in shape.
//! - `GET /node/v1/events` → a chunked NDJSON stream of `NodeEvent`s (one JSON object per
//!   line, an empty line every 10 s as keep-alive). Events while a client is disconnected are
//!   not replayed; the client reconnects by itself.
//!
//! `server` wraps any `MediaNodeApi` (the in-process `MediaNode`) in an axum router;
//! `client::RemoteNode` implements `MediaNodeApi` on reqwest.

pub mod client;
pub mod registry;
pub mod server;

use serde::{Deserialize, Serialize};
use shardcast_dataplane::node::{CreatePeer, LayerPreference, PeerId, TrackId};

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
    ClosePeer {
        peer: PeerId,
    },
    Load,
}
