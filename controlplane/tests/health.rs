//! `/healthz` and `/readyz` on each role: an all-in-one control plane with its in-process
//! media node is ready; a cluster control plane with no media node registered is alive but
//! not ready (503, the failing check named, no internal detail); a media node is ready while
//! its shards answer.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{json, Value};
use shardcast_controlplane::ids::NodeId;
use shardcast_controlplane::nodeapi::credential::{Audience, Verifier};
use shardcast_controlplane::placement::{NodeHandle, Placement};
use shardcast_controlplane::server;
use shardcast_controlplane::store::Store;
use shardcast_dataplane::node::MediaNodeApi;
use support::inproc;
use tower::ServiceExt;

async fn get(router: &axum::Router, path: &str) -> (StatusCode, Value) {
    let r = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// A control plane on an embedded store in a temporary directory (returned: the store lives
/// there for as long as the test holds it).
async fn control_plane(
    placement: impl FnOnce(Arc<dyn Store>) -> Placement,
) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = inproc::embedded_store(dir.path()).await;
    let placement = Arc::new(placement(store.clone()));
    let built = server::build(store, placement, inproc::options()).await;
    (built.router, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_all_in_one_control_plane_is_alive_and_ready() {
    let node = Arc::new(inproc::media_node());
    let (router, _dir) = control_plane(|_| {
        Placement::single(NodeHandle {
            id: Arc::from("local"),
            api: node.clone(),
        })
    })
    .await;
    assert_eq!(
        get(&router, "/healthz").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    assert_eq!(
        get(&router, "/readyz").await,
        (
            StatusCode::OK,
            json!({"ready": true, "checks": {"store": "ok", "media": "ok"}})
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_control_plane_without_media_nodes_is_alive_but_not_ready() {
    let (router, _dir) =
        control_plane(|store| Placement::cluster(store, "cluster-secret-for-tests".into())).await;
    assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(&router, "/readyz").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "checks": {"store": "ok", "media": "no media node can take rooms"}})
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_node_is_ready_while_its_shards_answer() {
    let node = Arc::new(inproc::media_node());
    let api: Arc<dyn MediaNodeApi> = node.clone();
    let credentials = Verifier::new(
        Audience::new(NodeId::parse("node-1").unwrap(), "http://127.0.0.1:7881"),
        "s3cret-s3cret-s3cret",
        None,
    );
    let router = shardcast_controlplane::nodeapi::server::router(api.clone(), credentials).merge(
        shardcast_controlplane::health::media_node(
            api,
            shardcast_controlplane::shutdown::Stopping::new(),
        ),
    );
    assert_eq!(get(&router, "/healthz").await.0, StatusCode::OK);
    assert_eq!(
        get(&router, "/readyz").await,
        (
            StatusCode::OK,
            json!({"ready": true, "checks": {"shards": "ok"}})
        )
    );
}
