//! The client pool against the real `shardcast serve` binary (started by the end-to-end
//! harness of shardcast-tests, stopped by PID on drop): real ICE/DTLS-SRTP over loopback,
//! WebSocket signaling and WHIP/WHEP, tokens from the server's dev endpoint.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use shardcast_bench::pool::{
    JoinSpec, ParticipantId, ParticipantSnapshot, ParticipantState, Pool, PoolConfig, PoolSnapshot,
    Signaling,
};
use shardcast_bench::scenario::VideoKind;
use shardcast_tests::server::Server;

fn dev_token(server: &Server, room: &str, identity: &str) -> String {
    let url = format!(
        "{}/dev/token?room={room}&identity={identity}&name={identity}",
        server.base_url
    );
    let body: serde_json::Value = reqwest::blocking::get(url)
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("dev token");
    body["token"].as_str().expect("token field").to_string()
}

fn spec(server: &Server, room: &str, identity: &str, signaling: Signaling) -> JoinSpec {
    JoinSpec {
        group: identity.to_string(),
        base_url: server.base_url.clone(),
        room: room.to_string(),
        token: dev_token(server, room, identity),
        password: None,
        audio: false,
        video: VideoKind::None,
        subscribe: true,
        max_layer: None,
        verify: true,
        signaling,
        transport_cc: true,
    }
}

fn pool(threads: usize) -> Pool {
    Pool::start(PoolConfig {
        threads,
        cpus: None,
        bind_ip: IpAddr::from([127, 0, 0, 1]),
    })
    .expect("pool starts")
}

fn find(snap: &PoolSnapshot, id: ParticipantId) -> &ParticipantSnapshot {
    snap.participants
        .iter()
        .find(|p| p.id == id)
        .expect("participant in snapshot")
}

