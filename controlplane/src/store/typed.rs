//! JSON records over the byte `Store`: get, list, create-if-absent and optimistic update.
//!
//! Everything here is generic glue; what a record means belongs to the services.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{CasOutcome, End, Expect, KeyValue, LeaseId, Store, StoreError};

/// A decoded record and the revision it was read at (for a later compare-and-swap).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: u64,
}

/// A record's JSON, or `Corrupt` naming its key.
pub(super) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        detail: e.to_string(),
    })
}

pub async fn get_json<T: DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<Versioned<T>>, StoreError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(kv) => Ok(Some(Versioned {
            value: decode(key, &kv.value)?,
            revision: kv.mod_revision,
        })),
    }
}

fn decode_all<T: DeserializeOwned>(kvs: Vec<KeyValue>) -> Result<Vec<Versioned<T>>, StoreError> {
    kvs.into_iter()
        .map(|kv| {
            Ok(Versioned {
                value: decode(&kv.key, &kv.value)?,
                revision: kv.mod_revision,
            })
        })
        .collect()
}

/// Every record under `prefix`. Only for prefixes whose size is bounded by what they are
/// (a tenant's keys, the node registry); a room's participants or chat use
/// [`list_json_limited`].
pub async fn list_json<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<Versioned<T>>, StoreError> {
    decode_all(store.list_prefix(prefix).await?)
}

/// At most `limit` records under `prefix`, from its first or last key, in key order.
pub async fn list_json_limited<T: DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
    limit: usize,
    end: End,
) -> Result<Vec<Versioned<T>>, StoreError> {
    decode_all(store.list_prefix_limited(prefix, limit, end).await?)
}

/// `value` as the JSON bytes records are stored as (for [`Store::transaction`] writes).
pub fn to_json<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    encode(key, value)
}

pub async fn put_json<T: Serialize>(
    store: &dyn Store,
    key: &str,
    value: &T,
    lease: Option<LeaseId>,
) -> Result<u64, StoreError> {
    store.put(key, encode(key, value)?, lease).await
}

/// Writes `value` only if `key` is absent. `Err(existing)` carries what is there instead.
pub async fn create_json<T: Serialize + DeserializeOwned>(
    store: &dyn Store,
    key: &str,
    value: &T,
    lease: Option<LeaseId>,
) -> Result<Result<u64, Versioned<T>>, StoreError> {
    match store
        .compare_and_swap(key, Expect::Absent, encode(key, value)?, lease)
        .await?
    {
        CasOutcome::Swapped { revision } => Ok(Ok(revision)),
        CasOutcome::Conflict { current: Some(kv) } => Ok(Err(Versioned {
            value: decode(key, &kv.value)?,
            revision: kv.mod_revision,
        })),
        // Deleted between the compare and our read of it: report as a fresh conflict.
        CasOutcome::Conflict { current: None } => Err(StoreError::Backend(format!(
            "create of {key} conflicted with a concurrent delete"
        ))),
    }
}

/// Before attempt `attempt` (from 0) of a read-modify-write whose compare-and-swap lost:
/// nothing before the first; then a random moment, up to 0.1 ms doubling to 6.4 ms, so
/// writers that lost to each other retry apart, not in lockstep (on a busy machine eight
/// tasks incrementing one counter made one lose 32 times in a row: store_contract, CI
/// 2026-12-07). Every compare-and-swap retry loop calls this.
pub async fn pause_before_retry(attempt: usize) {
    if attempt == 0 {
        return;
    }
    let ceiling = 100u64 << attempt.min(6);
    let wait = rand::Rng::gen_range(&mut rand::thread_rng(), 0..=ceiling);
    tokio::time::sleep(std::time::Duration::from_micros(wait)).await;
}

/// Read-modify-write with compare-and-swap, retried on conflict. `Ok(None)` if the key does
/// not exist. `edit` may run several times and must only change the value it is given.
pub async fn update_json<T, E, F>(store: &dyn Store, key: &str, mut edit: F) -> Result<Option<T>, E>
where
    T: Serialize + DeserializeOwned,
    E: From<StoreError>,
    F: FnMut(&mut T) -> Result<(), E>,
{
    const MAX_ATTEMPTS: usize = 32;
    for attempt in 0..MAX_ATTEMPTS {
        pause_before_retry(attempt).await;
        let Some(kv) = store.get(key).await? else {
            return Ok(None);
        };
        let (mut value, revision) = (decode::<T>(key, &kv.value)?, kv.mod_revision);
        edit(&mut value)?;
        let bytes = encode(key, &value)?;
        // The record keeps its lease (a participant's stays on its instance's lease).
        let lease = kv.lease;
        match store
            .compare_and_swap(key, Expect::Revision(revision), bytes, lease)
            .await?
        {
            CasOutcome::Swapped { .. } => return Ok(Some(value)),
            CasOutcome::Conflict { .. } => continue,
        }
    }
    Err(StoreError::Backend(format!("update of {key} kept conflicting; gave up")).into())
}
