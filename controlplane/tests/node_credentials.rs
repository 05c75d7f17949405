//! Per-node credentials on the node API, over real HTTP: two real media nodes (one shard each)
//! behind the real node API server on loopback, each accepting only tokens for its own id and
//! advertised address. A token for node A is refused by node B; the token a control plane
//! sends to a forged node record (an attacker's listener, here a plain HTTP server that
//! records what it is sent) neither contains the cluster secret nor opens the real node; the
//! raw secret, a missing or an expired token get their own `401` codes; a control plane's
//! `RemoteNode` still drives the node, also during a secret rotation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use serde_json::{json, Value};
use shardcast_controlplane::ids::NodeId;
use shardcast_controlplane::nodeapi::client::RemoteNode;
use shardcast_controlplane::nodeapi::credential::{mint, Audience, Signer, Verifier, CLOCK_SKEW};
use shardcast_controlplane::nodeapi::server::router;
use shardcast_controlplane::nodeapi::{CALL_PATH, EVENTS_PATH};
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::node::MediaNodeApi;
use shardcast_dataplane::{MediaNode, MediaNodeConfig};

const SECRET: &str = "cluster-secret-for-tests";
const OLD_SECRET: &str = "the-cluster-secret-before-rotation";

/// A node API server on loopback: its id, its advertised URL, its server task.
struct Node {
    audience: Audience,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Node {
    async fn start(id: &str, previous_secret: Option<&str>) -> Self {
        let mut nc = MediaNodeConfig::default();
        nc.shards.shards = 1;
        nc.shards.pin = false;
        nc.shards.backend = IoBackend::Portable;
        let node: Arc<dyn MediaNodeApi> = Arc::new(MediaNode::start(nc).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let audience = Audience::new(NodeId::parse(id).unwrap(), &url);
        let app = router(
            node,
            Verifier::new(audience.clone(), SECRET, previous_secret),
        );
        let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { audience, task }
    }

    fn url(&self) -> &str {
        self.audience.base_url()
    }

    fn id(&self) -> &NodeId {
        self.audience.node_id()
    }

    /// `POST /node/v1/call {"op": "load"}` with `authorization` → (status, body).
    async fn load_with(&self, authorization: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::Client::new()
            .post(format!("{}{CALL_PATH}", self.url()))
            .json(&json!({"op": "load"}));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    /// `GET /node/v1/events` with `authorization` → the status (the stream is not read).
    async fn events_status(&self, authorization: &str) -> u16 {
        reqwest::Client::new()
            .get(format!("{}{EVENTS_PATH}", self.url()))
            .header("authorization", authorization)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_node_a_is_refused_by_node_b() {
    let (a, b) = (
        Node::start("node-a", None).await,
        Node::start("node-b", None).await,
    );
    let for_a = bearer(&Signer::new(SECRET, a.audience.clone()).token());

    let (status, body) = a.load_with(Some(&for_a)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ok"]["shards"], 1, "{body}");
    assert_eq!(a.events_status(&for_a).await, 200);

    let (status, body) = b.load_with(Some(&for_a)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "credential_wrong_node", "{body}");
    assert_eq!(b.events_status(&for_a).await, 401);

    // Renaming the node in A's token: B's id, but the MAC was for A.
    let renamed = for_a.replacen("v1.node-a.", "v1.node-b.", 1);
    let (status, body) = b.load_with(Some(&renamed)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "credential_bad_signature", "{body}");
}

/// What a listener at a forged record's address is sent, and what that gets its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_node_record_captures_nothing_usable() {
    let real = Node::start("node-b", None).await;
    // The attacker's listener: records the Authorization of every request, answers 503.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let attacker = format!("http://{}", listener.local_addr().unwrap());
    let app = {
        let seen = seen.clone();
        axum::Router::new().fallback(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                if let Some(v) = headers.get("authorization") {
                    seen.lock().unwrap().push(v.to_str().unwrap().to_string());
                }
                axum::http::StatusCode::SERVICE_UNAVAILABLE
            }
        })
    };
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // A record naming the real node's id at the attacker's address: the control plane
    // dials it as placement would (record id, record api_address).
    let dialled = RemoteNode::new(real.id(), &attacker, SECRET);
    let load = dialled.load().await;
    assert!(load.is_err(), "{load:?}");
    let captured = seen.lock().unwrap().clone();
    assert!(!captured.is_empty(), "the client sent nothing");
    for header in &captured {
        assert!(
            !header.contains(SECRET),
            "the secret crossed the wire: {header}"
        );
        // Replayed against the real node with that id: refused.
        let (status, body) = real.load_with(Some(header)).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "credential_bad_signature", "{body}");
    }
    drop(dialled);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raw_secret_and_missing_or_expired_tokens_are_refused() {
    let a = Node::start("node-a", None).await;
    let cases = [
        (None, "credential_missing"),
        (Some(bearer(SECRET)), "credential_malformed"),
        (
            Some(bearer(&mint(SECRET, &a.audience, unix_now() - 600))),
            "credential_expired",
        ),
        (
            Some(bearer(&mint(SECRET, &a.audience, unix_now() + 3600))),
            "credential_too_far_ahead",
        ),
        (
            Some(bearer(&mint(OLD_SECRET, &a.audience, unix_now() + 60))),
            "credential_bad_signature",
        ),
    ];
    for (authorization, code) in cases {
        let (status, body) = a.load_with(authorization.as_deref()).await;
        assert_eq!(status, 401, "{authorization:?}: {body}");
        assert_eq!(body["error"]["code"], code, "{authorization:?}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 10);
    }
}

/// Opens the event stream with `token` and reads it until it ends or `limit` passes;
/// returns how long it stayed open (None: still open at `limit`).
async fn stream_lifetime(node: &Node, token: &str, limit: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut resp = reqwest::Client::new()
        .get(format!("{}{EVENTS_PATH}", node.url()))
        .header("authorization", bearer(token))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let read = async { while let Ok(Some(_)) = resp.chunk().await {} };
    tokio::time::timeout(limit, read)
        .await
        .ok()
        .map(|()| started.elapsed())
}

/// A stream outlives nothing: the node ends it when the token that opened it stops
/// verifying (its expiry plus the clock skew), so a retired secret cannot keep one open;
/// a stream opened with a token of a normal lifetime stays open meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_ends_when_its_token_expires() {
    let a = Node::start("node-a", None).await;
    // Expired 2 s ago by its own expiry, but within the skew: valid for 3 s more.
    let short = mint(SECRET, &a.audience, unix_now() + 3 - CLOCK_SKEW.as_secs());
    let normal = Signer::new(SECRET, a.audience.clone()).token();
    let (ended, still_open) = tokio::join!(
        stream_lifetime(&a, &short, Duration::from_secs(15)),
        stream_lifetime(&a, &normal, Duration::from_secs(8)),
    );
    let ended = ended.expect("the stream opened with the short-lived token ended");
    assert!(
        ended >= Duration::from_secs(1) && ended <= Duration::from_secs(6),
        "ended after {ended:?}, expected ≈ 3 s"
    );
    assert_eq!(still_open, None, "the stream with a fresh token stays open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_drives_its_node_and_keeps_working_through_a_rotation() {
    // Media node mid-rotation: signs nothing, accepts the new secret and the old one.
    let node = Node::start("node-a", Some(OLD_SECRET)).await;
    for secret in [SECRET, OLD_SECRET] {
        let remote = RemoteNode::new(node.id(), node.url(), secret);
        assert!(
            remote.wait_connected(Duration::from_secs(10)).await,
            "{secret}"
        );
        assert_eq!(remote.load().await.unwrap().shards, 1, "{secret}");
    }
    // A control plane still on a secret the node no longer has: its calls fail.
    let stale = RemoteNode::new(node.id(), node.url(), "a-secret-nobody-accepts-now");
    assert!(!stale.wait_connected(Duration::from_millis(500)).await);
    let refused = stale.load().await.unwrap_err().to_string();
    assert!(refused.contains("credential_bad_signature"), "{refused}");
}
