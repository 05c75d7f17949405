//! A WebSocket signaling session carries one request id — the upgrade request's
//! `X-Request-Id`, echoed on the `101` — on every log line about it (socket open, join, leave)
//! and on the node API calls made for it, so the media node logs the session's `create_peer`
//! under the same id — including the calls a task of the session makes after the answer (a
//! second session's subscriptions to the first one's tracks). Room events run under the id of
//! the work that published them and node events under fresh ids. JSON logs captured from a
//! control plane (embedded store) whose media
//! node is a real one behind the real node API server on loopback, reached by `RemoteNode`;
//! the client is tokio-tungstenite with a shardcast-client offer.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shardcast_client::{Client, ClientConfig, TimeBase, VideoSpec};
use shardcast_controlplane::auth::tokens::{AccessClaims, TokenService};
use shardcast_controlplane::ids::{NodeId, RoomName};
use shardcast_controlplane::logging::{self, Captured, LogFormat};
use shardcast_controlplane::nodeapi::client::RemoteNode;
use shardcast_controlplane::nodeapi::credential::{Audience, Verifier};
use shardcast_controlplane::nodeapi::server::router;
use shardcast_controlplane::nodeapi::CALL_PATH;
use shardcast_controlplane::server;
use shardcast_controlplane::services::now_unix_secs;
use shardcast_controlplane::store::records::{Grants, ParticipantRole};
use shardcast_dataplane::node::MediaNodeApi;
use support::inproc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "cluster-secret-for-tests";
const ID: &str = "ws-session-7f3a";
const VIEWER_ID: &str = "ws-viewer-51c0";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == ty {
                return v;
            }
            assert_ne!(v["type"], "error", "{v}");
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signaling_sessions_log_lines_and_node_calls_carry_its_request_id() {
    let captured = Captured::default();
    tracing::subscriber::set_global_default(logging::subscriber(
        "debug,h2=info,hyper=info,reqwest=info,tungstenite=info,tokio_tungstenite=info",
        LogFormat::Json,
        captured.clone(),
    ))
    .expect("this test process's only subscriber");

    // The media node, behind its node API server.
    let node: Arc<dyn MediaNodeApi> = Arc::new(inproc::media_node());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (node_id, base) = (
        NodeId::parse("node-1").unwrap(),
        format!("http://{}", listener.local_addr().unwrap()),
    );
    let app = router(
        node,
        Verifier::new(Audience::new(node_id.clone(), &base), SECRET, None),
    );
    let node_server = tokio::spawn(async move { axum::serve(listener, app).await });
    let remote = RemoteNode::new(&node_id, &base, SECRET);
    assert!(remote.wait_connected(Duration::from_secs(10)).await);

    // The control plane, placing every room on that node.
    let dir = tempfile::tempdir().unwrap();
    let store = inproc::embedded_store(&dir.path().join("store")).await;
    let key = server::ensure_default_tenant(store.as_ref(), dir.path())
        .await
        .unwrap();
    let placement = inproc::single("node-1", Arc::new(remote));
    let built = server::build(store, placement, inproc::options()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cp = tokio::spawn(async move {
        axum::serve(
            listener,
            built
                .router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    // A session: upgrade with an id, join, publish (a create_peer call), leave.
    let mut req = format!("ws://{addr}/v1/rtc").into_client_request().unwrap();
    req.headers_mut()
        .insert("x-request-id", ID.parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], ID);
    let now = now_unix_secs();
    let token_for = |identity: &str| {
        TokenService::default()
            .mint(
                &key,
                &AccessClaims {
                    sub: identity.into(),
                    name: identity.into(),
                    room: RoomName::parse("traced").unwrap(),
                    role: ParticipantRole::Participant,
                    grants: Grants::for_role(ParticipantRole::Participant),
                    exp: now + 600,
                    nbf: now - 5,
                    iat: now,
                    iss: String::new(),
                    region: None,
                },
            )
            .unwrap()
    };
    let token = token_for("cam");
    send(&mut ws, json!({"type": "join", "token": token})).await;
    recv_type(&mut ws, "joined").await;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut client = Client::new(
        ClientConfig::new("cam", 1, TimeBase::real())
            .with_audio()
            .with_video(VideoSpec::single(300_000)),
        sock.local_addr().unwrap(),
        Instant::now(),
    )
    .unwrap();
    let offer = client.create_offer(Instant::now()).unwrap();
    send(&mut ws, json!({"type": "offer", "sdp": offer})).await;
    let answer = recv_type(&mut ws, "answer").await;
    // cam connects and sends media, so its tracks are published.
    client
        .accept_answer(Instant::now(), answer["sdp"].as_str().unwrap())
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let driver = shardcast_client::udp::spawn_driver(
        Arc::new(std::sync::Mutex::new(client)),
        sock,
        stop.clone(),
    );

    // A viewer with its own id joins once cam's tracks are known; after its answer the hub
    // subscribes it to them in a task of its own, whose node calls must carry its id.
    let mut req = format!("ws://{addr}/v1/rtc").into_client_request().unwrap();
    req.headers_mut()
        .insert("x-request-id", VIEWER_ID.parse().unwrap());
    let (mut viewer, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    send(
        &mut viewer,
        json!({"type": "join", "token": token_for("view")}),
    )
    .await;
    let joined = recv_type(&mut viewer, "joined").await;
    if joined["tracks"].as_array().is_none_or(|t| t.is_empty()) {
        recv_type(&mut viewer, "track_published").await;
    }
    let vsock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut view = Client::new(
        ClientConfig::new("view", 2, TimeBase::real()).with_receive_offer(),
        vsock.local_addr().unwrap(),
        Instant::now(),
    )
    .unwrap();
    let offer = view.create_offer(Instant::now()).unwrap();
    send(&mut viewer, json!({"type": "offer", "sdp": offer})).await;
    recv_type(&mut viewer, "answer").await;
    // The server's offer follows the subscriptions.
    recv_type(&mut viewer, "offer").await;
    stop.store(true, Ordering::Relaxed);
    driver.join().unwrap();

    send(&mut ws, json!({"type": "leave"})).await;
    // The server closes the socket once the leave is done.
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        if let Message::Close(_) = m {
            break;
        }
    }
    // The close frame is queued before the node call that ends the peer: wait for the
    // session's last line.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !captured.text().contains("signaling: left") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cp.abort();
    node_server.abort();

    let text = captured.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let session_line = |message: &str| {
        lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line; lines:\n{text}"))
    };
    for message in [
        "signaling: socket open",
        "signaling: joined",
        "signaling: left",
    ] {
        let line = session_line(message);
        assert_eq!(line["span"]["request_id"], ID, "{message}: {line}");
        assert_eq!(line["span"]["name"], "signaling", "{message}: {line}");
    }
    let joined = session_line("signaling: joined");
    assert_eq!(joined["span"]["identity"], "cam", "{joined}");
    assert!(
        joined["span"]["room"].as_str().unwrap().ends_with("traced"),
        "{joined}"
    );
    // The media node logged the session's node API calls (create_peer on the offer, then
    // close_peer on leave) under the session's id.
    let node_calls = lines
        .iter()
        .filter(|l| {
            l["message"] == "request done"
                && l["span"]["request_id"] == ID
                && l["span"]["path"] == CALL_PATH
        })
        .count();
    assert!(
        node_calls >= 2,
        "the node logged {node_calls} calls under the session's id; lines:\n{text}"
    );
    // The viewer's create_peer, then its subscriptions, made by the hub's task.
    let viewer_calls = lines
        .iter()
        .filter(|l| {
            l["message"] == "request done"
                && l["span"]["request_id"] == VIEWER_ID
                && l["span"]["path"] == CALL_PATH
        })
        .count();
    assert!(
        viewer_calls >= 3,
        "the node logged {viewer_calls} calls under the viewer's id; lines:\n{text}"
    );
    // Work no request of this process started has an id too. Cam's leave, published by its
    // session, reaches the room's sessions (the viewer) as a room event under cam's id.
    let room_event_ids: Vec<&str> = lines
        .iter()
        .filter(|l| l["message"] == "room event" && l["span"]["name"] == "room_event")
        .filter_map(|l| l["span"]["request_id"].as_str())
        .collect();
    assert!(
        room_event_ids.contains(&ID),
        "no room event handled under cam's id ({room_event_ids:?}); lines:\n{text}"
    );
    // A node event runs under an id of its own, and the room event it publishes (cam's
    // track, known to the hub through the node's track_published) is handled under that id.
    let published: Vec<&str> = lines
        .iter()
        .filter(|l| l["message"] == "node event" && l["span"]["event"] == "track_published")
        .filter_map(|l| l["span"]["request_id"].as_str())
        .collect();
    assert!(
        !published.is_empty(),
        "no track_published node event line; lines:\n{text}"
    );
    assert!(
        published
            .iter()
            .all(|id| id.len() == 32 && ![ID, VIEWER_ID].contains(id)),
        "node events under {published:?}"
    );
    assert!(
        published.iter().any(|id| room_event_ids.contains(id)),
        "no room event under a track_published node event's id ({published:?} vs \
         {room_event_ids:?})"
    );
}
