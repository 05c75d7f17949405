//! Participants of a room as stored: REST host controls and the writes signaling makes.
//!
//! Host controls (remove, mute a track, pause video, permissions, admit, deny) change the
//! record first and then publish the matching `RoomEvent`; the event handler carries the
//! effect to the media node and the participant's session.

use super::events::{PeerRef, RemoveReason, RoomEvent, RoomEvents};
use super::rooms;
use crate::error::ApiError;
use crate::ids::{Identity, RoomName, TenantId};
use crate::store::records::{
    Grants, ParticipantRecord, ParticipantRole, ParticipantState, TrackKind,
};
use crate::store::typed::{get_json, list_json_limited, put_json, update_json};
use crate::store::{keys, Store};

/// Which grants (and role) to change; `None` keeps the current value.
#[derive(Debug, Clone, Copy, Default)]
pub struct PermissionsUpdate {
    pub role: Option<ParticipantRole>,
    pub can_publish: Option<bool>,
    pub can_subscribe: Option<bool>,
    pub can_chat: Option<bool>,
    pub room_admin: Option<bool>,
}

impl PermissionsUpdate {
    fn apply(&self, role: &mut ParticipantRole, g: &mut Grants) {
        if let Some(r) = self.role {
            *role = r;
        }
        if let Some(v) = self.can_publish {
            g.can_publish = v;
        }
        if let Some(v) = self.can_subscribe {
            g.can_subscribe = v;
        }
        if let Some(v) = self.can_chat {
            g.can_chat = v;
        }
        if let Some(v) = self.room_admin {
            g.room_admin = v;
        }
    }
}

pub async fn list(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
) -> Result<Vec<ParticipantRecord>, ApiError> {
    rooms::get(store, tenant, room).await?;
    Ok(list_json_limited::<ParticipantRecord>(
        store,
        &keys::participants_prefix(tenant, room),
        rooms::MAX_ROOM_READ,
        crate::store::End::First,
    )
    .await?
    .into_iter()
    .map(|v| v.value)
    .collect())
}

pub async fn get(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
) -> Result<ParticipantRecord, ApiError> {
    rooms::get(store, tenant, room).await?;
    get_json::<ParticipantRecord>(store, &keys::participant(tenant, room, identity))
        .await?
        .map(|v| v.value)
        .ok_or_else(|| ApiError::participant_not_found(identity))
}

/// Writes a participant record as is (signaling: join, tracks published, peer created).
/// The room must exist.
pub async fn upsert(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    record: &ParticipantRecord,
) -> Result<(), ApiError> {
    rooms::get(store, tenant, room).await?;
    put_json(
        store,
        &keys::participant(tenant, room, &record.identity),
        record,
        None,
    )
    .await?;
    Ok(())
}

/// Read-modify-write of one participant with compare-and-swap.
pub async fn update<F>(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
    edit: F,
) -> Result<ParticipantRecord, ApiError>
where
    F: FnMut(&mut ParticipantRecord) -> Result<(), ApiError>,
{
    rooms::get(store, tenant, room).await?;
    update_json(store, &keys::participant(tenant, room, identity), edit)
        .await?
        .ok_or_else(|| ApiError::participant_not_found(identity))
}

/// Removes a participant (kick); its session and peer are ended by the event handler.
pub async fn remove(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
) -> Result<(), ApiError> {
    let p = get(store, tenant, room, identity).await?;
    remove_record(store, events, tenant, room, p, RemoveReason::Kicked).await
}

async fn remove_record(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
    p: ParticipantRecord,
    reason: RemoveReason,
) -> Result<(), ApiError> {
    store
        .delete(&keys::participant(tenant, room, &p.identity))
        .await?;
    publish_removed(events, tenant, room, p, reason).await
}

