//! A cluster on loopback: a real etcd, two media nodes each serving the node API over HTTP
//! and registered on a lease, and control planes with cluster placement. Two rooms land on
//! different nodes and media (shardcast-client over UDP, signaled over /v1/rtc) flows
//! through each; a second control plane on the same etcd exchanges chat with the first.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shardcast_client::{udp, Client, ClientConfig, TimeBase, VideoSpec};
use shardcast_controlplane::ids::RoomName;
use shardcast_controlplane::nodeapi::registry::Registration;
use shardcast_controlplane::server;
use shardcast_controlplane::services::events::LocalRoomEvents;
use shardcast_controlplane::services::rooms;
use shardcast_controlplane::store::records::{ApiKeyRecord, RoomSettings};
use shardcast_controlplane::store::{nodes, Store};
use shardcast_controlplane::webhooks;
use support::etcd::EtcdProcess;
use support::inproc::{self, host_token as token, serve};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "cluster-secret-for-tests";

/// A media node process stand-in: the real MediaNode behind the real node API server.
async fn media_node(etcd: &EtcdProcess, id: &str) -> Registration {
    let store: Arc<dyn Store> = Arc::new(etcd.store().await);
    inproc::registered_media_node(store, id, SECRET, Duration::from_secs(3)).await
}

async fn control_plane(store: Arc<dyn Store>) -> SocketAddr {
    inproc::cluster_control_plane(store, SECRET).await
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("message within 15 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == ty {
                return v;
            }
        }
    }
}

async fn join(cp: SocketAddr, tok: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{cp}/v1/rtc"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join", "token": tok})).await;
    recv_type(&mut ws, "joined").await;
    ws
}

