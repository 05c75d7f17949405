//! Placement on the embedded store: least-loaded live node, sticky bindings, draining and
//! full nodes skipped, a dead node's rooms placed again. Node records are written exactly as
//! `shardcast medianode` writes them (store::nodes on a lease).

use std::sync::Arc;
use std::time::Duration;

use shardcast_controlplane::ids::{NodeId, RoomName, TenantId};
use shardcast_controlplane::placement::{Placement, PlacementError};
use shardcast_controlplane::store::records::NodeRecord;
use shardcast_controlplane::store::{nodes, EmbeddedStore, LeaseId, Store};

async fn node(store: &dyn Store, id: &str, peers: u32, utilization: f32) -> LeaseId {
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    let record = NodeRecord {
        id: NodeId::parse(id).unwrap(),
        // Nothing listens here: placement only creates the client, it never calls the node.
        api_address: format!("http://127.0.0.1:9/{id}"),
        capacity: 100,
        peers,
        rooms: 0,
        utilization,
        updated_at_ms: 0,
    };
    nodes::register(store, &record, lease).await.unwrap();
    lease
}

async fn bound(store: &dyn Store, room: &str) -> String {
    nodes::binding(
        store,
        &TenantId::parse("t").unwrap(),
        &RoomName::parse(room).unwrap(),
    )
    .await
    .unwrap()
    .unwrap()
    .node
    .to_string()
}

async fn setup() -> (tempfile::TempDir, Arc<dyn Store>, Placement) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    let placement = Placement::cluster(store.clone(), "secret-secret-secret".into());
    (dir, store, placement)
}

#[tokio::test]
async fn least_loaded_first_and_bindings_stick() {
    let (_d, store, p) = setup().await;
    node(store.as_ref(), "busy", 80, 0.5).await;
    node(store.as_ref(), "idle", 1, 0.0).await;
    let h = p.node_for_room("t", "r1").await.unwrap();
    assert_eq!(&*h.id, "idle");
    // Bound rooms count as load at once: the next room goes elsewhere when loads tie.
    node(store.as_ref(), "idle2", 1, 0.0).await;
    let h2 = p.node_for_room("t", "r2").await.unwrap();
    assert_eq!(&*h2.id, "idle2");
    // r1 stays on its node even though another node is now as idle.
    assert_eq!(&*p.node_for_room("t", "r1").await.unwrap().id, "idle");
    assert_eq!(bound(store.as_ref(), "r1").await, "idle");
}

#[tokio::test]
async fn draining_and_full_nodes_get_no_new_rooms() {
    let (_d, store, p) = setup().await;
    node(store.as_ref(), "draining", 0, 0.0).await;
    node(store.as_ref(), "full", 100, 0.2).await;
    node(store.as_ref(), "hot", 10, 0.97).await;
    nodes::set_draining(store.as_ref(), &NodeId::parse("draining").unwrap(), true, 0)
        .await
        .unwrap();
    assert!(matches!(
        p.node_for_room("t", "r").await,
        Err(PlacementError::NoNode)
    ));
    node(store.as_ref(), "ok", 50, 0.5).await;
    assert_eq!(&*p.node_for_room("t", "r").await.unwrap().id, "ok");
}

#[tokio::test]
async fn a_dead_nodes_rooms_are_placed_again() {
    let (_d, store, p) = setup().await;
    let lease = node(store.as_ref(), "a", 0, 0.0).await;
    assert_eq!(&*p.node_for_room("t", "r").await.unwrap().id, "a");
    node(store.as_ref(), "b", 0, 0.1).await;
    // Node a dies: its lease ends and its record with it.
    store.revoke_lease(lease).await.unwrap();
    assert_eq!(&*p.node_for_room("t", "r").await.unwrap().id, "b");
    assert_eq!(bound(store.as_ref(), "r").await, "b");
}
