//! The room event bus: how chat and room events reach the participants of a room connected
//! to ANY control-plane instance — and only the instances that hold some of them.
//!
//! Design (docs/ARCHITECTURE.md, "Room events across instances"; guarantees in
//! docs/PROTOCOL.md, "Several instances"): an instance holding a joined or waiting session in
//! a room registers *interest* once, a key on its lease carrying its internal address
//! (`interest`); an event is delivered in-process to the local sessions and sent directly to
//! every other interested instance over an authenticated HTTP link (`link`), numbered per
//! (sending instance, room) so a receiver sees a gap and resyncs the room's sessions from
//! state instead of losing silently (`seq`). No store write per event. `direct` ties these
//! together; the hub reads its deliveries from an [`Inbox`].
//!
//! Events are notifications: state (participants, chat history) is in the Store before its
//! event is published, so a resync (`resync` to each session) repairs what was missed.
//! Must never: carry SDP or media decisions — those go to the owning instance's node calls.

mod direct;
mod inbox;
mod interest;
mod link;
pub mod seq;

pub use direct::{BusOptions, BusStats, DirectBus};
pub use inbox::{Delivery, Inbox};

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shardcast_dataplane::node::MediaKind;

use super::messages::ServerMsg;
use super::services::Grants;

/// An event about one room, seen by every instance with sessions in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub tenant: String,
    pub room: String,
    /// The session that caused it; it does not receive its own event.
    #[serde(default)]
    pub origin: Option<String>,
    /// The request (or session) whose work published it, when there was one: the receiving
    /// instances handle it under this id, so the node API calls it causes there carry it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub kind: RoomEventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RoomEventKind {
    /// A server message for the room's joined sessions on every instance (but the origin):
    /// presence, tracks, mutes, active speaker, chat, and `knock` (hosts only). Track events
    /// also (un)subscribe each receiver; see `Hub::deliver`.
    Broadcast {
        msg: ServerMsg,
    },
    /// To the waiting session of `identity`.
    Admit {
        identity: String,
    },
    Deny {
        identity: String,
        reason: String,
    },
    /// To the session of `identity`, wherever it is connected.
    Kick {
        identity: String,
        reason: String,
    },
    /// To the instance holding `identity`'s session: stop forwarding its tracks of `kind`.
    MuteParticipant {
        identity: String,
        kind: MediaKind,
        by: String,
    },
    /// To the instance holding `identity`'s session: mute or unmute one of its tracks.
    MuteTrack {
        identity: String,
        track: String,
        muted: bool,
        by: String,
    },
    /// The REST API changed `identity`'s role or grants: every instance tells its sessions
    /// of the room, and the one holding `identity`'s session applies them to it.
    Permissions {
        identity: String,
        name: String,
        role: String,
        grants: Grants,
    },
    /// The room was deleted: every session ends.
    RoomClosed,
}

/// Publish room events; deliveries come out of [`RoomBus::inbox`].
pub trait RoomBus: Send + Sync + 'static {
    /// Sends `event` to every instance with sessions in its room (this one included).
    fn publish(&self, event: RoomEvent) -> super::services::BoxFuture<'_, ()>;
    /// What this instance must deliver to its sessions, in order per room.
    fn inbox(&self) -> Arc<Inbox>;
    /// This instance holds sessions in the room now (`true`: the first arrived) or no more
    /// (`false`: the last one left). Called under the hub's lock: must not block.
    fn local_room(&self, tenant: &str, room: &str, present: bool);
    /// After a lost lease, once the sessions' records are rewritten: registers this
    /// instance's rooms again on a live lease, has the other instances in them resync, and
    /// resyncs its own sessions of them. An error: some room could not be registered.
    fn reregister(&self) -> super::services::BoxFuture<'_, Result<(), crate::store::StoreError>>;
    /// Counters for `/metrics`.
    fn stats(&self) -> BusStats;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::messages::ChatInfo;

    /// What crosses instances is JSON: a broadcast carries the very server message clients get.
    #[test]
    fn broadcast_events_round_trip_through_json() {
        let event = RoomEvent {
            tenant: "t".into(),
            room: "r".into(),
            origin: Some("s1".into()),
            request_id: Some("req-1".into()),
            kind: RoomEventKind::Broadcast {
                msg: ServerMsg::Chat {
                    message: ChatInfo {
                        id: "1".into(),
                        identity: "ann".into(),
                        name: "Ann".into(),
                        text: "hi".into(),
                        ts: 5,
                    },
                },
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"]["event"], "broadcast");
        assert_eq!(json["kind"]["msg"]["type"], "chat");
        let back: RoomEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
