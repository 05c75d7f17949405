//! Seats: how `max_participants` stays exact when many joins race, on any number of
//! control-plane instances.
//!
//! A room with a limit has one Store record, `/shardcast/seats/{tenant}/{room}`, listing the
//! identities that hold a seat. Taking a seat is a compare-and-swap on that one key (create-
//! if-absent for the first seat, then on the record's revision), so two joins can never both
//! take the last seat: one of them sees a conflict, re-reads, and finds the room full. A
//! participant that leaves gives its seat back the same way.
//!
//! A join takes its seat in the same transaction that writes its participant record
//! ([`take_with`]), and a participant that leaves gives it back in the same transaction that
//! deletes the record ([`leave`]): one etcd revision per join, one per leave.
//!
//! A seat whose holder vanished without leaving (its instance died: its participant records
//! expire with the instance's lease, `store::lease`) would keep the room full for good, so
//! when the room looks full the seats of identities with no joined participant record are
//! freed — but only seats older than `SEAT_GRACE_MS`, since a seat is taken just before its
//! participant record is written.
//!
//! Must never: count a seat twice for one identity (a rejoin or a replacing session keeps its
//! seat), or let a store failure admit anyone (the caller gets the error).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::ids::{Identity, RoomName, TenantId};
use crate::store::records::{ParticipantRecord, ParticipantState};
use crate::store::typed::list_json_limited;
use crate::store::{keys, End, Expect, Store, StoreError, TxnWrite};

/// A seat younger than this is never taken back, joined record or not: it covers the store
/// round trips between taking a seat and writing the record where the two are apart (a
/// session whose record is rewritten after a lost lease, `hub::restore`).
pub const SEAT_GRACE_MS: u64 = 5_000;

/// Compare-and-swap rounds before giving up (only under a storm of joins to one room).
const MAX_ROUNDS: usize = 64;

/// The stored record: identity → when it took its seat (Unix ms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seats {
    pub seats: BTreeMap<String, u64>,
}

/// The room is full: every one of its `max` seats is held.
pub fn room_full(max: u32) -> ApiError {
    ApiError::conflict(
        "room_full",
        format!("the room is full ({max} participants)"),
    )
}

/// Takes a seat for `identity` in a room of at most `max` participants; `room_full` when
/// every seat is held by someone else.
pub async fn take(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
    max: u32,
    now_ms: u64,
) -> Result<(), ApiError> {
    if take_with(store, tenant, room, identity, max, now_ms, Vec::new()).await? {
        Ok(())
    } else {
        Err(room_full(max))
    }
}

/// Takes a seat for `identity` (or finds it held) and makes `then` — the join's participant
/// record — in the same transaction: one etcd revision for a join, and no record without a
/// seat. `false`: the room is full. With `then` empty and the seat held, nothing is written.
pub async fn take_with(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
    max: u32,
    now_ms: u64,
    then: Vec<TxnWrite>,
) -> Result<bool, StoreError> {
    let key = keys::seats(tenant, room);
    for attempt in 0..MAX_ROUNDS {
        crate::store::typed::pause_before_retry(attempt).await;
        let current = store.get(&key).await?;
        let mut seats = match &current {
            Some(kv) => decode(&key, &kv.value)?,
            None => Seats::default(),
        };
        let expect = match &current {
            None => Expect::Absent,
            Some(kv) => Expect::Revision(kv.mod_revision),
        };
        let mut writes = then.clone();
        if seats.seats.contains_key(identity.as_str()) {
            if writes.is_empty() {
                return Ok(true);
            }
            // Held (a rejoin, a replacing session): the record, as long as the seat is
            // still held when it is written.
        } else {
            if seats.seats.len() >= max as usize {
                // Full: give back the seats of holders gone without leaving (written with
                // the seat taken below, or not at all).
                let joined = joined_identities(store, tenant, room).await?;
                seats.seats.retain(|id, at| {
                    joined.contains(id) || now_ms < at.saturating_add(SEAT_GRACE_MS)
                });
                if seats.seats.len() >= max as usize {
                    return Ok(false);
                }
            }
            seats.seats.insert(identity.to_string(), now_ms);
            writes.push(TxnWrite::Put {
                key: key.clone(),
                value: encode(&seats),
                lease: None,
            });
        }
        if store
            .transaction(vec![(key.clone(), expect)], writes)
            .await?
        {
            return Ok(true);
        }
        // Someone else changed the seats in between: read again.
    }
    Err(StoreError::Backend(format!(
        "seats at {key} kept conflicting"
    )))
}

