//! Media of a session: placement on first offer, client offers and answers, subscriptions,
//! layer preferences, mutes.
//!
//! Must never: hold the session lock across a node call.

use std::sync::Arc;

use shardcast_dataplane::node::{CreatePeer, LayerPreference, PeerRole, RoomId, TrackId};

use super::{node_err, node_id_of, Hub, Phase, Session};
use crate::placement::{NodeHandle, PlacementError};
use crate::signaling::bus::RoomEventKind;
use crate::signaling::messages::{track_from_wire, ServerMsg};
use crate::signaling::services::{Presence, SignalError};

/// What a client may read of a placement failure: a stable code, no store or node detail
/// (that is logged).
fn placement_err(e: PlacementError) -> SignalError {
    match e {
        PlacementError::Store(detail) => SignalError::hidden(
            "store_unavailable",
            "the store is unavailable; try again",
            detail,
        ),
        PlacementError::NoNode => {
            SignalError::new("unavailable", "no media node can take the room now")
        }
        PlacementError::BadName(m) => SignalError::new("invalid_message", m),
    }
}

impl Hub {
    /// The session's media node, placing the room on first use.
    pub(super) async fn node_of(&self, session: &Session) -> Result<NodeHandle, SignalError> {
        if let Some(n) = session.state.lock().unwrap().node.clone() {
            return Ok(n);
        }
        let m = &session.member;
        let node = self
            .placement
            .node_for_room(&m.tenant, &m.room, m.region.as_ref())
            .await
            .map_err(placement_err)?;
        self.ensure_pump(&node);
        session.state.lock().unwrap().node = Some(node.clone());
        Ok(node)
    }

    /// A new offer for a session whose peer exists (a WHIP/WHEP ICE restart over PATCH):
    /// role and bindings were fixed when the peer was created.
    pub async fn reoffer(
        &self,
        session: &Arc<Session>,
        sdp: String,
    ) -> Result<String, SignalError> {
        if session.peer().is_none() {
            return Err(SignalError::new(
                "invalid_message",
                "no peer connection yet",
            ));
        }
        self.offer(session, sdp, PeerRole::Both, Vec::new()).await
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
        let m = &session.member_now();
        let created = node
            .api
            .create_peer(CreatePeer {
                room: RoomId::new(m.node_room()),
                identity: m.identity.clone(),
                role,
                offer: sdp,
                bind_tracks: bind_tracks.clone(),
                // Room data over data channels is chat's sibling: one grant for both.
                can_send_data: session.grants().can_chat,
                video_codecs: session.video_codecs.clone(),
            })
            .await
            .map_err(node_err)?;
        {
            let mut s = session.state.lock().unwrap();
            s.peer = Some(created.peer);
            s.peer_lost = false;
            s.subscribed.extend(bind_tracks);
        }
        self.inner
            .lock()
            .unwrap()
            .by_peer
            .insert((node.id.clone(), created.peer), session.id.clone());
        // No record write here (docs/SCALE.md: a peer costs etcd nothing): the record names
        // the node with the first track it publishes (`node_events`).
        if session.interactive && m.grants.can_subscribe {
            let hub = self.arc();
            let session = session.clone();
            // After the answer is on its way: subscriptions lead to server offers.
            crate::request_id::spawn(async move { hub.subscribe_existing(&session).await });
        }
        Ok(created.answer)
    }

    pub(super) async fn subscribe_existing(&self, session: &Arc<Session>) {
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

    /// A WHEP player takes the room's tracks (of its identity filter) that are published
    /// now: those published between its POST's look at the room and its peer existing, which
    /// no `track_published` reached, and all of them for a player that came first.
    pub async fn play_published(&self, session: &Arc<Session>) {
        let m = &session.member;
        let Ok(tracks) = self.room_tracks(&m.tenant, &m.room).await else {
            return;
        };
        for t in tracks {
            if t.identity == m.identity || !session.plays(&t.identity) {
                continue;
            }
            if let Some(id) = crate::signaling::messages::track_from_wire(&t.id) {
                self.subscribe(session, id).await;
            }
        }
    }

    /// Subscribe once (idempotent per session).
    pub(super) async fn subscribe(&self, session: &Arc<Session>, track: TrackId) {
        let (node, peer) = {
            let mut s = session.state.lock().unwrap();
            let (Some(node), Some(peer)) = (s.node.clone(), s.peer) else {
                return;
            };
            // The grant is checked under the same lock that records the subscription, so a
            // revocation racing with auto-subscription never leaves one behind.
            if s.phase != Phase::Joined || !s.grants.can_subscribe || !s.subscribed.insert(track) {
                return;
            }
            (node, peer)
        };
        if let Err(e) = node.api.subscribe(peer, track).await {
            tracing::debug!(error = %e, %track, "subscribe failed");
            session.state.lock().unwrap().subscribed.remove(&track);
        }
    }

    /// Candidates the client trickled after its offer (`candidate:…`, RFC 8839).
    pub async fn add_candidates(
        &self,
        session: &Arc<Session>,
        candidates: Vec<String>,
    ) -> Result<(), SignalError> {
        let Some((node, peer)) = session.peer() else {
            return session.stale_after_node_lost();
        };
        node.api
            .add_candidates(peer, candidates)
            .await
            .map_err(node_err)
    }

    pub async fn answer(&self, session: &Arc<Session>, sdp: String) -> Result<(), SignalError> {
        let Some((node, peer)) = session.peer() else {
            return session.stale_after_node_lost();
        };
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
    pub(super) async fn mute_own(
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
        let m = &session.member_now();
        let tracks = session.tracks();
        let node_id = node_id_of(session);
        let _ = self
            .services
            .put_participant(m, Presence::Joined, node_id.as_deref(), &tracks)
            .await;
        self.publish(
            m,
            None,
            RoomEventKind::Broadcast {
                msg: ServerMsg::Muted {
                    track: track.to_string(),
                    identity: m.identity.clone(),
                    muted,
                    by: by.to_string(),
                },
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
}
