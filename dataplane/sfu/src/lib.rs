//! Shardcast's sans-IO SFU core.
//!
//! Owns rooms, peers (one str0m `Rtc` each), published tracks and subscriptions of one shard,
//! driven by `handle_*` calls and drained with `poll_output`. It never reads the clock, never
//! touches a socket and never blocks: the shard (crate `shardcast-dataplane`) does the I/O.
//!
//! Layout: [`core`] (the `ShardCore` type, control calls, the input/drain loop), `bind`
//! (WHEP: offered recvonly m-lines bound to tracks in the answer), `route`
//! (the per-packet forwarding path), [`demux`], `consent` (STUN a peer's ICE agent must
//! authenticate first, so rejected checks are counted), [`timers`], `peer` (one str0m `Rtc`),
//! `track` (tracks and subscriptions), `sdp_fixup` (candidates in every bundled m-section of
//! the SDP we write), `sdp_order` (video codecs in an answer in the offerer's order),
//! `sdp_red` (which m-lines of an answer negotiated RED), `room` (members,
//! active speaker), [`forward`] (pure layer/rewrite/keyframe/RED logic), [`api`] (inputs,
//! outputs, events), [`stats`].

pub mod api;
pub mod config;
mod consent;
pub mod core;
pub mod data;
pub mod demux;
pub mod forward;
pub mod ids;
mod peer;
mod room;
mod sdp_fixup;
mod sdp_order;
mod sdp_red;
pub mod stats;
pub mod timers;
mod track;
mod transport;
pub mod tx_queue;

/// The maps on the packet path (peers, tracks, subscriptions, demux, SSRC routes) hash
/// with foldhash: per-process random seeds like std's SipHash, at a fraction of its cost
/// for small keys. SipHash was 3.5% of a loaded shard's profile.
pub(crate) type Map<K, V> = foldhash::HashMap<K, V>;

pub use crate::api::{
    CloseReason, CoreEvent, CreatePeer, LayerIndex, LayerPreference, MediaKind, MediaPacket,
    Output, PeerRole, ShardMessage, TrackInfo,
};
pub use crate::config::CoreConfig;
pub use crate::core::{CoreError, ShardCore};
pub use crate::ids::{PeerId, RoomId, ShardId, TrackId};
pub use crate::stats::{DropReason, ShardStats};