/// Whether `identity` could take a seat now, without taking it: a quick refusal of a full
/// room before a session is made; [`take_with`] decides atomically at the join.
pub async fn would_fit(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
    max: u32,
    now_ms: u64,
) -> Result<(), ApiError> {
    let key = keys::seats(tenant, room);
    let Some(kv) = store.get(&key).await? else {
        return Ok(());
    };
    let mut seats = decode(&key, &kv.value)?;
    if seats.seats.contains_key(identity.as_str()) || seats.seats.len() < max as usize {
        return Ok(());
    }
    let joined = joined_identities(store, tenant, room).await?;
    seats
        .seats
        .retain(|id, at| joined.contains(id) || now_ms < at.saturating_add(SEAT_GRACE_MS));
    if seats.seats.len() >= max as usize {
        return Err(room_full(max));
    }
    Ok(())
}

/// `identity` leaves: its participant record is deleted and its seat (if it holds one) given
/// back, with `also` (the room's empty marker, for the last leaver), in one transaction.
pub async fn leave(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
    also: Option<TxnWrite>,
) -> Result<(), StoreError> {
    let key = keys::seats(tenant, room);
    let record = keys::participant(tenant, room, identity);
    for attempt in 0..MAX_ROUNDS {
        crate::store::typed::pause_before_retry(attempt).await;
        let held = match store.get(&key).await? {
            Some(kv) => {
                let mut seats = decode(&key, &kv.value)?;
                seats
                    .seats
                    .remove(identity.as_str())
                    .map(|_| (kv.mod_revision, seats))
            }
            None => None,
        };
        let mut writes = vec![TxnWrite::Delete {
            key: record.clone(),
        }];
        writes.extend(also.clone());
        let Some((revision, seats)) = held else {
            store.transaction(Vec::new(), writes).await?;
            return Ok(());
        };
        writes.push(TxnWrite::Put {
            key: key.clone(),
            value: encode(&seats),
            lease: None,
        });
        if store
            .transaction(vec![(key.clone(), Expect::Revision(revision))], writes)
            .await?
        {
            return Ok(());
        }
    }
    Err(StoreError::Backend(format!(
        "seats at {key} kept conflicting"
    )))
}

/// Gives `identity`'s seat back (nothing to do if it holds none).
pub async fn release(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    identity: &Identity,
) -> Result<(), StoreError> {
    let key = keys::seats(tenant, room);
    for attempt in 0..MAX_ROUNDS {
        crate::store::typed::pause_before_retry(attempt).await;
        let Some(kv) = store.get(&key).await? else {
            return Ok(());
        };
        let mut seats = decode(&key, &kv.value)?;
        if seats.seats.remove(identity.as_str()).is_none() {
            return Ok(());
        }
        let outcome = store
            .compare_and_swap(
                &key,
                Expect::Revision(kv.mod_revision),
                encode(&seats),
                None,
            )
            .await?;
        if outcome.swapped() {
            return Ok(());
        }
    }
    Err(StoreError::Backend(format!(
        "seats at {key} kept conflicting"
    )))
}

async fn joined_identities(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
) -> Result<Vec<String>, StoreError> {
    Ok(list_json_limited::<ParticipantRecord>(
        store,
        &keys::participants_prefix(tenant, room),
        super::rooms::MAX_ROOM_READ,
        End::First,
    )
    .await?
    .into_iter()
    .filter(|p| p.value.state == ParticipantState::Joined)
    .map(|p| p.value.identity.to_string())
    .collect())
}

fn decode(key: &str, bytes: &[u8]) -> Result<Seats, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

fn encode(seats: &Seats) -> Vec<u8> {
    // A map of strings to integers always serializes.
    serde_json::to_vec(seats).unwrap_or_default()
}
