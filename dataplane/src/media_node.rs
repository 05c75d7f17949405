//! `MediaNode`: the in-process node API over a set of shards running the SFU core.
//!
//! Owns placement (a room's first peer goes to the least-loaded shard, later peers of the
//! room follow it while that shard has room), the route of every call (ids carry their
//! shard), cross-shard subscriptions (tell the publisher's shard to fan out, then subscribe
//! on the subscriber's shard) and the load report. Must never touch a packet: it only sends
//! commands and reads snapshots. Its locks guard control-path maps only.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use shardcast_sfu::api::TrackInfo;
use shardcast_sfu::ids::ShardId;
use shardcast_sfu::{CoreConfig, ShardStats};
use tokio::sync::{broadcast, oneshot};

use crate::driver::IoBackend;
use crate::fanout::RemoteSubs;
use crate::node::{
    CreatePeer, CreatedPeer, LayerPreference, MediaNodeApi, NodeError, NodeEvent, NodeFuture,
    NodeLoad, NodeSnapshot, PeerId, RoomId, TrackId,
};
use crate::room_places::RoomPlaces;
use crate::sfu_logic::{NodeCommand, SfuLogic};
use crate::shard::{CommandError, ShardConfig, ShardError, ShardSet, ShardSnapshot};

/// Start-up parameters of a media node.
#[derive(Debug, Clone)]
pub struct MediaNodeConfig {
    pub shards: ShardConfig,
    pub core: CoreConfig,
    /// Peers a shard takes before placement prefers another shard for a room's next peer.
    pub max_peers_per_shard: u32,
    /// Events buffered per `events()` receiver before a slow reader lags.
    pub event_capacity: usize,
}

impl Default for MediaNodeConfig {
    fn default() -> Self {
        MediaNodeConfig {
            shards: ShardConfig::default(),
            core: CoreConfig::default(),
            max_peers_per_shard: 500,
            event_capacity: 4096,
        }
    }
}

struct LoadSample {
    forwarded: u64,
    at: Instant,
}

pub struct MediaNode {
    shards: ShardSet<SfuLogic>,
    events: broadcast::Sender<NodeEvent>,
    peers_on_shard: Arc<[AtomicU32]>,
    rooms: Mutex<RoomPlaces>,
    /// Cross-shard subscriptions, so a publisher's fan-out to a shard ends with the last one.
    remote_subs: Mutex<RemoteSubs>,
    /// The node's own event receiver, drained on API calls to learn of peers and tracks that
    /// went away on their own (timeouts), without a task of its own.
    housekeeping: Mutex<broadcast::Receiver<NodeEvent>>,
    next_peer: AtomicU64,
    max_peers_per_shard: u32,
    last_load: Mutex<Option<LoadSample>>,
}

fn command_error(e: CommandError) -> NodeError {
    match e {
        CommandError::Full => NodeError::Unavailable("shard command queue is full".into()),
        CommandError::Stopped => NodeError::Unavailable("shard stopped".into()),
        CommandError::NoSuchShard => NodeError::Unavailable("no such shard".into()),
    }
}

impl MediaNode {
    /// Binds the shard sockets and starts the shards.
    pub fn start(config: MediaNodeConfig) -> Result<Self, ShardError> {
        let (events, housekeeping) = broadcast::channel(config.event_capacity.max(16));
        let n = crate::shard::shard_count(config.shards.shards);
        let peers_on_shard: Arc<[AtomicU32]> = (0..n).map(|_| AtomicU32::new(0)).collect();
        let mut shard_config = config.shards.clone();
        shard_config.shards = n;
        let (ev, counts, core) = (events.clone(), peers_on_shard.clone(), config.core.clone());
        let shards = ShardSet::start(&shard_config, move |id, addr| {
            SfuLogic::new(core.clone(), id, addr, ev.clone(), counts.clone())
        })?;
        Ok(MediaNode {
            shards,
            events,
            peers_on_shard,
            rooms: Mutex::new(RoomPlaces::default()),
            remote_subs: Mutex::new(RemoteSubs::default()),
            housekeeping: Mutex::new(housekeeping),
            next_peer: AtomicU64::new(1),
            max_peers_per_shard: config.max_peers_per_shard.max(1),
            last_load: Mutex::new(None),
        })
    }

