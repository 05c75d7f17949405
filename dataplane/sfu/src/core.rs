//! `ShardCore`: the sans-IO SFU of one shard. Owns the peers, the demux table, the timer
//! heap, the tracks and subscriptions, and the output queue.
//!
//! Every input (`handle_datagram`, `handle_shard_message`, `handle_timeout`, control calls)
//! runs to completion: the touched peers are drained into the output queue before it
//! returns, so `poll_output` only pops. Each call into a peer's str0m is wrapped in
//! `catch_unwind`: a panic closes that peer, is counted, and the shard goes on.
//! Must never read the clock, touch a socket or block.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use str0m::net::{Protocol as NetProtocol, Receive};
use str0m::{Event, IceConnectionState, Input};
use tracing::{debug, trace, warn};

use crate::api::{
    CloseReason, CoreEvent, CreatePeer, LayerPreference, MediaKind, Output, PeerRole, ShardMessage,
    TrackInfo,
};
use crate::config::CoreConfig;
use crate::demux::{self, Demux, Protocol};
use crate::ids::{PeerId, RoomId, ShardId, TrackId};
use crate::peer::{Peer, PublishedMid};
use crate::room::Room;
use crate::stats::{DropReason, ShardStats};
use crate::timers::TimerHeap;
use crate::track::{PublishedTrack, Subscription};

/// Errors of the control calls (the node API maps them to its stable codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("malformed SDP: {0}")]
    BadSdp(String),
    #[error("unknown peer {0}")]
    UnknownPeer(PeerId),
    #[error("unknown track {0}")]
    UnknownTrack(TrackId),
    #[error("negotiation state does not allow this: {0}")]
    BadState(String),
    #[error("peer {0} already exists")]
    DuplicatePeer(PeerId),
}

pub struct ShardCore {
    pub(crate) config: CoreConfig,
    pub(crate) shard: ShardId,
    pub(crate) local_addr: SocketAddr,
    pub(crate) peers: HashMap<PeerId, Peer>,
    pub(crate) demux: Demux,
    pub(crate) timers: TimerHeap,
    pub(crate) tracks: HashMap<TrackId, PublishedTrack>,
    pub(crate) subs: HashMap<(PeerId, TrackId), Subscription>,
    pub(crate) rooms: HashMap<RoomId, Room>,
    pub(crate) out: VecDeque<Output>,
    pub(crate) dirty: Vec<PeerId>,
    pub(crate) stats: ShardStats,
    pub(crate) next_track: u64,
    pub(crate) next_tick: Instant,
}

