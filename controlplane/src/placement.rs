//! Placement: which media node carries a room.
//!
//! All-in-one mode has one in-process node and every room goes there; with `local` that node
//! is also registered in the (embedded) Store, rooms are bound to it and a drained node takes
//! no new rooms, as in a cluster (being the only node, it is never "full"). In a cluster, nodes
//! register in the Store (`store::nodes`, a key on a lease); a room is put on the least-loaded
//! live node that is neither draining nor full, and stays there through a create-if-absent
//! binding (two instances placing the same room at once agree without a lock). A binding to a
//! node whose lease expired is removed and the room placed again.
//!
//! Regions: nodes and control planes carry an operator's label (`cluster.region`). A room is
//! wanted in the region its token names (the participant whose offer places it), else in this
//! instance's own; a node of that region is chosen when one takes rooms, any other otherwise
//! (a call across an ocean beats no call). A room lives on one node, so the region is decided
//! by whoever places it; later participants from elsewhere join it there.
//!
//! Load order, within the wanted region first: utilization (measured: the larger of the shards'
//! CPU share and the fullest shard's peer share, in 5 % steps so noise does not flap), then the
//! node's rooms, then peers. A node's rooms are what its own record reports (its load
//! report, refreshed every third of its lease) plus the rooms this instance placed on it since
//! that report (instant feedback: a heartbeat lags the last placement). Placement reads the
//! node registry and one binding, never the bindings of the cluster: no read grows with the
//! number of rooms. Must never: call a node's media API beyond creating its client.
//!
//! A lost node (its `RemoteNode` event stream stayed down, `nodeapi::client`) is dropped at
//! once: its client leaves the map (its stream task ends; nothing retries it), its id goes out
//! on `lost_nodes()` (the hub tells its sessions `node_lost`), and it counts as dead for
//! placement — bindings to it are replaced, it is never chosen — until its registration is
//! refreshed after the loss (a restarted node), without waiting for its lease to expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shardcast_dataplane::node::MediaNodeApi;

use crate::ids::{NodeId, Region, RoomName, TenantId};
use crate::nodeapi::client::RemoteNode;
use crate::store::records::NodeRecord;
use crate::store::{nodes, Store};

/// A media node as the control plane drives it.
#[derive(Clone)]
pub struct NodeHandle {
    pub id: Arc<str>,
    pub api: Arc<dyn MediaNodeApi>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle").field("id", &self.id).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error("no live media node has room")]
    NoNode,
    #[error("bad room or tenant name: {0}")]
    BadName(String),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Utilization at or above this is "full": no new rooms.
pub const FULL_UTILIZATION: f32 = 0.95;

enum Mode {
    Single(NodeHandle),
    Local {
        node: NodeHandle,
        id: NodeId,
        store: Arc<dyn Store>,
    },
    Cluster(Arc<Cluster>),
}

/// The cluster mode's state, shared with the tasks that watch each node client.
struct Cluster {
    store: Arc<dyn Store>,
    secret: String,
    lost_after: Duration,
    clients: Mutex<HashMap<String, NodeHandle>>,
    /// Lost nodes: id → the `updated_at_ms` of its record when it was lost. Dead while its
    /// record is no newer (a killed node never refreshes it; a restarted one does).
    dead: Mutex<HashMap<String, u64>>,
    lost_tx: tokio::sync::broadcast::Sender<Arc<str>>,
    /// Rooms this instance placed per node since the node's last load report: id → (the
    /// report's `updated_at_ms`, rooms placed since).
    placed: Mutex<HashMap<String, (u64, u32)>>,
}

impl Cluster {
    /// The node's rooms as placement counts them (see the module notes).
    fn rooms_of(&self, record: &NodeRecord) -> u32 {
        let placed = self.placed.lock().unwrap();
        match placed.get(record.id.as_str()) {
            Some((at, n)) if *at == record.updated_at_ms => record.rooms.saturating_add(*n),
            _ => record.rooms,
        }
    }

    /// A room was just bound to the node of `record`.
    fn placed_on(&self, record: &NodeRecord) {
        let mut placed = self.placed.lock().unwrap();
        let entry = placed
            .entry(record.id.to_string())
            .or_insert((record.updated_at_ms, 0));
        if entry.0 != record.updated_at_ms {
            *entry = (record.updated_at_ms, 0);
        }
        entry.1 += 1;
    }

    fn is_dead(&self, record: &NodeRecord) -> bool {
        let mut dead = self.dead.lock().unwrap();
        let key = record.id.as_str();
        match dead.get(key) {
            Some(at) if record.updated_at_ms <= *at => true,
            Some(_) => {
                dead.remove(key);
                false
            }
            None => false,
        }
    }