    /// The UDP address of each shard (its ICE host candidate).
    pub fn shard_addrs(&self) -> Vec<SocketAddr> {
        self.shards.shards().iter().map(|s| s.local_addr).collect()
    }

    /// The ICE-TCP listening address of each shard (its passive TCP candidate; None: off).
    pub fn shard_tcp_addrs(&self) -> Vec<Option<SocketAddr>> {
        self.shards.shards().iter().map(|s| s.tcp_addr).collect()
    }

    pub fn backend(&self) -> IoBackend {
        self.shards.backend()
    }

    /// Per-shard counters (at most about a second old), for metrics.
    pub fn shard_snapshots(&self) -> Vec<ShardSnapshot<ShardStats>> {
        self.shards.shards().iter().map(|s| s.snapshot()).collect()
    }

    /// Where a room's next peer goes: the room's shard while it fits, else the least loaded.
    fn place(&self, room: &RoomId) -> ShardId {
        let load = |s: ShardId| self.peers_on_shard[s.0 as usize].load(Ordering::Relaxed);
        let least = (0..self.peers_on_shard.len())
            .map(|s| ShardId(s as u16))
            .min_by_key(|&s| load(s))
            .unwrap_or(ShardId(0));
        self.places()
            .place(room, |s| load(s) < self.max_peers_per_shard, least)
    }

