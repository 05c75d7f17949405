//! What a `RemoteNode` has told its callers about the node's peers, and how to catch up from a
//! snapshot: the events that turn the told state into the snapshot's state.
//!
//! Synthesized events are the ones a caller needs to stay consistent — peers connected or
//! closed, tracks published or unpublished, an offer waiting for an answer, and each room's
//! current active speaker when it differs from the last one told (past speaker changes are
//! not replayed, only where they ended). Used by `RemoteNode` after a stream gap and by the
//! node API server's `EventLog` after its own reader lagged. Must never: do I/O.

use std::collections::BTreeMap;

use shardcast_dataplane::node::{follow_peers, NodeEvent, PeerId, RoomId, RoomSpeaker};

use super::{PeerState, TrackState};

/// `PeerClosed` reason for a peer that vanished while the stream was down.
pub const REASON_GONE: &str = "closed_while_disconnected";
/// `PeerClosed` reason for a peer of a node that restarted (another epoch).
pub const REASON_RESTARTED: &str = "node_restarted";

/// The state implied by the events delivered so far. A peer's `pending_offer` here is the
/// last offer told (answers are not events, so it is never cleared): an offer in a snapshot
/// is news only if it differs from it.
#[derive(Debug, Default)]
pub struct KnownState {
    peers: BTreeMap<PeerId, PeerState>,
    /// Room → the speaker last told.
    speakers: BTreeMap<RoomId, PeerId>,
}

impl KnownState {
    /// The state a model (peers with their pending offers, speakers) stands for.
    pub fn of_model<'a>(
        peers: impl IntoIterator<Item = &'a PeerState>,
        speakers: &BTreeMap<RoomId, PeerId>,
    ) -> Self {
        let peers = peers.into_iter().map(|p| (p.peer, p.clone())).collect();
        Self {
            peers,
            speakers: speakers.clone(),
        }
    }

    /// A peer this client created (it exists before any event names it).
    pub fn created(&mut self, peer: PeerId) {
        self.peers
            .entry(peer)
            .or_insert_with(|| PeerState::new(peer));
    }

    pub fn peers(&self) -> usize {
        self.peers.len()
    }

    /// Follows one delivered event.
    pub fn apply(&mut self, ev: &NodeEvent) {
        if let Some(gone) = follow_peers(&mut self.peers, ev) {
            self.speakers.retain(|_, p| *p != gone);
        }
        if let NodeEvent::ActiveSpeaker { room, peer } = ev {
            self.speakers.insert(room.clone(), *peer);
        }
    }

    /// The events that bring the told state to `snapshot` and `speakers` (already applied):
    /// closures first (tracks, then the peer), then per live peer unpublished, connected,
    /// published, offer, then the rooms whose speaker changed.
    /// `restarted`: the snapshot is of another epoch, so vanished peers died with the node.
    pub fn reconcile(
        &mut self,
        snapshot: &[PeerState],
        speakers: &[RoomSpeaker],
        restarted: bool,
    ) -> Vec<NodeEvent> {
        let mut out = Vec::new();
        let live: BTreeMap<PeerId, &PeerState> = snapshot.iter().map(|p| (p.peer, p)).collect();
        let reason = if restarted {
            REASON_RESTARTED
        } else {
            REASON_GONE
        };
        for (peer, told) in &self.peers {
            if live.contains_key(peer) {
                continue;
            }
            for t in &told.tracks {
                out.push(unpublished(*peer, t));
            }
            out.push(NodeEvent::PeerClosed {
                peer: *peer,
                reason: reason.to_string(),
            });
        }
        for s in snapshot {
            let told = self
                .peers
                .get(&s.peer)
                .cloned()
                .unwrap_or_else(|| PeerState::new(s.peer));
            for t in &told.tracks {
                if !s.tracks.iter().any(|x| x.track == t.track) {
                    out.push(unpublished(s.peer, t));
                }
            }
            if s.connected && !told.connected {
                out.push(NodeEvent::PeerConnected { peer: s.peer });
            }
            for t in &s.tracks {
                if !told.tracks.iter().any(|x| x.track == t.track) {
                    out.push(NodeEvent::TrackPublished {
                        peer: s.peer,
                        room: t.room.clone(),
                        track: t.track,
                        kind: t.kind,
                        rids: t.rids.clone(),
                        mid: t.mid.clone(),
                    });
                }
            }
            if let Some(sdp) = &s.pending_offer {
                if told.pending_offer.as_ref() != Some(sdp) {
                    out.push(NodeEvent::Offer {
                        peer: s.peer,
                        sdp: sdp.clone(),
                    });
                }
            }
        }
        for ev in &out {
            self.apply(ev);
        }
        // After the closures were applied: a speaker that left is no longer on record.
        let mut spoken = Vec::new();
        for s in speakers {
            if self.speakers.get(&s.room) != Some(&s.peer) {
                spoken.push(NodeEvent::ActiveSpeaker {
                    room: s.room.clone(),
                    peer: s.peer,
                });
            }
        }
        for ev in &spoken {
            self.apply(ev);
        }
        out.extend(spoken);
        // Peers the snapshot names without any event yet (created, not connected).
        for s in snapshot {
            self.peers
                .entry(s.peer)
                .or_insert_with(|| PeerState::new(s.peer));
        }
        out
    }
}

