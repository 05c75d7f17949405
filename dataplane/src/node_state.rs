//! `ShardState`: what one shard's node events have said so far — live peers (connected,
//! published tracks, unanswered server offer) and each room's active speaker — kept by the
//! shard's `SfuLogic` as it sends the events, so `MediaNodeApi::snapshot` answers from the
//! source instead of from a reader that may have lagged.
//!
//! Must never: invent state — it only follows the events sent and the commands answered.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::node::{NodeEvent, PeerId, PeerSnapshot, RoomId, RoomSpeaker};

#[derive(Debug, Default)]
pub struct ShardState {
    peers: BTreeMap<PeerId, PeerSnapshot>,
    /// Room → (speaker, when named): rooms span shards, so the node keeps the latest.
    speakers: BTreeMap<RoomId, (PeerId, Instant)>,
}

/// One shard's part of a node snapshot.
#[derive(Debug, Clone, Default)]
pub struct NodeSnapshotPart {
    pub peers: Vec<PeerSnapshot>,
    pub speakers: Vec<(RoomSpeaker, Instant)>,
}

impl ShardState {
    fn entry(&mut self, peer: PeerId) -> &mut PeerSnapshot {
        self.peers
            .entry(peer)
            .or_insert_with(|| PeerSnapshot::new(peer))
    }

    /// A peer was created (no event announces creation).
    pub fn created(&mut self, peer: PeerId) {
        self.entry(peer);
    }

    /// An answer or a client offer was accepted: no server offer is pending any more (one
    /// made while handling it is sent as an event afterwards).
    pub fn settled(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.pending_offer = None;
        }
    }

    /// Follows one event as it is sent.
    pub fn sent(&mut self, ev: &NodeEvent, now: Instant) {
        if let Some(gone) = crate::node::follow_peers(&mut self.peers, ev) {
            self.speakers.retain(|_, (p, _)| *p != gone);
        }
        if let NodeEvent::ActiveSpeaker { room, peer } = ev {
            self.speakers.insert(room.clone(), (*peer, now));
        }
    }

    pub fn snapshot(&self) -> NodeSnapshotPart {
        NodeSnapshotPart {
            peers: self.peers.values().cloned().collect(),
            speakers: self
                .speakers
                .iter()
                .map(|(room, (peer, at))| {
                    let s = RoomSpeaker {
                        room: room.clone(),
                        peer: *peer,
                    };
                    (s, *at)
                })
                .collect(),
        }
    }
}

/// The node's snapshot from its shards' parts: every peer (by id), and per room the speaker
/// named last on any shard, while that peer lives.
pub fn merge(parts: Vec<NodeSnapshotPart>) -> crate::node::NodeSnapshot {
    let mut peers = Vec::new();
    let mut speakers: BTreeMap<RoomId, (PeerId, Instant)> = BTreeMap::new();
    for part in parts {
        peers.extend(part.peers);
        for (s, at) in part.speakers {
            let newer = speakers.get(&s.room).is_none_or(|(_, t)| at > *t);
            if newer {
                speakers.insert(s.room, (s.peer, at));
            }
        }
    }
    peers.sort_by_key(|p: &PeerSnapshot| p.peer);
    let live = |peer: &PeerId| peers.iter().any(|p| p.peer == *peer);
    let speakers = speakers
        .into_iter()
        .filter(|(_, (peer, _))| live(peer))
        .map(|(room, (peer, _))| RoomSpeaker { room, peer })
        .collect();
    crate::node::NodeSnapshot { peers, speakers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::MediaKind;
    use std::time::Duration;

    #[test]
    fn follows_events_and_merges_the_latest_speaker() {
        let t0 = Instant::now();
        let room = RoomId::new("r");
        let (a, b) = (PeerId(1), PeerId(2));
        let mut s1 = ShardState::default();
        s1.created(a);
        s1.sent(&NodeEvent::PeerConnected { peer: a }, t0);
        let published = NodeEvent::TrackPublished {
            peer: a,
            room: room.clone(),
            track: crate::node::TrackId(10),
            kind: MediaKind::Audio,
            rids: vec![],
            mid: "0".into(),
        };
        s1.sent(&published, t0);
        s1.sent(
            &NodeEvent::Offer {
                peer: a,
                sdp: "o".into(),
            },
            t0,
        );
        s1.settled(a);
        s1.sent(
            &NodeEvent::ActiveSpeaker {
                room: room.clone(),
                peer: a,
            },
            t0,
        );
        let mut s2 = ShardState::default();
        s2.created(b);
        let later = t0 + Duration::from_millis(5);
        s2.sent(
            &NodeEvent::ActiveSpeaker {
                room: room.clone(),
                peer: b,
            },
            later,
        );
        let snap = merge(vec![s1.snapshot(), s2.snapshot()]);
        assert_eq!(snap.peers.len(), 2);
        assert!(snap.peers[0].connected && snap.peers[0].pending_offer.is_none());
        assert_eq!(snap.peers[0].tracks.len(), 1);
        assert_eq!(
            snap.speakers,
            vec![RoomSpeaker {
                room: room.clone(),
                peer: b
            }]
        );
        // The latest speaker leaves: the room has no live speaker on record.
        s2.sent(
            &NodeEvent::PeerClosed {
                peer: b,
                reason: "requested".into(),
            },
            later,
        );
        let snap = merge(vec![s1.snapshot(), s2.snapshot()]);
        assert_eq!(snap.peers.len(), 1);
        assert_eq!(snap.speakers, vec![RoomSpeaker { room, peer: a }]);
    }
}