    fn places(&self) -> std::sync::MutexGuard<'_, RoomPlaces> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn call<T>(
        &self,
        shard: ShardId,
        make: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> NodeCommand,
    ) -> Result<T, NodeError> {
        let handle = self
            .shards
            .get(shard)
            .ok_or_else(|| NodeError::Unavailable(format!("no shard {shard}")))?;
        let (tx, rx) = oneshot::channel();
        handle.send(make(tx)).map_err(command_error)?;
        rx.await
            .map_err(|_| NodeError::Unavailable(format!("{shard} dropped the request")))?
    }

    fn check_peer(&self, peer: PeerId) -> Result<ShardId, NodeError> {
        let shard = peer.shard();
        if self.shards.get(shard).is_none() {
            return Err(NodeError::UnknownPeer(peer));
        }
        Ok(shard)
    }

    fn check_track(&self, track: TrackId) -> Result<ShardId, NodeError> {
        let shard = track.shard();
        if self.shards.get(shard).is_none() {
            return Err(NodeError::UnknownTrack(track));
        }
        Ok(shard)
    }

    async fn create_peer_impl(&self, request: CreatePeer) -> Result<CreatedPeer, NodeError> {
        let shard = self.place(&request.room);
        let local = self.next_peer.fetch_add(1, Ordering::Relaxed);
        let peer = PeerId::new(shard, local);
        let CreatePeer {
            room,
            identity,
            role,
            offer,
            bind_tracks,
            can_send_data,
            video_codecs,
        } = request;
        // Tracks to bind into the answer (WHEP), looked up by id. A track that is gone is
        // simply not bound; a track on another shard gets its fan-out first, so its first
        // packets are not lost.
        let request_room = room.clone();
        let mut bind = Vec::new();
        let mut remote = Vec::new();
        for track in bind_tracks {
            let Ok(pub_shard) = self.check_track(track) else {
                continue;
            };
            let info = self
                .call(pub_shard, |reply| NodeCommand::TrackInfo { track, reply })
                .await;
            let Ok(info) = info else {
                continue;
            };
            if pub_shard != shard {
                let added = self
                    .call(pub_shard, |reply| NodeCommand::AddRemoteFanout {
                        track,
                        shard,
                        reply,
                    })
                    .await;
                if let Err(e) = added {
                    for track in remote {
                        self.end_fanout(track, shard);
                    }
                    self.places().abandoned(&request_room);
                    return Err(e);
                }
                remote.push(track);
            }
            bind.push(info);
        }
        let core_request = shardcast_sfu::api::CreatePeer {
            room,
            identity,
            role,
            offer,
            bind_tracks: bind,
            can_send_data,
            video_codecs,
        };
        self.peers_on_shard[shard.0 as usize].fetch_add(1, Ordering::Relaxed);
        let answer = self
            .call(shard, |reply| NodeCommand::CreatePeer {
                peer,
                request: core_request,
                reply,
            })
            .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                self.peers_on_shard[shard.0 as usize].fetch_sub(1, Ordering::Relaxed);
                self.places().abandoned(&request_room);
                for track in remote {
                    self.end_fanout(track, shard);
                }
                return Err(e);
            }
        };
        self.places().joined(peer, &request_room);
        for track in remote {
            self.remote().added(peer, track);
        }
        Ok(CreatedPeer { peer, answer })
    }

    async fn subscribe_impl(&self, subscriber: PeerId, track: TrackId) -> Result<(), NodeError> {
        self.housekeeping();
        let sub_shard = self.check_peer(subscriber)?;
        let pub_shard = self.check_track(track)?;
        let info: TrackInfo = self
            .call(pub_shard, |reply| NodeCommand::TrackInfo { track, reply })
            .await?;
        if sub_shard != pub_shard {
            // Fan-out first, so the first packets after the subscription are not lost.
            self.call(pub_shard, |reply| NodeCommand::AddRemoteFanout {
                track,
                shard: sub_shard,
                reply,
            })
            .await?;
        }
        self.call(sub_shard, |reply| NodeCommand::Subscribe {
            subscriber,
            info,
            reply,
        })
        .await?;
        if sub_shard != pub_shard {
            self.remote().added(subscriber, track);
        }
        Ok(())
    }

    async fn unsubscribe_impl(&self, subscriber: PeerId, track: TrackId) -> Result<(), NodeError> {
        let sub_shard = self.check_peer(subscriber)?;
        let pub_shard = self.check_track(track)?;
        self.call(sub_shard, |reply| NodeCommand::Unsubscribe {
            subscriber,
            track,
            reply,
        })
        .await?;
        if sub_shard != pub_shard && self.remote().removed(subscriber, track) {
            self.call(pub_shard, |reply| NodeCommand::RemoveRemoteFanout {
                track,
                shard: sub_shard,
                reply,
            })
            .await?;
        }
        Ok(())
    }

    fn remote(&self) -> std::sync::MutexGuard<'_, RemoteSubs> {
        self.remote_subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells a publisher's shard to stop handing `track` to `shard` (no reply awaited).
    fn end_fanout(&self, track: TrackId, shard: ShardId) {
        if let Some(h) = self.shards.get(track.shard()) {
            let (reply, _) = oneshot::channel();
            let _ = h.send(NodeCommand::RemoveRemoteFanout {
                track,
                shard,
                reply,
            });
        }
    }

    /// Applies what happened on the shards since the last call: closed subscribers end their
    /// cross-shard fan-outs, ended tracks are forgotten. A lagged receiver only means some
    /// fan-outs outlive their subscribers (the receiving core drops those packets).
    fn housekeeping(&self) {
        let mut rx = self.housekeeping.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match rx.try_recv() {
                Ok(NodeEvent::PeerClosed { peer, .. }) => {
                    self.places().left(peer);
                    let ended = self.remote().peer_closed(peer);
                    for (track, shard) in ended {
                        self.end_fanout(track, shard);
                    }
                }
                Ok(NodeEvent::TrackUnpublished { track, .. }) => self.remote().track_ended(track),
                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => break,
            }
        }
    }

    fn load_impl(&self) -> NodeLoad {
        self.housekeeping();
        let snaps = self.shard_snapshots();
        let mut load = NodeLoad {
            shards: snaps.len() as u32,
            ..NodeLoad::default()
        };
        let mut forwarded = 0;
        let mut cpu = 0.0;
        for s in &snaps {
            cpu += s.cpu;
            load.peers += s.logic.peers as u32;
            load.tracks += s.logic.tracks as u32;
            load.subscriptions += s.logic.subscriptions as u32;
            forwarded += s.logic.rtp_forwarded;
        }
        load.rooms = self.places().len() as u32;
        let now = Instant::now();
        let mut last = self.last_load.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(prev) = last.as_ref() {
            let secs = now.duration_since(prev.at).as_secs_f64();
            if secs > 0.0 {
                load.forwarded_pps =
                    (forwarded.saturating_sub(prev.forwarded) as f64 / secs) as u64;
            }
        }
        *last = Some(LoadSample { forwarded, at: now });
        let fullest = self
            .peers_on_shard
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0);
        load.cpu = (cpu / snaps.len().max(1) as f32).min(1.0);
        let peers = (fullest as f32 / self.max_peers_per_shard as f32).min(1.0);
        load.utilization = peers.max(load.cpu);
        load
    }
}

