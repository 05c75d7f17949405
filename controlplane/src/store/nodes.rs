//! The node registry and room→node bindings on top of the Store.
//!
//! A media node keeps `nodes/{id}` alive on a lease: if it dies, the key vanishes when the
//! lease expires and placement stops seeing it. Operators drain a node through a separate,
//! persistent `drain/{id}` key. A room is bound to a node with create-if-absent, so two
//! control-plane instances placing the same room at once agree without a lock.
//!
//! Choosing a node (placement policy) is not here; this is only the stored facts.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::records::{DrainRecord, NodeRecord, RoomBinding};
use super::typed::{create_json, decode, get_json, list_json, put_json, to_json, Versioned};
use super::{keys, CasOutcome, Expect, LeaseId, Store, StoreError, WatchKind};
use crate::ids::{NodeId, RoomName, TenantId};

/// A live node as placement and the nodes API see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub record: NodeRecord,
    pub draining: bool,
}

/// Writes (or refreshes) the node's record on `lease`.
pub async fn register(
    store: &dyn Store,
    record: &NodeRecord,
    lease: LeaseId,
) -> Result<(), StoreError> {
    put_json(store, &keys::node(&record.id), record, Some(lease)).await?;
    Ok(())
}

/// Every live node (one read of the registry and one of the drain flags: their size grows
/// with the number of nodes, never with rooms or participants).
pub async fn list(store: &dyn Store) -> Result<Vec<NodeView>, StoreError> {
    let nodes = list_json::<NodeRecord>(store, &keys::nodes_prefix()).await?;
    let prefix = keys::drain_prefix();
    let mut drained = std::collections::HashSet::new();
    for kv in store.list_prefix(&prefix).await? {
        let flag: DrainRecord =
            serde_json::from_slice(&kv.value).map_err(|e| StoreError::Corrupt {
                key: kv.key.clone(),
                detail: e.to_string(),
            })?;
        if flag.draining {
            if let Some(id) = kv.key.strip_prefix(&prefix) {
                drained.insert(id.to_owned());
            }
        }
    }
    Ok(nodes
        .into_iter()
        .map(|node| NodeView {
            draining: drained.contains(node.value.id.as_str()),
            record: node.value,
        })
        .collect())
}

pub async fn get(store: &dyn Store, id: &NodeId) -> Result<Option<NodeView>, StoreError> {
    let Some(node) = get_json::<NodeRecord>(store, &keys::node(id)).await? else {
        return Ok(None);
    };
    Ok(Some(NodeView {
        record: node.value,
        draining: is_draining(store, id).await?,
    }))
}

pub async fn is_draining(store: &dyn Store, id: &NodeId) -> Result<bool, StoreError> {
    Ok(get_json::<DrainRecord>(store, &keys::drain(id))
        .await?
        .is_some_and(|d| d.value.draining))
}

pub async fn set_draining(
    store: &dyn Store,
    id: &NodeId,
    draining: bool,
    now_ms: u64,
) -> Result<(), StoreError> {
    if draining {
        let record = DrainRecord {
            draining,
            since_ms: now_ms,
            stopping: false,
        };
        put_json(store, &keys::drain(id), &record, None).await?;
    } else {
        store.delete(&keys::drain(id)).await?;
    }
    Ok(())
}

/// A stopping node asks the control planes to move its calls: a drain mark of its own (an
/// operator's mark, if there is one, is written again instead, so watchers see it anew and
/// it stays the operator's).
pub async fn mark_stopping(store: &dyn Store, id: &NodeId, now_ms: u64) -> Result<(), StoreError> {
    let operator = get_json::<DrainRecord>(store, &keys::drain(id))
        .await?
        .is_some_and(|d| d.value.draining && !d.value.stopping);
    let record = DrainRecord {
        draining: true,
        since_ms: now_ms,
        stopping: !operator,
    };
    put_json(store, &keys::drain(id), &record, None).await?;
    Ok(())
}