async fn publish_removed(
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
    p: ParticipantRecord,
    reason: RemoveReason,
) -> Result<(), ApiError> {
    events
        .publish(RoomEvent::ParticipantRemoved {
            tenant: tenant.clone(),
            room: room.clone(),
            identity: p.identity,
            reason,
            peer: PeerRef {
                node: p.node,
                peer: p.peer,
            },
        })
        .await
}

pub async fn mute_track(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
    track: u64,
    muted: bool,
) -> Result<ParticipantRecord, ApiError> {
    let p = update(store, tenant, room, identity, |p| {
        let t = p
            .tracks
            .iter_mut()
            .find(|t| t.id == track)
            .ok_or_else(|| ApiError::track_not_found(track))?;
        t.muted = muted;
        Ok(())
    })
    .await?;
    events
        .publish(RoomEvent::TrackMuted {
            tenant: tenant.clone(),
            room: room.clone(),
            identity: identity.clone(),
            track,
            muted,
            peer: PeerRef {
                node: p.node.clone(),
                peer: p.peer,
            },
        })
        .await?;
    Ok(p)
}

pub async fn pause_video(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
    paused: bool,
) -> Result<ParticipantRecord, ApiError> {
    let p = update(store, tenant, room, identity, |p| {
        p.video_paused = paused;
        Ok(())
    })
    .await?;
    let tracks = p
        .tracks
        .iter()
        .filter(|t| t.kind == TrackKind::Video)
        .map(|t| t.id)
        .collect();
    events
        .publish(RoomEvent::VideoPaused {
            tenant: tenant.clone(),
            room: room.clone(),
            identity: identity.clone(),
            paused,
            tracks,
            peer: PeerRef {
                node: p.node.clone(),
                peer: p.peer,
            },
        })
        .await?;
    Ok(p)
}

/// Changes a participant's role and/or grants. The record changes first; the event then
/// makes the live session (on whichever instance holds it) work under the new grants.
pub async fn update_permissions(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
    change: PermissionsUpdate,
) -> Result<ParticipantRecord, ApiError> {
    let p = update(store, tenant, room, identity, |p| {
        change.apply(&mut p.role, &mut p.grants);
        Ok(())
    })
    .await?;
    events
        .publish(RoomEvent::PermissionsUpdated {
            tenant: tenant.clone(),
            room: room.clone(),
            identity: identity.clone(),
            name: p.name.clone(),
            role: p.role,
            grants: p.grants,
        })
        .await?;
    Ok(p)
}

fn must_be_waiting(p: &ParticipantRecord) -> Result<(), ApiError> {
    if p.state == ParticipantState::Waiting {
        Ok(())
    } else {
        Err(ApiError::conflict(
            "not_waiting",
            format!("participant {} is not in the waiting room", p.identity),
        ))
    }
}

/// Lets a waiting participant in.
pub async fn admit(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
) -> Result<ParticipantRecord, ApiError> {
    let p = update(store, tenant, room, identity, |p| {
        must_be_waiting(p)?;
        p.state = ParticipantState::Joined;
        Ok(())
    })
    .await?;
    events
        .publish(RoomEvent::ParticipantAdmitted {
            tenant: tenant.clone(),
            room: room.clone(),
            identity: identity.clone(),
        })
        .await?;
    Ok(p)
}

/// Turns a waiting participant away. The delete is conditional on the record read, so a
/// concurrent admit wins cleanly instead of being undone.
pub async fn deny(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
) -> Result<(), ApiError> {
    rooms::get(store, tenant, room).await?;
    let key = keys::participant(tenant, room, identity);
    for attempt in 0..16 {
        crate::store::typed::pause_before_retry(attempt).await;
        let Some(current) = get_json::<ParticipantRecord>(store, &key).await? else {
            return Err(ApiError::participant_not_found(identity));
        };
        must_be_waiting(&current.value)?;
        if store.compare_and_delete(&key, current.revision).await? {
            return publish_removed(events, tenant, room, current.value, RemoveReason::Denied)
                .await;
        }
    }
    Err(ApiError::Unavailable(format!(
        "deny of {identity} kept conflicting"
    )))
}
