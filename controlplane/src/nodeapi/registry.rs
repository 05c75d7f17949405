//! A media node's presence in the Store: its record on a lease, refreshed with its load.
//!
//! The node writes `nodes/{id}` on a lease and refreshes record and lease every third of the
//! lease's life; when the process dies the lease expires and placement stops seeing it. A
//! lost lease (store outage longer than the ttl) is replaced by a new one. Must never: decide
//! placement — it only reports facts.

use std::sync::Arc;
use std::time::Duration;

use shardcast_dataplane::node::MediaNodeApi;

use crate::ids::{NodeId, Region};
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
    /// The operator's label for where the node runs (`cluster.region`).
    pub region: Option<Region>,
}

/// A running registration; `stop` revokes the lease so the node disappears at once.
pub struct Registration {
    id: NodeId,
    task: tokio::task::JoinHandle<()>,
    lease: Arc<std::sync::Mutex<Option<LeaseId>>>,
    store: Arc<dyn Store>,
}

impl Registration {
    /// A stopping node's calls move before it goes: it marks itself draining (its own mark,
    /// `nodes::mark_stopping`), the control planes move its sessions to other nodes as for an
    /// operator's drain, and this waits until `node` has no peer left, at most `within` (with
    /// no other node to go to nobody moves, and the calls end with the node). The mark goes
    /// again once they moved: the node's key goes with `stop`, so nothing is placed here.
    pub async fn move_calls_off(&self, node: &dyn MediaNodeApi, within: Duration) {
        let store = self.store.as_ref();
        if let Err(e) = nodes::mark_stopping(store, &self.id, now_unix_ms()).await {
            tracing::warn!(error = %e, "stopping: cannot mark the node draining; its calls end with it");
            return;
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let peers = node.load().await.map(|l| l.peers).unwrap_or(0);
            if peers == 0 {
                tracing::info!("stopping: no call left on the node");
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(peers, "stopping: peers still on the node; they end with it");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Err(e) = nodes::clear_stopping(store, &self.id).await {
            tracing::warn!(error = %e, "stopping: cannot remove the node's drain mark");
        }
    }

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
        cpu: load.cpu,
        updated_at_ms: now_unix_ms(),
        region: who.region.clone(),
    }
}

/// Registers now (so the node is placeable when this returns) and keeps it fresh.
pub async fn register(
    store: Arc<dyn Store>,
    node: Arc<dyn MediaNodeApi>,
    who: NodeIdentity,
    ttl: Duration,
) -> Result<Registration, StoreError> {
    // A mark left by this node's last stop (it died before removing it) is not an operator's.
    nodes::clear_stopping(store.as_ref(), &who.id).await?;
    let lease = store.grant_lease(ttl).await?;
    nodes::register(store.as_ref(), &record(node.as_ref(), &who).await, lease).await?;
    let id = who.id.clone();
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
        id,
        task,
        lease: shared,
        store,
    })
}
