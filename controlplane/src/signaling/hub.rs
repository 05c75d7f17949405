//! The signaling hub of one control-plane instance: its live sessions, the map from media
//! node peers to sessions, and the two event inputs — node events (SDP offers, tracks,
//! active speaker) and room events from the bus (joins, chat, host controls).
//!
//! Owns: session lifecycle (join, wait, admit, leave, detach + resume grace, kick), auto
//! subscription (every participant with canSubscribe receives every other participant's
//! tracks). Must never: hold a lock across an `.await` (std mutexes, short critical
//! sections), or talk to a socket directly — sessions own their outboxes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};

use shardcast_dataplane::node::{
    CreatePeer, LayerPreference, MediaKind, NodeError, NodeEvent, PeerId, PeerRole, RoomId, TrackId,
};
use tokio::sync::mpsc;

use super::bus::{RoomBus, RoomEvent, RoomEventKind};
use super::messages::{track_from_wire, track_to_wire, ServerMsg, TrackInfo};
use super::services::{Member, Presence, SignalError, SignalServices};
use crate::config::SignalingConfig;
use crate::placement::{NodeHandle, Placement};

/// What a session's socket task receives. (Messages are not boxed: they are built once and
/// moved through the channel; the size difference is harmless here.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outgoing {
    Msg(ServerMsg),
    /// Send nothing more; close the socket.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Waiting,
    Joined,
    Closed,
}

struct SessionState {
    phase: Phase,
    outbox: Option<mpsc::UnboundedSender<Outgoing>>,
    /// Bumped on every attach, so a grace timer knows whether its detach still holds.
    attach_gen: u64,
    node: Option<NodeHandle>,
    peer: Option<PeerId>,
    subscribed: HashSet<TrackId>,
    tracks: Vec<TrackInfo>,
    server_offer_pending: bool,
}

/// One participant session (a WebSocket, or a WHIP/WHEP resource with no socket).
pub struct Session {
    pub id: String,
    pub member: Member,
    /// A WebSocket session (renegotiates, gets auto-subscribed); false for WHIP/WHEP, whose
    /// m-lines are fixed by their one offer.
    pub interactive: bool,
    state: Mutex<SessionState>,
    /// Serializes SDP work of this session so an offer never overtakes an answer.
    pub(crate) sdp: tokio::sync::Mutex<()>,
}

impl Session {
    pub fn phase(&self) -> Phase {
        self.state.lock().unwrap().phase
    }

    pub fn peer(&self) -> Option<(NodeHandle, PeerId)> {
        let s = self.state.lock().unwrap();
        Some((s.node.clone()?, s.peer?))
    }

    pub fn tracks(&self) -> Vec<TrackInfo> {
        self.state.lock().unwrap().tracks.clone()
    }

    /// Queue a message to the client; dropped when detached.
    pub fn send(&self, msg: ServerMsg) {
        let s = self.state.lock().unwrap();
        if let Some(tx) = &s.outbox {
            let fin = msg.is_final();
            let _ = tx.send(Outgoing::Msg(msg));
            if fin {
                let _ = tx.send(Outgoing::Close);
            }
        }
    }
}

#[derive(Default)]
struct HubInner {
    sessions: HashMap<String, Arc<Session>>,
    by_peer: HashMap<(Arc<str>, PeerId), String>,
    pumped_nodes: HashSet<Arc<str>>,
}

/// The signaling hub; one per control-plane instance, shared by the WebSocket and WHIP
/// handlers.
pub struct Hub {
    pub(crate) services: Arc<dyn SignalServices>,
    pub(crate) placement: Arc<Placement>,
    bus: Arc<dyn RoomBus>,
    pub(crate) config: SignalingConfig,
    inner: Mutex<HubInner>,
    me: Weak<Hub>,
}

fn node_err(e: NodeError) -> SignalError {
    match e {
        NodeError::BadSdp(m) => SignalError::new("bad_sdp", m),
        NodeError::UnknownTrack(t) => SignalError::new("unknown_track", format!("track {t}")),
        NodeError::BadState(m) => SignalError::new("offer_glare", m),
        NodeError::Full => SignalError::new("room_full", "the media node is full"),
        other => SignalError::new("unavailable", other.to_string()),
    }
}