    /// The node's client, created on first use with a task that drops it when it is lost.
    fn handle(self: &Arc<Self>, record: &NodeRecord) -> NodeHandle {
        let mut c = self.clients.lock().unwrap();
        let key = record.id.to_string();
        if let Some(h) = c.get(&key) {
            return h.clone();
        }
        let remote = RemoteNode::with_lost_after(
            &record.id,
            &record.api_address,
            &self.secret,
            self.lost_after,
        );
        let mut lost = remote.lost();
        let h = NodeHandle {
            id: Arc::from(key.as_str()),
            api: Arc::new(remote),
        };
        c.insert(key.clone(), h.clone());
        let me = Arc::downgrade(self);
        let api = Arc::downgrade(&h.api);
        tokio::spawn(async move {
            if lost.wait_for(|l| *l).await.is_err() {
                return; // the client was dropped
            }
            let Some(me) = me.upgrade() else { return };
            me.lost(&key, &api).await;
        });
        h
    }

    async fn lost(&self, key: &str, api: &std::sync::Weak<dyn MediaNodeApi>) {
        let id: Arc<str> = Arc::from(key);
        {
            let mut c = self.clients.lock().unwrap();
            // Only this client: a newer one for the same id (a restarted node) stays.
            if c.get(key)
                .is_some_and(|h| std::ptr::addr_eq(Arc::as_ptr(&h.api), api.as_ptr()))
            {
                c.remove(key);
            }
        }
        let seen = match NodeId::parse(key) {
            Ok(nid) => nodes::get(self.store.as_ref(), &nid)
                .await
                .ok()
                .flatten()
                .map(|v| v.record.updated_at_ms),
            Err(_) => None,
        };
        self.dead
            .lock()
            .unwrap()
            .insert(key.to_string(), seen.unwrap_or_else(now_ms));
        tracing::warn!(node = %key, "placement: media node lost; its rooms move on their next offer");
        let _ = self.lost_tx.send(id);
    }
}

pub struct Placement {
    mode: Mode,
    /// Lost nodes' ids (cluster mode only sends).
    lost_tx: tokio::sync::broadcast::Sender<Arc<str>>,
    /// This instance's region: where a room goes whose token names none (cluster mode).
    region: Option<Region>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Placement {
    /// All-in-one: every room on `node`.
    pub fn single(node: NodeHandle) -> Self {
        Self {
            mode: Mode::Single(node),
            lost_tx: tokio::sync::broadcast::channel(64).0,
            region: None,
        }
    }

    /// All-in-one with the cluster's drain rule: `node` is registered in `store` as `id`
    /// (`nodeapi::registry`); a room is bound to it on first use, and while it is draining a
    /// room without a binding gets no node.
    pub fn local(store: Arc<dyn Store>, id: NodeId, node: NodeHandle) -> Self {
        Self {
            mode: Mode::Local { node, id, store },
            lost_tx: tokio::sync::broadcast::channel(64).0,
            region: None,
        }
    }

    /// Cluster: nodes from the Store's registry, reached over HTTP with `secret`.
    pub fn cluster(store: Arc<dyn Store>, secret: String) -> Self {
        Self::cluster_with_lost_after(store, secret, crate::nodeapi::client::DEFAULT_LOST_AFTER)
    }

    /// As [`Placement::cluster`]; a node whose event stream stays down `lost_after` is lost.
    pub fn cluster_with_lost_after(
        store: Arc<dyn Store>,
        secret: String,
        lost_after: Duration,
    ) -> Self {
        let lost_tx = tokio::sync::broadcast::channel(64).0;
        Self {
            mode: Mode::Cluster(Arc::new(Cluster {
                store,
                secret,
                lost_after,
                clients: Mutex::new(HashMap::new()),
                dead: Mutex::new(HashMap::new()),
                lost_tx: lost_tx.clone(),
                placed: Mutex::new(HashMap::new()),
            })),
            lost_tx,
            region: None,
        }
    }

    /// Cluster mode: rooms whose token names no region are placed in `region` when a node
    /// there takes them (see the module notes). Call before sharing the placement.
    pub fn in_region(mut self, region: Option<Region>) -> Self {
        self.region = region;
        self
    }

    /// The ids of nodes found lost from now on (cluster mode).
    pub fn lost_nodes(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.lost_tx.subscribe()
    }

    /// Whether a room could be placed now (for `/readyz`): the in-process node's shards
    /// answer, or (cluster) a live node that is not draining is registered.
    pub async fn ready(&self) -> Result<(), PlacementError> {
        match &self.mode {
            Mode::Single(node) | Mode::Local { node, .. } => node
                .api
                .load()
                .await
                .map(|_| ())
                .map_err(|_| PlacementError::NoNode),
            Mode::Cluster(c) => {
                let live = nodes::list(c.store.as_ref()).await?;
                if live.iter().any(|n| !n.draining && !c.is_dead(&n.record)) {
                    Ok(())
                } else {
                    Err(PlacementError::NoNode)
                }
            }
        }
    }

    /// The node carrying `room`, placing the room first if it has no live binding: in
    /// `region` (the token's hint) when given, else in this instance's region, when a node
    /// there takes rooms.
    pub async fn node_for_room(
        &self,
        tenant: &str,
        room: &str,
        region: Option<&Region>,
    ) -> Result<NodeHandle, PlacementError> {
        let cluster = match &self.mode {
            Mode::Single(n) => return Ok(n.clone()),
            Mode::Local { node, id, store } => {
                return Self::local_room(store.as_ref(), id, node, tenant, room).await
            }
            Mode::Cluster(c) => c,
        };
        let store: &dyn Store = cluster.store.as_ref();
        let t = TenantId::parse(tenant).map_err(|e| PlacementError::BadName(e.to_string()))?;
        let r = RoomName::parse(room).map_err(|e| PlacementError::BadName(e.to_string()))?;
        let wanted = region.or(self.region.as_ref());
        for _ in 0..3 {
            let (bound, chosen) = match nodes::binding_versioned(store, &t, &r).await? {
                None => {
                    let chosen = Self::choose(cluster, store, wanted).await?;
                    let bound = nodes::bind_room(store, &t, &r, &chosen.id, now_ms()).await?;
                    (bound, chosen)
                }
                Some(b) => {
                    // None when the node is gone: its lease expired, or this instance found
                    // it lost.
                    let live = nodes::get(store, &b.value.node)
                        .await?
                        .filter(|v| !cluster.is_dead(&v.record));
                    if let Some(v) = live.as_ref().filter(|v| !v.draining) {
                        return Ok(cluster.handle(&v.record));
                    }
                    let chosen = match (Self::choose(cluster, store, wanted).await, &live) {
                        // Draining, and no other node takes the room: it stays.
                        (Err(PlacementError::NoNode), Some(v)) => {
                            return Ok(cluster.handle(&v.record))
                        }
                        (chosen, _) => chosen?,
                    };
                    let why = if live.is_some() { "draining" } else { "gone" };
                    tracing::info!(node = %b.value.node, to = %chosen.id, %room, why, "moving a room off its node");
                    let to = &chosen.id;
                    let bound = nodes::rebind_room(store, &t, &r, b.revision, to, now_ms()).await?;
                    (bound, chosen)
                }
            };
            if bound.node == chosen.id {
                cluster.placed_on(&chosen);
            }
            if let Some(view) = nodes::get(store, &bound.node).await? {
                if !cluster.is_dead(&view.record) {
                    return Ok(cluster.handle(&view.record));
                }
            }
        }
        Err(PlacementError::NoNode)
    }

    async fn local_room(
        store: &dyn Store,
        id: &NodeId,
        node: &NodeHandle,
        tenant: &str,
        room: &str,
    ) -> Result<NodeHandle, PlacementError> {
        let t = TenantId::parse(tenant).map_err(|e| PlacementError::BadName(e.to_string()))?;
        let r = RoomName::parse(room).map_err(|e| PlacementError::BadName(e.to_string()))?;
        if nodes::binding(store, &t, &r).await?.is_some() {
            return Ok(node.clone());
        }
        if nodes::is_draining(store, id).await? {
            return Err(PlacementError::NoNode);
        }
        nodes::bind_room(store, &t, &r, id, now_ms()).await?;
        Ok(node.clone())
    }

    /// Cluster mode: the nodes an operator marks draining, from now on (`nodes::drain_marks`);
    /// `None` in the all-in-one modes, whose one node has nowhere to move rooms to.
    pub fn drain_marks(&self) -> Option<tokio::sync::mpsc::Receiver<NodeId>> {
        match &self.mode {
            Mode::Cluster(c) => Some(nodes::drain_marks(c.store.clone())),
            _ => None,
        }
    }

    /// Whether a room could be placed on a node other than `node` now (cluster mode).
    pub async fn takes_rooms_besides(&self, node: &str) -> bool {
        match &self.mode {
            Mode::Cluster(c) => Self::choose(c, c.store.as_ref(), None)
                .await
                .is_ok_and(|n| n.id.as_str() != node),
            _ => false,
        }
    }

    /// The least-loaded live node that takes new rooms, in the `wanted` region when one there
    /// does.
    async fn choose(
        cluster: &Cluster,
        store: &dyn Store,
        wanted: Option<&Region>,
    ) -> Result<NodeRecord, PlacementError> {
        let live = nodes::list(store).await?;
        let chosen = live
            .into_iter()
            .filter(|n| !n.draining && !cluster.is_dead(&n.record))
            .filter(|n| n.record.utilization < FULL_UTILIZATION)
            .filter(|n| n.record.capacity == 0 || n.record.peers < n.record.capacity)
            .min_by_key(|n| {
                (
                    wanted.is_some() && n.record.region.as_ref() != wanted,
                    (n.record.utilization * 20.0) as u32,
                    cluster.rooms_of(&n.record),
                    n.record.peers,
                    n.record.id.to_string(),
                )
            })
            .map(|n| n.record)
            .ok_or(PlacementError::NoNode)?;
        if let Some(w) = wanted.filter(|w| chosen.region.as_ref() != Some(*w)) {
            tracing::info!(wanted = %w, node = %chosen.id, region = ?chosen.region, "placement: no node of the wanted region takes rooms; using another region's");
        }
        Ok(chosen)
    }
}
