//! Ending peers: a close we decide on reaches the client as a DTLS close_notify, and a peer
//! whose ICE never starts (answer given, no STUN ever arrives) is closed after the connect
//! timeout with all its state freed. Virtual time.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shardcast_sfu::{
    CloseReason, CoreConfig, CoreEvent, CreatePeer, Output, PeerId, PeerRole, RoomId, ShardCore,
    ShardId,
};
use support::World;

#[test]
fn close_peer_sends_a_dtls_close_the_client_observes() {
    let mut w = World::new(21);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    w.run_for(Duration::from_secs(1));
    assert!(w.members[bob].client.rtc.is_alive());

    let bob_peer = w.members[bob].peer;
    w.core.close_peer(w.now, bob_peer);
    // Far below any consent timeout: only an explicit close ends the client this fast.
    w.run_for(Duration::from_millis(300));
    assert!(
        !w.members[bob].client.rtc.is_alive(),
        "the client's str0m saw the close_notify and shut down"
    );
    assert!(
        w.members[alice].client.rtc.is_alive(),
        "others are untouched"
    );
    assert!(w.events.iter().any(|(_, e)| matches!(e,
        CoreEvent::PeerClosed { peer, reason: CloseReason::Requested } if *peer == bob_peer)));
}

/// A client offer (audio + video, sendonly) that carries no ICE candidates, as a WHIP
/// client that trickles them later would send.
fn offer_without_candidates(now: Instant) -> String {
    let mut rtc = str0m::Rtc::new(now);
    let mut api = rtc.sdp_api();
    api.add_media(
        str0m::media::MediaKind::Audio,
        str0m::media::Direction::SendOnly,
        None,
        None,
        None,
    );
    api.add_media(
        str0m::media::MediaKind::Video,
        str0m::media::Direction::SendOnly,
        None,
        None,
        None,
    );
    let (offer, _pending) = api.apply().expect("offer");
    let sdp = offer.to_sdp_string();
    assert!(!sdp.contains("a=candidate"), "no candidates offered");
    sdp
}

#[test]
fn a_peer_whose_ice_never_starts_is_closed_and_freed() {
    let start = Instant::now();
    let server: SocketAddr = "10.0.0.1:5000".parse().unwrap();
    let config = CoreConfig::default();
    let limit = config.connect_timeout;
    let mut core = ShardCore::new(config, ShardId(0), server, start);
    let peer = PeerId::new(ShardId(0), 1);
    core.create_peer(
        start,
        peer,
        CreatePeer {
            room: RoomId::new("room"),
            identity: "ghost".into(),
            role: PeerRole::Both,
            offer: offer_without_candidates(start),
            bind_tracks: Vec::new(),
            can_send_data: true,
            video_codecs: Vec::new(),
        },
    )
    .expect("answer");
    assert_eq!(core.stats().peers, 1);

    // Nothing ever arrives: only time passes, jumping from deadline to deadline.
    let mut now = start;
    let mut closed_at = None;
    while now < start + limit + Duration::from_secs(5) {
        let next = loop {
            match core.poll_output() {
                Output::Timeout(t) => break t,
                Output::Event(CoreEvent::PeerClosed { peer: p, reason }) if p == peer => {
                    assert_eq!(reason, CloseReason::ConnectTimeout);
                    closed_at = Some(now);
                }
                _ => {}
            }
        };
        now = next.max(now + Duration::from_millis(1));
        core.handle_timeout(now);
    }
    let closed_at = closed_at.expect("the peer was closed");
    let after = closed_at - start;
    assert!(
        after >= limit && after <= limit + Duration::from_secs(1),
        "closed {after:?} after the answer (timeout {limit:?})"
    );
    let s = core.stats();
    assert_eq!(
        (s.peers, s.tracks, s.subscriptions, s.demux_entries),
        (0, 0, 0, 0),
        "everything the peer owned is freed"
    );
    assert!(!core.has_peer(peer));
}
