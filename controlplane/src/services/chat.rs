//! Room chat: stored first, then fanned out; history read back in order.
//!
//! Each message takes the next per-room sequence number from a counter key (compare-and-swap,
//! so concurrent senders on any instance get distinct, increasing numbers) and is stored
//! under that number; only then is the `Chat` event published. A crash between the two
//! steps leaves a gap in the numbers, never a message that was seen but not stored.
//!
//! A room keeps its last `keep` messages (`ApiConfig::chat_history_max`, the most a history
//! read returns): storing message n deletes message n − keep, so neither the store nor a
//! history read (whole, at every join) grows with the room's age — 500 messages of at most
//! 4 KiB stay under etcd's 4 MiB reply limit.

use super::events::{RoomEvent, RoomEvents};
use super::{now_unix_ms, rooms};
use crate::error::ApiError;
use crate::ids::{Identity, RoomName, TenantId};
use crate::store::records::ChatRecord;
use crate::store::typed::{get_json, list_json, put_json};
use crate::store::{keys, CasOutcome, Expect, Store};

/// Takes the room's next sequence number.
async fn next_seq(store: &dyn Store, tenant: &TenantId, room: &RoomName) -> Result<u64, ApiError> {
    let key = keys::chat_seq(tenant, room);
    for _ in 0..64 {
        let current = get_json::<u64>(store, &key).await?;
        let (next, expect) = match current {
            None => (1, Expect::Absent),
            Some(v) => (v.value + 1, Expect::Revision(v.revision)),
        };
        let bytes = serde_json::to_vec(&next).map_err(|e| ApiError::Internal(e.to_string()))?;
        if let CasOutcome::Swapped { .. } =
            store.compare_and_swap(&key, expect, bytes, None).await?
        {
            return Ok(next);
        }
    }
    Err(ApiError::Unavailable(format!(
        "chat sequence of {room} kept conflicting"
    )))
}

/// A message as a sender submits it.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    pub from: &'a Identity,
    pub name: &'a str,
    pub text: &'a str,
}

/// What a room's chat may hold: the longest message and how many messages it keeps.
#[derive(Debug, Clone, Copy)]
pub struct ChatLimits {
    pub max_bytes: usize,
    pub keep: u64,
}

/// Stores a message, drops the one that falls out of the room's history, and publishes it.
pub async fn post(
    store: &dyn Store,
    events: &dyn RoomEvents,
    tenant: &TenantId,
    room: &RoomName,
    new: NewMessage<'_>,
    limits: ChatLimits,
) -> Result<ChatRecord, ApiError> {
    let ChatLimits { max_bytes, keep } = limits;
    let NewMessage { from, name, text } = new;
    if text.trim().is_empty() {
        return Err(ApiError::InvalidRequest("chat message is empty".into()));
    }
    if text.len() > max_bytes {
        return Err(ApiError::InvalidRequest(format!(
            "chat message longer than {max_bytes} bytes"
        )));
    }
    rooms::get(store, tenant, room).await?;
    let seq = next_seq(store, tenant, room).await?;
    let message = ChatRecord {
        seq,
        from: from.clone(),
        name: name.to_owned(),
        text: text.to_owned(),
        sent_at_ms: now_unix_ms(),
    };
    put_json(
        store,
        &keys::chat_message(tenant, room, seq),
        &message,
        None,
    )
    .await?;
    if let Some(old) = seq.checked_sub(keep.max(1)).filter(|&o| o > 0) {
        // Best effort: the message is stored and will be published; a failed trim leaves
        // one message too many, which a read's `limit` still cuts.
        if let Err(e) = store.delete(&keys::chat_message(tenant, room, old)).await {
            tracing::warn!(%room, seq = old, error = %e, "chat: trimming the history failed");
        }
    }
    events
        .publish(RoomEvent::Chat {
            tenant: tenant.clone(),
            room: room.clone(),
            message: message.clone(),
        })
        .await?;
    Ok(message)
}

/// The last `limit` messages, oldest first.
pub async fn history(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    limit: usize,
) -> Result<Vec<ChatRecord>, ApiError> {
    rooms::get(store, tenant, room).await?;
    let all = list_json::<ChatRecord>(store, &keys::chat_prefix(tenant, room)).await?;
    let skip = all.len().saturating_sub(limit);
    Ok(all.into_iter().skip(skip).map(|v| v.value).collect())
}
