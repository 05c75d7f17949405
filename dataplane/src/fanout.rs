//! Book-keeping of cross-shard subscriptions on the node: which subscriber shards still need
//! a track's packets, so the publisher's shard stops handing them over with the last one.
//!
//! Control path only (behind the node's mutex); it never sees a packet.

use std::collections::HashMap;

use shardcast_sfu::ids::{PeerId, ShardId, TrackId};

#[derive(Debug, Default)]
pub(crate) struct RemoteSubs {
    per_shard: HashMap<(TrackId, ShardId), u32>,
    by_peer: HashMap<PeerId, Vec<TrackId>>,
}

impl RemoteSubs {
    /// `subscriber` (on a shard other than the track's) now receives `track`.
    pub(crate) fn added(&mut self, subscriber: PeerId, track: TrackId) {
        *self
            .per_shard
            .entry((track, subscriber.shard()))
            .or_insert(0) += 1;
        self.by_peer.entry(subscriber).or_default().push(track);
    }

    /// `subscriber` stopped receiving `track`; true when that ended the fan-out of `track`
    /// to the subscriber's shard.
    pub(crate) fn removed(&mut self, subscriber: PeerId, track: TrackId) -> bool {
        let Some(tracks) = self.by_peer.get_mut(&subscriber) else {
            return false;
        };
        let Some(pos) = tracks.iter().position(|t| *t == track) else {
            return false;
        };
        tracks.swap_remove(pos);
        if tracks.is_empty() {
            self.by_peer.remove(&subscriber);
        }
        self.decrement(track, subscriber.shard())
    }

    /// A subscriber went away: the fan-outs (track, shard) that ended with it.
    pub(crate) fn peer_closed(&mut self, peer: PeerId) -> Vec<(TrackId, ShardId)> {
        let tracks = self.by_peer.remove(&peer).unwrap_or_default();
        tracks
            .into_iter()
            .filter(|&t| self.decrement(t, peer.shard()))
            .map(|t| (t, peer.shard()))
            .collect()
    }

    /// The track is gone (its publisher left): nothing to remove on its shard any more.
    pub(crate) fn track_ended(&mut self, track: TrackId) {
        self.per_shard.retain(|(t, _), _| *t != track);
        for tracks in self.by_peer.values_mut() {
            tracks.retain(|t| *t != track);
        }
        self.by_peer.retain(|_, tracks| !tracks.is_empty());
    }

    fn decrement(&mut self, track: TrackId, shard: ShardId) -> bool {
        match self.per_shard.get_mut(&(track, shard)) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.per_shard.remove(&(track, shard));
                true
            }
            None => false,
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.per_shard.is_empty() && self.by_peer.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACK: TrackId = TrackId(7);

    fn peer(shard: u16, n: u64) -> PeerId {
        PeerId::new(ShardId(shard), n)
    }

    #[test]
    fn fan_out_ends_with_the_last_subscriber_of_a_shard() {
        let mut r = RemoteSubs::default();
        r.added(peer(1, 1), TRACK);
        r.added(peer(1, 2), TRACK);
        assert!(!r.removed(peer(1, 1), TRACK));
        assert!(!r.removed(peer(1, 1), TRACK), "a second removal is a no-op");
        assert!(r.removed(peer(1, 2), TRACK));
        assert!(r.is_empty());
    }

    #[test]
    fn a_closed_subscriber_ends_its_fan_outs() {
        let mut r = RemoteSubs::default();
        r.added(peer(1, 1), TRACK);
        r.added(peer(1, 1), TrackId(8));
        r.added(peer(1, 2), TrackId(8));
        let mut ended = r.peer_closed(peer(1, 1));
        ended.sort();
        assert_eq!(ended, vec![(TRACK, ShardId(1))]);
        assert!(r.peer_closed(peer(1, 1)).is_empty());
        r.track_ended(TrackId(8));
        assert!(r.is_empty());
    }
}
