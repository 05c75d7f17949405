//! The webhook events and the JSON body a receiver gets (docs/API.md, "Webhooks"):
//!
//! ```json
//! {"id": "…", "event": "participant_joined", "tenant": "acme", "room": "standup",
//!  "timestamp": 1765049700123, "payload": {"participant": {…}}}
//! ```
//!
//! `event` and `payload` come from [`EventKind`]: a new kind is one more variant with its
//! payload fields, nothing else changes.

use serde::{Deserialize, Serialize};

use crate::signaling::bus::RoomEventKind;
use crate::signaling::messages::{ParticipantInfo, ServerMsg, TrackInfo};

/// What happened; serialized as `"event": "<name>", "payload": {fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "payload", rename_all = "snake_case")]
pub enum EventKind {
    /// The room was created (REST, a first join with auto-create, or the dev token).
    RoomStarted {},
    /// The room was deleted (REST, or its tenant removed).
    RoomFinished {},
    /// A participant entered the room (joined, or admitted from the waiting room).
    ParticipantJoined { participant: ParticipantInfo },
    /// A participant left: `leave`, a closed socket past the reconnect grace, a kick.
    ParticipantLeft { identity: String },
    /// A track is published (as in the signaling protocol's `track_published`).
    TrackPublished { track: TrackInfo },
    /// A track is no longer published.
    TrackUnpublished { identity: String, track_id: String },
    /// An egress (recording, HLS) was started: as `POST /v1/rooms/{room}/egress` answered.
    EgressStarted { egress: crate::egress::EgressView },
    /// An egress became active: its file (or playlist) is being written.
    EgressUpdated { egress: crate::egress::EgressView },
    /// An egress ended (`complete` or `failed`), its file finished.
    EgressEnded { egress: crate::egress::EgressView },
}

impl EventKind {
    /// The `event` name, also sent as the `Shardcast-Event` header.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::RoomStarted {} => "room_started",
            EventKind::RoomFinished {} => "room_finished",
            EventKind::ParticipantJoined { .. } => "participant_joined",
            EventKind::ParticipantLeft { .. } => "participant_left",
            EventKind::TrackPublished { .. } => "track_published",
            EventKind::TrackUnpublished { .. } => "track_unpublished",
            EventKind::EgressStarted { .. } => "egress_started",
            EventKind::EgressUpdated { .. } => "egress_updated",
            EventKind::EgressEnded { .. } => "egress_ended",
        }
    }

    /// The webhook event for a room event the hub publishes, if it is one.
    pub fn from_signal(kind: &RoomEventKind) -> Option<Self> {
        let RoomEventKind::Broadcast { msg } = kind else {
            return None;
        };
        Some(match msg {
            ServerMsg::ParticipantJoined { participant } => EventKind::ParticipantJoined {
                participant: participant.clone(),
            },
            ServerMsg::ParticipantLeft { identity } => EventKind::ParticipantLeft {
                identity: identity.clone(),
            },
            ServerMsg::TrackPublished { track } => EventKind::TrackPublished {
                track: track.clone(),
            },
            ServerMsg::TrackUnpublished { id, identity } => EventKind::TrackUnpublished {
                identity: identity.clone(),
                track_id: id.clone(),
            },
            _ => return None,
        })
    }
}

/// The whole body. `id` is the same on every attempt of one event: receivers dedupe on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: String,
    #[serde(flatten)]
    pub kind: EventKind,
    pub tenant: String,
    pub room: String,
    /// When it happened, Unix milliseconds.
    pub timestamp: u64,
}

impl Envelope {
    pub fn new(tenant: &str, room: &str, kind: EventKind, timestamp: u64) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            tenant: tenant.to_string(),
            room: room.to_string(),
            timestamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_body_names_the_event_and_carries_its_payload() {
        let e = Envelope {
            id: "e1".into(),
            kind: EventKind::TrackUnpublished {
                identity: "ann".into(),
                track_id: "1f".into(),
            },
            tenant: "acme".into(),
            room: "standup".into(),
            timestamp: 7,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"id": "e1", "event": "track_unpublished", "tenant": "acme",
                   "room": "standup", "timestamp": 7,
                   "payload": {"identity": "ann", "track_id": "1f"}})
        );
        assert_eq!(e.kind.name(), "track_unpublished");
        let back: Envelope = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        let started = serde_json::to_value(Envelope {
            kind: EventKind::RoomStarted {},
            ..e
        })
        .unwrap();
        assert_eq!(started["event"], "room_started");
        assert_eq!(started["payload"], json!({}));
    }

    #[test]
    fn only_presence_and_track_broadcasts_are_webhook_events() {
        let left = RoomEventKind::Broadcast {
            msg: ServerMsg::ParticipantLeft {
                identity: "bob".into(),
            },
        };
        assert_eq!(
            EventKind::from_signal(&left),
            Some(EventKind::ParticipantLeft {
                identity: "bob".into()
            })
        );
        assert_eq!(EventKind::from_signal(&RoomEventKind::RoomClosed), None);
        let kick = RoomEventKind::Kick {
            identity: "bob".into(),
            reason: "x".into(),
        };
        assert_eq!(EventKind::from_signal(&kick), None);
    }
}
