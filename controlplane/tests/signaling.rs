//! Signaling over real WebSockets (tokio-tungstenite) and WHIP/WHEP over real HTTP, against
//! a server built like `shardcast serve` builds it: embedded store, the in-process media node
//! on loopback, the room bus.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use shardcast_client::IceConnectionState;
use shardcast_client::{Client, ClientConfig, TimeBase, VideoSpec};
use shardcast_controlplane::app::ApiConfig;
use shardcast_controlplane::auth::tokens::{AccessClaims, TokenService};
use shardcast_controlplane::auth::TrustedProxies;
use shardcast_controlplane::config::SignalingConfig;
use shardcast_controlplane::ids::{RoomName, TenantId};
use shardcast_controlplane::placement::Placement;
use shardcast_controlplane::server::{self, ServerOptions};
use shardcast_controlplane::services::events::LocalRoomEvents;
use shardcast_controlplane::services::{now_unix_secs, rooms};
use shardcast_controlplane::store::records::{ApiKeyRecord, Grants, ParticipantRole, RoomSettings};
use shardcast_controlplane::store::Store;
use support::inproc;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Harness {
    addr: SocketAddr,
    key: ApiKeyRecord,
    store: Arc<dyn Store>,
    placement: Arc<Placement>,
    api: ApiConfig,
    _dir: tempfile::TempDir,
}

async fn start() -> Harness {
    start_with(ApiConfig::default()).await
}

async fn start_with(api: ApiConfig) -> Harness {
    start_full(api, TrustedProxies::default()).await
}

async fn start_full(api: ApiConfig, trusted: TrustedProxies) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = inproc::embedded_store(&dir.path().join("store")).await;
    let key = server::ensure_default_tenant(store.as_ref(), dir.path())
        .await
        .unwrap();
    let placement = inproc::single("local", Arc::new(inproc::media_node()));
    let addr = serve_instance(store.clone(), placement.clone(), api.clone(), trusted).await;
    Harness {
        addr,
        key,
        store,
        placement,
        api,
        _dir: dir,
    }
}

/// One control-plane instance (router, hub, room bus) on `store`, served on loopback.
async fn serve_instance(
    store: Arc<dyn Store>,
    placement: Arc<Placement>,
    api: ApiConfig,
    trusted_proxies: TrustedProxies,
) -> SocketAddr {
    let built = server::build(
        store,
        placement,
        ServerOptions {
            api,
            signaling: SignalingConfig {
                reconnect_grace_secs: 1,
                // Short, for the join-deadline test; longer than any test takes to join.
                join_timeout_secs: 5,
                ..SignalingConfig::default()
            },
            http: server::HttpOptions {
                trusted_proxies,
                ..Default::default()
            },
            // Instances on one store share a secret and say where they listen, so room
            // events reach each other (the room bus).
            ..inproc::options_with_bus_secret("bus-secret-for-signaling-tests")
        },
    )
    .await;
    inproc::serve_built(built).await
}

impl Harness {
    fn tenant(&self) -> TenantId {
        self.key.tenant.clone()
    }

    async fn room(&self, name: &str, settings: RoomSettings, password: Option<&str>) {
        rooms::create(
            self.store.as_ref(),
            &LocalRoomEvents::default(),
            &self.tenant(),
            rooms::CreateRoom {
                name: RoomName::parse(name).unwrap(),
                password: password.map(str::to_string),
                settings,
            },
        )
        .await
        .unwrap();
    }

    fn token(&self, room: &str, identity: &str, role: ParticipantRole) -> String {
        let now = now_unix_secs();
        TokenService::default()
            .mint(
                &self.key,
                &AccessClaims {
                    sub: identity.into(),
                    name: format!("{identity} name"),
                    room: RoomName::parse(room).unwrap(),
                    role,
                    grants: Grants::for_role(role),
                    exp: now + 600,
                    nbf: now - 5,
                    iat: now,
                    iss: String::new(),
                    region: None,
                },
            )
            .unwrap()
    }

    async fn ws(&self) -> Ws {
        self.ws_at(self.addr).await
    }

    async fn ws_at(&self, addr: SocketAddr) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/rtc"))
            .await
            .unwrap();
        ws
    }

    /// Another control-plane instance on the same store and media node (as two instances
    /// on one etcd would be).
    async fn second_instance(&self) -> SocketAddr {
        serve_instance(
            self.store.clone(),
            self.placement.clone(),
            self.api.clone(),
            TrustedProxies::default(),
        )
        .await
    }

    /// A tenant REST call with the harness's API key.
    async fn rest(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = reqwest::Client::new()
            .request(method, self.url(path))
            .basic_auth(self.key.id.to_string(), Some(&self.key.secret));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn join(&self, room: &str, identity: &str, role: ParticipantRole) -> (Ws, Value) {
        let mut ws = self.ws().await;
        send(
            &mut ws,
            json!({"type": "join", "token": self.token(room, identity, role)}),
        )
        .await;
        let joined = recv_type(&mut ws, "joined").await;
        (ws, joined)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Next JSON message (skipping pings/pongs at the WebSocket level).
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
        if let Message::Close(_) = m {
            return json!({"type": "__closed"});
        }
    }
}

