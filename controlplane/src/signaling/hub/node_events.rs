//! Node events: one pump task per media node this instance uses, mapping peers back to
//! sessions (server offers, tracks published/unpublished, active speaker, peer closed); and
//! node loss (`Placement::lost_nodes`): every session whose peer was on the lost node is told
//! `node_lost` and left joined without media, its tracks unpublished, so its client offers
//! again from a fresh peer connection and placement puts the room on a live node; and node
//! drains (`Placement::drain_marks`): the same move, off a node that lives on.
//!
//! Must never: act on a peer it did not create (events of other instances' peers are ignored).

use std::sync::Arc;

use tracing::Instrument;

use shardcast_dataplane::node::{NodeEvent, PauseReason, PeerId};

use super::{Hub, Phase, Session};
use crate::placement::NodeHandle;
use crate::signaling::bus::RoomEventKind;
use crate::signaling::messages::{
    kind_of, track_to_wire, NodeLostReason, ServerMsg, TrackInfo, TrackSource,
};
use crate::signaling::services::Presence;

impl Hub {
    pub(super) fn ensure_pump(&self, node: &NodeHandle) {
        // Keyed by id, valued by the client's address: a lost node's old pump must not
        // unregister the pump of a new client for the same id (a restarted node).
        let client = Arc::as_ptr(&node.api) as *const () as usize;
        {
            let mut inner = self.inner.lock().unwrap();
            if inner.pumped_nodes.get(&node.id) == Some(&client) {
                return;
            }
            inner.pumped_nodes.insert(node.id.clone(), client);
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
                // Each event is one unit of work: its lines and the node calls it makes
                // (subscriptions for a track published, say) share an id.
                let id = crate::request_id::fresh();
                let span = tracing::info_span!(
                    "node_event",
                    request_id = %id,
                    node = %node_id,
                    event = event_name(&ev)
                );
                span.in_scope(|| tracing::debug!("node event"));
                crate::request_id::scope(id, hub.on_node_event(&node_id, ev))
                    .instrument(span)
                    .await;
            }
            if let Some(hub) = weak.upgrade() {
                let mut inner = hub.inner.lock().unwrap();
                if inner.pumped_nodes.get(&node_id) == Some(&client) {
                    inner.pumped_nodes.remove(&node_id);
                }
            }
        });
    }

    /// Starts the task that applies `Placement::lost_nodes` to this hub's sessions.
    pub(super) fn watch_lost_nodes(&self) {
        let mut rx = self.placement.lost_nodes();
        let weak = self.me.clone();
        tokio::spawn(async move {
            loop {
                let node = match rx.recv().await {
                    Ok(n) => n,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "signaling: lost-node events lagged");
                        continue;
                    }
                    Err(_) => return,
                };
                let Some(hub) = weak.upgrade() else { return };
                hub.on_node_lost(&node).await;
            }
        });
    }

    /// The media node `node` is gone: its peers with it. Each session on it keeps its place in
    /// the room but loses its media; WebSocket sessions are told `node_lost` (they offer again),
    /// WHIP/WHEP sessions, whose resource was that peer, are closed.
    pub(super) async fn on_node_lost(&self, node: &Arc<str>) {
        {
            let mut inner = self.inner.lock().unwrap();
            inner.pumped_nodes.remove(node);
            inner.by_peer.retain(|(n, _), _| n != node);
        }
        let told = self.move_off(node, NodeLostReason::Lost).await;
        tracing::warn!(node = %node, sessions = told, "signaling: media node lost; sessions told node_lost");
    }

    /// Starts the task that moves this hub's sessions off the nodes an operator drains
    /// (cluster mode: `Placement::drain_marks`).
    pub(super) fn watch_drained_nodes(&self) {
        let Some(mut marks) = self.placement.drain_marks() else {
            return;
        };
        let weak = self.me.clone();
        tokio::spawn(async move {
            while let Some(node) = marks.recv().await {
                let Some(hub) = weak.upgrade() else { return };
                hub.on_node_draining(&Arc::from(node.as_str())).await;
            }
        });
    }

    /// An operator drains `node`: when another node takes rooms, each WebSocket session on it
    /// is told `node_lost` (reason `draining`) and its peer there is closed; its fresh offer
    /// lands on the node its room moved to (placement moves a room off a draining node).
    /// WHIP/WHEP resources there end, as on a lost node: left behind they would be cut off
    /// from their room, which moves. With no other node nothing moves (the mark still keeps
    /// new rooms away).
    pub(super) async fn on_node_draining(&self, node: &Arc<str>) {
        if !self.placement.takes_rooms_besides(node).await {
            tracing::warn!(node = %node, "signaling: node draining, but no other node takes rooms; its sessions stay");
            return;
        }
        let told = self.move_off(node, NodeLostReason::Draining).await;
        tracing::info!(node = %node, sessions = told, "signaling: node draining; sessions moved off it");
    }

    /// Takes the media of the sessions whose peer is on `node`: WebSocket sessions stay in
    /// the room without a peer, their tracks unpublished, told `node_lost`; WHIP/WHEP
    /// sessions end. Returns how many were told. All are detached before any is told or any
    /// peer closed, so the renegotiations that closing one peer starts on a living node reach
    /// none of the others.
    async fn move_off(&self, node: &Arc<str>, reason: NodeLostReason) -> usize {
        let sessions: Vec<Arc<Session>> = self
            .inner
            .lock()
            .unwrap()
            .sessions
            .values()
            .cloned()
            .collect();
        let mut moved = Vec::new();
        for s in sessions {
            let mut st = s.state.lock().unwrap();
            if st.phase == Phase::Closed || st.node.as_ref().is_none_or(|n| &n.id != node) {
                continue;
            }
            let old_peer = st.node.take().zip(st.peer.take());
            st.peer_lost = true;
            st.subscribed.clear();
            st.withheld.clear();
            st.server_offer_pending = false;
            if let Some(held) = st.held_offers.as_mut() {
                held.clear(); // offers of the old node's peer
            }
            let tracks = std::mem::take(&mut st.tracks);
            drop(st);
            if let Some((old, peer)) = &old_peer {
                self.inner
                    .lock()
                    .unwrap()
                    .by_peer
                    .remove(&(old.id.clone(), *peer));
            }
            moved.push((s, tracks, old_peer));
        }
        // Everyone hears first; the calls to the node and the store follow.
        let mut told = 0;
        for (s, _, _) in moved.iter().filter(|(s, _, _)| s.interactive) {
            told += 1;
            s.send(ServerMsg::NodeLost { reason });
        }
        for (s, tracks, old_peer) in moved {
            if let (NodeLostReason::Draining, Some((old, peer))) = (reason, old_peer) {
                // The node lives on: close the peer there.
                if let Err(e) = old.api.close_peer(peer).await {
                    tracing::debug!(error = %e, %peer, "closing a moved peer");
                }
            }
            if !s.interactive {
                // A WHIP/WHEP resource is its peer: it ends (its client posts again).
                self.close(&s, None).await;
                continue;
            }
            let m = s.member_now();
            let _ = self
                .services
                .put_participant(&m, Presence::Joined, None, &[])
                .await;
            for t in tracks {
                self.publish(
                    &m,
                    Some(&s.id),
                    RoomEventKind::Broadcast {
                        msg: ServerMsg::TrackUnpublished {
                            id: t.id,
                            identity: m.identity.clone(),
                        },
                    },
                )
                .await;
            }
        }
        told
    }

    pub(super) fn session_of_peer(&self, node: &Arc<str>, peer: PeerId) -> Option<Arc<Session>> {
        let inner = self.inner.lock().unwrap();
        let id = inner.by_peer.get(&(node.clone(), peer))?;
        inner.sessions.get(id).cloned()
    }

    pub(super) async fn on_node_event(&self, node: &Arc<str>, ev: NodeEvent) {
        match ev {
            NodeEvent::Offer { peer, sdp } => {
                if let Some(s) = self.session_of_peer(node, peer) {
                    s.send_offer(peer, sdp);
                }
            }
            NodeEvent::TrackPublished {
                peer,
                track,
                kind,
                rids,
                mid,
                ..
            } => {
                let Some(s) = self.session_of_peer(node, peer) else {
                    return;
                };
                let named = s.state.lock().unwrap().sources.get(&mid).copied();
                let kind_ = kind_of(kind);
                let info = TrackInfo {
                    id: track_to_wire(track),
                    identity: s.member.identity.clone(),
                    kind,
                    // A source that cannot be this kind's (a `screen` audio m-line) is ignored.
                    source: named
                        .filter(|src| src.fits(kind_))
                        .unwrap_or(TrackSource::default_for(kind_)),
                    rids,
                    muted: false,
                };
                let (tracks, withheld) = {
                    let mut st = s.state.lock().unwrap();
                    if st
                        .tracks
                        .iter()
                        .chain(&st.withheld)
                        .any(|t| t.id == info.id)
                    {
                        return;
                    }
                    if st.grants.can_publish {
                        st.tracks.push(info.clone());
                        (st.tracks.clone(), None)
                    } else {
                        st.withheld.push(info.clone());
                        (Vec::new(), st.node.clone())
                    }
                };
                if let Some(n) = withheld {
                    // Published without canPublish (revoked after the peer was created): stop
                    // it on the node and keep it from the room until the grant comes back.
                    if let Err(e) = n.api.set_track_muted(track, true).await {
                        tracing::debug!(error = %e, %track, "withholding track");
                    }
                    s.send(ServerMsg::error(
                        "forbidden",
                        format!("no canPublish grant: track {} is not published", info.id),
                    ));
                    return;
                }
                let _ = self
                    .services
                    .put_participant(&s.member_now(), Presence::Joined, Some(node), &tracks)
                    .await;
                self.publish(
                    &s.member,
                    None,
                    RoomEventKind::Broadcast {
                        msg: ServerMsg::TrackPublished { track: info },
                    },
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
                    st.withheld.retain(|t| t.id != id);
                    let before = st.tracks.len();
                    st.tracks.retain(|t| t.id != id);
                    if st.tracks.len() == before {
                        return;
                    }
                    st.tracks.clone()
                };
                let _ = self
                    .services
                    .put_participant(&s.member_now(), Presence::Joined, Some(node), &tracks)
                    .await;
                self.publish(
                    &s.member,
                    Some(&s.id),
                    RoomEventKind::Broadcast {
                        msg: ServerMsg::TrackUnpublished {
                            id,
                            identity: s.member.identity.clone(),
                        },
                    },
                )
                .await;
            }
            NodeEvent::ActiveSpeaker { peer, .. } => {
                if let Some(s) = self.session_of_peer(node, peer) {
                    self.publish(
                        &s.member,
                        None,
                        RoomEventKind::Broadcast {
                            msg: ServerMsg::ActiveSpeaker {
                                identity: s.member.identity.clone(),
                            },
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
            NodeEvent::VideoPaused {
                peer,
                track,
                paused,
                reason,
            } => {
                if let Some(s) = self.session_of_peer(node, peer) {
                    s.send(ServerMsg::VideoPaused {
                        track: track_to_wire(track),
                        paused,
                        reason: match reason {
                            PauseReason::Bandwidth => "bandwidth",
                            PauseReason::Codec => "codec",
                        }
                        .into(),
                    });
                }
            }
            NodeEvent::PeerConnected { .. } => {}
        }
    }
}

/// A node event's name, for its log span.
fn event_name(ev: &NodeEvent) -> &'static str {
    match ev {
        NodeEvent::PeerConnected { .. } => "peer_connected",
        NodeEvent::PeerClosed { .. } => "peer_closed",
        NodeEvent::TrackPublished { .. } => "track_published",
        NodeEvent::TrackUnpublished { .. } => "track_unpublished",
        NodeEvent::ActiveSpeaker { .. } => "active_speaker",
        NodeEvent::Offer { .. } => "offer",
        NodeEvent::VideoPaused { .. } => "video_paused",
    }
}
