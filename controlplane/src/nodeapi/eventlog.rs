//! The node API server's event log: numbers a media node's events within an epoch, keeps the
//! last ones for replay, and keeps a model of the node's peers (connected, published tracks,
//! unanswered server offer) and rooms' active speakers built from those events and from the
//! calls it forwards, so a client whose gap is too old gets a snapshot instead.
//!
//! When the log itself falls behind the node's broadcast (events lost for it), it asks the
//! node for its state (`MediaNodeApi::snapshot`) and records the events that turn its model
//! into that state (`resync`), so every listener converges instead of going stale.
//!
//! The model only ever reflects what the node reported; it must never invent state, and it
//! must never block the node: it reads the node's broadcast like any other subscriber.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use shardcast_dataplane::node::{
    MediaNodeApi, NodeEvent, NodeSnapshot, PeerId, RoomId, RoomSpeaker,
};
use tokio::sync::broadcast;

use super::resync::KnownState;
use super::{PeerState, ResumeFrom, StreamLine};

/// Events kept for replay by default: a few minutes of a busy node's signaling, a few MB.
pub const DEFAULT_REPLAY: usize = 2048;

/// A numbered event as the log hands it out.
pub type Numbered = (u64, Arc<NodeEvent>);

struct LogState {
    last_seq: u64,
    /// Contiguous: the seqs `last_seq - len + 1 ..= last_seq`.
    buffer: VecDeque<Numbered>,
    peers: BTreeMap<PeerId, PeerState>,
    /// Room → its current active speaker.
    speakers: BTreeMap<RoomId, PeerId>,
}

pub struct EventLog {
    epoch: String,
    capacity: usize,
    state: Mutex<LogState>,
    /// Numbered events as they are logged; sent under the state lock, so a subscriber taken
    /// under that lock continues exactly after the buffer it copied.
    live: broadcast::Sender<Numbered>,
}

/// What a (re)connecting stream starts with.
pub struct Opened {
    pub head: StreamLine,
    pub replay: Vec<Numbered>,
    pub live: broadcast::Receiver<Numbered>,
}

