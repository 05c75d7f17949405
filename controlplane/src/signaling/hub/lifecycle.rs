//! Session lifecycle: open (room checks, waiting room), enter, `joined`, resume, detach with
//! the reconnect grace timer, close.
//!
//! Must never: hold the session lock across an `.await`.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{Hub, Outbox, Outgoing, Phase, Session, SessionState};
use crate::signaling::bus::RoomEventKind;
use crate::signaling::limits::TokenBucket;
use crate::signaling::messages::ServerMsg;
use crate::signaling::services::{Member, Presence, SignalError};

impl Hub {
    /// Create a session for an authenticated member after room checks. Returns the session
    /// and whether it must wait for a host.
    pub async fn open(
        &self,
        member: Member,
        password: Option<&str>,
        source: IpAddr,
        outbox: Option<Outbox>,
    ) -> Result<(Arc<Session>, bool), SignalError> {
        self.refuse_if_shutting_down()?;
        let policy = self.services.check_room(&member, password, source).await?;
        let others = self
            .services
            .participants(&member.tenant, &member.room)
            .await?;
        let must_wait = policy.ask_before_join && !member.is_host();
        if must_wait {
            // Knocking on a full room is pointless; the exact check is at admission.
            if let Some(max) = policy.max_participants {
                let present = others
                    .iter()
                    .filter(|p| {
                        p.presence == Presence::Joined && p.info.identity != member.identity
                    })
                    .count();
                if present as u64 >= max as u64 {
                    return Err(SignalError::new("room_full", "the room is full"));
                }
            }
        } else {
            // A full room refuses here, before this session exists or replaces anyone; the
            // seat itself is taken with the record, atomically across instances, at `enter`
            // (`services::seats`).
            self.services.check_seat(&member).await?;
        }
        let (role, grants) = (member.role.clone(), member.grants);
        let session = Arc::new(Session {
            id: uuid::Uuid::new_v4().simple().to_string(),
            member,
            interactive: outbox.is_some(),
            video_codecs: policy.video_codecs.clone(),
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
                withheld: Vec::new(),
                sources: std::collections::BTreeMap::new(),
                server_offer_pending: false,
                held_offers: None,
                // An entering session's messages wait for its `joined` (`send_joined`).
                held_events: (!must_wait).then(Vec::new),
                peer_lost: false,
                player: None,
                resource: None,
                role,
                grants,
                chat: TokenBucket::new(
                    self.config.chat_per_sec,
                    self.config.chat_burst,
                    Instant::now(),
                ),
            }),
            sdp: tokio::sync::Mutex::new(()),
        });
        self.inner
            .lock()
            .unwrap()
            .sessions
            .insert(session.id.clone(), session.clone());
        if self.is_shutting_down() {
            // `shutdown` may have listed the sessions just before this one was added.
            self.close_inner(&session, None, false).await;
            self.refuse_if_shutting_down()?;
        }
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
                .put_participant(&session.member_now(), Presence::Waiting, None, &[])
                .await?;
            self.publish(
                &session.member,
                Some(&session.id),
                RoomEventKind::Broadcast {
                    msg: ServerMsg::Knock {
                        identity: session.member.identity.clone(),
                        name: session.member.name.clone(),
                    },
                },
            )
            .await;
        } else if let Err(e) = self.enter(&session).await {
            // Refused (`room_full` when the room filled up since `check_seat`): the caller
            // answers on the socket, so the session ends without closing it.
            session.state.lock().unwrap().outbox = None;
            // A refused seat wrote nothing and joined no one: no record to delete, no
            // `participant_left` to announce.
            let announce = e.code != "room_full";
            self.close_inner(&session, None, announce).await;
            return Err(e);
        }
        Ok((session, must_wait))
    }

    /// Admit a session into the room: record it, tell the others, send `joined`. The media
    /// node is chosen later, at the first offer, so joining never waits on placement.
    pub(super) async fn enter(&self, session: &Arc<Session>) -> Result<(), SignalError> {
        let m = &session.member_now();
        // Seat and record in one transaction (one etcd revision); `room_full` if the room
        // filled up since `open` looked, or while this session waited for a host.
        let was = {
            let mut st = session.state.lock().unwrap();
            Session::hold_messages(&mut st);
            std::mem::replace(&mut st.phase, Phase::Joined)
        };
        if let Err(e) = self.services.enter_participant(m).await {
            let mut st = session.state.lock().unwrap();
            st.held_events = None; // the room's events since were never this session's
            if st.phase == Phase::Joined {
                st.phase = was; // a waiting session keeps waiting
            }
            return Err(e);
        }
        self.publish(
            m,
            Some(&session.id),
            RoomEventKind::Broadcast {
                msg: ServerMsg::ParticipantJoined {
                    participant: m.info(),
                },
            },
        )
        .await;
        self.send_joined(session).await
    }

    /// The `joined` message with the room's current state, then the messages held for the
    /// session since it entered (or resumed): events of the room never reach a client before
    /// the state they change. An event may also be in that state already; the client takes
    /// both (docs/PROTOCOL.md, "Several control-plane instances").
    pub async fn send_joined(&self, session: &Session) -> Result<(), SignalError> {
        match self.joined(session).await {
            Ok(joined) => {
                session.release_held(Some(joined));
                Ok(())
            }
            Err(e) => {
                session.release_held(None);
                Err(e)
            }
        }
    }

    async fn joined(&self, session: &Session) -> Result<ServerMsg, SignalError> {
        let m = &session.member_now();
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
        Ok(ServerMsg::Joined {
            session: session.id.clone(),
            room: m.room.clone(),
            me: m.info(),
            participants,
            tracks,
            chat,
            ice_servers: self.services.ice_servers(m),
        })
    }

    /// Re-attach a detached (or still attached) session to a new socket.
    pub fn resume(
        &self,
        session_id: &str,
        member: &Member,
        outbox: Outbox,
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
            old.push(Outgoing::Close(None));
        }
        if s.phase == Phase::Joined {
            Session::hold_messages(&mut s); // until the caller's `send_joined`
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
        crate::request_id::spawn(async move {
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
    pub(super) async fn close_inner(
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
                    tx.push(Outgoing::Msg(m));
                }
                tx.push(Outgoing::Close(None));
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
                RoomEventKind::Broadcast {
                    msg: ServerMsg::TrackUnpublished {
                        id: t.id,
                        identity: m.identity.clone(),
                    },
                },
            )
            .await;
        }
        if was == Phase::Joined && announce {
            self.publish(
                m,
                Some(&session.id),
                RoomEventKind::Broadcast {
                    msg: ServerMsg::ParticipantLeft {
                        identity: m.identity.clone(),
                    },
                },
            )
            .await;
        }
    }
}