impl Hub {
    pub fn new(
        services: Arc<dyn SignalServices>,
        placement: Arc<Placement>,
        bus: Arc<dyn RoomBus>,
        config: SignalingConfig,
    ) -> Arc<Self> {
        let hub = Arc::new_cyclic(|me| Hub {
            services,
            placement,
            bus: bus.clone(),
            config,
            inner: Mutex::new(HubInner::default()),
            me: me.clone(),
        });
        let mut rx = bus.subscribe();
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "signaling: room bus lagged");
                        continue;
                    }
                    Err(_) => return,
                };
                let Some(hub) = weak.upgrade() else { return };
                hub.on_room_event(ev).await;
            }
        });
        hub
    }

    fn arc(&self) -> Arc<Hub> {
        self.me.upgrade().expect("hub alive while used")
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.inner.lock().unwrap().sessions.get(id).cloned()
    }

    fn room_sessions(&self, tenant: &str, room: &str) -> Vec<Arc<Session>> {
        self.inner
            .lock()
            .unwrap()
            .sessions
            .values()
            .filter(|s| s.member.tenant == tenant && s.member.room == room)
            .cloned()
            .collect()
    }

    pub async fn publish(&self, member: &Member, origin: Option<&str>, kind: RoomEventKind) {
        self.bus
            .publish(RoomEvent {
                tenant: member.tenant.clone(),
                room: member.room.clone(),
                origin: origin.map(str::to_string),
                kind,
            })
            .await;
    }

    /// Publish a room event that did not come from a session (REST host controls).
    pub async fn publish_room(&self, tenant: &str, room: &str, kind: RoomEventKind) {
        self.bus
            .publish(RoomEvent {
                tenant: tenant.into(),
                room: room.into(),
                origin: None,
                kind,
            })
            .await;
    }

    /// Create a session for an authenticated member after room checks. Returns the session
    /// and whether it must wait for a host.
    pub async fn open(
        &self,
        member: Member,
        password: Option<&str>,
        source: IpAddr,
        outbox: Option<mpsc::UnboundedSender<Outgoing>>,
    ) -> Result<(Arc<Session>, bool), SignalError> {
        let policy = self.services.check_room(&member, password, source).await?;
        let others = self
            .services
            .participants(&member.tenant, &member.room)
            .await?;
        if let Some(max) = policy.max_participants {
            let present = others
                .iter()
                .filter(|p| p.presence == Presence::Joined && p.info.identity != member.identity)
                .count();
            if present as u64 >= max as u64 {
                return Err(SignalError::new("room_full", "the room is full"));
            }
        }
        let must_wait = policy.ask_before_join && !member.is_host();
        let session = Arc::new(Session {
            id: uuid::Uuid::new_v4().simple().to_string(),
            member,
            interactive: outbox.is_some(),
            state: Mutex::new(SessionState {
                phase: if must_wait {
                    Phase::Waiting
                } else {
                    Phase::Joined
                },
                outbox,
                attach_gen: 0,
                node: None,
                peer: None,
                subscribed: HashSet::new(),
                tracks: Vec::new(),
                server_offer_pending: false,
            }),
            sdp: tokio::sync::Mutex::new(()),
        });
        self.inner
            .lock()
            .unwrap()
            .sessions
            .insert(session.id.clone(), session.clone());
        // One session per identity and room: an older one (on any instance) is replaced.
        self.publish(
            &session.member,
            Some(&session.id),
            RoomEventKind::Kick {
                identity: session.member.identity.clone(),
                reason: "replaced by a new session".into(),
            },
        )
        .await;
        if must_wait {
            self.services
                .put_participant(&session.member, Presence::Waiting, None, &[])
                .await?;
            self.publish(
                &session.member,
                Some(&session.id),
                RoomEventKind::Knock {
                    identity: session.member.identity.clone(),
                    name: session.member.name.clone(),
                },
            )
            .await;
        } else {
            self.enter(&session).await?;
        }
        Ok((session, must_wait))
    }

    /// Admit a session into the room: record it, tell the others, send `joined`. The media
    /// node is chosen later, at the first offer, so joining never waits on placement.
    async fn enter(&self, session: &Arc<Session>) -> Result<(), SignalError> {
        let m = &session.member;
        session.state.lock().unwrap().phase = Phase::Joined;
        self.services
            .put_participant(m, Presence::Joined, None, &[])
            .await?;
        self.publish(
            m,
            Some(&session.id),
            RoomEventKind::ParticipantJoined {
                participant: m.info(),
            },
        )
        .await;
        self.send_joined(session).await
    }

    /// The session's media node, placing the room on first use.
    async fn node_of(&self, session: &Session) -> Result<NodeHandle, SignalError> {
        if let Some(n) = session.state.lock().unwrap().node.clone() {
            return Ok(n);
        }
        let m = &session.member;
        let node = self
            .placement
            .node_for_room(&m.tenant, &m.room)
            .await
            .map_err(|e| SignalError::new("unavailable", e.to_string()))?;
        self.ensure_pump(&node);
        session.state.lock().unwrap().node = Some(node.clone());
        Ok(node)
    }

    /// The `joined` message with the room's current state.
    pub async fn send_joined(&self, session: &Session) -> Result<(), SignalError> {
        let m = &session.member;
        let stored = self.services.participants(&m.tenant, &m.room).await?;
        let chat = self
            .services
            .chat_history(&m.tenant, &m.room, self.config.chat_history)
            .await?;
        let mut participants = Vec::new();
        let mut tracks = Vec::new();
        for p in stored {
            if p.presence != Presence::Joined || p.info.identity == m.identity {
                continue;
            }
            tracks.extend(p.tracks);
            participants.push(p.info);
        }
        session.send(ServerMsg::Joined {
            session: session.id.clone(),
            room: m.room.clone(),
            me: m.info(),
            participants,
            tracks,
            chat,
        });
        Ok(())
    }

    /// Re-attach a detached (or still attached) session to a new socket.
    pub fn resume(
        &self,
        session_id: &str,
        member: &Member,
        outbox: mpsc::UnboundedSender<Outgoing>,
    ) -> Option<Arc<Session>> {
        let session = self.session(session_id)?;
        if session.member.tenant != member.tenant
            || session.member.room != member.room
            || session.member.identity != member.identity
        {
            return None;
        }
        let mut s = session.state.lock().unwrap();
        if s.phase == Phase::Closed {
            return None;
        }
        if let Some(old) = s.outbox.replace(outbox) {
            let _ = old.send(Outgoing::Close);
        }
        s.attach_gen += 1;
        drop(s);
        Some(session)
    }

    /// The socket went away without `leave`: keep the session for the grace period.
    pub fn detach(&self, session: &Arc<Session>) {
        let gen = {
            let mut s = session.state.lock().unwrap();
            s.outbox = None;
            s.attach_gen
        };
        let hub = self.arc();
        let session = session.clone();
        let grace = std::time::Duration::from_secs(self.config.reconnect_grace_secs);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let expired = {
                let s = session.state.lock().unwrap();
                s.outbox.is_none() && s.attach_gen == gen && s.phase != Phase::Closed
            };
            if expired {
                hub.close(&session, None).await;
            }
        });
    }

    /// End a session now: close its peer, remove its record, tell the room.
    pub async fn close(&self, session: &Arc<Session>, final_msg: Option<ServerMsg>) {
        self.close_inner(session, final_msg, true).await
    }

    /// `announce = false` when a newer session of the same identity replaced this one: its
    /// record and presence belong to the new session now.
    async fn close_inner(
        &self,
        session: &Arc<Session>,
        final_msg: Option<ServerMsg>,
        announce: bool,
    ) {
        let (was, node, peer, tracks) = {
            let mut s = session.state.lock().unwrap();
            let was = s.phase;
            if was == Phase::Closed {
                return;
            }
            s.phase = Phase::Closed;
            if let Some(tx) = s.outbox.take() {
                if let Some(m) = final_msg {
                    let _ = tx.send(Outgoing::Msg(m));
                }
                let _ = tx.send(Outgoing::Close);
            }
            (
                was,
                s.node.clone(),
                s.peer.take(),
                std::mem::take(&mut s.tracks),
            )
        };
        {
            let mut inner = self.inner.lock().unwrap();
            inner.sessions.remove(&session.id);
            if let (Some(n), Some(p)) = (&node, peer) {
                inner.by_peer.remove(&(n.id.clone(), p));
            }
        }
        if let (Some(n), Some(p)) = (&node, peer) {
            if let Err(e) = n.api.close_peer(p).await {
                tracing::debug!(error = %e, "close_peer");
            }
        }
        let m = &session.member;
        if announce {
            self.services.remove_participant(m).await;
        }
        for t in tracks {
            self.publish(
                m,
                Some(&session.id),
                RoomEventKind::TrackUnpublished {
                    id: t.id,
                    identity: m.identity.clone(),
                },
            )
            .await;
        }
        if was == Phase::Joined && announce {
            self.publish(
                m,
                Some(&session.id),
                RoomEventKind::ParticipantLeft {
                    identity: m.identity.clone(),
                },
            )
            .await;
        }
    }

    /// A client SDP offer: creates the peer on first use, renegotiates afterwards.
    pub async fn offer(
        &self,
        session: &Arc<Session>,
        sdp: String,
        role: PeerRole,
        bind_tracks: Vec<TrackId>,
    ) -> Result<String, SignalError> {
        let (peer, pending) = {
            let s = session.state.lock().unwrap();
            if s.phase != Phase::Joined {
                return Err(SignalError::new("not_joined", "not in the room yet"));
            }
            (s.peer, s.server_offer_pending)
        };
        let node = self.node_of(session).await?;
        if let Some(peer) = peer {
            if pending {
                return Err(SignalError::new(
                    "offer_glare",
                    "a server offer is outstanding; answer it first",
                ));
            }
            return node.api.renegotiate(peer, sdp).await.map_err(node_err);
        }
        let m = &session.member;
        let created = node
            .api
            .create_peer(CreatePeer {
                room: RoomId::new(m.node_room()),
                identity: m.identity.clone(),
                role,
                offer: sdp,
                bind_tracks: bind_tracks.clone(),
            })
            .await
            .map_err(node_err)?;
        {
            let mut s = session.state.lock().unwrap();
            s.peer = Some(created.peer);
            s.subscribed.extend(bind_tracks);
        }
        self.inner
            .lock()
            .unwrap()
            .by_peer
            .insert((node.id.clone(), created.peer), session.id.clone());
        let _ = self
            .services
            .put_participant(m, Presence::Joined, Some(&node.id), &[])
            .await;
        if session.interactive && m.grants.can_subscribe {
            let hub = self.arc();
            let session = session.clone();
            // After the answer is on its way: subscriptions lead to server offers.
            tokio::spawn(async move { hub.subscribe_existing(&session).await });
        }
        Ok(created.answer)
    }

    async fn subscribe_existing(&self, session: &Arc<Session>) {
        let m = &session.member;
        let Ok(stored) = self.services.participants(&m.tenant, &m.room).await else {
            return;
        };
        for p in stored {
            if p.info.identity == m.identity || p.presence != Presence::Joined {
                continue;
            }
            for t in p.tracks {
                if let Some(id) = track_from_wire(&t.id) {
                    self.subscribe(session, id).await;
                }
            }
        }
    }

    /// Subscribe once (idempotent per session).
    async fn subscribe(&self, session: &Arc<Session>, track: TrackId) {
        let (node, peer) = {
            let mut s = session.state.lock().unwrap();
            let (Some(node), Some(peer)) = (s.node.clone(), s.peer) else {
                return;
            };
            if s.phase != Phase::Joined || !s.subscribed.insert(track) {
                return;
            }
            (node, peer)
        };
        if let Err(e) = node.api.subscribe(peer, track).await {
            tracing::debug!(error = %e, %track, "subscribe failed");
            session.state.lock().unwrap().subscribed.remove(&track);
        }
    }

    pub async fn answer(&self, session: &Arc<Session>, sdp: String) -> Result<(), SignalError> {
        let (node, peer) = session
            .peer()
            .ok_or_else(|| SignalError::new("invalid_message", "no peer connection yet"))?;
        node.api.accept_answer(peer, sdp).await.map_err(node_err)?;
        session.state.lock().unwrap().server_offer_pending = false;
        Ok(())
    }

    pub async fn set_subscription(
        &self,
        session: &Arc<Session>,
        track: &str,
        preference: LayerPreference,
    ) -> Result<(), SignalError> {
        let id = track_from_wire(track)
            .ok_or_else(|| SignalError::new("unknown_track", format!("track {track}")))?;
        let (node, peer) = session
            .peer()
            .ok_or_else(|| SignalError::new("unknown_track", "no peer connection yet"))?;
        if !session.state.lock().unwrap().subscribed.contains(&id) {
            return Err(SignalError::new(
                "unknown_track",
                format!("not subscribed to {track}"),
            ));
        }
        node.api
            .set_preference(peer, id, preference)
            .await
            .map_err(node_err)
    }

    /// Mute or unmute a track of this session's participant, by its owner or a host.
    async fn mute_own(
        &self,
        session: &Arc<Session>,
        track: &str,
        muted: bool,
        by: &str,
    ) -> Result<(), SignalError> {
        let id = track_from_wire(track)
            .ok_or_else(|| SignalError::new("unknown_track", format!("track {track}")))?;
        let node = {
            let mut s = session.state.lock().unwrap();
            let Some(t) = s.tracks.iter_mut().find(|t| t.id == track) else {
                return Err(SignalError::new("unknown_track", format!("track {track}")));
            };
            t.muted = muted;
            s.node.clone()
        };
        if let Some(node) = node {
            node.api
                .set_track_muted(id, muted)
                .await
                .map_err(node_err)?;
        }
        let m = &session.member;
        let tracks = session.tracks();
        let node_id = node_id_of(session);
        let _ = self
            .services
            .put_participant(m, Presence::Joined, node_id.as_deref(), &tracks)
            .await;
        self.publish(
            m,
            None,
            RoomEventKind::Muted {
                track: track.to_string(),
                identity: m.identity.clone(),
                muted,
                by: by.to_string(),
            },
        )
        .await;
        Ok(())
    }

    pub async fn mute(
        &self,
        session: &Arc<Session>,
        track: &str,
        muted: bool,
    ) -> Result<(), SignalError> {
        let by = session.member.identity.clone();
        self.mute_own(session, track, muted, &by).await
    }

    pub async fn chat(&self, session: &Arc<Session>, text: &str) -> Result<(), SignalError> {
        let m = &session.member;
        if !m.grants.can_chat {
            return Err(SignalError::new("forbidden", "no canChat grant"));
        }
        if text.is_empty() || text.len() > 4096 {
            return Err(SignalError::new(
                "invalid_message",
                "chat text must be 1..=4096 bytes",
            ));
        }
        // Stored first, then fanned out to everyone — the sender too, as confirmation.
        self.services.append_chat(m, text).await?;
        Ok(())
    }

    /// Host controls; the target may be connected to any instance.
    pub async fn host_control(
        &self,
        session: &Arc<Session>,
        kind: RoomEventKind,
    ) -> Result<(), SignalError> {
        if !session.member.is_host() {
            return Err(SignalError::new(
                "forbidden",
                "host controls need the host role",
            ));
        }
        let target = match &kind {
            RoomEventKind::Admit { identity }
            | RoomEventKind::Deny { identity, .. }
            | RoomEventKind::Kick { identity, .. }
            | RoomEventKind::MuteParticipant { identity, .. } => identity.clone(),
            _ => return Err(SignalError::new("invalid_message", "not a host control")),
        };
        let m = &session.member;
        let stored = self.services.participants(&m.tenant, &m.room).await?;
        if !stored.iter().any(|p| p.info.identity == target) {
            return Err(SignalError::new(
                "unknown_participant",
                format!("no participant {target}"),
            ));
        }
        self.publish(m, None, kind).await;
        Ok(())
    }

    fn ensure_pump(&self, node: &NodeHandle) {
        let fresh = self
            .inner
            .lock()
            .unwrap()
            .pumped_nodes
            .insert(node.id.clone());
        if !fresh {
            return;
        }
        let mut rx = node.api.events();
        let weak = self.me.clone();
        let node_id = node.id.clone();
        tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, node = %node_id, "signaling: node events lagged");
                        continue;
                    }
                    Err(_) => break,
                };
                let Some(hub) = weak.upgrade() else { return };
                hub.on_node_event(&node_id, ev).await;
            }
            if let Some(hub) = weak.upgrade() {
                hub.inner.lock().unwrap().pumped_nodes.remove(&node_id);
            }
        });
    }

    fn session_of_peer(&self, node: &Arc<str>, peer: PeerId) -> Option<Arc<Session>> {
        let inner = self.inner.lock().unwrap();
        let id = inner.by_peer.get(&(node.clone(), peer))?;
        inner.sessions.get(id).cloned()
    }

    async fn on_node_event(&self, node: &Arc<str>, ev: NodeEvent) {
        match ev {
            NodeEvent::Offer { peer, sdp } => {
                if let Some(s) = self.session_of_peer(node, peer) {
                    s.state.lock().unwrap().server_offer_pending = true;
                    s.send(ServerMsg::Offer { sdp });
                }
            }
            NodeEvent::TrackPublished {
                peer,
                track,
                kind,
                rids,
                ..
            } => {
                let Some(s) = self.session_of_peer(node, peer) else {
                    return;
                };
                let info = TrackInfo {
                    id: track_to_wire(track),
                    identity: s.member.identity.clone(),
                    kind,
                    rids,
                    muted: false,
                };
                let tracks = {
                    let mut st = s.state.lock().unwrap();
                    if st.tracks.iter().any(|t| t.id == info.id) {
                        return;
                    }
                    st.tracks.push(info.clone());
                    st.tracks.clone()
                };
                let _ = self
                    .services
                    .put_participant(&s.member, Presence::Joined, Some(node), &tracks)
                    .await;
                self.publish(
                    &s.member,
                    None,
                    RoomEventKind::TrackPublished { track: info },
                )
                .await;
            }
            NodeEvent::TrackUnpublished { peer, track, .. } => {
                let Some(s) = self.session_of_peer(node, peer) else {
                    return;
                };
                let id = track_to_wire(track);
                let tracks = {
                    let mut st = s.state.lock().unwrap();
                    let before = st.tracks.len();
                    st.tracks.retain(|t| t.id != id);
                    if st.tracks.len() == before {
                        return;
                    }
                    st.tracks.clone()
                };
                let _ = self
                    .services
                    .put_participant(&s.member, Presence::Joined, Some(node), &tracks)
                    .await;
                self.publish(
                    &s.member,
                    Some(&s.id),
                    RoomEventKind::TrackUnpublished {
                        id,
                        identity: s.member.identity.clone(),
                    },
                )
                .await;
            }
            NodeEvent::ActiveSpeaker { peer, .. } => {
                if let Some(s) = self.session_of_peer(node, peer) {
                    self.publish(
                        &s.member,
                        None,
                        RoomEventKind::ActiveSpeaker {
                            identity: s.member.identity.clone(),
                        },
                    )
                    .await;
                }
            }
            NodeEvent::PeerClosed { peer, reason } => {
                if let Some(s) = self.session_of_peer(node, peer) {
                    tracing::info!(session = %s.id, %reason, "media peer closed");
                    s.state.lock().unwrap().peer = None;
                    self.inner
                        .lock()
                        .unwrap()
                        .by_peer
                        .remove(&(node.clone(), peer));
                    self.close(&s, Some(ServerMsg::Kicked { reason })).await;
                }
            }
            NodeEvent::PeerConnected { .. } => {}
        }
    }

    async fn on_room_event(&self, ev: RoomEvent) {
        let sessions = self.room_sessions(&ev.tenant, &ev.room);
        if sessions.is_empty() {
            return;
        }
        let origin = ev.origin.as_deref();
        let others = || {
            sessions
                .iter()
                .filter(move |s| Some(s.id.as_str()) != origin && s.phase() == Phase::Joined)
        };
        match ev.kind {
            RoomEventKind::ParticipantJoined { participant } => {
                for s in others() {
                    s.send(ServerMsg::ParticipantJoined {
                        participant: participant.clone(),
                    });
                }
            }
            RoomEventKind::ParticipantLeft { identity } => {
                for s in others() {
                    s.send(ServerMsg::ParticipantLeft {
                        identity: identity.clone(),
                    });
                }
            }
            RoomEventKind::TrackPublished { track } => {
                let id = track_from_wire(&track.id);
                for s in others().filter(|s| s.member.identity != track.identity) {
                    s.send(ServerMsg::TrackPublished {
                        track: track.clone(),
                    });
                    if let (Some(id), true) = (id, s.member.grants.can_subscribe && s.interactive) {
                        self.subscribe(s, id).await;
                    }
                }
            }
            RoomEventKind::TrackUnpublished { id, identity } => {
                let track = track_from_wire(&id);
                for s in others().filter(|s| s.member.identity != identity) {
                    s.send(ServerMsg::TrackUnpublished {
                        id: id.clone(),
                        identity: identity.clone(),
                    });
                    if let Some(t) = track {
                        let sub = {
                            let mut st = s.state.lock().unwrap();
                            st.subscribed.remove(&t).then(|| (st.node.clone(), st.peer))
                        };
                        if let Some((Some(node), Some(peer))) = sub {
                            let _ = node.api.unsubscribe(peer, t).await;
                        }
                    }
                }
            }
            RoomEventKind::Muted {
                track,
                identity,
                muted,
                by,
            } => {
                for s in others() {
                    s.send(ServerMsg::Muted {
                        track: track.clone(),
                        identity: identity.clone(),
                        muted,
                        by: by.clone(),
                    });
                }
            }
            RoomEventKind::ActiveSpeaker { identity } => {
                for s in others() {
                    s.send(ServerMsg::ActiveSpeaker {
                        identity: identity.clone(),
                    });
                }
            }
            RoomEventKind::Chat { message } => {
                for s in others() {
                    s.send(ServerMsg::Chat {
                        message: message.clone(),
                    });
                }
            }
            RoomEventKind::Knock { identity, name } => {
                for s in others().filter(|s| s.member.is_host()) {
                    s.send(ServerMsg::Knock {
                        identity: identity.clone(),
                        name: name.clone(),
                    });
                }
            }
            RoomEventKind::Admit { identity } => {
                for s in sessions
                    .iter()
                    .filter(|s| s.member.identity == identity && s.phase() == Phase::Waiting)
                {
                    if let Err(e) = self.enter(s).await {
                        s.send(ServerMsg::error(e.code, e.message));
                    }
                }
            }
            RoomEventKind::Deny { identity, reason } => {
                for s in sessions
                    .iter()
                    .filter(|s| s.member.identity == identity && s.phase() == Phase::Waiting)
                {
                    self.close(
                        s,
                        Some(ServerMsg::Denied {
                            reason: reason.clone(),
                        }),
                    )
                    .await;
                }
            }
            RoomEventKind::Kick { identity, reason } => {
                for s in sessions
                    .iter()
                    .filter(|s| s.member.identity == identity && Some(s.id.as_str()) != origin)
                {
                    // A kick with an origin is a replacement by a newer session.
                    let msg = Some(ServerMsg::Kicked {
                        reason: reason.clone(),
                    });
                    self.close_inner(s, msg, origin.is_none()).await;
                }
            }
            RoomEventKind::MuteParticipant { identity, kind, by } => {
                for s in sessions.iter().filter(|s| s.member.identity == identity) {
                    let ids: Vec<String> = s
                        .tracks()
                        .into_iter()
                        .filter(|t| t.kind == kind)
                        .map(|t| t.id)
                        .collect();
                    for id in ids {
                        if let Err(e) = self.mute_own(s, &id, true, &by).await {
                            tracing::debug!(error = %e, "host mute");
                        }
                    }
                }
            }
            RoomEventKind::MuteTrack {
                identity,
                track,
                muted,
                by,
            } => {
                for s in sessions.iter().filter(|s| s.member.identity == identity) {
                    if let Err(e) = self.mute_own(s, &track, muted, &by).await {
                        tracing::debug!(error = %e, "api mute");
                    }
                }
            }
            RoomEventKind::RoomClosed => {
                for s in sessions {
                    self.close(
                        &s,
                        Some(ServerMsg::Kicked {
                            reason: "room closed".into(),
                        }),
                    )
                    .await;
                }
            }
        }
    }

    /// Tracks of the room's joined participants in publish order (WHEP binds these).
    pub async fn room_tracks(
        &self,
        tenant: &str,
        room: &str,
    ) -> Result<Vec<TrackInfo>, SignalError> {
        let stored = self.services.participants(tenant, room).await?;
        Ok(stored
            .into_iter()
            .filter(|p| p.presence == Presence::Joined)
            .flat_map(|p| p.tracks)
            .collect())
    }

    /// Used by WHIP/WHEP: the kind of a wire track id among `tracks`.
    pub fn kind_of(tracks: &[TrackInfo], id: &str) -> Option<MediaKind> {
        tracks.iter().find(|t| t.id == id).map(|t| t.kind)
    }
}

fn node_id_of(session: &Session) -> Option<String> {
    session
        .state
        .lock()
        .unwrap()
        .node
        .as_ref()
        .map(|n| n.id.to_string())
}