/// Next message of `ty`, skipping others.
async fn recv_type(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let m = recv(ws).await;
        if m["type"] == ty {
            return m;
        }
        assert_ne!(m["type"], "__closed", "closed while waiting for {ty}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_chat_history_and_presence_events() {
    let h = start().await;
    h.room("r", RoomSettings::default(), None).await;
    let (mut a, joined) = h.join("r", "alice", ParticipantRole::Host).await;
    assert_eq!(joined["room"], "r");
    assert_eq!(joined["me"]["identity"], "alice");
    assert_eq!(joined["participants"], json!([]));

    let (mut b, joined_b) = h.join("r", "bob", ParticipantRole::Participant).await;
    assert_eq!(joined_b["participants"][0]["identity"], "alice");
    let ev = recv_type(&mut a, "participant_joined").await;
    assert_eq!(ev["participant"]["identity"], "bob");
    assert_eq!(ev["participant"]["role"], "participant");

    send(&mut b, json!({"type": "chat", "text": "hello"})).await;
    for ws in [&mut a, &mut b] {
        let m = recv_type(ws, "chat").await;
        assert_eq!(m["message"]["text"], "hello");
        assert_eq!(m["message"]["identity"], "bob");
    }
    // A late joiner gets the stored history.
    let (_c, joined_c) = h.join("r", "carol", ParticipantRole::Viewer).await;
    assert_eq!(joined_c["chat"][0]["text"], "hello");
    assert_eq!(joined_c["participants"].as_array().unwrap().len(), 2);

    send(&mut b, json!({"type": "ping"})).await;
    assert_eq!(recv_type(&mut b, "pong").await["type"], "pong");

    send(&mut b, json!({"type": "leave"})).await;
    let left = recv_type(&mut a, "participant_left").await;
    assert_eq!(left["identity"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_bad_tokens() {
    let h = start().await;
    h.room("r", RoomSettings::default(), None).await;
    let mut ws = h.ws().await;
    send(&mut ws, json!({"type": "chat", "text": "x"})).await;
    assert_eq!(recv(&mut ws).await["code"], "not_joined");
    ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(recv(&mut ws).await["code"], "invalid_message");
    send(&mut ws, json!({"type": "join", "token": "abc.def.ghi"})).await;
    assert_eq!(recv(&mut ws).await["code"], "token_invalid");
    // Forged: right shape, wrong signature.
    // (Flip a character in the middle of the signature: the last base64 character carries
    // padding bits and may decode to the same bytes.)
    let mut forged: Vec<char> = h.token("r", "eve", ParticipantRole::Host).chars().collect();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    send(&mut ws, json!({"type": "join", "token": forged})).await;
    assert_eq!(recv(&mut ws).await["code"], "token_invalid");
    // A trickled candidate before there is a peer connection, and a malformed one.
    send(
        &mut ws,
        json!({"type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["code"], "not_joined");
    // The socket is still usable.
    send(
        &mut ws,
        json!({"type": "join", "token": h.token("r", "eve", ParticipantRole::Participant)}),
    )
    .await;
    let j = recv_type(&mut ws, "joined").await;
    assert_eq!(j["me"]["identity"], "eve");
    // Non-hosts cannot use host controls.
    send(&mut ws, json!({"type": "kick", "identity": "someone"})).await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "forbidden");
    send(
        &mut ws,
        json!({"type": "set_subscription", "track": "zz", "visible": false}),
    )
    .await;
    assert_eq!(recv_type(&mut ws, "error").await["code"], "unknown_track");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_rate_limited() {
    let h = start().await;
    h.room("p", RoomSettings::default(), Some("sesame")).await;
    let mut ws = h.ws().await;
    let token = h.token("p", "mallory", ParticipantRole::Participant);
    send(&mut ws, json!({"type": "join", "token": token})).await;
    assert_eq!(recv(&mut ws).await["code"], "password_required");
    let mut codes = Vec::new();
    for _ in 0..7 {
        send(
            &mut ws,
            json!({"type": "join", "token": token, "password": "guess"}),
        )
        .await;
        codes.push(recv(&mut ws).await["code"].as_str().unwrap().to_string());
    }
    assert!(
        codes[..4].iter().all(|c| c == "password_wrong"),
        "{codes:?}"
    );
    assert_eq!(codes.last().unwrap(), "rate_limited", "{codes:?}");
    // Even the right password is refused while limited.
    send(
        &mut ws,
        json!({"type": "join", "token": token, "password": "sesame"}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["code"], "rate_limited");
}

/// The password limit is one count per (room, source) for the whole deployment: wrong
/// passwords sent to two instances add up, and the window ends for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_count_across_instances_until_the_window_ends() {
    let h = start_with(ApiConfig {
        password_max_failures: 3,
        password_window: Duration::from_secs(2),
        ..ApiConfig::default()
    })
    .await;
    h.room("p", RoomSettings::default(), Some("sesame")).await;
    let other = h.second_instance().await;
    let token = h.token("p", "mallory", ParticipantRole::Participant);
    let mut a = h.ws().await;
    let mut b = h.ws_at(other).await;
    let wrong = json!({"type": "join", "token": token, "password": "guess"});
    let right = json!({"type": "join", "token": token, "password": "sesame"});
    for on_a in [true, false, true] {
        let ws = if on_a { &mut a } else { &mut b };
        send(ws, wrong.clone()).await;
        assert_eq!(recv(ws).await["code"], "password_wrong");
    }
    // Three failures in all: both instances now refuse, even the right password.
    for ws in [&mut b, &mut a] {
        send(ws, wrong.clone()).await;
        assert_eq!(recv(ws).await["code"], "rate_limited");
        send(ws, right.clone()).await;
        assert_eq!(recv(ws).await["code"], "rate_limited");
    }
    // After the window the right password gets in.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        send(&mut b, right.clone()).await;
        let m = recv(&mut b).await;
        if m["type"] == "joined" {
            break;
        }
        assert_eq!(m["code"], "rate_limited", "{m}");
        assert!(
            Instant::now() < deadline,
            "still limited long after the window"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Simulcast rids a publisher declares are stored with its tracks and listed over REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_simulcast_rids_are_listed_over_rest() {
    let h = start().await;
    h.room("s", RoomSettings::default(), None).await;
    let (mut ws, _) = h.join("s", "cam", ParticipantRole::Participant).await;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cam = Client::new(
        ClientConfig::new("cam", 7, TimeBase::real())
            .with_audio()
            .with_video(VideoSpec::simulcast3()),
        sock.local_addr().unwrap(),
        Instant::now(),
    )
    .unwrap();
    let offer = cam.create_offer(Instant::now()).unwrap();
    send(&mut ws, json!({"type": "offer", "sdp": offer})).await;
    let answer = recv_type(&mut ws, "answer").await;
    cam.accept_answer(Instant::now(), answer["sdp"].as_str().unwrap())
        .unwrap();
    // Trickle over the socket: a candidate is taken silently (no reply), end-of-candidates
    // too, and a malformed one is refused with bad_sdp.
    for c in ["candidate:1 1 udp 2122260223 127.0.0.1 9 typ host", ""] {
        send(
            &mut ws,
            json!({"type": "candidate", "candidate": c, "sdp_mid": "0"}),
        )
        .await;
    }
    send(
        &mut ws,
        json!({"type": "candidate", "candidate": "candidate:nonsense"}),
    )
    .await;
    let e = recv_type(&mut ws, "error").await;
    assert_eq!(e["code"], "bad_sdp");
    assert!(
        e["message"].as_str().unwrap_or("").contains("nonsense"),
        "the first error is the malformed candidate's: {e}"
    );
    // The node reports the tracks once the publisher's media arrives: keep it sending.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cam_stop = stop.clone();
    let cam_task = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        shardcast_client::udp::run_blocking(
            &mut cam,
            &sock,
            |_| cam_stop.load(std::sync::atomic::Ordering::Relaxed),
            deadline,
        )
        .unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let tracks = loop {
        let (status, p) = h
            .rest(reqwest::Method::GET, "/v1/rooms/s/participants/cam", None)
            .await;
        assert_eq!(status, 200, "{p}");
        if p["tracks"].as_array().is_some_and(|t| t.len() == 2) {
            break p["tracks"].clone();
        }
        assert!(Instant::now() < deadline, "tracks never stored: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let of = |kind: &str| {
        tracks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == kind)
            .cloned()
            .unwrap()
    };
    assert_eq!(of("video")["rids"], json!(["q", "h", "f"]), "{tracks}");
    assert_eq!(of("audio")["rids"], json!([]), "{tracks}");
    // The room listing carries the same.
    let (_, list) = h
        .rest(reqwest::Method::GET, "/v1/rooms/s/participants", None)
        .await;
    assert_eq!(list["participants"][0]["tracks"], tracks);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    cam_task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_room_and_host_controls() {
    let h = start().await;
    h.room(
        "w",
        RoomSettings {
            ask_before_join: true,
            ..RoomSettings::default()
        },
        None,
    )
    .await;
    let (mut host, _) = h.join("w", "host", ParticipantRole::Host).await;

    let mut guest = h.ws().await;
    send(
        &mut guest,
        json!({"type": "join", "token": h.token("w", "guest", ParticipantRole::Participant)}),
    )
    .await;
    assert_eq!(recv(&mut guest).await["type"], "waiting");
    let knock = recv_type(&mut host, "knock").await;
    assert_eq!(knock["identity"], "guest");
    send(&mut host, json!({"type": "admit", "identity": "guest"})).await;
    let joined = recv_type(&mut guest, "joined").await;
    assert_eq!(joined["participants"][0]["identity"], "host");
    assert_eq!(
        recv_type(&mut host, "participant_joined").await["participant"]["identity"],
        "guest"
    );

    // A second guest is denied.
    let mut other = h.ws().await;
    send(
        &mut other,
        json!({"type": "join", "token": h.token("w", "other", ParticipantRole::Participant)}),
    )
    .await;
    assert_eq!(recv(&mut other).await["type"], "waiting");
    recv_type(&mut host, "knock").await;
    send(&mut host, json!({"type": "deny", "identity": "other"})).await;
    assert_eq!(recv(&mut other).await["type"], "denied");
    assert_eq!(recv(&mut other).await["type"], "__closed");

    // Kick: the guest is told and closed; the host sees it leave.
    send(&mut host, json!({"type": "kick", "identity": "guest"})).await;
    assert_eq!(recv_type(&mut guest, "kicked").await["type"], "kicked");
    assert_eq!(
        recv_type(&mut host, "participant_left").await["identity"],
        "guest"
    );
    send(&mut host, json!({"type": "kick", "identity": "ghost"})).await;
    assert_eq!(
        recv_type(&mut host, "error").await["code"],
        "unknown_participant"
    );
}

/// A host admitting a waiting participant into a room that is full by then: the seat is taken
/// in the join's own transaction, so the admission is refused (`room_full`) and the
/// participant keeps waiting; once a seat is free the same admission lets it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitting_into_a_full_room_keeps_the_participant_waiting() {
    let h = start().await;
    h.room(
        "cap",
        RoomSettings {
            ask_before_join: true,
            max_participants: Some(2),
            ..RoomSettings::default()
        },
        None,
    )
    .await;
    let (mut host, _) = h.join("cap", "host", ParticipantRole::Host).await;
    let mut knockers = Vec::new();
    for who in ["g1", "g2"] {
        let mut ws = h.ws().await;
        let tok = h.token("cap", who, ParticipantRole::Participant);
        send(&mut ws, json!({"type": "join", "token": tok})).await;
        assert_eq!(recv(&mut ws).await["type"], "waiting", "{who}");
        assert_eq!(recv_type(&mut host, "knock").await["identity"], who);
        knockers.push(ws);
    }
    let (mut g1, mut g2) = (knockers.remove(0), knockers.remove(0));
    send(&mut host, json!({"type": "admit", "identity": "g1"})).await;
    recv_type(&mut g1, "joined").await;
    recv_type(&mut host, "participant_joined").await;

    // Host and g1 hold both seats: g2's admission is refused, and g2 is still waiting.
    send(&mut host, json!({"type": "admit", "identity": "g2"})).await;
    assert_eq!(recv_type(&mut g2, "error").await["code"], "room_full");
    send(&mut g2, json!({"type": "chat", "text": "let me in"})).await;
    assert_eq!(recv_type(&mut g2, "error").await["code"], "not_joined");

    send(&mut g1, json!({"type": "leave"})).await;
    assert_eq!(
        recv_type(&mut host, "participant_left").await["identity"],
        "g1"
    );
    send(&mut host, json!({"type": "admit", "identity": "g2"})).await;
    let joined = recv_type(&mut g2, "joined").await;
    assert_eq!(joined["participants"][0]["identity"], "host", "{joined}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_within_grace_keeps_the_session() {
    let h = start().await;
    h.room("g", RoomSettings::default(), None).await;
    let (mut a, _) = h.join("g", "alice", ParticipantRole::Host).await;
    let (b, joined) = h.join("g", "bob", ParticipantRole::Participant).await;
    let session = joined["session"].as_str().unwrap().to_string();
    recv_type(&mut a, "participant_joined").await;
    drop(b); // connection lost, no leave
    let mut b2 = h.ws().await;
    send(
        &mut b2,
        json!({"type": "join", "token": h.token("g", "bob", ParticipantRole::Participant), "resume": session}),
    )
    .await;
    let j = recv_type(&mut b2, "joined").await;
    assert_eq!(j["session"], session.as_str());
    // Bob never left: after the grace period alice has seen no participant_left.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send(&mut a, json!({"type": "ping"})).await;
    let m = recv(&mut a).await;
    assert_eq!(m["type"], "pong", "unexpected {m}");
}

fn client_offer(name: &str) -> (Client, String) {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let now = Instant::now();
    let mut c = Client::new(
        ClientConfig::new(name, 7, TimeBase::real())
            .with_audio()
            .with_video(VideoSpec::simulcast3()),
        addr,
        now,
    )
    .unwrap();
    let offer = c.create_offer(now).unwrap();
    (c, offer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_and_whep_status_codes() {
    let h = start().await;
    h.room("live", RoomSettings::default(), None).await;
    let http = reqwest::Client::new();
    let token = h.token("live", "cam", ParticipantRole::Participant);
    let (_c, offer) = client_offer("cam");

    // No token → 401; wrong content type → 415; malformed SDP → 400 bad_sdp.
    let r = http
        .post(h.url("/whip/live"))
        .header("content-type", "application/sdp")
        .body(offer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(h.url("/whip/live"))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(offer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = http
        .post(h.url("/whip/live"))
        .bearer_auth(&token)
        .header("content-type", "application/sdp")
        .body("v=0\r\nnonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "bad_sdp");
    // A viewer cannot publish.
    let viewer = h.token("live", "v", ParticipantRole::Viewer);
    let r = http
        .post(h.url("/whip/live"))
        .bearer_auth(&viewer)
        .header("content-type", "application/sdp")
        .body(offer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // WHEP with nothing published yet → 201: the player waits for the broadcast
    // (a_whep_player_that_comes_first_gets_the_broadcast_and_keeps_it_across_a_reconnect).
    let (_w, whep_offer) = client_offer("viewer");
    let r = http
        .post(h.url("/whep/live"))
        .bearer_auth(&viewer)
        .header("content-type", "application/sdp")
        .body(whep_offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    // The real thing: 201, an SDP answer, a Location.
    let r = http
        .post(h.url("/whip/live"))
        .bearer_auth(&token)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["content-type"], "application/sdp");
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/whip/live/"), "{location}");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let answer = r.text().await.unwrap();
    let server_ufrag = answer
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .unwrap();
    assert_eq!(
        etag,
        format!("\"{server_ufrag}\""),
        "the ETag names the ICE session"
    );
    assert!(answer.starts_with("v=0"), "{answer}");

    // A room nobody created: the publisher's token makes it (WHIP to a new room is 201).
    let (_n, new_offer) = client_offer("newcam");
    let newcomer = h.token("brandnew", "newcam", ParticipantRole::Participant);
    let r = http
        .post(h.url("/whip/brandnew"))
        .bearer_auth(&newcomer)
        .header("content-type", "application/sdp")
        .body(new_offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let brandnew = RoomName::parse("brandnew").unwrap();
    assert!(rooms::get(h.store.as_ref(), &h.tenant(), &brandnew)
        .await
        .is_ok());

    // PATCH (trickle, ICE restart): its preconditions and bad bodies.
    let patch = |content_type: &'static str, if_match: Option<&str>, body: &'static str| {
        let mut req = http
            .patch(h.url(&location))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body);
        if let Some(m) = if_match {
            req = req.header("if-match", m.to_string());
        }
        req.send()
    };
    let frag = "a=candidate:1 1 udp 2122260223 127.0.0.1 40000 typ host";
    let sdpfrag = "application/trickle-ice-sdpfrag";
    let r = patch(sdpfrag, None, frag).await.unwrap();
    assert_eq!(r.status(), 428);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "precondition_required"
    );
    let r = patch(sdpfrag, Some("\"stale\""), frag).await.unwrap();
    assert_eq!(r.status(), 412);
    let r = patch("text/plain", Some(&etag), frag).await.unwrap();
    assert_eq!(r.status(), 415);
    let r = patch(sdpfrag, Some(&etag), "a=candidate:1 1 udp")
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "bad_sdpfrag");
    // A trickled candidate: 204, the ETag unchanged.
    let r = patch(sdpfrag, Some(&etag), frag).await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    // Someone else cannot end it; the owner can, once.
    let r = http
        .delete(h.url(&location))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .delete(h.url(&location))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .delete(h.url(&location))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_player_receives_what_whip_publishes() {
    let h = start().await;
    h.room("live", RoomSettings::default(), None).await;
    // WHIP publisher: one audio + one single-layer video track over real UDP.
    let _cam = Endpoint::post(
        &h,
        "/whip/live",
        h.token("live", "cam", ParticipantRole::Participant),
        ClientConfig::new("cam", 7, TimeBase::real())
            .with_audio()
            .with_video(VideoSpec::single(300_000)),
    )
    .await;
    // The publisher's tracks reach the room's track list one by one, asynchronously: wait
    // for both, so the player's answer binds them (the late-binding path has its own test).
    let mut tries = 0;
    loop {
        let r = reqwest::Client::new()
            .get(h.url("/v1/rooms/live/participants/cam"))
            .basic_auth(h.key.id.to_string(), Some(&h.key.secret))
            .send()
            .await
            .unwrap();
        let ok = r.status() == 200;
        let p: Value = r.json().await.unwrap_or(Value::Null);
        if ok && p["tracks"].as_array().is_some_and(|t| t.len() == 2) {
            break;
        }
        tries += 1;
        assert!(tries < 100, "the publisher's tracks never appeared: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // WHEP player: recvonly audio + video, no renegotiation after the answer.
    let viewer = Endpoint::post(
        &h,
        "/whep/live",
        h.token("live", "v", ParticipantRole::Viewer),
        ClientConfig::new("viewer", 9, TimeBase::real()).with_receive_offer(),
    )
    .await;
    assert!(viewer.answer.contains("a=sendonly"), "{}", viewer.answer);
    let (_, _, video_streams) = plays(&viewer, 10, 25, "the player decodes the broadcast").await;
    assert_eq!(video_streams, 1, "one video m-line carries media");
    let c = viewer.peer.client.lock().unwrap();
    let s = c.stats();
    assert_eq!(
        s.audio_tracks().filter(|t| t.audio_packets > 0).count(),
        1,
        "one audio m-line carries media"
    );
    assert!(s.video_tracks().any(|t| t.keyframes >= 1));
}

/// A shardcast-client publishing audio + 3-layer video over real UDP, driven by a thread.
struct Peer {
    client: Arc<std::sync::Mutex<Client>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    /// Offers over `ws`, applies the answer and starts the media thread.
    async fn connect(name: &str, seed: u64, ws: &mut Ws) -> Peer {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut client = Client::new(
            ClientConfig::new(name, seed, TimeBase::real())
                .with_audio()
                .with_video(VideoSpec::simulcast3()),
            sock.local_addr().unwrap(),
            Instant::now(),
        )
        .unwrap();
        let offer = client.create_offer(Instant::now()).unwrap();
        send(ws, json!({"type": "offer", "sdp": offer})).await;
        let answer = recv_type(ws, "answer").await;
        client
            .accept_answer(Instant::now(), answer["sdp"].as_str().unwrap())
            .unwrap();
        let client = Arc::new(std::sync::Mutex::new(client));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = shardcast_client::udp::spawn_driver(client.clone(), sock, stop.clone());
        Peer {
            client,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> u64 {
        self.client.lock().unwrap().stats().packets_received()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One participant of a call: its socket, its media and every message it got.
struct Party {
    ws: Ws,
    peer: Peer,
    log: Vec<Value>,
}

impl Party {
    /// Reads what arrived within a few ms, answering server offers.
    async fn poll(&mut self) {
        let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(20), self.ws.next()).await
        else {
            return;
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "offer" {
            let answer = self
                .peer
                .client
                .lock()
                .unwrap()
                .accept_offer(Instant::now(), v["sdp"].as_str().unwrap())
                .unwrap();
            send(&mut self.ws, json!({"type": "answer", "sdp": answer})).await;
        }
        self.log.push(v);
    }

    fn count(&self, ty: &str, identity: &str) -> usize {
        self.log
            .iter()
            .filter(|m| {
                m["type"] == ty
                    && (m["identity"] == identity
                        || m["track"]["identity"] == identity
                        || m["participant"]["identity"] == identity)
            })
            .count()
    }
}

/// Polls both parties until `done` holds (or fails after 30 s, naming `what`).
async fn settle(parties: &mut [&mut Party], what: &str, done: impl Fn(&[&mut Party]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(parties) {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        for p in parties.iter_mut() {
            p.poll().await;
        }
    }
}

/// Media to `p` has stopped: its received count holds still over a second (polled until it
/// does, so packets in flight at the change do not matter).
async fn media_stops(parties: &mut [&mut Party], who: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = parties[who].peer.received();
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            for p in parties.iter_mut() {
                p.poll().await;
            }
        }
        if parties[who].peer.received() == before {
            return;
        }
        assert!(Instant::now() < deadline, "media never stopped: {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_updates_apply_to_the_live_session() {
    let h = start().await;
    h.room("perm", RoomSettings::default(), None).await;
    let (mut a_ws, _) = h.join("perm", "alice", ParticipantRole::Host).await;
    let (mut b_ws, _) = h.join("perm", "bob", ParticipantRole::Participant).await;
    let a_peer = Peer::connect("alice", 1, &mut a_ws).await;
    let b_peer = Peer::connect("bob", 2, &mut b_ws).await;
    let mut alice = Party {
        ws: a_ws,
        peer: a_peer,
        log: Vec::new(),
    };
    let mut bob = Party {
        ws: b_ws,
        peer: b_peer,
        log: Vec::new(),
    };
    settle(&mut [&mut alice, &mut bob], "media both ways", |p| {
        p[0].peer.received() > 50
            && p[1].peer.received() > 50
            && p[0].count("track_published", "bob") == 2
    })
    .await;

    // Revoke bob's publish, subscribe and chat grants over REST.
    let (status, p) = h
        .rest(
            reqwest::Method::PATCH,
            "/v1/rooms/perm/participants/bob/permissions",
            Some(json!({"canPublish": false, "canSubscribe": false, "canChat": false})),
        )
        .await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(
        p["grants"],
        json!({"canPublish": false, "canSubscribe": false, "canChat": false, "roomAdmin": false})
    );
    settle(
        &mut [&mut alice, &mut bob],
        "permissions_changed and unpublish",
        |p| {
            p[1].count("permissions_changed", "bob") == 1
                && p[0].count("permissions_changed", "bob") == 1
                && p[0].count("track_unpublished", "bob") == 2
        },
    )
    .await;
    let told = bob
        .log
        .iter()
        .find(|m| m["type"] == "permissions_changed")
        .unwrap();
    assert_eq!(told["participant"]["grants"]["canPublish"], false, "{told}");
    assert_eq!(told["participant"]["role"], "participant", "{told}");
    // Bob's tracks are stopped on the node (alice gets nothing more) and his subscriptions
    // ended (bob gets nothing more).
    media_stops(&mut [&mut alice, &mut bob], 0, "bob's publishing").await;
    media_stops(&mut [&mut alice, &mut bob], 1, "bob's subscriptions").await;
    // Chat is refused with the stable code.
    send(&mut bob.ws, json!({"type": "chat", "text": "still here?"})).await;
    settle(&mut [&mut alice, &mut bob], "chat refused", |p| {
        p[1].log
            .iter()
            .any(|m| m["type"] == "error" && m["code"] == "forbidden")
    })
    .await;
    assert_eq!(alice.count("chat", "bob"), 0);
    // The record no longer lists bob's tracks.
    let (_, rec) = h
        .rest(
            reqwest::Method::GET,
            "/v1/rooms/perm/participants/bob",
            None,
        )
        .await;
    assert_eq!(rec["tracks"], json!([]), "{rec}");
    assert_eq!(rec["grants"]["canPublish"], false, "{rec}");

    // Granted again: bob's tracks come back for alice, and bob receives alice again.
    let (a_before, b_before) = (alice.peer.received(), bob.peer.received());
    let (status, _) = h
        .rest(
            reqwest::Method::PATCH,
            "/v1/rooms/perm/participants/bob/permissions",
            Some(json!({"canPublish": true, "canSubscribe": true})),
        )
        .await;
    assert_eq!(status, 200);
    settle(
        &mut [&mut alice, &mut bob],
        "media again after the grant",
        |p| {
            p[0].count("track_published", "bob") == 4
                && p[0].peer.received() > a_before + 50
                && p[1].peer.received() > b_before + 50
        },
    )
    .await;
    let (_, rec) = h
        .rest(
            reqwest::Method::GET,
            "/v1/rooms/perm/participants/bob",
            None,
        )
        .await;
    assert_eq!(rec["tracks"].as_array().unwrap().len(), 2, "{rec}");
}

/// A valid token for a room nobody created makes the room on join (the default), with
/// default settings and no password; two joiners racing for it land in one room. With
/// `rooms_auto_create` off the join is `room_not_found` and nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_a_new_room_creates_it_unless_auto_create_is_off() {
    let h = start().await;
    let fresh = RoomName::parse("fresh").unwrap();
    assert!(rooms::get(h.store.as_ref(), &h.tenant(), &fresh)
        .await
        .is_err());
    let (mut a, mut b) = (h.ws().await, h.ws().await);
    send(
        &mut a,
        json!({"type": "join", "token": h.token("fresh", "ann", ParticipantRole::Participant)}),
    )
    .await;
    send(
        &mut b,
        json!({"type": "join", "token": h.token("fresh", "ben", ParticipantRole::Participant)}),
    )
    .await;
    let ja = recv_type(&mut a, "joined").await;
    let jb = recv_type(&mut b, "joined").await;
    assert_eq!(ja["me"]["identity"], "ann");
    assert_eq!(jb["me"]["identity"], "ben");
    let room = rooms::get(h.store.as_ref(), &h.tenant(), &fresh)
        .await
        .expect("the join created the room");
    assert_eq!(room.settings, RoomSettings::default());
    assert!(room.password_hash.is_none());

    let off = start_with(ApiConfig {
        rooms_auto_create: false,
        ..ApiConfig::default()
    })
    .await;
    let mut ws = off.ws().await;
    send(
        &mut ws,
        json!({"type": "join", "token": off.token("nope", "eve", ParticipantRole::Host)}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["code"], "room_not_found");
    let nope = RoomName::parse("nope").unwrap();
    assert!(rooms::get(off.store.as_ref(), &off.tenant(), &nope)
        .await
        .is_err());
}

/// A page on another origin may publish and play (WHIP/WHEP answer any origin by default and
/// expose Location, Link and ETag), but may not call the REST API unless its origin is
/// listed; a listed origin is echoed, an unlisted one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_lets_other_origins_use_whip_and_whep_but_not_rest_by_default() {
    let h = start().await;
    let http = reqwest::Client::new();
    let origin = "http://player.example:8080";
    let preflight = |path: &str, method: &str| {
        http.request(reqwest::Method::OPTIONS, h.url(path))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let r = preflight("/whip/live", "POST").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let methods = r.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    // The real POST from that origin: 201 with the session URL readable by the page.
    let (_c, offer) = client_offer("cam");
    let r = http
        .post(h.url("/whip/live"))
        .header("origin", origin)
        .bearer_auth(h.token("live", "cam", ParticipantRole::Participant))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for name in ["location", "link", "etag"] {
        assert!(exposed.contains(name), "{name} not in {exposed}");
    }
    // REST: no CORS headers by default, so the browser refuses the page the answer.
    let r = preflight("/v1/rooms", "GET").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // Listed origins only: the listed one is echoed back, another gets nothing.
    let listed = start_with(ApiConfig {
        cors_whip_origins: vec![origin.to_string()],
        cors_api_origins: vec![origin.to_string()],
        ..ApiConfig::default()
    })
    .await;
    for path in ["/whep/live", "/v1/rooms"] {
        let ask = |from: &'static str| {
            http.request(reqwest::Method::OPTIONS, listed.url(path))
                .header("origin", from)
                .header("access-control-request-method", "POST")
                .send()
        };
        let r = ask(origin).await.unwrap();
        assert_eq!(r.headers()["access-control-allow-origin"], origin, "{path}");
        let r = ask("http://evil.example").await.unwrap();
        assert!(
            r.headers().get("access-control-allow-origin").is_none(),
            "{path}"
        );
    }
}

/// With TURN configured every client gets it: `joined` carries `ice_servers` with a
/// username `<expiry>:<identity>` and the HMAC credential, and WHIP/WHEP `201`s carry one
/// RFC 9725 `Link: <url>; rel="ice-server"; …` per URL. Without TURN: none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_servers_and_credentials_reach_websocket_and_whip_clients() {
    use shardcast_controlplane::turn::{credential, TurnSettings};
    let secret = "shared-with-coturn-0123";
    let urls = vec![
        "turn:turn.example.com:3478?transport=udp".to_string(),
        "turn:turn.example.com:3478?transport=tcp".to_string(),
    ];
    let h = start_with(ApiConfig {
        turn: TurnSettings {
            urls: urls.clone(),
            secret: Some(secret.into()),
            ttl_secs: 600,
        },
        ..ApiConfig::default()
    })
    .await;
    let mut ws = h.ws().await;
    send(
        &mut ws,
        json!({"type": "join", "token": h.token("t", "ann", ParticipantRole::Participant)}),
    )
    .await;
    let j = recv_type(&mut ws, "joined").await;
    let servers = j["ice_servers"].as_array().expect("ice_servers");
    assert_eq!(servers.len(), 1, "{j}");
    assert_eq!(servers[0]["urls"], json!(urls));
    let username = servers[0]["username"].as_str().unwrap();
    let (expiry, who) = username.split_once(':').unwrap();
    assert_eq!(who, "ann");
    let ttl = expiry.parse::<u64>().unwrap() as i64 - now_unix_secs() as i64;
    assert!((590..=610).contains(&ttl), "credential lives {ttl} s");
    assert_eq!(servers[0]["credential"], credential(secret, username));

    let (_c, offer) = client_offer("cam");
    let r = reqwest::Client::new()
        .post(h.url("/whip/t"))
        .bearer_auth(h.token("t", "cam", ParticipantRole::Participant))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let links: Vec<&str> = r
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    for (link, url) in links.iter().zip(&urls) {
        assert!(
            link.starts_with(&format!("<{url}>; rel=\"ice-server\"; username=\"")),
            "{link}"
        );
        assert!(link.contains(":cam\"; credential=\""), "{link}");
    }

    // No TURN configured: an empty list and no Link headers.
    let plain = start().await;
    let mut ws = plain.ws().await;
    send(
        &mut ws,
        json!({"type": "join", "token": plain.token("t", "ann", ParticipantRole::Participant)}),
    )
    .await;
    assert_eq!(recv_type(&mut ws, "joined").await["ice_servers"], json!([]));
}

/// A shardcast-client on its own UDP socket and driver thread, set up over WHIP or WHEP.
struct Endpoint {
    peer: Peer,
    location: String,
    token: String,
    answer: String,
    etag: String,
}

impl Endpoint {
    async fn post(h: &Harness, path: &str, token: String, config: ClientConfig) -> Endpoint {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut client = Client::new(config, sock.local_addr().unwrap(), Instant::now()).unwrap();
        let offer = client.create_offer(Instant::now()).unwrap();
        let r = reqwest::Client::new()
            .post(h.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/sdp")
            .body(offer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "POST {path}");
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        let answer = r.text().await.unwrap();
        client.accept_answer(Instant::now(), &answer).unwrap();
        let client = Arc::new(std::sync::Mutex::new(client));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = shardcast_client::udp::spawn_driver(client.clone(), sock, stop.clone());
        Endpoint {
            peer: Peer {
                client,
                stop,
                thread: Some(thread),
            },
            location,
            token,
            answer,
            etag,
        }
    }

    /// Video frames decodable and audio packets received so far, and how many video
    /// streams carried anything.
    fn received(&self) -> (u64, u64, usize) {
        let c = self.peer.client.lock().unwrap();
        let s = c.stats();
        let video: Vec<_> = s.video_tracks().filter(|t| t.packets > 0).collect();
        let frames = video.iter().map(|t| t.frames_decodable).sum::<u64>();
        let audio = s.audio_tracks().map(|t| t.audio_packets).sum::<u64>();
        (frames, audio, video.len())
    }
}

/// Waits until `viewer` has decoded `frames` video frames and received `audio` packets.
async fn plays(viewer: &Endpoint, frames: u64, audio: u64, what: &str) -> (u64, u64, usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = viewer.received();
        if got.0 >= frames && got.1 >= audio {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the player got only {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WHEP player that comes before the broadcaster gets the broadcast when it starts, on
/// the m-lines of its one offer and with no new POST; when the broadcaster leaves and comes
/// back (a new WHIP session, new tracks) the same player keeps playing on the same stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_player_that_comes_first_gets_the_broadcast_and_keeps_it_across_a_reconnect() {
    let h = start().await;
    let viewer = Endpoint::post(
        &h,
        "/whep/stage",
        h.token("stage", "v", ParticipantRole::Viewer),
        ClientConfig::new("viewer", 21, TimeBase::real()).with_receive_offer(),
    )
    .await;
    let cam = |seed| {
        ClientConfig::new("cam", seed, TimeBase::real())
            .with_audio()
            .with_video(VideoSpec::single(300_000))
    };
    let token = h.token("stage", "cam", ParticipantRole::Participant);
    let first = Endpoint::post(&h, "/whip/stage", token.clone(), cam(22)).await;
    let (frames, audio, streams) = plays(&viewer, 10, 25, "the broadcast starts").await;
    assert_eq!(streams, 1, "one video m-line carries the broadcast");

    // The broadcaster leaves and comes back as a new WHIP session.
    let r = reqwest::Client::new()
        .delete(h.url(&first.location))
        .bearer_auth(&first.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(first);
    let _second = Endpoint::post(&h, "/whip/stage", token, cam(23)).await;
    let (_, _, streams) = plays(&viewer, frames + 10, audio + 25, "after the reconnect").await;
    assert_eq!(
        streams, 1,
        "the new broadcast continues the player's stream (same SSRC)"
    );
}

/// The fragment of an SDP a WHIP client PATCHes for an ICE restart: its new credentials and
/// the first m-section's candidates.
fn restart_frag(offer: &str) -> String {
    let mut out = String::new();
    let mut first_section = false;
    let mut sections = 0;
    for l in offer.lines().map(str::trim_end) {
        if l.starts_with("m=") {
            sections += 1;
            first_section = sections == 1;
        }
        if l.starts_with("a=ice-ufrag:") || l.starts_with("a=ice-pwd:") {
            if !out.contains(&l[..10]) {
                out.push_str(l);
                out.push_str("\r\n");
            }
        } else if first_section && (l.starts_with("a=candidate:") || l.starts_with("a=mid:")) {
            out.push_str(l);
            out.push_str("\r\n");
        }
    }
    out
}

/// A WHIP publisher restarts ICE over PATCH (RFC 9725 §4.3.2) and keeps its session: the
/// answer fragment carries our new credentials and candidates, the ETag moves to them (the
/// old one is refused from then on), and the player keeps getting the broadcast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_over_patch_keeps_the_whip_session() {
    let h = start().await;
    let viewer = Endpoint::post(
        &h,
        "/whep/show",
        h.token("show", "v", ParticipantRole::Viewer),
        ClientConfig::new("viewer", 31, TimeBase::real()).with_receive_offer(),
    )
    .await;
    let cam = Endpoint::post(
        &h,
        "/whip/show",
        h.token("show", "cam", ParticipantRole::Participant),
        ClientConfig::new("cam", 32, TimeBase::real())
            .with_audio()
            .with_video(VideoSpec::single(300_000)),
    )
    .await;
    let (frames, audio, _) = plays(&viewer, 10, 25, "before the restart").await;

    let offer = cam
        .peer
        .client
        .lock()
        .unwrap()
        .ice_restart_offer(Instant::now())
        .unwrap();
    let body = restart_frag(&offer);
    assert!(body.contains("a=ice-pwd:"), "{body}");
    let r = reqwest::Client::new()
        .patch(h.url(&cam.location))
        .bearer_auth(&cam.token)
        .header("content-type", "application/trickle-ice-sdpfrag")
        .header("if-match", &cam.etag)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/trickle-ice-sdpfrag"
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let frag = r.text().await.unwrap();
    let field = |sdp: &str, key: &str| {
        sdp.lines()
            .find_map(|l| l.trim_end().strip_prefix(key).map(str::to_string))
            .unwrap_or_default()
    };
    let (ufrag, pwd) = (field(&frag, "a=ice-ufrag:"), field(&frag, "a=ice-pwd:"));
    assert_ne!(ufrag, field(&cam.answer, "a=ice-ufrag:"), "new credentials");
    assert_eq!(etag, format!("\"{ufrag}\""));
    assert!(frag.contains("a=candidate:") && frag.ends_with("a=end-of-candidates\r\n"));
    // The client takes our new credentials as the answer to its restart offer.
    let old_ufrag = field(&cam.answer, "a=ice-ufrag:");
    let old_pwd = field(&cam.answer, "a=ice-pwd:");
    let answer = cam
        .answer
        .replace(
            &format!("a=ice-ufrag:{old_ufrag}"),
            &format!("a=ice-ufrag:{ufrag}"),
        )
        .replace(&format!("a=ice-pwd:{old_pwd}"), &format!("a=ice-pwd:{pwd}"));
    {
        let mut c = cam.peer.client.lock().unwrap();
        c.accept_answer(Instant::now(), &answer).unwrap();
        assert!(
            !matches!(
                c.ice_state(),
                Some(IceConnectionState::Connected | IceConnectionState::Completed)
            ),
            "the restart starts over: {:?}",
            c.ice_state()
        );
    }
    // The restart completes only if checks with the new credentials succeed both ways.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = cam.peer.client.lock().unwrap().ice_state();
        if matches!(
            state,
            Some(IceConnectionState::Connected | IceConnectionState::Completed)
        ) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted ICE never connected: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    plays(&viewer, frames + 60, audio + 150, "after the restart").await;

    // The old ETag no longer matches; the session is the same one.
    let r = reqwest::Client::new()
        .patch(h.url(&cam.location))
        .bearer_auth(&cam.token)
        .header("content-type", "application/trickle-ice-sdpfrag")
        .header("if-match", &cam.etag)
        .body("a=candidate:9 1 udp 1 127.0.0.1 40001 typ host")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 412);
    let r = reqwest::Client::new()
        .delete(h.url(&cam.location))
        .bearer_auth(&cam.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A socket that does not join within `signaling.join_timeout_secs` (5 s here) is told
/// `join_timeout` and closed, even if it keeps pinging; one that joined is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_never_joins_is_closed_at_the_join_deadline() {
    let h = start().await;
    let opened = Instant::now();
    let mut idle = h.ws().await;
    let mut joined = h.ws().await;
    send(
        &mut joined,
        json!({"type": "join", "token": h.token("r", "ann", ParticipantRole::Participant)}),
    )
    .await;
    recv_type(&mut joined, "joined").await;
    // Pings do not count as joining.
    let mut closed_at = None;
    while closed_at.is_none() {
        assert!(opened.elapsed() < Duration::from_secs(12), "never closed");
        send(&mut idle, json!({"type": "ping"})).await;
        loop {
            let m = recv(&mut idle).await;
            if m["type"] == "pong" {
                break;
            }
            if m["code"] == "join_timeout" {
                assert_eq!(recv(&mut idle).await["type"], "__closed");
                closed_at = Some(opened.elapsed());
                break;
            }
            assert_ne!(m["type"], "__closed", "closed without join_timeout");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let at = closed_at.unwrap();
    assert!(at >= Duration::from_millis(4900), "closed after {at:?}");
    // The joined socket stays.
    send(&mut joined, json!({"type": "ping"})).await;
    assert_eq!(recv_type(&mut joined, "pong").await["type"], "pong");
}

/// Wrong room passwords are counted per client address. Behind a trusted proxy the client is
/// the one `X-Forwarded-For` names, so one guesser's lock-out does not lock out a second
/// client behind the same proxy; from a peer that is not a trusted proxy the header is
/// ignored (else a guesser could name a new address per attempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_limit_keys_on_the_forwarded_client_only_behind_a_trusted_proxy() {
    async fn guesses(h: &Harness, forwarded_for: &str, n: usize) -> Vec<String> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{}/v1/rtc", h.addr)
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("x-forwarded-for", forwarded_for.parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let token = h.token("p", "mallory", ParticipantRole::Participant);
        let mut codes = Vec::new();
        for _ in 0..n {
            send(
                &mut ws,
                json!({"type": "join", "token": token, "password": "guess"}),
            )
            .await;
            codes.push(recv(&mut ws).await["code"].as_str().unwrap().to_string());
        }
        codes
    }
    // The test's own connections come from 127.0.0.1.
    let behind_proxy = start_full(
        ApiConfig::default(),
        TrustedProxies::parse(&["127.0.0.0/8"]).unwrap(),
    )
    .await;
    behind_proxy
        .room("p", RoomSettings::default(), Some("sesame"))
        .await;
    let first = guesses(&behind_proxy, "203.0.113.1", 6).await;
    assert_eq!(first.last().unwrap(), "rate_limited", "{first:?}");
    // Another client behind the same proxy still gets its own attempts.
    let second = guesses(&behind_proxy, "203.0.113.1, 203.0.113.2", 1).await;
    assert_eq!(second, ["password_wrong"]);

    // No trusted proxies: the header is ignored and both count as 127.0.0.1.
    let direct = start().await;
    direct
        .room("p", RoomSettings::default(), Some("sesame"))
        .await;
    let first = guesses(&direct, "203.0.113.1", 6).await;
    assert_eq!(first.last().unwrap(), "rate_limited", "{first:?}");
    let second = guesses(&direct, "203.0.113.2", 1).await;
    assert_eq!(second, ["rate_limited"]);
}

/// Errors sent to clients name no internal address: a media node that cannot be reached
/// (its URL is private) gives `unavailable` with an error id, and the URL stays in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_no_internal_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = inproc::embedded_store(&dir.path().join("store")).await;
    let key = server::ensure_default_tenant(store.as_ref(), dir.path())
        .await
        .unwrap();
    // Nothing listens on the discard port of loopback: every node call fails.
    let dead = shardcast_controlplane::nodeapi::client::RemoteNode::new(
        &shardcast_controlplane::ids::NodeId::parse("private-node-7").unwrap(),
        "http://127.0.0.1:9/internal-node-path",
        "cluster-secret-0123456789",
    );
    let placement = inproc::single("private-node-7", Arc::new(dead));
    let addr = serve_instance(
        store.clone(),
        placement.clone(),
        ApiConfig::default(),
        TrustedProxies::default(),
    )
    .await;
    let h = Harness {
        addr,
        key,
        store,
        placement,
        api: ApiConfig::default(),
        _dir: dir,
    };
    let (mut ws, _) = h.join("r", "ann", ParticipantRole::Host).await;
    let (_client, offer) = client_offer("ann");
    send(&mut ws, json!({"type": "offer", "sdp": offer})).await;
    let e = recv_type(&mut ws, "error").await;
    assert_eq!(e["code"], "unavailable", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("error id"), "{message}");
    for internal in [
        "127.0.0.1",
        ":9",
        "http",
        "internal-node-path",
        "private-node-7",
    ] {
        assert!(!message.contains(internal), "{internal} in {message}");
    }
}
