//! A control plane whose leases are lost while it lives (what etcd does when it answers again
//! after an outage longer than them) writes its live sessions' participant records again,
//! on a new lease: here the leases are revoked behind its back on the embedded store (same
//! `Store` contract as etcd). A record written since by someone else (a newer session of the
//! identity on another instance) is left alone, and a session that left meanwhile is not
//! brought back. The etcd freeze itself, with media, is `tests/e2e/faults_lease.rs`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shardcast_controlplane::ids::{Identity, RoomName};
use shardcast_controlplane::server;
use shardcast_controlplane::store::keys;
use support::inproc;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn join(addr: std::net::SocketAddr, token: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/rtc"))
        .await
        .unwrap();
    let join = json!({"type": "join", "token": token}).to_string();
    ws.send(Message::Text(join.into())).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer within 10 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            match v["type"].as_str() {
                Some("joined") => return ws,
                Some("error") => panic!("join refused: {v}"),
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_lost_with_the_lease_are_written_again_but_never_over_newer_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = inproc::embedded_store(&dir.path().join("store")).await;
    let key = server::ensure_default_tenant(store.as_ref(), dir.path())
        .await
        .unwrap();
    let placement = inproc::single("local", Arc::new(inproc::media_node()));
    let built = server::build(store.clone(), placement, inproc::options()).await;
    let addr = inproc::serve_built(built).await;

    let record = |who: &str| {
        keys::participant(
            &key.tenant,
            &RoomName::parse("r").unwrap(),
            &Identity::parse(who).unwrap(),
        )
    };
    let mut sockets = Vec::new();
    for who in ["ann", "bob", "cy"] {
        sockets.push(join(addr, &inproc::host_token(&key, "r", who)).await);
    }
    let ann = store
        .get(&record("ann"))
        .await
        .unwrap()
        .expect("ann listed");
    let session_lease = ann.lease.expect("participant records are on a lease");
    let interest = store.list_prefix("/shardcast/interest/").await.unwrap();
    assert_eq!(interest.len(), 1, "{interest:?}");
    let bus_lease = interest[0].lease.expect("interest keys are on a lease");

    // Both leases end as etcd ends them after a long outage: their keys go with them.
    store.revoke_lease(session_lease).await.unwrap();
    store.revoke_lease(bus_lease).await.unwrap();
    for who in ["ann", "bob", "cy"] {
        assert!(store.get(&record(who)).await.unwrap().is_none(), "{who}");
    }
    // Before the instance notices (its keep-alive runs every third of the 10 s lease): bob
    // joined again through another instance, whose record is newer; cy leaves.
    let mut newer: Value = serde_json::from_slice(&ann.value).unwrap();
    newer["identity"] = json!("bob");
    newer["name"] = json!("bob elsewhere");
    let newer = serde_json::to_vec(&newer).unwrap();
    store
        .put(&record("bob"), newer.clone(), None)
        .await
        .unwrap();
    let mut cy = sockets.pop().unwrap();
    cy.send(Message::Text(json!({"type": "leave"}).to_string().into()))
        .await
        .unwrap();

    let start = Instant::now();
    let ann = loop {
        if let Some(kv) = store.get(&record("ann")).await.unwrap() {
            break kv;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "ann's record never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lease = ann.lease.expect("the rewritten record is on a lease");
    assert_ne!(lease, session_lease);
    // The new lease is live: a keep-alive takes it.
    store.keep_alive(lease).await.unwrap();
    let bob = store.get(&record("bob")).await.unwrap().unwrap();
    assert_eq!(bob.value, newer, "the newer record was overwritten");
    // The interest key is back too, on a live lease of its own.
    let start = Instant::now();
    loop {
        let interest = store.list_prefix("/shardcast/interest/").await.unwrap();
        if let Some(kv) = interest.first() {
            let l = kv.lease.unwrap();
            assert_ne!(l, bus_lease);
            store.keep_alive(l).await.unwrap();
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no interest key");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // cy, gone before the rewrite, stays gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(store.get(&record("cy")).await.unwrap().is_none());
    let listed = store
        .list_prefix(&keys::participants_prefix(
            &key.tenant,
            &RoomName::parse("r").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    drop(sockets);
}
