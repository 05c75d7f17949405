//! A subscriber whose network changes (new address) offers an ICE restart, as the demo page
//! does when its socket comes back and a WHIP client does over PATCH: the server's answer
//! has new ICE credentials, the client's checks from its new address name them, and media
//! moves to the new address without a new peer. Virtual time, str0m test clients.

mod support;

use std::time::Duration;

use shardcast_sfu::CoreEvent;
use support::World;

#[test]
fn media_follows_a_subscriber_that_moves_and_restarts_ice() {
    let mut w = World::new(41);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    w.run_for(Duration::from_secs(2));
    let before = w.received_packets(bob);
    assert!(before > 50, "media before the move: {before}");

    let old_ufrag = answer_ufrag(w.members[bob].client.answer.as_deref().unwrap_or(""));
    let offer = w.members[bob]
        .client
        .move_and_restart_ice("10.0.9.9:4000".parse().unwrap());
    let peer = w.members[bob].peer;
    let answer = w.core.renegotiate(w.now, peer, &offer).expect("re-offer");
    let new_ufrag = answer_ufrag(&answer);
    assert_ne!(
        new_ufrag, old_ufrag,
        "an ICE restart answers new credentials"
    );
    w.members[bob].client.accept_answer(&answer);
    w.run_for(Duration::from_secs(3));

    let after = w.received_packets(bob) - before;
    assert!(
        after > 100,
        "media at the new address: {after} packets in 3 s"
    );
    let closed = w
        .events
        .iter()
        .any(|(_, e)| matches!(e, CoreEvent::PeerClosed { peer: p, .. } if *p == peer));
    assert!(!closed, "the same peer carries on");
}

fn answer_ufrag(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .unwrap_or_default()
        .to_string()
}

/// Trickled candidates (WebSocket `candidate`, WHIP/WHEP PATCH) reach the peer's ICE agent:
/// well-formed ones are added, a malformed one adds none and says which, an unknown peer is
/// an error.
#[test]
fn trickled_candidates_are_parsed_before_any_is_added() {
    let mut w = World::new(43);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    let peer = w.members[bob].peer;
    let good = "candidate:7 1 udp 2122260223 10.0.7.7 7000 typ host".to_string();
    w.core
        .add_remote_candidates(w.now, peer, std::slice::from_ref(&good))
        .expect("a well-formed candidate");
    w.core
        .add_remote_candidates(w.now, peer, &[format!("a={good}")])
        .expect("the a= prefix is accepted too");
    let err = w
        .core
        .add_remote_candidates(w.now, peer, &[good.clone(), "candidate:garbage".into()])
        .unwrap_err();
    assert!(err.to_string().contains("candidate:garbage"), "{err}");
    let unknown = shardcast_sfu::PeerId(u64::MAX);
    assert!(w
        .core
        .add_remote_candidates(w.now, unknown, &[good])
        .is_err());
    // The call goes on.
    w.run_for(Duration::from_secs(1));
    assert!(w.all_connected());
}
