//! Malformed query strings, paths and handshakes outside the REST routes get a 4xx with a
//! stable JSON code, never axum's plain-text rejection: the node API's event stream (a real
//! media node behind the real node API server) and the `shardcast serve` binary's WHIP/WHEP,
//! dev-token and WebSocket endpoints, all over real HTTP.

mod support;

use std::sync::Arc;

use serde_json::Value;
use shardcast_controlplane::ids::NodeId;
use shardcast_controlplane::nodeapi::credential::{Audience, Signer, Verifier};
use shardcast_controlplane::nodeapi::server::router;
use shardcast_controlplane::nodeapi::{StreamLine, EVENTS_PATH};
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::node::MediaNodeApi;
use shardcast_dataplane::{MediaNode, MediaNodeConfig};
use support::serve::serve;

const SECRET: &str = "cluster-secret-for-tests";

/// `(status, JSON body)`; panics with the raw body when it is not JSON (the defect).
async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_events_with_a_malformed_position_get_bad_query() {
    let mut nc = MediaNodeConfig::default();
    nc.shards.shards = 1;
    nc.shards.pin = false;
    nc.shards.backend = IoBackend::Portable;
    let node: Arc<dyn MediaNodeApi> = Arc::new(MediaNode::start(nc).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let base = format!("{url}{EVENTS_PATH}");
    let audience = Audience::new(NodeId::parse("node-1").unwrap(), &url);
    let token = Signer::new(SECRET, audience.clone()).token();
    let app = router(node, Verifier::new(audience, SECRET, None));
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();

    for query in ["?epoch=e&after=abc", "?after=-1", "?after=1&after=2"] {
        let resp = http
            .get(format!("{base}{query}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(resp).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_query", "{query}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().len() > 3);
    }
    // The token is checked before the query: a stranger learns nothing about the query.
    let resp = http
        .get(format!("{base}?after=abc"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // A well-formed position still opens the stream (unknown epoch: a snapshot first).
    let mut resp = http
        .get(format!("{base}?epoch=old&after=7"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let chunk = resp.chunk().await.unwrap().unwrap();
    let line = std::str::from_utf8(&chunk).unwrap().lines().next().unwrap();
    let head: StreamLine = serde_json::from_str(line).unwrap();
    assert!(matches!(head, StreamLine::Snapshot { .. }), "{head:?}");
    server.abort();
}

#[test]
fn serve_endpoints_answer_malformed_input_with_json_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = serve(&dir.path().join("data"), &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let sdp = |req: reqwest::RequestBuilder| {
            req.header("content-type", "application/sdp")
                .bearer_auth("x")
                .body("v=0\r\n")
        };
        // (request, status, code)
        let cases = [
            (
                http.get(format!("{url}/dev/token?identity=ann")),
                400,
                "invalid_request",
            ),
            (
                sdp(http.post(format!("{url}/whep/demo?identity=a&identity=b"))),
                400,
                "invalid_request",
            ),
            // A room segment that is not UTF-8 once percent-decoded.
            (
                sdp(http.post(format!("{url}/whip/%FF"))),
                400,
                "invalid_request",
            ),
            (
                http.delete(format!("{url}/whip/%FF/s1")).bearer_auth("x"),
                400,
                "invalid_request",
            ),
            // A plain GET on the WebSocket endpoint.
            (http.get(format!("{url}/v1/rtc")), 400, "websocket_required"),
        ];
        for (req, status, code) in cases {
            let req = req.build().unwrap();
            let what = format!("{} {}", req.method(), req.url());
            let (got, body) = json_of(http.execute(req).await.unwrap()).await;
            assert_eq!(
                (got, body["code"].as_str()),
                (status, Some(code)),
                "{what}: {body}"
            );
            assert!(body["message"].is_string(), "{what}: {body}");
        }
        // Well-formed requests still work: the dev token is minted.
        let (status, tok) = json_of(
            http.get(format!("{url}/dev/token?room=demo&identity=ann"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        assert!(tok["token"].is_string());
    });
    drop(server);
}
