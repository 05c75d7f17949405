//! WebSocket signaling (`/v1/rtc`, docs/PROTOCOL.md) and the glue that lets REST host
//! controls reach live sessions.
//!
//! Layers: `socket` (one task per WebSocket) → `hub` (sessions, node and room events) →
//! `limits` (per-socket rate limits), `services` (the narrow interface to auth/rooms/chat; `store_services` implements it on
//! the Store) and `bus` (room events across instances). Must never: touch media packets or
//! a Store backend directly.

pub mod bus;
pub mod hub;
pub mod limits;
pub mod messages;
pub mod services;
pub mod socket;
pub mod store_services;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use tokio::sync::broadcast;

pub use bus::{BusOptions, DirectBus, RoomBus, RoomEvent as BusEvent, RoomEventKind};
pub use hub::{Hub, Session};
pub use services::{Grants, Member, SignalError, SignalServices};

use crate::services::events::{EventFuture, RemoveReason, RoomEvent, RoomEvents};

/// The signaling routes (`GET /v1/rtc`), with the hub as their state.
pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/v1/rtc", get(socket::handler))
        .with_state(hub)
}

/// cp-core's `RoomEvents` hook implemented on the room bus, so REST host controls (kick,
/// deny, admit, mute, room deletion, chat) reach sessions on every instance.
pub struct BusRoomEvents {
    bus: Arc<dyn RoomBus>,
    local: broadcast::Sender<RoomEvent>,
}

impl BusRoomEvents {
    pub fn new(bus: Arc<dyn RoomBus>) -> Self {
        Self {
            bus,
            local: broadcast::channel(1024).0,
        }
    }
}

fn translate(e: &RoomEvent) -> Vec<RoomEventKind> {
    match e {
        // Nothing for sessions to do: a room's first session creates it or finds it.
        RoomEvent::RoomCreated { .. } => vec![],
        RoomEvent::RoomClosed { .. } => vec![RoomEventKind::RoomClosed],
        RoomEvent::ParticipantRemoved {
            identity, reason, ..
        } => {
            let identity = identity.to_string();
            match reason {
                RemoveReason::Denied => vec![RoomEventKind::Deny {
                    identity,
                    reason: "a host denied entry".into(),
                }],
                RemoveReason::Kicked => vec![RoomEventKind::Kick {
                    identity,
                    reason: "removed by the room's host".into(),
                }],
                RemoveReason::RoomClosed => vec![RoomEventKind::Kick {
                    identity,
                    reason: "room closed".into(),
                }],
            }
        }
        RoomEvent::ParticipantAdmitted { identity, .. } => vec![RoomEventKind::Admit {
            identity: identity.to_string(),
        }],
        RoomEvent::TrackMuted {
            identity,
            track,
            muted,
            ..
        } => vec![RoomEventKind::MuteTrack {
            identity: identity.to_string(),
            track: messages::track_to_wire(shardcast_dataplane::node::TrackId(*track)),
            muted: *muted,
            by: "api".into(),
        }],
        RoomEvent::VideoPaused {
            identity,
            paused,
            tracks,
            ..
        } => tracks
            .iter()
            .map(|t| RoomEventKind::MuteTrack {
                identity: identity.to_string(),
                track: messages::track_to_wire(shardcast_dataplane::node::TrackId(*t)),
                muted: *paused,
                by: "api".into(),
            })
            .collect(),
        RoomEvent::PermissionsUpdated {
            identity,
            name,
            role,
            grants,
            ..
        } => vec![RoomEventKind::Permissions {
            identity: identity.to_string(),
            name: name.clone(),
            role: store_services::role_name(*role).into(),
            grants: Grants {
                can_publish: grants.can_publish,
                can_subscribe: grants.can_subscribe,
                can_chat: grants.can_chat,
                room_admin: grants.room_admin,
            },
        }],
        RoomEvent::Chat { message, .. } => vec![RoomEventKind::Broadcast {
            msg: messages::ServerMsg::Chat {
                message: messages::ChatInfo {
                    id: message.seq.to_string(),
                    identity: message.from.to_string(),
                    name: message.name.clone(),
                    text: message.text.clone(),
                    ts: message.sent_at_ms,
                },
            },
        }],
    }
}

impl RoomEvents for BusRoomEvents {
    fn publish(&self, event: RoomEvent) -> EventFuture<'_> {
        Box::pin(async move {
            let (tenant, room) = event.room();
            let (tenant, room) = (tenant.to_string(), room.to_string());
            for kind in translate(&event) {
                self.bus
                    .publish(bus::RoomEvent {
                        tenant: tenant.clone(),
                        room: room.clone(),
                        origin: None,
                        request_id: crate::request_id::current(),
                        kind,
                    })
                    .await;
            }
            let _ = self.local.send(event);
            Ok(())
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<RoomEvent> {
        self.local.subscribe()
    }
}
