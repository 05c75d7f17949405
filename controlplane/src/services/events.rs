//! `RoomEvents`: how REST-side effects reach live sessions and media nodes.
//!
//! Services change the Store first (the truth), then publish a [`RoomEvent`]. The default
//! [`LocalRoomEvents`] only fans the event out on an in-process broadcast; the signaling layer
//! installs its own implementation that also acts on the media node (close the peer of a
//! kicked participant, stop forwarding a muted track) and reaches sessions on other
//! control-plane instances. Events are serde data so they can cross instances.
//!
//! Must never be the only record of a change: a lost event may delay an effect, never lose it.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::ApiError;
use crate::ids::{Identity, NodeId, RoomName, TenantId};
use crate::store::records::{ChatRecord, Grants, ParticipantRole};

pub type EventFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ApiError>> + Send + 'a>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoveReason {
    /// Removed by a host or the REST API.
    Kicked,
    /// Refused entry from the waiting room.
    Denied,
    /// The room (or its tenant) was deleted.
    RoomClosed,
}

/// Where a participant's media lives, so a handler can reach its peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRef {
    pub node: Option<NodeId>,
    pub peer: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomEvent {
    /// The room's record was just created (REST, auto-create on join, dev token).
    RoomCreated {
        tenant: TenantId,
        room: RoomName,
    },
    RoomClosed {
        tenant: TenantId,
        room: RoomName,
    },
    ParticipantRemoved {
        tenant: TenantId,
        room: RoomName,
        identity: Identity,
        reason: RemoveReason,
        peer: PeerRef,
    },
    ParticipantAdmitted {
        tenant: TenantId,
        room: RoomName,
        identity: Identity,
    },
    TrackMuted {
        tenant: TenantId,
        room: RoomName,
        identity: Identity,
        track: u64,
        muted: bool,
        peer: PeerRef,
    },
    VideoPaused {
        tenant: TenantId,
        room: RoomName,
        identity: Identity,
        paused: bool,
        /// The participant's video track ids.
        tracks: Vec<u64>,
        peer: PeerRef,
    },
    /// Role and/or grants changed; `name`, `role` and `grants` are the participant's now.
    PermissionsUpdated {
        tenant: TenantId,
        room: RoomName,
        identity: Identity,
        name: String,
        role: ParticipantRole,
        grants: Grants,
    },
    /// A chat message, already stored.
    Chat {
        tenant: TenantId,
        room: RoomName,
        message: ChatRecord,
    },
}

impl RoomEvent {
    pub fn room(&self) -> (&TenantId, &RoomName) {
        match self {
            RoomEvent::RoomCreated { tenant, room }
            | RoomEvent::RoomClosed { tenant, room }
            | RoomEvent::ParticipantRemoved { tenant, room, .. }
            | RoomEvent::ParticipantAdmitted { tenant, room, .. }
            | RoomEvent::TrackMuted { tenant, room, .. }
            | RoomEvent::VideoPaused { tenant, room, .. }
            | RoomEvent::PermissionsUpdated { tenant, room, .. }
            | RoomEvent::Chat { tenant, room, .. } => (tenant, room),
        }
    }
}

/// The hook between REST/services and live sessions.
pub trait RoomEvents: Send + Sync + 'static {
    /// Called after the Store change. An error here is reported to the REST caller
    /// (the Store change stays: it is the truth and sessions converge on it).
    fn publish(&self, event: RoomEvent) -> EventFuture<'_>;
    /// Every event published from now on, on this instance.
    fn subscribe(&self) -> broadcast::Receiver<RoomEvent>;
}

/// In-process fan-out only: enough for one instance with no media attached, and for tests.
pub struct LocalRoomEvents {
    sender: broadcast::Sender<RoomEvent>,
}

impl LocalRoomEvents {
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity.max(1)).0,
        }
    }
}

impl Default for LocalRoomEvents {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl RoomEvents for LocalRoomEvents {
    fn publish(&self, event: RoomEvent) -> EventFuture<'_> {
        // No subscribers is normal (nobody connected).
        let _ = self.sender.send(event);
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self) -> broadcast::Receiver<RoomEvent> {
        self.sender.subscribe()
    }
}
