//! Placement on the embedded store: least-loaded live node, sticky bindings, draining and
//! full nodes skipped, a dead node's rooms placed again. Node records are written exactly as
//! `shardcast medianode` writes them (store::nodes on a lease).

use std::sync::Arc;
use std::time::Duration;

use shardcast_controlplane::ids::{NodeId, Region, RoomName, TenantId};
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
        cpu: 0.0,
        updated_at_ms: 0,
        region: None,
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
    let h = p.node_for_room("t", "r1", None).await.unwrap();
    assert_eq!(&*h.id, "idle");
    // Bound rooms count as load at once: the next room goes elsewhere when loads tie.
    node(store.as_ref(), "idle2", 1, 0.0).await;
    let h2 = p.node_for_room("t", "r2", None).await.unwrap();
    assert_eq!(&*h2.id, "idle2");
    // r1 stays on its node even though another node is now as idle.
    assert_eq!(&*p.node_for_room("t", "r1", None).await.unwrap().id, "idle");
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
        p.node_for_room("t", "r", None).await,
        Err(PlacementError::NoNode)
    ));
    node(store.as_ref(), "ok", 50, 0.5).await;
    assert_eq!(&*p.node_for_room("t", "r", None).await.unwrap().id, "ok");
}

#[tokio::test]
async fn a_dead_nodes_rooms_are_placed_again() {
    let (_d, store, p) = setup().await;
    let lease = node(store.as_ref(), "a", 0, 0.0).await;
    assert_eq!(&*p.node_for_room("t", "r", None).await.unwrap().id, "a");
    node(store.as_ref(), "b", 0, 0.1).await;
    // Node a dies: its lease ends and its record with it.
    store.revoke_lease(lease).await.unwrap();
    assert_eq!(&*p.node_for_room("t", "r", None).await.unwrap().id, "b");
    assert_eq!(bound(store.as_ref(), "r").await, "b");
}

async fn node_in(store: &dyn Store, id: &str, region: Option<&str>, utilization: f32) {
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    let record = NodeRecord {
        id: NodeId::parse(id).unwrap(),
        api_address: format!("http://127.0.0.1:9/{id}"),
        capacity: 100,
        peers: 0,
        rooms: 0,
        utilization,
        cpu: 0.0,
        updated_at_ms: 0,
        region: region.map(|r| Region::parse(r).unwrap()),
    };
    nodes::register(store, &record, lease).await.unwrap();
}

#[tokio::test]
async fn a_room_goes_to_its_region_before_a_less_loaded_node_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
    // This control plane runs in eu; its eu node is the busiest of the three.
    let p = Placement::cluster(store.clone(), "secret-secret-secret".into())
        .in_region(Some(Region::parse("eu").unwrap()));
    node_in(store.as_ref(), "eu-1", Some("eu"), 0.6).await;
    node_in(store.as_ref(), "us-1", Some("us"), 0.0).await;
    node_in(store.as_ref(), "plain", None, 0.1).await;
    let us = Region::parse("us").unwrap();
    let ap = Region::parse("ap").unwrap();

    // No hint: the control plane's own region.
    assert_eq!(&*p.node_for_room("t", "r1", None).await.unwrap().id, "eu-1");
    // The token's hint wins over the control plane's region.
    assert_eq!(
        &*p.node_for_room("t", "r2", Some(&us)).await.unwrap().id,
        "us-1"
    );
    // A region without nodes: the least-loaded node anywhere (utilization first).
    assert_eq!(
        &*p.node_for_room("t", "r3", Some(&ap)).await.unwrap().id,
        "us-1"
    );
    // A placed room stays where it is, whatever a later participant's hint.
    let eu = Region::parse("eu").unwrap();
    assert_eq!(
        &*p.node_for_room("t", "r2", Some(&eu)).await.unwrap().id,
        "us-1"
    );
    // The region's only node is full (utilization): another region's node takes the room.
    node_in(store.as_ref(), "eu-1", Some("eu"), 0.99).await;
    assert_ne!(&*p.node_for_room("t", "r4", None).await.unwrap().id, "eu-1");
    // Draining likewise; and a drained room moves within its region when it can.
    node_in(store.as_ref(), "eu-2", Some("eu"), 0.5).await;
    assert_eq!(&*p.node_for_room("t", "r5", None).await.unwrap().id, "eu-2");
    nodes::set_draining(store.as_ref(), &NodeId::parse("eu-2").unwrap(), true, 0)
        .await
        .unwrap();
    node_in(store.as_ref(), "eu-1", Some("eu"), 0.7).await;
    assert_eq!(&*p.node_for_room("t", "r5", None).await.unwrap().id, "eu-1");
    assert_eq!(bound(store.as_ref(), "r5").await, "eu-1");
}
