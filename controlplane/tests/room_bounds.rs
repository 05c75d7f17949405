//! What a room holds stays bounded (a real etcd, a control plane serving signaling): an empty
//! room expires after `empty_timeout_secs` — its chat, seats and node binding with it — while
//! a room with someone in it stays, however long; and a room where 10 000 long chat messages
//! were posted keeps its last 500 and is still joinable (issue 15: about 1 000 made the
//! `joined` history read fail past etcd's 4 MiB reply limit).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shardcast_controlplane::app::ApiConfig;
use shardcast_controlplane::ids::{Identity, NodeId, RoomName};
use shardcast_controlplane::server;
use shardcast_controlplane::services::chat::{self, ChatLimits, NewMessage};
use shardcast_controlplane::services::events::LocalRoomEvents;
use shardcast_controlplane::services::rooms;
use shardcast_controlplane::store::records::{ApiKeyRecord, RoomSettings};
use shardcast_controlplane::store::{keys, nodes, Store};
use support::etcd::EtcdProcess;
use support::inproc::{self, host_token as token};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const TIMEOUT_SECS: u32 = 2;

async fn control_plane(store: Arc<dyn Store>) -> SocketAddr {
    inproc::cluster_control_plane(store, "cluster-secret-for-tests").await
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .unwrap_or_else(|_| panic!("{ty} within 15 s"))
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

async fn create(store: &dyn Store, key: &ApiKeyRecord, room: &str, empty_timeout_secs: u32) {
    rooms::create(
        store,
        &shardcast_controlplane::services::events::LocalRoomEvents::default(),
        &key.tenant,
        rooms::CreateRoom {
            name: RoomName::parse(room).unwrap(),
            password: None,
            settings: RoomSettings {
                max_participants: Some(5),
                empty_timeout_secs,
                ..RoomSettings::default()
            },
        },
    )
    .await
    .unwrap();
}

/// Every key the room owns, by prefix (room record, chat, seats, binding, participants).
async fn room_keys(store: &dyn Store, key: &ApiKeyRecord, room: &str) -> Vec<String> {
    let r = RoomName::parse(room).unwrap();
    let t = &key.tenant;
    let mut out = Vec::new();
    for k in [keys::room(t, &r), keys::seats(t, &r), keys::binding(t, &r)] {
        if store.get(&k).await.unwrap().is_some() {
            out.push(k);
        }
    }
    for p in [keys::chat_prefix(t, &r), keys::participants_prefix(t, &r)] {
        out.extend(
            store
                .list_prefix(&p)
                .await
                .unwrap()
                .into_iter()
                .map(|kv| kv.key),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_room_expires_with_its_binding_and_chat() {
    let etcd = EtcdProcess::start().await;
    let store: Arc<dyn Store> = Arc::new(etcd.store().await);
    let dir = tempfile::tempdir().unwrap();
    let key = server::ensure_default_tenant(store.as_ref(), dir.path())
        .await
        .unwrap();
    let cp = control_plane(store.clone()).await;
    create(store.as_ref(), &key, "left", TIMEOUT_SECS).await;
    create(store.as_ref(), &key, "occupied", TIMEOUT_SECS).await;

    // "left": someone joins, chats, is given a node, and leaves.
    let mut a = join(cp, &token(&key, "left", "a")).await;
    send(&mut a, json!({"type": "chat", "text": "bye"})).await;
    recv_type(&mut a, "chat").await;
    let room = RoomName::parse("left").unwrap();
    nodes::bind_room(
        store.as_ref(),
        &key.tenant,
        &room,
        &NodeId::parse("n").unwrap(),
        1,
    )
    .await
    .unwrap();
    // "occupied": someone joins and stays.
    let _b = join(cp, &token(&key, "occupied", "b")).await;
    // Past the creation-time timeout: joined rooms are not expired.
    tokio::time::sleep(Duration::from_secs(u64::from(TIMEOUT_SECS) + 2)).await;
    assert!(room_keys(store.as_ref(), &key, "left").await.len() >= 4);
    send(&mut a, json!({"type": "leave"})).await;
    let left = Instant::now();

    let deadline = left + Duration::from_secs(u64::from(TIMEOUT_SECS) + 5);
    loop {
        let keys = room_keys(store.as_ref(), &key, "left").await;
        if keys.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "still stored: {keys:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        left.elapsed() >= Duration::from_secs(u64::from(TIMEOUT_SECS)) - Duration::from_millis(200),
        "closed before its timeout"
    );
    // The occupied room is still there, and joinable.
    let r = RoomName::parse("occupied").unwrap();
    rooms::get(store.as_ref(), &key.tenant, &r).await.unwrap();
    let _c = join(cp, &token(&key, "occupied", "c")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_with_10k_chat_messages_posted_is_joinable() {
    const POSTED: usize = 10_000;
    const SENDERS: usize = 4;
    let etcd = EtcdProcess::start().await;
    let store: Arc<dyn Store> = Arc::new(etcd.store().await);
    let dir = tempfile::tempdir().unwrap();
    let key = server::ensure_default_tenant(store.as_ref(), dir.path())
        .await
        .unwrap();
    let cp = control_plane(store.clone()).await;
    // Nobody is in it while the messages are posted: it must not expire meanwhile.
    create(store.as_ref(), &key, "chatty", 3600).await;
    let limits = ChatLimits {
        max_bytes: ApiConfig::default().chat_max_bytes,
        keep: ApiConfig::default().chat_history_max as u64,
    };
    // 4 KiB each: 10 000 of them are 40 MiB, ten times etcd's reply limit.
    let text = "x".repeat(limits.max_bytes);
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (store, tenant, text) = (store.clone(), key.tenant.clone(), text.clone());
        senders.push(tokio::spawn(async move {
            let events = LocalRoomEvents::default();
            let from = Identity::parse(format!("sender-{s}")).unwrap();
            let room = RoomName::parse("chatty").unwrap();
            for _ in 0..POSTED / SENDERS {
                let new = NewMessage {
                    from: &from,
                    name: "sender",
                    text: &text,
                };
                chat::post(store.as_ref(), &events, &tenant, &room, new, limits)
                    .await
                    .unwrap();
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let room = RoomName::parse("chatty").unwrap();
    let stored = store
        .list_prefix(&keys::chat_prefix(&key.tenant, &room))
        .await
        .unwrap();
    assert_eq!(
        stored.len() as u64,
        limits.keep,
        "the room keeps its last messages"
    );
    // `join` waits for `joined`, which carries the room's recent history.
    let _ws = join(cp, &token(&key, "chatty", "late")).await;
    let history = chat::history(store.as_ref(), &key.tenant, &room, 50)
        .await
        .unwrap();
    assert_eq!(history.len(), 50);
    assert_eq!(history.last().unwrap().seq, POSTED as u64);
    assert!(history.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
}
