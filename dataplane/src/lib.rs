//! Shardcast media node: thread-per-core shards around the sans-IO core in `shardcast-sfu`.
//!
//! Layers, bottom up: `driver` (the socket, the kernel interface and the eventfd waker; the
//! only `unsafe`), `tcp` (a shard's ICE-TCP listener and connections, RFC 4571 framing),
//! `shard` (the pinned thread and its loop, generic over the `ShardLogic` it drives), `sfu_logic` (the SFU core as that logic), `media_node` (the node API over shards
//! running the core).

pub mod driver;
mod fanout;
pub mod media_node;
pub mod node;
pub mod node_state;
mod room_places;
pub mod sfu_logic;
pub mod shard;
pub mod tcp;

pub use media_node::{MediaNode, MediaNodeConfig};
/// The core's counters, as `MediaNode::shard_snapshots` carries them (for metrics exporters).
pub use shardcast_sfu::data::DataDrop;
pub use shardcast_sfu::{DropReason, ShardStats};
