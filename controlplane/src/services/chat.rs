//! Room chat: stored first, then fanned out; history read back in order.
//!
//! A message is one Store transaction (one etcd revision): it takes the room's next sequence
//! number from a counter key (compared on its revision, so concurrent senders on any instance
//! get distinct, increasing numbers), stores the message under that number and deletes the
//! one that falls out of the history, all or nothing. Only then is the `Chat` event
//! published, so a crash between the two loses the fan-out, never a message that was seen.
//!
//! A room keeps its last `keep` messages (`ApiConfig::chat_history_max`, the most a history
//! read returns): storing message n deletes message n − keep, and a history read asks the
//! store for the last `limit` keys only, so neither grows with the room's age — 500 messages
//! of at most 4 KiB stay under etcd's 4 MiB reply limit.

use super::events::{RoomEvent, RoomEvents};
use super::{now_unix_ms, rooms};
use crate::error::ApiError;
use crate::ids::{Identity, RoomName, TenantId};
use crate::store::records::ChatRecord;
use crate::store::typed::{get_json, list_json_limited, to_json};
use crate::store::{keys, End, Expect, Store, TxnWrite};

/// Compare-and-swap rounds on the sequence counter before giving up (only when many
/// senders in one room collide).
const MAX_ROUNDS: usize = 64;

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
    let seq_key = keys::chat_seq(tenant, room);
    let mut stored = None;
    for attempt in 0..MAX_ROUNDS {
        crate::store::typed::pause_before_retry(attempt).await;
        let current = get_json::<u64>(store, &seq_key).await?;
        let (seq, expect) = match current {
            None => (1, Expect::Absent),
            Some(v) => (v.value + 1, Expect::Revision(v.revision)),
        };
        let message = ChatRecord {
            seq,
            from: from.clone(),
            name: name.to_owned(),
            text: text.to_owned(),
            sent_at_ms: now_unix_ms(),
        };
        let key = keys::chat_message(tenant, room, seq);
        let mut writes = vec![
            TxnWrite::Put {
                key: seq_key.clone(),
                value: to_json(&seq_key, &seq)?,
                lease: None,
            },
            TxnWrite::Put {
                value: to_json(&key, &message)?,
                key,
                lease: None,
            },
        ];
        if let Some(old) = seq.checked_sub(keep.max(1)).filter(|&o| o > 0) {
            writes.push(TxnWrite::Delete {
                key: keys::chat_message(tenant, room, old),
            });
        }
        if store
            .transaction(vec![(seq_key.clone(), expect)], writes)
            .await?
        {
            stored = Some(message);
            break;
        }
        // Another sender took this number: read the counter again.
    }
    let Some(message) = stored else {
        return Err(ApiError::Unavailable(format!(
            "chat sequence of {room} kept conflicting"
        )));
    };
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
    let last =
        list_json_limited::<ChatRecord>(store, &keys::chat_prefix(tenant, room), limit, End::Last)
            .await?;
    Ok(last.into_iter().map(|v| v.value).collect())
}
