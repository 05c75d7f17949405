//! A media node's presence in the Store: its record on a lease, refreshed with its load.
//!
//! The node writes `nodes/{id}` on a lease and refreshes record and lease every third of the
//! lease's life; when the process dies the lease expires and placement stops seeing it. A
//! lost lease (store outage longer than the ttl) is replaced by a new one. Must never: decide
//! placement — it only reports facts.

use std::sync::Arc;
use std::time::Duration;

use shardcast_dataplane::node::MediaNodeApi;

use crate::ids::NodeId;
use crate::services::now_unix_ms;
use crate::store::records::NodeRecord;
use crate::store::{nodes, LeaseId, Store, StoreError};

/// What a node says about itself besides its load.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub id: NodeId,
    /// Node API base URL.
    pub api_address: String,
    /// Maximum peers.
    pub capacity: u32,
}

/// A running registration; `stop` revokes the lease so the node disappears at once.
pub struct Registration {
    task: tokio::task::JoinHandle<()>,
    lease: Arc<std::sync::Mutex<Option<LeaseId>>>,
    store: Arc<dyn Store>,
}

impl Registration {
    pub async fn stop(self) {
        self.task.abort();
        let lease = *self.lease.lock().unwrap();
        if let Some(l) = lease {
            let _ = self.store.revoke_lease(l).await;
        }
    }
}

async fn record(node: &dyn MediaNodeApi, who: &NodeIdentity) -> NodeRecord {
    let load = node.load().await.unwrap_or_default();
    NodeRecord {
        id: who.id.clone(),
        api_address: who.api_address.clone(),
        capacity: who.capacity,
        peers: load.peers,
        rooms: load.rooms,
        utilization: load.utilization,
        updated_at_ms: now_unix_ms(),
    }
}

/// Registers now (so the node is placeable when this returns) and keeps it fresh.
pub async fn register(
    store: Arc<dyn Store>,
    node: Arc<dyn MediaNodeApi>,
    who: NodeIdentity,
    ttl: Duration,
) -> Result<Registration, StoreError> {
    let lease = store.grant_lease(ttl).await?;
    nodes::register(store.as_ref(), &record(node.as_ref(), &who).await, lease).await?;
    let shared = Arc::new(std::sync::Mutex::new(Some(lease)));
    let task = {
        let store = store.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut lease = lease;
            let period = (ttl / 3).max(Duration::from_millis(500));
            loop {
                tokio::time::sleep(period).await;
                let rec = record(node.as_ref(), &who).await;
                let alive = match store.keep_alive(lease).await {
                    Ok(()) => true,
                    Err(StoreError::LeaseNotFound(_)) => false,
                    Err(e) => {
                        tracing::warn!(error = %e, "node registry: keep-alive failed");
                        continue;
                    }
                };
                if !alive {
                    match store.grant_lease(ttl).await {
                        Ok(l) => {
                            tracing::warn!("node registry: lease lost, registering again");
                            lease = l;
                            *shared.lock().unwrap() = Some(l);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "node registry: no new lease");
                            continue;
                        }
                    }
                }
                if let Err(e) = nodes::register(store.as_ref(), &rec, lease).await {
                    tracing::warn!(error = %e, "node registry: refresh failed");
                }
            }
        })
    };
    Ok(Registration {
        task,
        lease: shared,
        store,
    })
}