impl ShardCore {
    pub fn new(config: CoreConfig, shard: ShardId, local_addr: SocketAddr, now: Instant) -> Self {
        let next_tick = now + config.tick;
        ShardCore {
            config,
            shard,
            local_addr,
            peers: HashMap::new(),
            demux: Demux::default(),
            timers: TimerHeap::default(),
            tracks: HashMap::new(),
            subs: HashMap::new(),
            rooms: HashMap::new(),
            out: VecDeque::new(),
            dirty: Vec::new(),
            stats: ShardStats::default(),
            next_track: 1,
            next_tick,
        }
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    /// What a subscriber needs to subscribe to `track` (local tracks only).
    pub fn track_info(&self, track: TrackId) -> Option<TrackInfo> {
        let t = self.tracks.get(&track)?;
        t.publisher.map(|_| t.info.clone())
    }

    /// The tracks a local peer publishes.
    pub fn tracks_of(&self, peer: PeerId) -> Vec<TrackId> {
        self.peers
            .get(&peer)
            .map(|p| p.published.iter().map(|m| m.track).collect())
            .unwrap_or_default()
    }

    /// The latest downlink estimate (bits/s) for a subscriber, from str0m's TWCC BWE.
    pub fn downlink_estimate(&self, peer: PeerId) -> Option<u64> {
        self.peers.get(&peer)?.downlink_estimate.map(|b| b.as_u64())
    }

    /// The layer currently forwarded on a subscription (`None`: nothing yet, or paused).
    pub fn forwarded_layer(&self, subscriber: PeerId, track: TrackId) -> Option<u8> {
        self.subs.get(&(subscriber, track))?.forwarded_layer()
    }

    pub fn has_peer(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }

    // ---------------------------------------------------------------- control

    /// Create a peer from the client's offer; returns the SDP answer. The offer's recvonly
    /// m-lines are bound to `req.bind` (see `CreatePeer::bind`).
    pub fn create_peer(
        &mut self,
        now: Instant,
        id: PeerId,
        req: CreatePeer,
    ) -> Result<String, CoreError> {
        if self.peers.contains_key(&id) {
            return Err(CoreError::DuplicatePeer(id));
        }
        let mut peer = Peer::new(
            id,
            req.room.clone(),
            &req.identity,
            req.role,
            &self.config,
            self.local_addr,
            now,
        )
        .map_err(CoreError::BadState)?;
        let answer = peer.accept_offer(&req.offer).map_err(CoreError::BadSdp)?;
        self.demux.add_peer(id, peer.local_ufrag.clone());
        self.rooms
            .entry(req.room.clone())
            .or_insert_with(|| Room::new(req.room.clone(), now))
            .members
            .push(id);
        self.peers.insert(id, peer);
        self.stats.peers = self.peers.len() as u64;
        debug!(peer = %id, room = %req.room, "peer created");
        self.bind_answered(now, id, &answer, req.bind);
        self.mark_dirty(id);
        self.drain_all(now);
        Ok(answer)
    }

    /// The client re-offers (new tracks, ICE restart); returns the answer.
    pub fn renegotiate(
        &mut self,
        now: Instant,
        id: PeerId,
        offer: &str,
    ) -> Result<String, CoreError> {
        let res = self
            .with_peer(id, |p| p.accept_offer(offer))
            .ok_or(CoreError::UnknownPeer(id))?;
        self.mark_dirty(id);
        self.drain_all(now);
        let answer = res.map_err(CoreError::BadSdp)?;
        // Changes queued during a glare go out in a fresh offer.
        self.maybe_offer(now, id);
        Ok(answer)
    }

    /// The client's answer to our last `CoreEvent::Offer`.
    pub fn accept_answer(
        &mut self,
        now: Instant,
        id: PeerId,
        answer: &str,
    ) -> Result<(), CoreError> {
        let res = self
            .with_peer(
                id,
                |p| -> Result<Vec<(TrackId, str0m::media::Mid)>, CoreError> {
                    let pending = p
                        .negotiation
                        .pending
                        .take()
                        .ok_or_else(|| CoreError::BadState("no offer outstanding".into()))?;
                    let answer = str0m::change::SdpAnswer::from_sdp_string(answer)
                        .map_err(|e| CoreError::BadSdp(e.to_string()))?;
                    p.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| CoreError::BadSdp(e.to_string()))?;
                    Ok(std::mem::take(&mut p.negotiation.in_flight))
                },
            )
            .ok_or(CoreError::UnknownPeer(id))?;
        let confirmed = res?;
        for (track, mid) in confirmed {
            let ssrc = self.with_peer(id, |p| {
                p.rtc
                    .direct_api()
                    .stream_tx_by_mid(mid, None)
                    .map(|s| s.ssrc())
            });
            if let Some(sub) = self.subs.get_mut(&(id, track)) {
                sub.ssrc = ssrc.flatten();
                sub.restart();
            }
            self.request_keyframe(now, track, 0, true);
        }
        self.mark_dirty(id);
        self.drain_all(now);
        self.maybe_offer(now, id);
        Ok(())
    }

    /// Forward `info.track` to `subscriber`: a new sendonly m-line, offered now or batched
    /// into the next offer if one is outstanding.
    pub fn subscribe(
        &mut self,
        now: Instant,
        subscriber: PeerId,
        info: TrackInfo,
    ) -> Result<(), CoreError> {
        let Some(peer) = self.peers.get_mut(&subscriber) else {
            return Err(CoreError::UnknownPeer(subscriber));
        };
        let track = info.track;
        if self.subs.contains_key(&(subscriber, track)) {
            return Ok(());
        }
        if track.shard() == self.shard {
            match self.tracks.get(&track) {
                Some(t) if t.publisher.is_some() => {}
                _ => return Err(CoreError::UnknownTrack(track)),
            }
        }
        peer.subscriptions.push(track);
        peer.negotiation.queued_add.push(track);
        let entry = self
            .tracks
            .entry(track)
            .or_insert_with(|| PublishedTrack::new(info, None, None));
        entry.subscribers.push(subscriber);
        self.subs.insert((subscriber, track), Subscription::new());
        self.stats.subscriptions = self.subs.len() as u64;
        self.maybe_offer(now, subscriber);
        Ok(())
    }

