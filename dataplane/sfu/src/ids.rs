//! Identifier newtypes shared by the core, the shards and the node API.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Index of a shard (one pinned thread) inside a media node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShardId(pub u16);

/// A peer connection on a media node. The top 16 bits are the owning shard, so any shard
/// (and the node API) can route a command for a peer without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub u64);

impl PeerId {
    pub fn new(shard: ShardId, local: u64) -> Self {
        debug_assert!(local < (1 << 48));
        PeerId(((shard.0 as u64) << 48) | (local & ((1 << 48) - 1)))
    }
    pub fn shard(self) -> ShardId {
        ShardId((self.0 >> 48) as u16)
    }
}

/// A published track on a media node; the top 16 bits are the shard of its publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TrackId(pub u64);

impl TrackId {
    pub fn new(shard: ShardId, local: u64) -> Self {
        debug_assert!(local < (1 << 48));
        TrackId(((shard.0 as u64) << 48) | (local & ((1 << 48) - 1)))
    }
    pub fn shard(self) -> ShardId {
        ShardId((self.0 >> 48) as u16)
    }
}

/// A room's name as the control plane knows it (tenant-qualified by the caller).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoomId(pub Arc<str>);

impl RoomId {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        RoomId(name.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shard-{}", self.0)
    }
}
impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}
impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}
impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_carries_its_shard() {
        let p = PeerId::new(ShardId(3), 77);
        assert_eq!(p.shard(), ShardId(3));
        assert_ne!(p, PeerId::new(ShardId(2), 77));
    }
}
