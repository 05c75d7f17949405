//! Live permission changes: a REST update of a participant's role or grants, carried by the
//! bus to every instance, takes effect on the running session at once.
//!
//! - canPublish revoked: the session's published tracks are withheld — stopped for everyone
//!   on the node (`set_track_muted`), announced as `track_unpublished` (subscribers drop
//!   them), removed from the record. A track the session publishes later while it lacks the
//!   grant is withheld the same way (and the client gets `error{code:"forbidden"}`). Granted
//!   again: withheld tracks are restored (their earlier mute state kept) and published anew.
//! - canSubscribe revoked: every subscription of the session ends (the node renegotiates the
//!   m-lines away); granted again: it is subscribed to the room's tracks.
//! - canChat: read live by chat; the node is told at once whether the session's
//!   data-channel messages still reach the room (`set_can_send_data`).
//! - roomAdmin and role are read live by host controls.
//!
//! Must never: consult the token's grants after a change — `Session::grants()` is the truth
//! for a live session.

use std::sync::Arc;

use crate::signaling::bus::RoomEventKind;
use crate::signaling::messages::{track_from_wire, ParticipantInfo, ServerMsg};
use crate::signaling::services::{Grants, Presence};

use super::{node_id_of, Hub, Phase, Session};

impl Hub {
    /// A role/grants change for `identity` in the room of `sessions` (this instance's
    /// sessions of that room): everyone is told, the target's sessions change behaviour.
    pub(super) async fn on_permissions(
        &self,
        sessions: &[Arc<Session>],
        participant: ParticipantInfo,
        grants: Grants,
    ) {
        for s in sessions.iter().filter(|s| s.phase() != Phase::Closed) {
            if s.member.identity == participant.identity || s.phase() == Phase::Joined {
                s.send(ServerMsg::PermissionsChanged {
                    participant: participant.clone(),
                });
            }
        }
        for s in sessions
            .iter()
            .filter(|s| s.member.identity == participant.identity)
        {
            let before = s.set_access(participant.role.clone(), grants);
            self.enforce_publish(s).await;
            if before.can_subscribe != grants.can_subscribe {
                self.enforce_subscribe(s).await;
            }
            if before.can_chat != grants.can_chat {
                self.enforce_data(s).await;
            }
        }
    }

    /// Whether the session's data-channel messages reach the room follows its canChat.
    async fn enforce_data(&self, s: &Arc<Session>) {
        let (peer, node) = {
            let st = s.state.lock().unwrap();
            (st.peer, st.node.clone())
        };
        if let (Some(peer), Some(node)) = (peer, node) {
            let allowed = s.grants().can_chat;
            if let Err(e) = node.api.set_can_send_data(peer, allowed).await {
                tracing::debug!(error = %e, %peer, "permissions: set_can_send_data");
            }
        }
    }

    /// Moves tracks between published and withheld to match the session's canPublish.
    async fn enforce_publish(&self, s: &Arc<Session>) {
        let can = s.grants().can_publish;
        let (moved, node) = {
            let mut st = s.state.lock().unwrap();
            let moved = if can {
                std::mem::take(&mut st.withheld)
            } else {
                std::mem::take(&mut st.tracks)
            };
            if can {
                st.tracks.extend(moved.iter().cloned());
            } else {
                st.withheld.extend(moved.iter().cloned());
            }
            (moved, st.node.clone())
        };
        if moved.is_empty() {
            return;
        }
        if let Some(node) = &node {
            for t in &moved {
                let Some(id) = track_from_wire(&t.id) else {
                    continue;
                };
                // Withheld: stopped for everyone. Restored: back to its own mute state.
                let muted = !can || t.muted;
                if let Err(e) = node.api.set_track_muted(id, muted).await {
                    tracing::debug!(error = %e, track = %t.id, "permissions: set_track_muted");
                }
            }
        }
        let tracks = s.tracks();
        let node_id = node_id_of(s);
        let _ = self
            .services
            .put_participant(
                &s.member_now(),
                Presence::Joined,
                node_id.as_deref(),
                &tracks,
            )
            .await;
        for t in moved {
            let kind = if can {
                RoomEventKind::Broadcast {
                    msg: ServerMsg::TrackPublished { track: t },
                }
            } else {
                RoomEventKind::Broadcast {
                    msg: ServerMsg::TrackUnpublished {
                        id: t.id,
                        identity: s.member.identity.clone(),
                    },
                }
            };
            self.publish(&s.member, None, kind).await;
        }
    }

    /// Ends every subscription (canSubscribe revoked) or subscribes to the room's tracks.
    async fn enforce_subscribe(&self, s: &Arc<Session>) {
        if s.grants().can_subscribe {
            if s.interactive {
                self.subscribe_existing(s).await;
            }
            return;
        }
        let (subscribed, node, peer) = {
            let mut st = s.state.lock().unwrap();
            (std::mem::take(&mut st.subscribed), st.node.clone(), st.peer)
        };
        if let (Some(node), Some(peer)) = (node, peer) {
            for t in subscribed {
                if let Err(e) = node.api.unsubscribe(peer, t).await {
                    tracing::debug!(error = %e, track = %t, "permissions: unsubscribe");
                }
            }
        }
    }
}