    pub fn unsubscribe(
        &mut self,
        now: Instant,
        subscriber: PeerId,
        track: TrackId,
    ) -> Result<(), CoreError> {
        if !self.peers.contains_key(&subscriber) {
            return Err(CoreError::UnknownPeer(subscriber));
        }
        self.remove_subscription(subscriber, track, true);
        self.maybe_offer(now, subscriber);
        Ok(())
    }

    pub fn set_preference(
        &mut self,
        now: Instant,
        subscriber: PeerId,
        track: TrackId,
        preference: LayerPreference,
    ) -> Result<(), CoreError> {
        let sub = self
            .subs
            .get_mut(&(subscriber, track))
            .ok_or(CoreError::UnknownTrack(track))?;
        sub.preference = preference;
        self.update_layers_of(now, subscriber);
        self.drain_all(now);
        Ok(())
    }

    pub fn set_track_muted(
        &mut self,
        now: Instant,
        track: TrackId,
        muted: bool,
    ) -> Result<(), CoreError> {
        let t = self
            .tracks
            .get_mut(&track)
            .ok_or(CoreError::UnknownTrack(track))?;
        t.muted = muted;
        if !muted {
            for sub in t.subscribers.clone() {
                if let Some(s) = self.subs.get_mut(&(sub, track)) {
                    s.restart();
                }
            }
            self.request_keyframe(now, track, 0, true);
            self.drain_all(now);
        }
        Ok(())
    }

    /// Close a peer and free everything it owned. Unknown peers are fine.
    pub fn close_peer(&mut self, now: Instant, id: PeerId) {
        self.close_peer_with(now, id, CloseReason::Requested);
    }

    /// Subscribers on `shard` want `track`'s media.
    pub fn add_remote_fanout(&mut self, track: TrackId, shard: ShardId) {
        if let Some(t) = self.tracks.get_mut(&track) {
            if !t.remote_shards.contains(&shard) {
                t.remote_shards.push(shard);
            }
        }
    }

    pub fn remove_remote_fanout(&mut self, track: TrackId, shard: ShardId) {
        if let Some(t) = self.tracks.get_mut(&track) {
            t.remote_shards.retain(|s| *s != shard);
        }
    }

    // ---------------------------------------------------------------- input

    /// One UDP datagram from `source` to our `destination` socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += buf.len() as u64;
        let proto = match demux::classify(buf, self.config.max_datagram) {
            Ok(p) => p,
            Err(reason) => return self.drop_datagram(reason, source),
        };
        let known = self.demux.by_tuple(source, destination);
        let id = match (known, proto) {
            (Some(id), _) => id,
            (None, Protocol::Stun) => {
                match demux::stun_local_ufrag(buf).and_then(|u| self.demux.by_ufrag(u)) {
                    Some(id) => id,
                    None => return self.drop_datagram(DropReason::UnknownStunUser, source),
                }
            }
            (None, _) => return self.drop_datagram(DropReason::UnknownSource, source),
        };
        let Ok(contents) = buf.try_into() else {
            return self.drop_datagram(DropReason::Garbage, source);
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: NetProtocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let expects_rtp = proto == Protocol::Rtp && !demux::is_rtcp(buf);
        let rtp_before = self.stats.rtp_in;
        let learn = known.is_none();
        let res = self.with_peer(id, |p| {
            if learn && !p.rtc.accepts(&input) {
                return Ok(false);
            }
            p.rtc.handle_input(input).map(|_| true)
        });
        match res {
            None => return,
            Some(Ok(false)) => return self.drop_datagram(DropReason::UnknownStunUser, source),
            Some(Ok(true)) => {
                if learn {
                    self.demux.learn(source, destination, id);
                    self.stats.demux_entries = self.demux.len() as u64;
                }
            }
            Some(Err(e)) => {
                trace!(peer = %id, %source, "str0m rejected datagram: {e}");
                self.stats.drop(DropReason::PeerError);
            }
        }
        self.mark_dirty(id);
        self.drain_all(now);
        if expects_rtp && self.stats.rtp_in == rtp_before {
            self.stats.drop(DropReason::RtpRejected);
        }
    }