/// One participant: a shardcast-client on a UDP socket driven by a thread, signaled here.
struct Participant {
    client: Arc<Mutex<Client>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Participant {
    fn new(name: &str, seed: u64) -> (Self, UdpSocket) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = Client::new(
            ClientConfig::new(name, seed, TimeBase::real())
                .with_audio()
                .with_video(VideoSpec::simulcast3()),
            sock.local_addr().unwrap(),
            Instant::now(),
        )
        .unwrap();
        let p = Participant {
            client: Arc::new(Mutex::new(client)),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        (p, sock)
    }

    fn drive(&mut self, sock: UdpSocket) {
        self.thread = Some(udp::spawn_driver(
            self.client.clone(),
            sock,
            self.stop.clone(),
        ));
    }

    fn received(&self) -> u64 {
        self.client.lock().unwrap().stats().packets_received()
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Two participants in `room` publish to each other through the cluster; returns once each
/// has received media from the other.
async fn call_in_room(cp: SocketAddr, key: &ApiKeyRecord, room: &str) {
    let mut parts = Vec::new();
    let mut sockets = Vec::new();
    for (i, who) in ["a", "b"].iter().enumerate() {
        let (p, s) = Participant::new(who, i as u64 + 1);
        parts.push(p);
        sockets.push(s);
    }
    let mut wss = Vec::new();
    for (i, who) in ["a", "b"].iter().enumerate() {
        let mut ws = join(cp, &token(key, room, who)).await;
        let offer = parts[i]
            .client
            .lock()
            .unwrap()
            .create_offer(Instant::now())
            .unwrap();
        send(&mut ws, json!({"type": "offer", "sdp": offer})).await;
        let answer = recv_type(&mut ws, "answer").await;
        parts[i]
            .client
            .lock()
            .unwrap()
            .accept_answer(Instant::now(), answer["sdp"].as_str().unwrap())
            .unwrap();
        wss.push(ws);
    }
    for (p, s) in parts.iter_mut().zip(sockets) {
        p.drive(s);
    }
    // Answer server offers (new tracks to receive) until both receive media and have been
    // told about the other's tracks.
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut told = [false, false];
    loop {
        if parts.iter().all(|p| p.received() > 50) && told.iter().all(|t| *t) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no media in {room}: received {:?}",
            parts.iter().map(|p| p.received()).collect::<Vec<_>>()
        );
        for (i, ws) in wss.iter_mut().enumerate() {
            if let Ok(Some(Ok(Message::Text(t)))) =
                tokio::time::timeout(Duration::from_millis(50), ws.next()).await
            {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "track_published" {
                    let other = if i == 0 { "b" } else { "a" };
                    assert_eq!(v["track"]["identity"], other, "{v}");
                    told[i] = true;
                }
                if v["type"] == "offer" {
                    let answer = parts[i]
                        .client
                        .lock()
                        .unwrap()
                        .accept_offer(Instant::now(), v["sdp"].as_str().unwrap())
                        .unwrap();
                    send(ws, json!({"type": "answer", "sdp": answer})).await;
                }
            }
        }
    }
    // Host control across the media path: a mutes b's video; everyone hears of it.
    send(
        &mut wss[0],
        json!({"type": "mute_participant", "identity": "b", "kind": "video"}),
    )
    .await;
    for ws in wss.iter_mut() {
        let m = recv_type(ws, "muted").await;
        assert_eq!(m["identity"], "b");
        assert_eq!(m["by"], "a");
        assert_eq!(m["muted"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_rooms_on_two_nodes_carry_media() {
    let etcd = EtcdProcess::start().await;
    let n1 = media_node(&etcd, "node-1").await;
    let n2 = media_node(&etcd, "node-2").await;
    let store: Arc<dyn Store> = Arc::new(etcd.store().await);
    let dir = tempfile::tempdir().unwrap();
    let key = server::ensure_default_tenant(store.as_ref(), dir.path())
        .await
        .unwrap();
    for r in ["room-1", "room-2"] {
        let req = rooms::CreateRoom {
            name: RoomName::parse(r).unwrap(),
            password: None,
            settings: RoomSettings::default(),
        };
        rooms::create(
            store.as_ref(),
            &LocalRoomEvents::default(),
            &key.tenant,
            req,
        )
        .await
        .unwrap();
    }
    let cp = control_plane(store.clone()).await;

    call_in_room(cp, &key, "room-1").await;
    call_in_room(cp, &key, "room-2").await;

    let b1 = nodes::binding(
        store.as_ref(),
        &key.tenant,
        &RoomName::parse("room-1").unwrap(),
    )
    .await
    .unwrap()
    .expect("room-1 bound");
    let b2 = nodes::binding(
        store.as_ref(),
        &key.tenant,
        &RoomName::parse("room-2").unwrap(),
    )
    .await
    .unwrap()
    .expect("room-2 bound");
    assert_ne!(b1.node, b2.node, "the two rooms share a node");

    // A drained node's lease ends with the registration: it disappears from placement.
    n1.stop().await;
    let live = nodes::list(store.as_ref()).await.unwrap();
    assert_eq!(live.len(), 1);
    n2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_control_planes_share_chat_and_presence() {
    let etcd = EtcdProcess::start().await;
    let store_a: Arc<dyn Store> = Arc::new(etcd.store().await);
    let store_b: Arc<dyn Store> = Arc::new(etcd.store().await);
    let dir = tempfile::tempdir().unwrap();
    let key = server::ensure_default_tenant(store_a.as_ref(), dir.path())
        .await
        .unwrap();
    let req = rooms::CreateRoom {
        name: RoomName::parse("shared").unwrap(),
        password: None,
        settings: RoomSettings::default(),
    };
    rooms::create(
        store_a.as_ref(),
        &LocalRoomEvents::default(),
        &key.tenant,
        req,
    )
    .await
    .unwrap();
    let cp_a = control_plane(store_a).await;
    let cp_b = control_plane(store_b).await;

    let mut alice = join(cp_a, &token(&key, "shared", "alice")).await;
    let mut bob = join(cp_b, &token(&key, "shared", "bob")).await;
    let ev = recv_type(&mut alice, "participant_joined").await;
    assert_eq!(ev["participant"]["identity"], "bob");

    send(&mut bob, json!({"type": "chat", "text": "from b"})).await;
    assert_eq!(
        recv_type(&mut alice, "chat").await["message"]["text"],
        "from b"
    );
    // Bob first gets his own message back (the fan-out includes the sender).
    assert_eq!(
        recv_type(&mut bob, "chat").await["message"]["text"],
        "from b"
    );
    send(&mut alice, json!({"type": "chat", "text": "from a"})).await;
    assert_eq!(
        recv_type(&mut bob, "chat").await["message"]["text"],
        "from a"
    );

    // A host on instance A kicks a participant connected to instance B.
    send(&mut alice, json!({"type": "kick", "identity": "bob"})).await;
    recv_type(&mut bob, "kicked").await;
    assert_eq!(
        recv_type(&mut alice, "participant_left").await["identity"],
        "bob"
    );
}

/// Webhooks in a cluster: each event is sent once, by the instance where it happened — not
/// by every instance that hears of it on the bus. Alice joins through A, Bob through B, Alice
/// (on A) kicks Bob (on B), Alice leaves: four events from two instances, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_webhook_event_is_sent_once_by_the_instance_where_it_happens() {
    let etcd = EtcdProcess::start().await;
    let store_a: Arc<dyn Store> = Arc::new(etcd.store().await);
    let store_b: Arc<dyn Store> = Arc::new(etcd.store().await);
    let dir = tempfile::tempdir().unwrap();
    let key = server::ensure_default_tenant(store_a.as_ref(), dir.path())
        .await
        .unwrap();
    // The receiver: a loopback HTTP server that records every body and answers 200.
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let receiver = serve(axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                axum::http::StatusCode::OK
            }
        }),
    ))
    .await;
    webhooks::target::put(
        store_a.as_ref(),
        &key.tenant,
        format!("http://{receiver}/hook"),
        Some("cluster-webhook-secret".into()),
    )
    .await
    .unwrap();
    let req = rooms::CreateRoom {
        name: RoomName::parse("hooked").unwrap(),
        password: None,
        settings: RoomSettings::default(),
    };
    rooms::create(
        store_a.as_ref(),
        &LocalRoomEvents::default(),
        &key.tenant,
        req,
    )
    .await
    .unwrap();
    let cp_a = control_plane(store_a).await;
    let cp_b = control_plane(store_b).await;

    let wait_for = |n: usize| {
        let received = received.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let got = received.lock().unwrap().clone();
                if got.len() >= n || Instant::now() > deadline {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut alice = join(cp_a, &token(&key, "hooked", "alice")).await;
    wait_for(1).await;
    let _bob = join(cp_b, &token(&key, "hooked", "bob")).await;
    recv_type(&mut alice, "participant_joined").await;
    wait_for(2).await;
    send(&mut alice, json!({"type": "kick", "identity": "bob"})).await;
    recv_type(&mut alice, "participant_left").await;
    wait_for(3).await;
    send(&mut alice, json!({"type": "leave"})).await;
    wait_for(4).await;
    // Time for any duplicate from the instance that only heard of an event.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = received.lock().unwrap().clone();
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|e| {
            let who = e["payload"]["participant"]["identity"]
                .as_str()
                .or(e["payload"]["identity"].as_str())
                .unwrap_or_default();
            (e["event"].as_str().unwrap().to_string(), who.to_string())
        })
        .collect();
    let expect: Vec<(String, String)> = [
        ("participant_joined", "alice"),
        ("participant_joined", "bob"),
        ("participant_left", "bob"),
        ("participant_left", "alice"),
    ]
    .iter()
    .map(|(e, w)| (e.to_string(), w.to_string()))
    .collect();
    assert_eq!(seen, expect, "{got:?}");
    assert!(got.iter().all(|e| e["room"] == "hooked"));
}

/// `max_participants` = 3 and 12 sockets joining at once, spread over two control planes on
/// one etcd: exactly 3 are admitted, the others get `room_full`; when one leaves, the next
/// join gets its seat.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_participants_is_exact_under_concurrent_joins_on_two_instances() {
    let etcd = EtcdProcess::start().await;
    let store_a: Arc<dyn Store> = Arc::new(etcd.store().await);
    let store_b: Arc<dyn Store> = Arc::new(etcd.store().await);
    let dir = tempfile::tempdir().unwrap();
    let key = server::ensure_default_tenant(store_a.as_ref(), dir.path())
        .await
        .unwrap();
    let req = rooms::CreateRoom {
        name: RoomName::parse("small").unwrap(),
        password: None,
        settings: RoomSettings {
            max_participants: Some(3),
            ..RoomSettings::default()
        },
    };
    rooms::create(
        store_a.as_ref(),
        &LocalRoomEvents::default(),
        &key.tenant,
        req,
    )
    .await
    .unwrap();
    let cps = [
        control_plane(store_a.clone()).await,
        control_plane(store_b).await,
    ];

    let attempts = (0..12).map(|i| {
        let tok = token(&key, "small", &format!("p{i}"));
        let cp = cps[i % 2];
        tokio::spawn(async move { (i, join_or_error(cp, &tok).await) })
    });
    let mut admitted = Vec::new();
    for attempt in futures_util::future::join_all(attempts).await {
        match attempt.unwrap() {
            (i, Ok(ws)) => admitted.push((i, ws)),
            (i, Err(code)) => assert_eq!(code, "room_full", "p{i}"),
        }
    }
    assert_eq!(
        admitted.len(),
        3,
        "admitted {:?}",
        admitted.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    let listed = shardcast_controlplane::services::participants::list(
        store_a.as_ref(),
        &key.tenant,
        &RoomName::parse("small").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");

    // One leaves; a newcomer takes the seat, and the one after it is refused again.
    let (_, mut leaver) = admitted.pop().unwrap();
    send(&mut leaver, json!({"type": "leave"})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let _late = loop {
        match join_or_error(cps[1], &token(&key, "small", "late")).await {
            Ok(ws) => break ws,
            // The leave may not have been carried out yet.
            Err(code) => assert_eq!(code, "room_full"),
        }
        assert!(
            Instant::now() < deadline,
            "the freed seat was never given out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let extra = join_or_error(cps[0], &token(&key, "small", "extra")).await;
    assert_eq!(extra.err().as_deref(), Some("room_full"));
}

/// Joins over a new socket: the socket once `joined`, or the error code.
async fn join_or_error(cp: SocketAddr, tok: &str) -> Result<Ws, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{cp}/v1/rtc"))
        .await
        .unwrap();
    send(&mut ws, json!({"type": "join", "token": tok})).await;
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("an answer within 15 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            match v["type"].as_str().unwrap() {
                "joined" => return Ok(ws),
                "error" => return Err(v["code"].as_str().unwrap().to_string()),
                _ => {}
            }
        }
    }
}
