//! Room events from the bus (presence, tracks, chat, knocks, host controls) delivered to this
//! instance's sessions, room resyncs when the bus may have lost some, plus the session-side chat and host-control entry points.
//!
//! Must never: assume the target session is on this instance — host controls go over the bus.

use std::collections::HashSet;
use std::sync::Arc;

use shardcast_dataplane::node::TrackId;

use super::{Hub, Phase, Plays, Session};
use crate::signaling::bus::{RoomEvent, RoomEventKind};
use crate::signaling::messages::{track_from_wire, ParticipantInfo, ServerMsg, TrackInfo};
use crate::signaling::services::{Presence, SignalError};

impl Hub {
    pub async fn chat(&self, session: &Arc<Session>, text: &str) -> Result<(), SignalError> {
        let m = &session.member;
        if !session.grants().can_chat {
            return Err(SignalError::new("forbidden", "no canChat grant"));
        }
        if text.is_empty() || text.len() > 4096 {
            return Err(SignalError::new(
                "invalid_message",
                "chat text must be 1..=4096 bytes",
            ));
        }
        if !session
            .state
            .lock()
            .unwrap()
            .chat
            .take(std::time::Instant::now())
        {
            return Err(SignalError::new(
                "rate_limited",
                "too many chat messages; slow down",
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
        if !session.is_host() {
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

    pub(super) async fn on_room_event(&self, ev: RoomEvent) {
        let sessions = self.room_sessions(&ev.tenant, &ev.room);
        if sessions.is_empty() {
            return;
        }
        tracing::debug!(sessions = sessions.len(), "room event");
        let origin = ev.origin.as_deref();
        match ev.kind {
            RoomEventKind::Broadcast { msg } => {
                if let ServerMsg::ActiveSpeaker { identity } = &msg {
                    self.remember_speaker(&ev.tenant, &ev.room, identity);
                }
                self.deliver(&sessions, origin, msg).await
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
            RoomEventKind::Permissions {
                identity,
                name,
                role,
                grants,
            } => {
                let participant = ParticipantInfo {
                    identity,
                    name,
                    role,
                    grants: serde_json::to_value(grants).unwrap_or_default(),
                };
                self.on_permissions(&sessions, participant, grants).await;
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

    /// Events of this room may have been lost on their way here (a gap in a sender's
    /// numbering, a link that dropped events, an instance that vanished, a full inbox): each
    /// joined session gets the room's state from the store (`resync`), and its subscriptions
    /// are brought in line with the tracks published now.
    pub(super) async fn resync_room(&self, tenant: &str, room: &str) {
        let sessions: Vec<Arc<Session>> = self
            .room_sessions(tenant, room)
            .into_iter()
            .filter(|s| s.phase() == Phase::Joined)
            .collect();
        if sessions.is_empty() {
            return;
        }
        let stored = match self.services.participants(tenant, room).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e.message, tenant, room, "room resync: cannot read the room");
                return;
            }
        };
        let chat = self
            .services
            .chat_history(tenant, room, self.config.chat_history)
            .await
            .unwrap_or_default();
        tracing::info!(
            tenant,
            room,
            sessions = sessions.len(),
            "room bus: resyncing a room's sessions"
        );
        let joined: Vec<_> = stored
            .into_iter()
            .filter(|p| p.presence == Presence::Joined)
            .collect();
        for s in &sessions {
            let me = &s.member.identity;
            let others = joined.iter().filter(|p| &p.info.identity != me);
            let tracks: Vec<TrackInfo> = others.clone().flat_map(|p| p.tracks.clone()).collect();
            s.send(ServerMsg::Resync {
                participants: others.map(|p| p.info.clone()).collect(),
                tracks: tracks.clone(),
                chat: chat.clone(),
            });
            let live: HashSet<TrackId> = tracks
                .iter()
                .filter_map(|t| track_from_wire(&t.id))
                .collect();
            for t in &tracks {
                let wanted = s.interactive || s.plays(&t.identity);
                if let (Some(id), true) = (track_from_wire(&t.id), wanted) {
                    self.subscribe(s, id).await;
                }
            }
            let stale: Vec<TrackId> = {
                let mut st = s.state.lock().unwrap();
                let stale: Vec<TrackId> = st.subscribed.difference(&live).copied().collect();
                for t in &stale {
                    st.subscribed.remove(t);
                }
                stale
            };
            if let Some((node, peer)) = s.peer() {
                for t in stale {
                    let _ = node.api.unsubscribe(peer, t).await;
                }
            }
        }
    }

    /// A broadcast server message to this instance's joined sessions of the room, except the
    /// origin: `knock` only to hosts; track events not to the track's owner, and each receiver
    /// (un)subscribes to the track as well.
    async fn deliver(&self, sessions: &[Arc<Session>], origin: Option<&str>, msg: ServerMsg) {
        let audience = sessions
            .iter()
            .filter(|s| Some(s.id.as_str()) != origin && s.phase() == Phase::Joined);
        match &msg {
            ServerMsg::Knock { .. } => {
                for s in audience.filter(|s| s.is_host()) {
                    s.send(msg.clone());
                }
            }
            ServerMsg::TrackPublished { track } => {
                let id = track_from_wire(&track.id);
                for s in audience.filter(|s| s.member.identity != track.identity) {
                    s.send(msg.clone());
                    let wanted = s.interactive || s.plays(&track.identity);
                    if let (Some(id), true) = (id, s.grants().can_subscribe && wanted) {
                        self.subscribe(s, id).await;
                    }
                }
            }
            ServerMsg::TrackUnpublished { id, identity } => {
                let track = track_from_wire(id);
                for s in audience.filter(|s| &s.member.identity != identity) {
                    s.send(msg.clone());
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
            ServerMsg::ActiveSpeaker { identity } => {
                for s in audience {
                    s.send(msg.clone());
                    if s.state.lock().unwrap().player.is_some() {
                        self.follow_speaker(s, identity).await;
                    }
                }
            }
            _ => {
                for s in audience {
                    s.send(msg.clone());
                }
            }
        }
    }

    /// A player that follows the active speaker (`Plays::Speaker`) takes `identity`'s video
    /// and audio in place of those it plays: the old subscriptions end first, so the new ones
    /// take their m-lines and continue their streams (the media node's `Play` peers park a
    /// line's stream until the next track, video from its next keyframe). A speaker without
    /// video leaves the video line empty (the picture holds).
    pub(super) async fn follow_speaker(&self, s: &Arc<Session>, identity: &str) {
        let following = matches!(
            &s.state.lock().unwrap().player,
            Some(Plays::Speaker(now)) if now.as_deref() != Some(identity)
        );
        if !following {
            return;
        }
        let m = &s.member;
        let Ok(tracks) = self.room_tracks(&m.tenant, &m.room).await else {
            return;
        };
        let new: Vec<TrackId> = crate::egress::speaker_tracks(&tracks, identity)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if new.is_empty() {
            return;
        }
        let old: Vec<TrackId> = {
            let mut st = s.state.lock().unwrap();
            st.player = Some(Plays::Speaker(Some(identity.to_string())));
            let old: Vec<TrackId> = st
                .subscribed
                .iter()
                .filter(|t| !new.contains(t))
                .copied()
                .collect();
            for t in &old {
                st.subscribed.remove(t);
            }
            old
        };
        if let Some((node, peer)) = s.peer() {
            for t in old {
                let _ = node.api.unsubscribe(peer, t).await;
            }
        }
        for t in new {
            self.subscribe(s, t).await;
        }
        tracing::debug!(session = %s.id, speaker = identity, "player: follows the new speaker");
    }
}