    /// A message from another shard.
    pub fn handle_shard_message(&mut self, now: Instant, from: ShardId, msg: ShardMessage) {
        match msg {
            ShardMessage::Media(packet) => self.route_remote(now, packet),
            ShardMessage::KeyframeRequest { track, layer } => {
                trace!(%track, layer, %from, "keyframe request from shard");
                self.request_keyframe(now, track, layer, false);
            }
            ShardMessage::TrackEnded { track } => {
                let subs = self
                    .tracks
                    .get(&track)
                    .filter(|t| t.publisher.is_none())
                    .map(|t| t.subscribers.clone())
                    .unwrap_or_default();
                for sub in subs {
                    self.remove_subscription(sub, track, true);
                    self.maybe_offer(now, sub);
                }
                self.tracks.remove(&track);
                self.stats.tracks = self.local_track_count();
            }
        }
        self.drain_all(now);
    }

    /// Time passed: run due peers' timers and the core's own tick.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id)) = self.timers.pop_due(now) {
            let Some(peer) = self.peers.get(&id) else {
                continue;
            };
            if peer.deadline != Some(at) {
                continue; // stale entry
            }
            let res = self.with_peer(id, |p| {
                p.deadline = None;
                p.rtc.handle_input(Input::Timeout(now))
            });
            if let Some(Err(e)) = res {
                debug!(peer = %id, "timeout error: {e}");
                self.close_peer_with(now, id, CloseReason::Error);
                continue;
            }
            self.mark_dirty(id);
        }
        if now >= self.next_tick {
            self.next_tick = now + self.config.tick;
            self.tick(now);
        }
        self.drain_all(now);
    }

    /// Next thing to do: a datagram, a message, an event, or when to call `handle_timeout`.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let next = self
            .timers
            .earliest()
            .map_or(self.next_tick, |t| t.min(self.next_tick));
        Output::Timeout(next)
    }

    // ---------------------------------------------------------------- internals

    fn drop_datagram(&mut self, reason: DropReason, source: SocketAddr) {
        trace!(%source, reason = reason.as_str(), "datagram dropped");
        self.stats.drop(reason);
    }

    pub(crate) fn mark_dirty(&mut self, id: PeerId) {
        if let Some(p) = self.peers.get_mut(&id) {
            if !p.dirty {
                p.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Run `f` on a peer, catching panics. A panicking peer is closed and `None` returned.
    pub(crate) fn with_peer<R>(&mut self, id: PeerId, f: impl FnOnce(&mut Peer) -> R) -> Option<R> {
        let peer = self.peers.get_mut(&id)?;
        match catch_unwind(AssertUnwindSafe(|| f(peer))) {
            Ok(r) => Some(r),
            Err(_) => {
                warn!(peer = %id, "panic while handling peer; closing it");
                self.stats.peer_panics += 1;
                // The Rtc may be inconsistent: drop it without draining.
                self.remove_peer_state(id, CloseReason::Panic);
                None
            }
        }
    }

    /// Drain every peer touched by the current input (draining may touch more).
    pub(crate) fn drain_all(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            if let Some(p) = self.peers.get_mut(&id) {
                p.dirty = false;
            }
            self.drain_peer(now, id);
        }
    }

    fn drain_peer(&mut self, now: Instant, id: PeerId) {
        loop {
            let Some(res) = self.with_peer(id, |p| p.rtc.poll_output()) else {
                return;
            };
            match res {
                Err(e) => {
                    debug!(peer = %id, "poll_output error: {e}");
                    self.close_peer_with(now, id, CloseReason::Error);
                    return;
                }
                Ok(str0m::Output::Timeout(at)) => {
                    let alive = self.peers.get(&id).is_some_and(|p| p.rtc.is_alive());
                    if !alive {
                        self.close_peer_with(now, id, CloseReason::Disconnected);
                        return;
                    }
                    if let Some(p) = self.peers.get_mut(&id) {
                        if p.deadline != Some(at) {
                            p.deadline = Some(at);
                            self.timers.schedule(id, at);
                        }
                    }
                    return;
                }
                Ok(str0m::Output::Transmit(t)) => {
                    self.stats.datagrams_out += 1;
                    self.stats.bytes_out += t.contents.len() as u64;
                    self.out.push_back(Output::Transmit(t));
                }
                Ok(str0m::Output::Event(e)) => self.handle_event(now, id, e),
            }
        }
    }

    fn handle_event(&mut self, now: Instant, id: PeerId, event: Event) {
        match event {
            Event::RtpPacket(packet) => self.route_local(now, id, packet),
            Event::Connected => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.connected = true;
                }
                self.out
                    .push_back(Output::Event(CoreEvent::PeerConnected { peer: id }));
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.close_peer_with(now, id, CloseReason::Disconnected);
            }
            Event::Closed => self.close_peer_with(now, id, CloseReason::RemoteClosed),
            Event::MediaAdded(m) => self.on_media_added(now, id, m),
            Event::MediaChanged(m) => {
                if !m.direction.is_receiving() {
                    let track = self
                        .peers
                        .get(&id)
                        .and_then(|p| p.published.iter().find(|x| x.mid == m.mid).map(|x| x.track));
                    if let Some(track) = track {
                        self.unpublish(now, id, track);
                    }
                }
            }
            Event::KeyframeRequest(req) => {
                let track = self
                    .peers
                    .get(&id)
                    .and_then(|p| p.sub_by_mid.get(&req.mid).copied());
                if let Some(track) = track {
                    let layer = self
                        .subs
                        .get(&(id, track))
                        .and_then(|s| s.forwarded_layer())
                        .unwrap_or(0);
                    self.request_keyframe(now, track, layer, false);
                }
            }
            Event::EgressBitrateEstimate(kind) => {
                let estimate = match kind {
                    str0m::bwe::BweKind::Twcc { estimate, .. } => Some(estimate),
                    str0m::bwe::BweKind::Remb { estimate, .. } => Some(estimate),
                    _ => None,
                };
                if let Some(p) = self.peers.get_mut(&id) {
                    if estimate.is_some() {
                        p.downlink_estimate = estimate;
                    }
                }
                self.update_layers_of(now, id);
            }
            other => trace!(peer = %id, "event {:?}", std::mem::discriminant(&other)),
        }
    }

    fn on_media_added(&mut self, now: Instant, id: PeerId, m: str0m::media::MediaAdded) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !m.direction.is_receiving() || peer.role == PeerRole::Subscribe {
            return;
        }
        if peer.published.iter().any(|p| p.mid == m.mid) {
            return;
        }
        let rids: smallvec::SmallVec<[str0m::media::Rid; 3]> = m
            .simulcast
            .as_ref()
            .map(|s| {
                let layers = if s.recv.is_empty() { &s.send } else { &s.recv };
                layers.iter().take(3).map(|l| l.rid).collect()
            })
            .unwrap_or_default();
        let track = TrackId::new(self.shard, self.next_track);
        self.next_track += 1;
        let kind = MediaKind::from(m.kind);
        let info = TrackInfo {
            track,
            room: peer.room.clone(),
            publisher_identity: peer.identity.to_string(),
            kind,
            rids: rids.iter().map(|r| r.to_string()).collect(),
        };
        peer.published.push(PublishedMid {
            mid: m.mid,
            track,
            rids,
        });
        self.out.push_back(Output::Event(CoreEvent::TrackPublished {
            peer: id,
            room: info.room.clone(),
            track,
            kind,
            identity: info.publisher_identity.clone(),
            rids: info.rids.clone(),
        }));
        self.tracks
            .insert(track, PublishedTrack::new(info, Some(id), Some(m.mid)));
        self.stats.tracks = self.local_track_count();
        debug!(peer = %id, %track, "track published");
        let _ = now;
    }

    pub(crate) fn local_track_count(&self) -> u64 {
        self.tracks
            .values()
            .filter(|t| t.publisher.is_some())
            .count() as u64
    }

    /// A published track goes away: tell everyone, drop its subscriptions.
    fn unpublish(&mut self, now: Instant, publisher: PeerId, track: TrackId) {
        let Some(t) = self.tracks.remove(&track) else {
            return;
        };
        if let Some(p) = self.peers.get_mut(&publisher) {
            p.published.retain(|m| m.track != track);
            p.ssrc_routes.retain(|_, r| r.track != track);
        }
        for sub in t.subscribers.iter().copied() {
            if let Some(s) = self.subs.remove(&(sub, track)) {
                if let Some(p) = self.peers.get_mut(&sub) {
                    p.subscriptions.retain(|x| *x != track);
                    p.negotiation.queued_add.retain(|x| *x != track);
                    if let Some(mid) = s.mid {
                        p.sub_by_mid.remove(&mid);
                        p.negotiation.queued_remove.push(mid);
                    }
                }
            }
        }
        for shard in t.remote_shards.iter().copied() {
            self.out.push_back(Output::ToShard {
                shard,
                msg: ShardMessage::TrackEnded { track },
            });
        }
        self.out
            .push_back(Output::Event(CoreEvent::TrackUnpublished {
                peer: publisher,
                room: t.info.room.clone(),
                track,
            }));
        self.stats.tracks = self.local_track_count();
        self.stats.subscriptions = self.subs.len() as u64;
        for sub in t.subscribers {
            self.maybe_offer(now, sub);
        }
    }

    /// Forget one subscription; `renegotiate` queues the m-line's removal.
    fn remove_subscription(&mut self, subscriber: PeerId, track: TrackId, renegotiate: bool) {
        let Some(s) = self.subs.remove(&(subscriber, track)) else {
            return;
        };
        if let Some(p) = self.peers.get_mut(&subscriber) {
            p.subscriptions.retain(|x| *x != track);
            p.negotiation.queued_add.retain(|x| *x != track);
            if let Some(mid) = s.mid {
                p.sub_by_mid.remove(&mid);
                if renegotiate {
                    p.negotiation.queued_remove.push(mid);
                }
            }
        }
        let mut remove_track = false;
        if let Some(t) = self.tracks.get_mut(&track) {
            t.subscribers.retain(|x| *x != subscriber);
            remove_track = t.publisher.is_none() && t.subscribers.is_empty();
        }
        if remove_track {
            self.tracks.remove(&track);
        }
        self.stats.subscriptions = self.subs.len() as u64;
    }

    /// If no offer is outstanding and changes are queued, make the next server offer.
    pub(crate) fn maybe_offer(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let n = &peer.negotiation;
        if n.pending.is_some() || (n.queued_add.is_empty() && n.queued_remove.is_empty()) {
            return;
        }
        let adds: Vec<(TrackId, MediaKind, String)> = n
            .queued_add
            .iter()
            .filter_map(|t| {
                let info = &self.tracks.get(t)?.info;
                Some((*t, info.kind, info.publisher_identity.clone()))
            })
            .collect();
        let res = self.with_peer(id, |p| {
            let removes = std::mem::take(&mut p.negotiation.queued_remove);
            p.negotiation.queued_add.clear();
            let mut api = p.rtc.sdp_api();
            let mut added = Vec::with_capacity(adds.len());
            for (track, kind, identity) in &adds {
                let mid = api.add_media(
                    (*kind).into(),
                    str0m::media::Direction::SendOnly,
                    Some(sanitize_msid(identity)),
                    Some(track.to_string()),
                    None,
                );
                added.push((*track, mid));
            }
            for mid in removes {
                api.set_direction(mid, str0m::media::Direction::Inactive);
            }
            let (offer, pending) = api.apply()?;
            p.negotiation.pending = Some(pending);
            for (track, mid) in &added {
                p.sub_by_mid.insert(*mid, *track);
            }
            p.negotiation.in_flight = added.clone();
            Some((offer.to_sdp_string(), added))
        });
        let Some(Some((sdp, added))) = res else {
            return;
        };
        for (track, mid) in added {
            if let Some(s) = self.subs.get_mut(&(id, track)) {
                s.mid = Some(mid);
            }
        }
        self.out
            .push_back(Output::Event(CoreEvent::Offer { peer: id, sdp }));
        self.mark_dirty(id);
        self.drain_all(now);
    }

    pub(crate) fn close_peer_with(&mut self, now: Instant, id: PeerId, reason: CloseReason) {
        if let Some(p) = self.peers.get_mut(&id) {
            // Let str0m send what it still owes (RTCP BYE, DTLS close) before dropping it.
            if reason == CloseReason::Requested {
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    p.rtc.disconnect();
                }));
            }
        }
        self.remove_peer_state(id, reason);
        let _ = now;
    }

    /// Free every piece of state a peer owns and announce it.
    fn remove_peer_state(&mut self, id: PeerId, reason: CloseReason) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        self.demux.remove_peer(id);
        for track in peer.subscriptions.iter().copied() {
            self.remove_subscription(id, track, false);
        }
        let now_for_unpublish = self.next_tick;
        // Re-insert a shell so unpublish can update the publisher's tables uniformly.
        for m in peer.published.iter() {
            self.unpublish(now_for_unpublish, id, m.track);
        }
        if let Some(room) = self.rooms.get_mut(&peer.room) {
            room.members.retain(|m| *m != id);
            room.speaker.remove(id);
            if room.members.is_empty() {
                self.rooms.remove(&peer.room);
            }
        }
        self.stats.peers = self.peers.len() as u64;
        self.stats.peers_closed += 1;
        self.stats.demux_entries = self.demux.len() as u64;
        self.out
            .push_back(Output::Event(CoreEvent::PeerClosed { peer: id, reason }));
        debug!(peer = %id, reason = reason.as_str(), "peer closed");
    }

    /// Periodic work: active speakers, layer re-evaluation, peers that never connected.
    fn tick(&mut self, now: Instant) {
        let mut speakers = Vec::new();
        for room in self.rooms.values_mut() {
            if let Some(peer) = room.speaker.poll(now) {
                speakers.push(CoreEvent::ActiveSpeaker {
                    room: room.id.clone(),
                    peer,
                });
            }
        }
        for e in speakers {
            self.out.push_back(Output::Event(e));
        }
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.update_layers_of(now, id);
        }
    }
}

