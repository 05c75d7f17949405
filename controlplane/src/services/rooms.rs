//! Rooms of a tenant: create, list, get, update settings, delete (close), password checks.
//!
//! Closing a room removes its participants (each gets a `ParticipantRemoved` event so its
//! session and peer are ended), its chat, its node binding, then announces `RoomClosed`.
//!
//! Empty rooms expire: while a room has no participant record, `empty/{tenant}/{room}` exists
//! on a lease of the room's `empty_timeout_secs` (put when the room is created and by the
//! last leaver's transaction; deleted by the transaction that writes a joiner's record). When
//! the lease ends, every instance sees the delete ([`expire_empty_rooms`]); the one whose
//! conditional delete of the room record wins closes the room, binding and chat with it.
//! `empty_timeout_secs = 0`: the room never expires.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::events::{PeerRef, RemoveReason, RoomEvent, RoomEvents};
use super::now_unix_secs;
use crate::auth::{password, PasswordLimiter};
use crate::error::ApiError;
use crate::ids::{RoomName, TenantId};
use crate::store::records::{ParticipantRecord, RoomRecord, RoomSettings, VideoCodec};
use crate::store::typed::{get_json, list_json, list_json_limited, to_json, update_json};
use crate::store::{keys, End, Expect, Store, StoreError, TxnWrite, WatchKind};

/// The most participant records one read of a room returns (the `joined` message, REST
/// lists, seat checks): a room's reads stay far below etcd's 4 MiB reply limit, however
/// many records pile up in it.
pub const MAX_ROOM_READ: usize = 5_000;

#[derive(Debug, Clone)]
pub struct CreateRoom {
    pub name: RoomName,
    pub password: Option<String>,
    pub settings: RoomSettings,
}

/// A partial update; `None` leaves a field as it is. `password: Some(None)` removes it.
#[derive(Debug, Clone, Default)]
pub struct UpdateRoom {
    pub password: Option<Option<String>>,
    pub max_participants: Option<Option<u32>>,
    pub ask_before_join: Option<bool>,
    pub empty_timeout_secs: Option<u32>,
    pub video_codecs: Option<Vec<VideoCodec>>,
}

fn validate(settings: &RoomSettings) -> Result<(), ApiError> {
    if settings.max_participants == Some(0) {
        return Err(ApiError::InvalidRequest(
            "max_participants must be at least 1 (omit it for no limit)".into(),
        ));
    }
    let codecs = &settings.video_codecs;
    if codecs
        .iter()
        .enumerate()
        .any(|(i, c)| codecs[..i].contains(c))
    {
        return Err(ApiError::InvalidRequest(
            "video_codecs names a codec twice".into(),
        ));
    }
    Ok(())
}

pub async fn create(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    req: CreateRoom,
) -> Result<RoomRecord, ApiError> {
    validate(&req.settings)?;
    let password_hash = match req.password {
        Some(p) => Some(password::hash(p).await?),
        None => None,
    };
    let record = RoomRecord {
        tenant: tenant.clone(),
        name: req.name.clone(),
        settings: req.settings,
        password_hash,
        created_at: now_unix_secs(),
    };
    let key = keys::room(tenant, &req.name);
    let mut writes = vec![TxnWrite::Put {
        value: to_json(&key, &record)?,
        key: key.clone(),
        lease: None,
    }];
    // Nobody is in it yet: it expires unless someone joins in time.
    writes
        .extend(empty_marker(store, tenant, &req.name, record.settings.empty_timeout_secs).await?);
    if store
        .transaction(vec![(key, Expect::Absent)], writes)
        .await?
    {
        events
            .publish(RoomEvent::RoomCreated {
                tenant: tenant.clone(),
                room: req.name,
            })
            .await?;
        Ok(record)
    } else {
        Err(ApiError::conflict(
            "room_exists",
            format!("room {} already exists", req.name),
        ))
    }
}

