//! `RoomPlaces`: which shard a room's next peer goes to, and how many of the room's peers
//! are on this node, so a room is forgotten when its last peer leaves (a node that hosts
//! rooms one after another must not keep every room it ever saw).
//!
//! Owns only the placement hint; the peers themselves live on the shards. Never blocks on
//! a shard: `MediaNode` calls it under its own lock on the control path.

use std::collections::HashMap;

use shardcast_sfu::ids::ShardId;

use crate::node::{PeerId, RoomId};

struct Place {
    shard: ShardId,
    peers: u32,
}

#[derive(Default)]
pub(crate) struct RoomPlaces {
    rooms: HashMap<RoomId, Place>,
    peer_room: HashMap<PeerId, RoomId>,
}

impl RoomPlaces {
    /// The room's shard while `fits(shard)`, else `least_loaded` (which becomes the room's).
    pub fn place(
        &mut self,
        room: &RoomId,
        fits: impl Fn(ShardId) -> bool,
        least_loaded: ShardId,
    ) -> ShardId {
        match self.rooms.get_mut(room) {
            Some(p) if fits(p.shard) => p.shard,
            Some(p) => {
                p.shard = least_loaded;
                least_loaded
            }
            None => {
                self.rooms.insert(
                    room.clone(),
                    Place {
                        shard: least_loaded,
                        peers: 0,
                    },
                );
                least_loaded
            }
        }
    }

    /// `peer` was created in `room`.
    pub fn joined(&mut self, peer: PeerId, room: &RoomId) {
        if let Some(p) = self.rooms.get_mut(room) {
            p.peers += 1;
        }
        self.peer_room.insert(peer, room.clone());
    }

    /// A peer could not be created in `room`: forget the room if no peer holds it.
    pub fn abandoned(&mut self, room: &RoomId) {
        if self.rooms.get(room).is_some_and(|p| p.peers == 0) {
            self.rooms.remove(room);
        }
    }

    /// `peer` is gone (closed by the API or on its own); idempotent.
    pub fn left(&mut self, peer: PeerId) {
        let Some(room) = self.peer_room.remove(&peer) else {
            return;
        };
        if let Some(p) = self.rooms.get_mut(&room) {
            p.peers = p.peers.saturating_sub(1);
            if p.peers == 0 {
                self.rooms.remove(&room);
            }
        }
    }

    /// Rooms with at least one peer here (or being placed).
    pub fn len(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(n: &str) -> RoomId {
        RoomId::new(n)
    }

    #[test]
    fn a_room_is_forgotten_when_its_last_peer_leaves() {
        let mut places = RoomPlaces::default();
        let (a, b) = (PeerId::new(ShardId(0), 1), PeerId::new(ShardId(0), 2));
        assert_eq!(places.place(&room("r"), |_| true, ShardId(0)), ShardId(0));
        places.joined(a, &room("r"));
        // The room's next peer follows it even if another shard is emptier.
        assert_eq!(places.place(&room("r"), |_| true, ShardId(1)), ShardId(0));
        places.joined(b, &room("r"));
        assert_eq!(places.len(), 1);
        places.left(a);
        places.left(a); // a second close of the same peer changes nothing
        assert_eq!(places.len(), 1);
        places.left(b);
        assert_eq!(places.len(), 0);
    }

    #[test]
    fn a_full_shard_moves_the_room_and_a_failed_create_leaves_nothing() {
        let mut places = RoomPlaces::default();
        assert_eq!(places.place(&room("r"), |_| true, ShardId(0)), ShardId(0));
        places.joined(PeerId::new(ShardId(0), 1), &room("r"));
        assert_eq!(
            places.place(&room("r"), |s| s != ShardId(0), ShardId(1)),
            ShardId(1)
        );
        places.place(&room("other"), |_| true, ShardId(1));
        places.abandoned(&room("other"));
        places.abandoned(&room("r")); // has a peer: kept
        assert_eq!(places.len(), 1);
    }
}