/// Polls snapshots until `done` holds; panics with the last snapshot (and the server log)
/// after `limit`.
fn wait_until(
    pool: &Pool,
    server: &Server,
    limit: Duration,
    what: &str,
    mut done: impl FnMut(&PoolSnapshot) -> bool,
) -> PoolSnapshot {
    let deadline = Instant::now() + limit;
    loop {
        let snap = pool.snapshot();
        if done(&snap) {
            return snap;
        }
        if Instant::now() > deadline {
            let brief: Vec<String> = snap.participants.iter().map(describe).collect();
            panic!(
                "timed out waiting for {what}:\n{}\nserver log:\n{}",
                brief.join("\n"),
                server.log_tail(30)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn describe(p: &ParticipantSnapshot) -> String {
    format!(
        "{} {:?}: sent {} audio {} video {} per layer {:?} lost {} latency samples {:?}",
        p.group,
        p.state,
        p.packets_sent,
        p.audio_packets_received,
        p.video_packets_received,
        p.video_packets_per_layer,
        p.lost_after_repair,
        p.latency_us.as_ref().map(|h| h.len())
    )
}

#[test]
fn websocket_publisher_and_three_subscribers() {
    let server = Server::start().expect("shardcast serve");
    let pool = pool(2);
    let room = "wsroom";
    let mut cam = spec(&server, room, "cam", Signaling::WebSocket);
    cam.audio = true;
    cam.video = VideoKind::Simulcast3;
    cam.subscribe = false;
    cam.verify = false;
    let cam = pool.join(cam);
    let full = pool.join(spec(&server, room, "full", Signaling::WebSocket));
    let mut counter = spec(&server, room, "counter", Signaling::WebSocket);
    counter.verify = false;
    let counter = pool.join(counter);
    let mut low = spec(&server, room, "low", Signaling::WebSocket);
    low.max_layer = Some(0);
    let low = pool.join(low);
    let subscribers = [full, counter, low];

    let snap = wait_until(
        &pool,
        &server,
        Duration::from_secs(60),
        "media at every subscriber",
        |s| {
            subscribers.iter().all(|id| {
                let p = find(s, *id);
                p.audio_packets_received >= 150 && p.video_packets_received >= 600
            })
        },
    );
    // An unconstrained viewer climbs above layer 0 once the bandwidth estimate allows, which
    // is what makes "only layer 0" at the capped viewer mean something.
    let snap = wait_until(
        &pool,
        &server,
        Duration::from_secs(60),
        "a viewer above layer 0",
        |s| {
            let p = find(s, full);
            p.video_packets_per_layer[1] + p.video_packets_per_layer[2] > 0
        },
    )
    .participants
    .into_iter()
    .chain(snap.participants)
    .collect::<Vec<_>>();
    let latest = |id: ParticipantId| snap.iter().find(|p| p.id == id).unwrap().clone();

    for id in [cam, full, counter, low] {
        let p = latest(id);
        assert_eq!(p.state, ParticipantState::Connected, "{}", describe(&p));
        let first = p.first_media.expect("first media");
        assert!(first >= p.join_started);
    }
    let c = latest(cam);
    assert!(c.packets_sent > 500, "{}", describe(&c));
    assert!(c.datagrams_sent >= c.packets_sent);
    for id in subscribers {
        let p = latest(id);
        assert_eq!(p.video_tracks, 1, "{}", describe(&p));
        assert_eq!(p.lost_after_repair, 0, "loopback: {}", describe(&p));
        assert!(p.expected >= p.packets_received - p.lost_after_repair);
        assert!(p.bytes_received > 100_000);
        assert_eq!(p.send_drops, 0);
    }
    let l = latest(low);
    assert!(l.video_packets_per_layer[0] > 0, "{}", describe(&l));
    assert_eq!(
        l.video_packets_per_layer[1] + l.video_packets_per_layer[2],
        0,
        "max_layer 0 viewer got higher layers: {}",
        describe(&l)
    );
    for id in [full, low] {
        let p = latest(id);
        let h = p
            .latency_us
            .as_ref()
            .expect("verify participants keep latency");
        assert!(h.len() > 500, "{}", describe(&p));
        // Send and receive stamps are on the pool's one clock: a wrong time base would be
        // off by hours, not by the SFU's fraction of a millisecond.
        assert!(
            h.value_at_quantile(0.5) < 1_000_000,
            "p50 {} µs",
            h.value_at_quantile(0.5)
        );
    }
    let k = latest(counter);
    assert!(k.latency_us.is_none(), "count-only keeps no latency");
    assert_eq!(
        k.video_packets_per_layer, [0; 4],
        "count-only does not parse payloads"
    );

    // Leaving stops the counters; the rest go on.
    pool.leave(counter);
    let left = wait_until(&pool, &server, Duration::from_secs(10), "the leave", |s| {
        find(s, counter).state == ParticipantState::Left
    });
    let frozen = find(&left, counter).packets_received;
    std::thread::sleep(Duration::from_millis(600));
    let later = pool.snapshot();
    assert_eq!(find(&later, counter).packets_received, frozen);
    assert!(find(&later, full).packets_received > find(&left, full).packets_received);
    assert!(later.harness_cpu > Duration::ZERO);

    let last = pool.shutdown();
    assert_eq!(last.participants.len(), 4);
    assert!(
        last.participants
            .iter()
            .all(|p| p.state == ParticipantState::Left),
        "{:?}",
        last.participants
            .iter()
            .map(|p| &p.state)
            .collect::<Vec<_>>()
    );
}

#[test]
fn whip_publisher_and_two_whep_viewers() {
    let server = Server::start().expect("shardcast serve");
    let pool = pool(1);
    let room = "live";
    let mut cam = spec(&server, room, "cam", Signaling::WhipWhep);
    cam.audio = true;
    cam.video = VideoKind::Simulcast3;
    cam.subscribe = false;
    let cam = pool.join(cam);
    // WHEP binds the tracks published at POST time: start the viewers once the publisher
    // is sending.
    wait_until(
        &pool,
        &server,
        Duration::from_secs(30),
        "the publisher sending",
        |s| {
            let p = find(s, cam);
            p.state == ParticipantState::Connected && p.packets_sent > 100
        },
    );
    let viewer = pool.join(spec(&server, room, "viewer", Signaling::WhipWhep));
    let mut counter = spec(&server, room, "counter", Signaling::WhipWhep);
    counter.verify = false;
    let counter = pool.join(counter);
    // Refusals fail that participant alone, with the server's reason.
    let mut forged = spec(&server, room, "forged", Signaling::WhipWhep);
    forged.token = "not-a-token".into();
    let forged = pool.join(forged);
    let mut forged_ws = spec(&server, room, "forged-ws", Signaling::WebSocket);
    forged_ws.token = "not-a-token".into();
    let forged_ws = pool.join(forged_ws);

    let snap = wait_until(
        &pool,
        &server,
        Duration::from_secs(60),
        "media at both viewers",
        |s| {
            [viewer, counter].iter().all(|id| {
                let p = find(s, *id);
                p.audio_packets_received >= 100 && p.video_packets_received >= 300
            })
        },
    );
    for id in [viewer, counter] {
        let p = find(&snap, id);
        assert_eq!(p.state, ParticipantState::Connected, "{}", describe(p));
        assert!(p.first_media.is_some());
    }
    let v = find(&snap, viewer);
    assert!(
        v.latency_us.as_ref().is_some_and(|h| h.len() > 100),
        "{}",
        describe(v)
    );
    let snap = wait_until(
        &pool,
        &server,
        Duration::from_secs(20),
        "the refusals",
        |s| {
            [forged, forged_ws]
                .iter()
                .all(|id| matches!(find(s, *id).state, ParticipantState::Failed(_)))
        },
    );
    let ParticipantState::Failed(why) = &find(&snap, forged).state else {
        unreachable!()
    };
    assert!(why.contains("401"), "{why}");
    let ParticipantState::Failed(why) = &find(&snap, forged_ws).state else {
        unreachable!()
    };
    assert!(why.contains("token_invalid"), "{why}");

    // The publisher leaves through DELETE: the viewers' media stops.
    pool.leave(cam);
    std::thread::sleep(Duration::from_secs(2));
    let a = find(&pool.snapshot(), viewer).packets_received;
    std::thread::sleep(Duration::from_secs(1));
    let b = find(&pool.snapshot(), viewer).packets_received;
    assert_eq!(a, b, "media still arrives after the publisher left");
    let last = pool.shutdown();
    assert_eq!(find(&last, cam).state, ParticipantState::Left);
}