impl MediaNodeApi for MediaNode {
    fn create_peer(&self, request: CreatePeer) -> NodeFuture<'_, CreatedPeer> {
        Box::pin(self.create_peer_impl(request))
    }

    fn renegotiate(&self, peer: PeerId, offer: String) -> NodeFuture<'_, String> {
        Box::pin(async move {
            let shard = self.check_peer(peer)?;
            self.call(shard, |reply| NodeCommand::Renegotiate {
                peer,
                offer,
                reply,
            })
            .await
        })
    }

    fn accept_answer(&self, peer: PeerId, answer: String) -> NodeFuture<'_, ()> {
        Box::pin(async move {
            let shard = self.check_peer(peer)?;
            self.call(shard, |reply| NodeCommand::AcceptAnswer {
                peer,
                answer,
                reply,
            })
            .await
        })
    }

    fn add_candidates(&self, peer: PeerId, candidates: Vec<String>) -> NodeFuture<'_, ()> {
        Box::pin(async move {
            let shard = self.check_peer(peer)?;
            self.call(shard, |reply| NodeCommand::AddCandidates {
                peer,
                candidates,
                reply,
            })
            .await
        })
    }

    fn subscribe(&self, subscriber: PeerId, track: TrackId) -> NodeFuture<'_, ()> {
        Box::pin(self.subscribe_impl(subscriber, track))
    }

    fn unsubscribe(&self, subscriber: PeerId, track: TrackId) -> NodeFuture<'_, ()> {
        Box::pin(self.unsubscribe_impl(subscriber, track))
    }

    fn set_preference(
        &self,
        subscriber: PeerId,
        track: TrackId,
        preference: LayerPreference,
    ) -> NodeFuture<'_, ()> {
        Box::pin(async move {
            let shard = self.check_peer(subscriber)?;
            self.call(shard, |reply| NodeCommand::SetPreference {
                subscriber,
                track,
                preference,
                reply,
            })
            .await
        })
    }

    fn set_track_muted(&self, track: TrackId, muted: bool) -> NodeFuture<'_, ()> {
        Box::pin(async move {
            let shard = self.check_track(track)?;
            self.call(shard, |reply| NodeCommand::SetTrackMuted {
                track,
                muted,
                reply,
            })
            .await
        })
    }

    fn set_can_send_data(&self, peer: PeerId, allowed: bool) -> NodeFuture<'_, ()> {
        Box::pin(async move {
            let shard = self.check_peer(peer)?;
            self.call(shard, |reply| NodeCommand::SetCanSendData {
                peer,
                allowed,
                reply,
            })
            .await
        })
    }

    fn close_peer(&self, peer: PeerId) -> NodeFuture<'_, ()> {
        Box::pin(async move {
            let Ok(shard) = self.check_peer(peer) else {
                return Ok(()); // unknown peers are not an error
            };
            self.call(shard, |reply| NodeCommand::ClosePeer { peer, reply })
                .await?;
            self.places().left(peer);
            let ended = self.remote().peer_closed(peer);
            for (track, shard) in ended {
                self.end_fanout(track, shard);
            }
            self.housekeeping();
            Ok(())
        })
    }

    fn load(&self) -> NodeFuture<'_, NodeLoad> {
        Box::pin(async move { Ok(self.load_impl()) })
    }

    fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    fn snapshot(&self) -> NodeFuture<'_, NodeSnapshot> {
        Box::pin(async move {
            let mut parts = Vec::new();
            for shard in 0..self.peers_on_shard.len() {
                let shard = ShardId(shard as u16);
                parts.push(
                    self.call(shard, |reply| NodeCommand::Snapshot { reply })
                        .await?,
                );
            }
            Ok(crate::node_state::merge(parts))
        })
    }
}