/// The write that marks `room` empty, on a new lease of `timeout_secs` (none for 0: the room
/// never expires). The caller puts it in the transaction that leaves the room empty.
pub async fn empty_marker(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    timeout_secs: u32,
) -> Result<Option<TxnWrite>, StoreError> {
    if timeout_secs == 0 {
        return Ok(None);
    }
    let lease = store
        .grant_lease(Duration::from_secs(u64::from(timeout_secs)))
        .await?;
    let key = keys::empty_room(tenant, room);
    Ok(Some(TxnWrite::Put {
        value: to_json(&key, &super::now_unix_ms())?,
        key,
        lease: Some(lease),
    }))
}

/// Watches for empty-room markers whose lease ended and closes those rooms, for as long as
/// the process runs (each control-plane instance runs one; closing is decided by a
/// conditional delete, so one instance closes each room).
pub fn expire_empty_rooms(store: Arc<dyn Store>, events: Arc<dyn RoomEvents>) {
    tokio::spawn(async move {
        let prefix = keys::empty_rooms_prefix();
        loop {
            match store.watch_prefix(&prefix).await {
                Ok(mut stream) => {
                    while let Some(ev) = stream.next().await {
                        match ev {
                            Ok(ev) if ev.kind == WatchKind::Delete => {
                                let Some(name) = ev.key.strip_prefix(&prefix) else {
                                    continue;
                                };
                                if let Err(e) =
                                    expire_if_empty(store.as_ref(), events.as_ref(), name).await
                                {
                                    tracing::warn!(room = %name, error = %e, "rooms: expiring an empty room failed");
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "rooms: empty-room watch ended; watching again");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "rooms: cannot watch empty rooms"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// `name` is `{tenant}/{room}` of a marker that was deleted: by its lease's end, or by a
/// joiner's transaction (then the room has a participant record and stays).
async fn expire_if_empty(
    store: &dyn Store,
    events: &dyn RoomEvents,
    name: &str,
) -> Result<(), ApiError> {
    let Some((t, r)) = name.split_once('/') else {
        return Ok(());
    };
    let (Ok(tenant), Ok(room)) = (TenantId::parse(t), RoomName::parse(r)) else {
        return Ok(());
    };
    let someone = store
        .list_prefix_limited(&keys::participants_prefix(&tenant, &room), 1, End::First)
        .await?;
    if !someone.is_empty() {
        return Ok(());
    }
    let Some(record) = store.get(&keys::room(&tenant, &room)).await? else {
        return Ok(());
    };
    if !store
        .compare_and_delete(&keys::room(&tenant, &room), record.mod_revision)
        .await?
    {
        return Ok(()); // changed (settings) or closed by another instance meanwhile
    }
    tracing::info!(%tenant, %room, "rooms: closing a room that stayed empty past its timeout");
    close(store, events, &tenant, &room).await
}

/// The room, created with default settings and no password if it does not exist yet (a
/// join with a valid token for a new room). Two callers racing for one new room both get
/// the same record.
pub async fn get_or_create(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
) -> Result<RoomRecord, ApiError> {
    match get(store, tenant, room).await {
        Err(ApiError::NotFound {
            code: "room_not_found",
            ..
        }) => {}
        other => return other,
    }
    let req = CreateRoom {
        name: room.clone(),
        password: None,
        settings: RoomSettings::default(),
    };
    match create(store, events, tenant, req).await {
        Ok(record) => {
            tracing::info!(tenant = %tenant, room = %room, "room created on first join");
            Ok(record)
        }
        Err(ApiError::Conflict { .. }) => get(store, tenant, room).await,
        Err(e) => Err(e),
    }
}

pub async fn list(store: &dyn Store, tenant: &TenantId) -> Result<Vec<RoomRecord>, ApiError> {
    Ok(list_json::<RoomRecord>(store, &keys::rooms_prefix(tenant))
        .await?
        .into_iter()
        .map(|v| v.value)
        .collect())
}

pub async fn get(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
) -> Result<RoomRecord, ApiError> {
    get_json::<RoomRecord>(store, &keys::room(tenant, room))
        .await?
        .map(|v| v.value)
        .ok_or_else(|| ApiError::room_not_found(room))
}

pub async fn update(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    req: UpdateRoom,
) -> Result<RoomRecord, ApiError> {
    // Hash outside the compare-and-swap loop: it is slow and must not be repeated.
    let new_hash = match &req.password {
        Some(Some(p)) => Some(Some(password::hash(p.clone()).await?)),
        Some(None) => Some(None),
        None => None,
    };
    let updated = update_json::<RoomRecord, ApiError, _>(store, &keys::room(tenant, room), |r| {
        let mut settings = r.settings.clone();
        if let Some(m) = req.max_participants {
            settings.max_participants = m;
        }
        if let Some(a) = req.ask_before_join {
            settings.ask_before_join = a;
        }
        if let Some(t) = req.empty_timeout_secs {
            settings.empty_timeout_secs = t;
        }
        if let Some(v) = &req.video_codecs {
            settings.video_codecs = v.clone();
        }
        validate(&settings)?;
        r.settings = settings;
        if let Some(h) = &new_hash {
            r.password_hash = h.clone();
        }
        Ok(())
    })
    .await?;
    updated.ok_or_else(|| ApiError::room_not_found(room))
}

pub async fn delete(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
) -> Result<(), ApiError> {
    get(store, tenant, room).await?;
    close(store, events, tenant, room).await
}

/// Removes the room and everything in it. Idempotent.
pub async fn close(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
) -> Result<(), ApiError> {
    // The room key first, so nobody new joins while the rest goes.
    store.delete(&keys::room(tenant, room)).await?;
    loop {
        // In bounded pages: each round deletes what it read, so the next starts further on.
        let page = list_json_limited::<ParticipantRecord>(
            store,
            &keys::participants_prefix(tenant, room),
            MAX_ROOM_READ,
            End::First,
        )
        .await?;
        if page.is_empty() {
            break;
        }
        remove_all(store, events, tenant, room, page).await?;
    }
    store
        .delete_prefix(&keys::chat_prefix(tenant, room))
        .await?;
    store.delete(&keys::chat_seq(tenant, room)).await?;
    store.delete(&keys::binding(tenant, room)).await?;
    store.delete(&keys::seats(tenant, room)).await?;
    store.delete(&keys::empty_room(tenant, room)).await?;
    events
        .publish(RoomEvent::RoomClosed {
            tenant: tenant.clone(),
            room: room.clone(),
        })
        .await
}

async fn remove_all(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
    participants: Vec<crate::store::typed::Versioned<ParticipantRecord>>,
) -> Result<(), ApiError> {
    for p in participants {
        let p = p.value;
        store
            .delete(&keys::participant(tenant, room, &p.identity))
            .await?;
        events
            .publish(RoomEvent::ParticipantRemoved {
                tenant: tenant.clone(),
                room: room.clone(),
                identity: p.identity,
                reason: RemoveReason::RoomClosed,
                peer: PeerRef {
                    node: p.node,
                    peer: p.peer,
                },
            })
            .await?;
    }
    Ok(())
}

/// Checks a join's room password, rate-limited per (room, source) across every instance on
/// the store (`PasswordLimiter`).
///
/// Rooms without a password accept anything. After too many wrong attempts from `source`,
/// even the right password is refused with `rate_limited` until the window passes. `now_ms`
/// is Unix milliseconds (instances compare windows on the wall clock).
pub async fn check_password(
    store: &dyn Store,
    limiter: &PasswordLimiter,
    tenant: &TenantId,
    room: &RoomName,
    given: Option<&str>,
    source: IpAddr,
    now_ms: u64,
) -> Result<(), ApiError> {
    let record = get(store, tenant, room).await?;
    let Some(hash) = record.password_hash else {
        return Ok(());
    };
    // Counted before the (slow) verification, atomically: concurrent guesses cannot all
    // pass a check that none of them has recorded yet.
    limiter
        .begin_attempt(store, tenant, room, source, now_ms)
        .await?
        .map_err(|retry| ApiError::RateLimited {
            // Rounded up: a client that waits this long is let through.
            retry_after_secs: retry.as_millis().div_ceil(1000).max(1) as u64,
        })?;
    let ok = match given {
        Some(p) => password::verify(p.to_owned(), hash).await?,
        None => false,
    };
    if ok {
        limiter.record_success(store, tenant, room, source).await?;
        Ok(())
    } else {
        Err(ApiError::WrongPassword)
    }
}
