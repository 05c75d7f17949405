//! `SfuLogic`: the SFU core (`shardcast_sfu::ShardCore`) as the logic of a shard.
//!
//! Owns one `ShardCore`, answers node-API commands (replies over tokio oneshots), maps core
//! events onto `NodeEvent`s for the node's broadcast channel and copies the core's output
//! into the shard's outbox. Must never block: commands are answered synchronously, events
//! are sent with a non-blocking broadcast send.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use shardcast_sfu::api::{CoreEvent, CreatePeer, Output, ShardMessage, TrackInfo};
use shardcast_sfu::ids::{PeerId, ShardId, TrackId};
use shardcast_sfu::{CoreConfig, CoreError, ShardCore, ShardStats};
use str0m::net::Protocol;
use tokio::sync::{broadcast, oneshot};

use crate::node::{LayerPreference, NodeError, NodeEvent};
use crate::node_state::ShardState;
use crate::shard::{Outbox, ShardLogic};

type Reply<T> = oneshot::Sender<Result<T, NodeError>>;

/// A node-API request addressed to one shard.
pub enum NodeCommand {
    CreatePeer {
        peer: PeerId,
        request: CreatePeer<TrackInfo>,
        reply: Reply<String>,
    },
    Renegotiate {
        peer: PeerId,
        offer: String,
        reply: Reply<String>,
    },
    AcceptAnswer {
        peer: PeerId,
        answer: String,
        reply: Reply<()>,
    },
    AddCandidates {
        peer: PeerId,
        candidates: Vec<String>,
        reply: Reply<()>,
    },
    TrackInfo {
        track: TrackId,
        reply: Reply<TrackInfo>,
    },
    AddRemoteFanout {
        track: TrackId,
        shard: ShardId,
        reply: Reply<()>,
    },
    RemoveRemoteFanout {
        track: TrackId,
        shard: ShardId,
        reply: Reply<()>,
    },
    Subscribe {
        subscriber: PeerId,
        info: TrackInfo,
        reply: Reply<()>,
    },
    Unsubscribe {
        subscriber: PeerId,
        track: TrackId,
        reply: Reply<()>,
    },
    SetPreference {
        subscriber: PeerId,
        track: TrackId,
        preference: LayerPreference,
        reply: Reply<()>,
    },
    SetTrackMuted {
        track: TrackId,
        muted: bool,
        reply: Reply<()>,
    },
    SetCanSendData {
        peer: PeerId,
        allowed: bool,
        reply: Reply<()>,
    },
    ClosePeer {
        peer: PeerId,
        reply: Reply<()>,
    },
    /// This shard's part of `MediaNodeApi::snapshot`.
    Snapshot {
        reply: Reply<crate::node_state::NodeSnapshotPart>,
    },
}

pub(crate) fn map_error(e: CoreError) -> NodeError {
    match e {
        CoreError::BadSdp(m) => NodeError::BadSdp(m),
        CoreError::UnknownPeer(p) => NodeError::UnknownPeer(p),
        CoreError::UnknownTrack(t) => NodeError::UnknownTrack(t),
        CoreError::BadState(m) => NodeError::BadState(m),
        CoreError::DuplicatePeer(p) => NodeError::BadState(format!("peer {p} already exists")),
    }
}

pub(crate) fn map_event(e: CoreEvent) -> NodeEvent {
    match e {
        CoreEvent::PeerConnected { peer } => NodeEvent::PeerConnected { peer },
        CoreEvent::PeerClosed { peer, reason } => NodeEvent::PeerClosed {
            peer,
            reason: reason.as_str().to_string(),
        },
        CoreEvent::TrackPublished {
            peer,
            room,
            track,
            kind,
            rids,
            mid,
            ..
        } => NodeEvent::TrackPublished {
            peer,
            room,
            track,
            kind,
            rids,
            mid,
        },
        CoreEvent::TrackUnpublished { peer, room, track } => {
            NodeEvent::TrackUnpublished { peer, room, track }
        }
        CoreEvent::ActiveSpeaker { room, peer } => NodeEvent::ActiveSpeaker { room, peer },
        CoreEvent::Offer { peer, sdp } => NodeEvent::Offer { peer, sdp },
        CoreEvent::VideoPaused {
            peer,
            track,
            paused,
            reason,
        } => NodeEvent::VideoPaused {
            peer,
            track,
            paused,
            reason,
        },
    }
}

pub struct SfuLogic {
    core: ShardCore,
    events: broadcast::Sender<NodeEvent>,
    /// Live peers per shard, shared with the node's placement (decremented here on close).
    peers_on_shard: Arc<[AtomicU32]>,
    shard: ShardId,
    /// What the events sent so far say, for snapshots.
    state: ShardState,
}

impl SfuLogic {
    pub fn new(
        config: CoreConfig,
        shard: ShardId,
        local_addr: SocketAddr,
        events: broadcast::Sender<NodeEvent>,
        peers_on_shard: Arc<[AtomicU32]>,
    ) -> Self {
        let now = Instant::now();
        let mut core = ShardCore::new(config, shard, local_addr, now);
        // The core never reads a clock: give it the wall clock once, for its NTP time.
        if let Ok(unix) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            core.set_wall_clock(now, unix);
        }
        SfuLogic {
            core,
            events,
            peers_on_shard,
            shard,
            state: ShardState::default(),
        }
    }

    fn emit(&mut self, now: Instant, event: CoreEvent) {
        if let CoreEvent::PeerClosed { .. } = event {
            if let Some(count) = self.peers_on_shard.get(self.shard.0 as usize) {
                let _ = count.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    Some(c.saturating_sub(1))
                });
            }
        }
        let event = map_event(event);
        self.state.sent(&event, now);
        // No receiver is not an error: nobody is listening yet.
        let _ = self.events.send(event);
    }
}

