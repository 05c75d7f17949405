//! Request ids and JSON logs: every HTTP response carries `X-Request-Id` (the caller's when
//! it is a sane token, else a fresh one), and a node API call made while handling a request
//! is logged by the media node's API server under that same id, in JSON lines a log shipper
//! can parse. A real media node behind the real node API server on TCP, reached by the
//! control plane's `RemoteNode`.

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use shardcast_controlplane::ids::NodeId;
use shardcast_controlplane::logging::{self, Captured, LogFormat};
use shardcast_controlplane::nodeapi::client::RemoteNode;
use shardcast_controlplane::nodeapi::credential::{Audience, Verifier};
use shardcast_controlplane::nodeapi::server::router;
use shardcast_controlplane::nodeapi::CALL_PATH;
use shardcast_controlplane::placement::Placement;
use shardcast_controlplane::request_id;
use shardcast_controlplane::server;
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::node::MediaNodeApi;
use shardcast_dataplane::{MediaNode, MediaNodeConfig};
use support::inproc;
use tower::ServiceExt;

const SECRET: &str = "cluster-secret-for-tests";

async fn request_id_of(router: &axum::Router, sent: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get("/healthz");
    if let Some(id) = sent {
        req = req.header("x-request-id", id);
    }
    let r = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let id = r
        .headers()
        .get("x-request-id")
        .expect("every response carries an X-Request-Id")
        .to_str()
        .unwrap()
        .to_string();
    (r.status(), id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_carry_the_callers_request_id_or_a_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = inproc::embedded_store(dir.path()).await;
    let placement = Arc::new(Placement::cluster(store.clone(), SECRET.into()));
    let built = server::build(store, placement, inproc::options()).await;
    let r = &built.router;
    assert_eq!(
        request_id_of(r, Some("client-7f3a")).await,
        (StatusCode::OK, "client-7f3a".to_string())
    );
    let (_, fresh) = request_id_of(r, None).await;
    assert_eq!(fresh.len(), 32, "{fresh}");
    assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()), "{fresh}");
    let (_, other) = request_id_of(r, None).await;
    assert_ne!(fresh, other, "each request gets its own id");
    // Ids that would garble a log line are replaced, not echoed.
    let (_, replaced) = request_id_of(r, Some("two words")).await;
    assert_ne!(replaced, "two words");
    assert_eq!(replaced.len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_call_is_logged_by_the_media_node_under_the_requests_id_in_json() {
    let captured = Captured::default();
    tracing::subscriber::set_global_default(logging::subscriber(
        "debug,h2=info,hyper=info,reqwest=info",
        LogFormat::Json,
        captured.clone(),
    ))
    .expect("this test process's only subscriber");

    let mut nc = MediaNodeConfig::default();
    nc.shards.shards = 1;
    nc.shards.pin = false;
    nc.shards.backend = IoBackend::Portable;
    let node: Arc<dyn MediaNodeApi> = Arc::new(MediaNode::start(nc).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (id, base) = (NodeId::parse("node-1").unwrap(), format!("http://{addr}"));
    let app = router(
        node,
        Verifier::new(Audience::new(id.clone(), &base), SECRET, None),
    );
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let remote = RemoteNode::new(&id, &base, SECRET);
    assert!(remote.wait_connected(Duration::from_secs(10)).await);

    let load = request_id::scope("trace-me-42".into(), remote.load())
        .await
        .expect("the node answers");
    assert_eq!(load.shards, 1);
    serving.abort();

    let text = captured.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let served = lines.iter().find(|l| {
        l["message"] == "request done"
            && l["span"]["request_id"] == "trace-me-42"
            && l["span"]["path"] == CALL_PATH
    });
    assert!(
        served.is_some(),
        "the node API server logged the call under the caller's id; lines:\n{text}"
    );
    assert_eq!(served.unwrap()["status"], 200);
}