impl EventLog {
    /// Subscribes to `node`'s events now and logs them from a task (needs a runtime).
    pub fn start(node: Arc<dyn MediaNodeApi>, capacity: usize) -> Arc<Self> {
        let log = Arc::new(Self::new(capacity));
        let mut rx = node.events();
        let weak: Weak<Self> = Arc::downgrade(&log);
        tokio::spawn(async move {
            // Events queued before the last resync's snapshot: only those that are news to
            // the model are recorded (the snapshot already covers the others).
            let mut settle = 0usize;
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        // The node's channel overflowed for this reader: catch up from the
                        // node's own state. A fresh receiver first, so nothing after the
                        // snapshot is missed; what it repeats is filtered by `settle`.
                        tracing::warn!(missed = n, "node api: event log lagged; resyncing");
                        rx = node.events();
                        match node.snapshot().await {
                            Ok(snap) => {
                                let Some(log) = weak.upgrade() else { return };
                                log.resync(snap);
                                settle = rx.len();
                            }
                            Err(e) => tracing::warn!(error = %e, "node api: no snapshot"),
                        }
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(log) = weak.upgrade() else { return };
                if settle > 0 {
                    settle -= 1;
                    if !log.is_news(&ev) {
                        continue;
                    }
                }
                log.record(ev);
            }
        });
        log
    }

    fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(capacity.max(16));
        Self {
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            capacity: capacity.max(1),
            state: Mutex::new(LogState {
                last_seq: 0,
                buffer: VecDeque::new(),
                peers: BTreeMap::new(),
                speakers: BTreeMap::new(),
            }),
            live,
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Numbers `ev`, buffers it, applies it to the model and sends it live.
    pub fn record(&self, ev: NodeEvent) {
        let mut st = self.lock();
        Self::record_locked(&mut st, &self.live, self.capacity, ev);
    }

    fn record_locked(
        st: &mut LogState,
        live: &broadcast::Sender<Numbered>,
        capacity: usize,
        ev: NodeEvent,
    ) {
        apply(st, &ev);
        st.last_seq += 1;
        let numbered = (st.last_seq, Arc::new(ev));
        if st.buffer.len() == capacity {
            st.buffer.pop_front();
        }
        st.buffer.push_back(numbered.clone());
        let _ = live.send(numbered);
    }

    /// After lost events: records the events that bring the model to `snap` (peers gone,
    /// tracks unpublished or published, connections, offers, speakers), then takes the
    /// snapshot as the model.
    pub fn resync(&self, snap: NodeSnapshot) {
        let mut st = self.lock();
        let mut known = KnownState::of_model(st.peers.values(), &st.speakers);
        let missed = known.reconcile(&snap.peers, &snap.speakers, false);
        tracing::info!(
            events = missed.len(),
            "node api: event log resynced from the node"
        );
        for ev in missed {
            Self::record_locked(&mut st, &self.live, self.capacity, ev);
        }
        st.peers = snap.peers.into_iter().map(|p| (p.peer, p)).collect();
        st.speakers = snap
            .speakers
            .into_iter()
            .map(|RoomSpeaker { room, peer }| (room, peer))
            .collect();
    }

    /// Whether `ev` would change the model (an event the last snapshot did not cover).
    fn is_news(&self, ev: &NodeEvent) -> bool {
        let st = self.lock();
        let peer = |p: &PeerId| st.peers.get(p);
        match ev {
            NodeEvent::PeerConnected { peer: p } => peer(p).is_none_or(|s| !s.connected),
            NodeEvent::PeerClosed { peer: p, .. } => peer(p).is_some(),
            NodeEvent::TrackPublished { peer: p, track, .. } => {
                peer(p).is_none_or(|s| !s.tracks.iter().any(|t| t.track == *track))
            }
            NodeEvent::TrackUnpublished { peer: p, track, .. } => {
                peer(p).is_some_and(|s| s.tracks.iter().any(|t| t.track == *track))
            }
            NodeEvent::Offer { peer: p, sdp } => {
                peer(p).is_none_or(|s| s.pending_offer.as_ref() != Some(sdp))
            }
            NodeEvent::ActiveSpeaker { room, peer: p } => st.speakers.get(room) != Some(p),
            // A moment: always news while its peer lives.
            NodeEvent::VideoPaused { peer: p, .. } => peer(p).is_some(),
        }
    }

    /// A peer the node created (no event announces creation).
    pub fn peer_created(&self, peer: PeerId) {
        self.lock()
            .peers
            .entry(peer)
            .or_insert_with(|| PeerState::new(peer));
    }

    /// The peer's server offer, if any, before a call that settles it is forwarded.
    pub fn pending_offer(&self, peer: PeerId) -> Option<String> {
        self.lock().peers.get(&peer)?.pending_offer.clone()
    }

    /// An answer (or a client offer, which wins a glare) was accepted: `settled`, the offer
    /// pending before the call, is no longer pending — unless a newer one replaced it since.
    pub fn offer_settled(&self, peer: PeerId, settled: Option<String>) {
        if let Some(p) = self.lock().peers.get_mut(&peer) {
            if p.pending_offer == settled {
                p.pending_offer = None;
            }
        }
    }

    /// Starts a stream for a client that left off at `from`.
    pub fn open(&self, from: &ResumeFrom) -> Opened {
        let st = self.lock();
        let live = self.live.subscribe();
        let first = st
            .buffer
            .front()
            .map(|(s, _)| *s)
            .unwrap_or(st.last_seq + 1);
        let resumable = match (&from.epoch, from.after) {
            (Some(e), Some(after)) => {
                *e == self.epoch && after <= st.last_seq && after + 1 >= first
            }
            _ => false,
        };
        if resumable {
            let after = from.after.unwrap_or(0);
            let replay = st.buffer.iter().filter(|(s, _)| *s > after).cloned();
            return Opened {
                head: StreamLine::Resume {
                    epoch: self.epoch.clone(),
                    after,
                },
                replay: replay.collect(),
                live,
            };
        }
        Opened {
            head: StreamLine::Snapshot {
                epoch: self.epoch.clone(),
                seq: st.last_seq,
                peers: st.peers.values().cloned().collect(),
                speakers: st
                    .speakers
                    .iter()
                    .map(|(room, peer)| RoomSpeaker {
                        room: room.clone(),
                        peer: *peer,
                    })
                    .collect(),
            },
            replay: Vec::new(),
            live,
        }
    }
}