impl ShardLogic for SfuLogic {
    type Command = NodeCommand;
    type Message = ShardMessage;
    type Stats = ShardStats;

    fn handle_datagram(&mut self, now: Instant, source: SocketAddr, dest: SocketAddr, p: &[u8]) {
        self.core.handle_datagram(now, source, dest, p);
    }

    fn handle_tcp_frame(
        &mut self,
        now: Instant,
        source: SocketAddr,
        dest: SocketAddr,
        p: &[u8],
    ) -> bool {
        self.core
            .handle_receive(now, Protocol::Tcp, source, dest, p);
        self.core.knows(Protocol::Tcp, source, dest)
    }

    fn set_tcp_addr(&mut self, addr: SocketAddr) {
        self.core.set_tcp_candidate(Some(addr));
    }

    fn handle_shard_message(&mut self, now: Instant, from: ShardId, message: ShardMessage) {
        self.core.handle_shard_message(now, from, message);
    }

    fn handle_command(&mut self, now: Instant, command: NodeCommand) {
        let core = &mut self.core;
        match command {
            NodeCommand::CreatePeer {
                peer,
                request,
                reply,
            } => {
                let created = core.create_peer(now, peer, request).map_err(map_error);
                if created.is_ok() {
                    self.state.created(peer);
                }
                let _ = reply.send(created);
            }
            NodeCommand::Renegotiate { peer, offer, reply } => {
                let answer = core.renegotiate(now, peer, &offer).map_err(map_error);
                if answer.is_ok() {
                    self.state.settled(peer);
                }
                let _ = reply.send(answer);
            }
            NodeCommand::AddCandidates {
                peer,
                candidates,
                reply,
            } => {
                let added = core
                    .add_remote_candidates(now, peer, &candidates)
                    .map_err(map_error);
                let _ = reply.send(added);
            }
            NodeCommand::AcceptAnswer {
                peer,
                answer,
                reply,
            } => {
                let accepted = core.accept_answer(now, peer, &answer).map_err(map_error);
                if accepted.is_ok() {
                    self.state.settled(peer);
                }
                let _ = reply.send(accepted);
            }
            NodeCommand::TrackInfo { track, reply } => {
                let _ = reply.send(core.track_info(track).ok_or(NodeError::UnknownTrack(track)));
            }
            NodeCommand::AddRemoteFanout {
                track,
                shard,
                reply,
            } => {
                core.add_remote_fanout(track, shard);
                let _ = reply.send(Ok(()));
            }
            NodeCommand::RemoveRemoteFanout {
                track,
                shard,
                reply,
            } => {
                core.remove_remote_fanout(track, shard);
                let _ = reply.send(Ok(()));
            }
            NodeCommand::Subscribe {
                subscriber,
                info,
                reply,
            } => {
                let _ = reply.send(core.subscribe(now, subscriber, info).map_err(map_error));
            }
            NodeCommand::Unsubscribe {
                subscriber,
                track,
                reply,
            } => {
                let _ = reply.send(core.unsubscribe(now, subscriber, track).map_err(map_error));
            }
            NodeCommand::SetPreference {
                subscriber,
                track,
                preference,
                reply,
            } => {
                let set = core.set_preference(now, subscriber, track, preference);
                let _ = reply.send(set.map_err(map_error));
            }
            NodeCommand::SetTrackMuted {
                track,
                muted,
                reply,
            } => {
                let _ = reply.send(core.set_track_muted(now, track, muted).map_err(map_error));
            }
            NodeCommand::SetCanSendData {
                peer,
                allowed,
                reply,
            } => {
                let _ = reply.send(core.set_can_send_data(peer, allowed).map_err(map_error));
            }
            NodeCommand::ClosePeer { peer, reply } => {
                core.close_peer(now, peer);
                let _ = reply.send(Ok(()));
            }
            NodeCommand::Snapshot { reply } => {
                let _ = reply.send(Ok(self.state.snapshot()));
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
    }

    fn drain_output(
        &mut self,
        now: Instant,
        out: &mut Outbox<'_, ShardMessage>,
    ) -> Option<Instant> {
        self.core
            .drain_datagrams(|to, bytes| out.transmit_over(to.proto, to.addr, bytes));
        loop {
            match self.core.poll_output() {
                Output::ToShard { shard, msg } => {
                    out.to_shard(shard, msg);
                }
                Output::ToEveryShard { msg } => {
                    // Only shards with peers can have members of a room.
                    for (i, peers) in self.peers_on_shard.iter().enumerate() {
                        let shard = ShardId(i as u16);
                        if shard != self.shard && peers.load(Ordering::Relaxed) > 0 {
                            out.to_shard(shard, msg.clone());
                        }
                    }
                }
                Output::Event(e) => self.emit(now, e),
                Output::Timeout(at) => return Some(at),
            }
        }
    }

    fn stats(&self) -> ShardStats {
        self.core.stats()
    }
}