fn unpublished(peer: PeerId, t: &TrackState) -> NodeEvent {
    NodeEvent::TrackUnpublished {
        peer,
        room: t.room.clone(),
        track: t.track,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_dataplane::node::{MediaKind, RoomId, TrackId};

    fn track(id: u64) -> TrackState {
        TrackState {
            room: RoomId::new("r"),
            track: TrackId(id),
            kind: MediaKind::Video,
            rids: vec!["h".into()],
            mid: "1".into(),
        }
    }

    fn published(peer: u64, t: u64) -> NodeEvent {
        let t = track(t);
        NodeEvent::TrackPublished {
            peer: PeerId(peer),
            room: t.room,
            track: t.track,
            kind: t.kind,
            rids: t.rids,
            mid: t.mid,
        }
    }

    #[test]
    fn missed_connect_and_publish_are_synthesized_once() {
        let mut k = KnownState::default();
        k.created(PeerId(1));
        let snap = vec![PeerState {
            peer: PeerId(1),
            connected: true,
            tracks: vec![track(10), track(11)],
            pending_offer: Some("offer-1".into()),
        }];
        let evs = k.reconcile(&snap, &[], false);
        assert_eq!(
            evs,
            vec![
                NodeEvent::PeerConnected { peer: PeerId(1) },
                published(1, 10),
                published(1, 11),
                NodeEvent::Offer {
                    peer: PeerId(1),
                    sdp: "offer-1".into()
                },
            ]
        );
        // The same snapshot again: nothing new to say.
        assert!(k.reconcile(&snap, &[], false).is_empty());
    }

    #[test]
    fn vanished_peers_and_tracks_are_closed() {
        let mut k = KnownState::default();
        k.apply(&NodeEvent::PeerConnected { peer: PeerId(1) });
        k.apply(&published(1, 10));
        k.apply(&NodeEvent::PeerConnected { peer: PeerId(2) });
        k.apply(&published(2, 20));
        k.apply(&published(2, 21));
        let snap = vec![PeerState {
            peer: PeerId(2),
            connected: true,
            tracks: vec![track(21)],
            pending_offer: None,
        }];
        let evs = k.reconcile(&snap, &[], false);
        assert_eq!(
            evs,
            vec![
                NodeEvent::TrackUnpublished {
                    peer: PeerId(1),
                    room: RoomId::new("r"),
                    track: TrackId(10)
                },
                NodeEvent::PeerClosed {
                    peer: PeerId(1),
                    reason: REASON_GONE.into()
                },
                NodeEvent::TrackUnpublished {
                    peer: PeerId(2),
                    room: RoomId::new("r"),
                    track: TrackId(20)
                },
            ]
        );
        assert_eq!(k.peers(), 1);
    }

    #[test]
    fn a_restarted_node_closes_everything_with_its_reason() {
        let mut k = KnownState::default();
        k.created(PeerId(7));
        let evs = k.reconcile(&[], &[], true);
        assert_eq!(
            evs,
            vec![NodeEvent::PeerClosed {
                peer: PeerId(7),
                reason: REASON_RESTARTED.into()
            }]
        );
        assert_eq!(k.peers(), 0);
    }

    #[test]
    fn the_current_speaker_is_told_once_and_a_departed_one_is_forgotten() {
        let mut k = KnownState::default();
        k.apply(&NodeEvent::PeerConnected { peer: PeerId(1) });
        k.apply(&NodeEvent::PeerConnected { peer: PeerId(2) });
        k.apply(&NodeEvent::ActiveSpeaker {
            room: RoomId::new("r"),
            peer: PeerId(1),
        });
        let live = |p: u64| PeerState {
            peer: PeerId(p),
            connected: true,
            tracks: vec![],
            pending_offer: None,
        };
        let speaker = |p: u64| RoomSpeaker {
            room: RoomId::new("r"),
            peer: PeerId(p),
        };
        // Unchanged speaker: nothing to say.
        let snap = [live(1), live(2)];
        assert!(k.reconcile(&snap, &[speaker(1)], false).is_empty());
        // Peer 2 took over: told.
        let evs = k.reconcile(&snap, &[speaker(2)], false);
        assert_eq!(
            evs,
            vec![NodeEvent::ActiveSpeaker {
                room: RoomId::new("r"),
                peer: PeerId(2)
            }]
        );
        // Peer 2 left and peer 1 speaks again: the close, then the speaker.
        let evs = k.reconcile(&[live(1)], &[speaker(1)], false);
        assert_eq!(
            evs,
            vec![
                NodeEvent::PeerClosed {
                    peer: PeerId(2),
                    reason: REASON_GONE.into()
                },
                NodeEvent::ActiveSpeaker {
                    room: RoomId::new("r"),
                    peer: PeerId(1)
                },
            ]
        );
    }
}
