//! Placement with 100 000 rooms bound in a real etcd: it reads the node registry and the
//! room's own binding, never the bindings of the cluster, so it still answers when a read of
//! every binding is past etcd's 4 MiB reply limit (issue 15: placement failed cluster-wide at
//! about 30 000 rooms ever bound).

mod support;

use std::sync::Arc;
use std::time::Duration;

use shardcast_controlplane::ids::{NodeId, RoomName, TenantId};
use shardcast_controlplane::placement::Placement;
use shardcast_controlplane::store::records::{NodeRecord, RoomBinding};
use shardcast_controlplane::store::{keys, nodes, Store, TxnWrite};
use support::etcd::EtcdProcess;

const BOUND: usize = 100_000;
/// etcd takes at most 128 operations per transaction by default.
const BATCH: usize = 100;

async fn node(store: &dyn Store, id: &str, rooms: u32) {
    let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    let record = NodeRecord {
        id: NodeId::parse(id).unwrap(),
        // Nothing listens here: placement only creates the client, it never calls the node.
        api_address: format!("http://127.0.0.1:9/{id}"),
        capacity: 1_000_000,
        peers: 0,
        rooms,
        utilization: 0.1,
        cpu: 0.0,
        updated_at_ms: 1,
        region: None,
    };
    nodes::register(store, &record, lease).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_answers_with_100k_rooms_bound() {
    let etcd = EtcdProcess::start().await;
    let store: Arc<dyn Store> = Arc::new(etcd.store().await);
    let tenant = TenantId::parse("t").unwrap();
    // Node "full-of-rooms" reports the 100 000 rooms bound to it; "fresh" reports none.
    node(store.as_ref(), "full-of-rooms", BOUND as u32).await;
    node(store.as_ref(), "fresh", 0).await;
    let binding = serde_json::to_vec(&RoomBinding {
        node: NodeId::parse("full-of-rooms").unwrap(),
        bound_at_ms: 1_795_000_000_000,
    })
    .unwrap();
    let mut written = 0usize;
    for batch in 0..BOUND / BATCH {
        let writes: Vec<TxnWrite> = (0..BATCH)
            .map(|i| {
                let room = RoomName::parse(format!("room-{:06}", batch * BATCH + i)).unwrap();
                let key = keys::binding(&tenant, &room);
                written += key.len() + binding.len();
                TxnWrite::Put {
                    key,
                    value: binding.clone(),
                    lease: None,
                }
            })
            .collect();
        assert!(store.transaction(Vec::new(), writes).await.unwrap());
    }
    assert!(written > 4 << 20, "the bindings hold {written} bytes");
    // The cliff this test is about: reading every binding at once is refused.
    assert!(
        store
            .list_prefix(&keys::bindings_tenant_prefix(&tenant))
            .await
            .is_err(),
        "a read of 100 000 bindings should exceed etcd's 4 MiB reply limit"
    );

    let placement = Placement::cluster(store.clone(), "secret-secret-secret".into());
    let h = placement
        .node_for_room("t", "a-new-room", None)
        .await
        .unwrap();
    assert_eq!(
        &*h.id, "fresh",
        "the node with fewer rooms takes the new room"
    );
    // Bound rooms stay where they are.
    let old = placement
        .node_for_room("t", "room-000042", None)
        .await
        .unwrap();
    assert_eq!(&*old.id, "full-of-rooms");
}