/// Removes the node's own stopping mark (never an operator's).
pub async fn clear_stopping(store: &dyn Store, id: &NodeId) -> Result<(), StoreError> {
    if let Some(d) = get_json::<DrainRecord>(store, &keys::drain(id)).await? {
        if d.value.stopping {
            store
                .compare_and_delete(&keys::drain(id), d.revision)
                .await?;
        }
    }
    Ok(())
}

/// Binds `room` to `node` unless it is already bound; returns the binding that holds.
pub async fn bind_room(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    node: &NodeId,
    now_ms: u64,
) -> Result<RoomBinding, StoreError> {
    let wanted = RoomBinding {
        node: node.clone(),
        bound_at_ms: now_ms,
    };
    match create_json(store, &keys::binding(tenant, room), &wanted, None).await? {
        Ok(_) => Ok(wanted),
        Err(existing) => Ok(existing.value),
    }
}

pub async fn binding(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
) -> Result<Option<RoomBinding>, StoreError> {
    Ok(get_json(store, &keys::binding(tenant, room))
        .await?
        .map(|b| b.value))
}

/// The room's binding with its revision, for [`rebind_room`].
pub async fn binding_versioned(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
) -> Result<Option<Versioned<RoomBinding>>, StoreError> {
    get_json(store, &keys::binding(tenant, room)).await
}

/// Moves `room` to `node` if its binding is still the one read at `revision` (a gone or
/// draining node's); returns the binding that holds — another instance's, if it moved the
/// room first. Two instances re-placing one room never split it.
pub async fn rebind_room(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
    revision: u64,
    node: &NodeId,
    now_ms: u64,
) -> Result<RoomBinding, StoreError> {
    let key = keys::binding(tenant, room);
    let wanted = RoomBinding {
        node: node.clone(),
        bound_at_ms: now_ms,
    };
    let value = to_json(&key, &wanted)?;
    match store
        .compare_and_swap(&key, Expect::Revision(revision), value, None)
        .await?
    {
        CasOutcome::Swapped { .. } => Ok(wanted),
        CasOutcome::Conflict { current: Some(kv) } => decode(&key, &kv.value),
        // Unbound meanwhile (the room ended): bind it afresh.
        CasOutcome::Conflict { current: None } => {
            bind_room(store, tenant, room, node, now_ms).await
        }
    }
}

/// Ids of the nodes an operator marks draining, as the marks are written (and, at start and
/// after each lost watch, every node marked now: acting twice on a mark must be harmless).
/// Ends when the receiver is dropped.
pub fn drain_marks(store: Arc<dyn Store>) -> tokio::sync::mpsc::Receiver<NodeId> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            // Watch first, then read, so a mark written in between is seen at least once.
            let watch = store.watch_prefix(&keys::drain_prefix()).await;
            let marked = store.list_prefix(&keys::drain_prefix()).await;
            for kv in marked.unwrap_or_default() {
                if let Some(id) = drain_mark(&kv.key, &kv.value) {
                    if tx.send(id).await.is_err() {
                        return;
                    }
                }
            }
            if let Ok(mut watch) = watch {
                while let Some(Ok(ev)) = watch.next().await {
                    let Some(id) = (ev.kind == WatchKind::Put)
                        .then(|| drain_mark(&ev.key, &ev.value))
                        .flatten()
                    else {
                        continue;
                    };
                    if tx.send(id).await.is_err() {
                        return;
                    }
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}

/// The node a drain key marks draining, if its record says so.
fn drain_mark(key: &str, value: &[u8]) -> Option<NodeId> {
    let record: DrainRecord = serde_json::from_slice(value).ok()?;
    let id = NodeId::parse(key.strip_prefix(&keys::drain_prefix())?).ok()?;
    record.draining.then_some(id)
}

pub async fn unbind_room(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
) -> Result<(), StoreError> {
    store.delete(&keys::binding(tenant, room)).await?;
    Ok(())
}