fn apply(st: &mut LogState, ev: &NodeEvent) {
    if let Some(gone) = shardcast_dataplane::node::follow_peers(&mut st.peers, ev) {
        st.speakers.retain(|_, p| *p != gone);
    }
    if let NodeEvent::ActiveSpeaker { room, peer } = ev {
        st.speakers.insert(room.clone(), *peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeapi::TrackState;
    use shardcast_dataplane::node::{MediaKind, RoomId, TrackId};

    fn published(peer: u64, track: u64) -> NodeEvent {
        NodeEvent::TrackPublished {
            peer: PeerId(peer),
            room: RoomId::new("r"),
            track: TrackId(track),
            kind: MediaKind::Audio,
            rids: vec![],
            mid: "0".into(),
        }
    }

    fn from(log: &EventLog, after: u64) -> ResumeFrom {
        ResumeFrom {
            epoch: Some(log.epoch().to_string()),
            after: Some(after),
        }
    }

    #[test]
    fn resumes_inside_the_buffer_and_snapshots_beyond_it() {
        let log = EventLog::new(2);
        log.record(NodeEvent::PeerConnected { peer: PeerId(1) });
        log.record(published(1, 10));
        log.record(published(1, 11));
        // Buffer holds seqs 2 and 3: resuming after 1 or 2 or 3 works, after 0 does not.
        let o = log.open(&from(&log, 1));
        assert!(matches!(o.head, StreamLine::Resume { after: 1, .. }));
        assert_eq!(o.replay.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [2, 3]);
        assert!(log.open(&from(&log, 3)).replay.is_empty());
        let o = log.open(&from(&log, 0));
        let StreamLine::Snapshot { seq, peers, .. } = o.head else {
            panic!("expected a snapshot, got {:?}", o.head)
        };
        assert_eq!(seq, 3);
        assert_eq!(peers.len(), 1);
        assert!(peers[0].connected);
        assert_eq!(peers[0].tracks.len(), 2);
    }

    #[test]
    fn another_epoch_or_no_position_gets_a_snapshot() {
        let log = EventLog::new(8);
        log.record(NodeEvent::PeerConnected { peer: PeerId(1) });
        let other = ResumeFrom {
            epoch: Some("old-epoch".into()),
            after: Some(1),
        };
        assert!(matches!(
            log.open(&other).head,
            StreamLine::Snapshot { seq: 1, .. }
        ));
        assert!(matches!(
            log.open(&ResumeFrom::default()).head,
            StreamLine::Snapshot { .. }
        ));
        // A position ahead of the log (a client of another node at the same address).
        assert!(matches!(
            log.open(&from(&log, 9)).head,
            StreamLine::Snapshot { .. }
        ));
    }

    #[test]
    fn live_subscription_continues_after_the_replay() {
        let log = EventLog::new(8);
        log.record(NodeEvent::PeerConnected { peer: PeerId(1) });
        let mut o = log.open(&from(&log, 0));
        log.record(published(1, 10));
        assert_eq!(o.replay.len(), 1);
        assert_eq!(o.live.try_recv().unwrap().0, 2);
    }

    #[test]
    fn model_follows_closes_unpublishes_and_offers() {
        let log = EventLog::new(8);
        log.peer_created(PeerId(1));
        log.peer_created(PeerId(2));
        log.record(published(1, 10));
        log.record(NodeEvent::TrackUnpublished {
            peer: PeerId(1),
            room: RoomId::new("r"),
            track: TrackId(10),
        });
        log.record(NodeEvent::PeerClosed {
            peer: PeerId(2),
            reason: "requested".into(),
        });
        log.record(NodeEvent::Offer {
            peer: PeerId(1),
            sdp: "x".into(),
        });
        let before = log.pending_offer(PeerId(1));
        log.record(NodeEvent::Offer {
            peer: PeerId(1),
            sdp: "y".into(),
        });
        // The answer to x arrives after y was offered: y stays pending.
        log.offer_settled(PeerId(1), before);
        let StreamLine::Snapshot { peers, .. } = log.open(&ResumeFrom::default()).head else {
            panic!()
        };
        assert_eq!(peers.len(), 1);
        assert!(peers[0].tracks.is_empty());
        assert_eq!(peers[0].pending_offer.as_deref(), Some("y"));
        log.offer_settled(PeerId(1), Some("y".into()));
        assert_eq!(log.pending_offer(PeerId(1)), None);
    }

    #[test]
    fn resync_records_what_the_node_state_adds_and_becomes_the_model() {
        let log = EventLog::new(8);
        log.peer_created(PeerId(1));
        log.peer_created(PeerId(2));
        log.record(published(1, 10));
        let mut o = log.open(&from(&log, 1));
        // Lost: peer 2 closed, peer 1 connected, unpublished 10, published 11, spoke.
        let snap = NodeSnapshot {
            peers: vec![PeerState {
                peer: PeerId(1),
                connected: true,
                tracks: vec![TrackState {
                    room: RoomId::new("r"),
                    track: TrackId(11),
                    kind: MediaKind::Audio,
                    rids: vec![],
                    mid: "0".into(),
                }],
                pending_offer: None,
            }],
            speakers: vec![RoomSpeaker {
                room: RoomId::new("r"),
                peer: PeerId(1),
            }],
        };
        log.resync(snap.clone());
        let mut live = Vec::new();
        while let Ok((seq, ev)) = o.live.try_recv() {
            live.push((seq, (*ev).clone()));
        }
        let evs: Vec<_> = live.iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(
            evs,
            vec![
                NodeEvent::PeerClosed {
                    peer: PeerId(2),
                    reason: crate::nodeapi::resync::REASON_GONE.into()
                },
                NodeEvent::TrackUnpublished {
                    peer: PeerId(1),
                    room: RoomId::new("r"),
                    track: TrackId(10)
                },
                NodeEvent::PeerConnected { peer: PeerId(1) },
                published(1, 11),
                NodeEvent::ActiveSpeaker {
                    room: RoomId::new("r"),
                    peer: PeerId(1)
                },
            ]
        );
        // Numbered on: a resuming client gets them too.
        assert_eq!(live.first().map(|(s, _)| *s), Some(2));
        // What a late reader then repeats is not news; what is new is.
        assert!(!log.is_news(&published(1, 11)));
        assert!(!log.is_news(&NodeEvent::PeerClosed {
            peer: PeerId(2),
            reason: "x".into()
        }));
        assert!(log.is_news(&published(1, 12)));
        let StreamLine::Snapshot {
            peers, speakers, ..
        } = log.open(&ResumeFrom::default()).head
        else {
            panic!()
        };
        assert_eq!(peers, snap.peers);
        assert_eq!(speakers, snap.speakers);
    }
}