/// msid stream ids are tokens (RFC 8830): keep identities readable, replace the rest.
fn sanitize_msid(identity: &str) -> String {
    let s: String = identity
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_offer(now: Instant) -> String {
        let mut rtc = str0m::Rtc::new(now);
        let mut api = rtc.sdp_api();
        api.add_channel("c".into());
        let (offer, _pending) = api.apply().expect("offer");
        offer.to_sdp_string()
    }

    #[test]
    fn a_panicking_peer_is_closed_and_the_shard_goes_on() {
        let now = Instant::now();
        let addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut core = ShardCore::new(CoreConfig::default(), ShardId(0), addr, now);
        let (a, b) = (PeerId::new(ShardId(0), 1), PeerId::new(ShardId(0), 2));
        for id in [a, b] {
            let req = CreatePeer {
                room: RoomId::new("r"),
                identity: format!("p{}", id.0),
                role: PeerRole::Both,
                offer: client_offer(now),
                bind: Vec::new(),
            };
            core.create_peer(now, id, req).expect("answer");
        }
        assert_eq!(core.stats().peers, 2);
        let r: Option<()> = core.with_peer(a, |_| panic!("boom inside str0m"));
        assert_eq!(r, None);
        assert_eq!(core.stats().peer_panics, 1);
        assert_eq!(core.stats().peers, 1);
        assert!(core.has_peer(b) && !core.has_peer(a));
        let mut closed = false;
        loop {
            match core.poll_output() {
                Output::Timeout(_) => break,
                Output::Event(CoreEvent::PeerClosed { peer, reason }) => {
                    closed |= peer == a && reason == CloseReason::Panic;
                }
                _ => {}
            }
        }
        assert!(closed, "PeerClosed with reason panic");
        // The other peer still works.
        core.handle_timeout(now + std::time::Duration::from_millis(50));
        assert!(core.has_peer(b));
    }

    #[test]
    fn garbage_sdp_is_an_error_not_a_peer() {
        let now = Instant::now();
        let addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut core = ShardCore::new(CoreConfig::default(), ShardId(0), addr, now);
        let req = CreatePeer {
            room: RoomId::new("r"),
            identity: "x".into(),
            role: PeerRole::Both,
            offer: "v=0 nonsense".into(),
            bind: Vec::new(),
        };
        let err = core.create_peer(now, PeerId(1), req).unwrap_err();
        assert!(matches!(err, CoreError::BadSdp(_)));
        assert_eq!(core.stats().peers, 0);
    }
}
