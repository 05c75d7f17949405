//! Liveness (docs/ARCHITECTURE.md, "Liveness"): the server's ICE agent checks consent itself
//! (RFC 7675), so a client that never sends a binding request of its own while media flows
//! stays connected for as long as it answers; a client that goes silent is closed within the
//! consent timeout with everything it owned freed; and binding requests with wrong credentials
//! get no answer, are counted, and keep nobody alive. Virtual time, str0m test clients whose
//! own consent checks are turned off once connected.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use shardcast_sfu::{CloseReason, CoreEvent, DropReason, PeerId};
use support::World;

/// When a client that goes silent is closed, counted from its last datagram: the server
/// checks every 3 s, the first unanswered check goes out within 3 s, and str0m gives up
/// 21.5 s after it (9 tries, 250 ms doubling to 3 s, then 3 s more). So within 24.5 s,
/// inside RFC 7675's 30 s after the last answered check (at most 3 s earlier).
const CLOSED_AFTER: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(21_500)..=Duration::from_millis(24_600);

fn closes(w: &World) -> Vec<(Duration, PeerId, CloseReason)> {
    w.events
        .iter()
        .filter_map(|(at, e)| match e {
            CoreEvent::PeerClosed { peer, reason } => Some((*at - w.start, *peer, *reason)),
            _ => None,
        })
        .collect()
}

/// A publisher and a subscriber, both connected, media flowing, neither sending consent
/// checks from here on.
fn call_without_client_checks(seed: u64) -> (World, usize, usize) {
    let mut w = World::new(seed);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    let bob = w.add_subscriber("bob");
    for m in &mut w.members {
        m.client.consent_checks = false;
    }
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    w.run_for(Duration::from_secs(1));
    assert!(w.received_packets(bob) > 0, "media flows");
    (w, alice, bob)
}

#[test]
fn clients_that_send_no_consent_checks_stay_connected_while_they_answer_ours() {
    let (mut w, alice, bob) = call_without_client_checks(31);
    let mut last = w.received_packets(bob);
    // Four times longer than ICE-lite's 15 s without a binding request.
    for _ in 0..6 {
        w.run_for(Duration::from_secs(10));
        let now = w.received_packets(bob);
        assert!(now > last + 100, "media kept flowing: {last} -> {now}");
        last = now;
    }
    assert_eq!(closes(&w), [], "nobody was closed");
    assert_eq!(w.core.stats().peers, 2);
    for idx in [alice, bob] {
        let c = &w.members[idx].client;
        assert!(c.rtc.is_alive(), "{}'s own agent kept the pair", c.name);
        // The client really wanted to check (str0m checks every few seconds), so only the
        // server's checks kept both sides alive.
        assert!(
            c.checks_suppressed >= 10,
            "{}: {}",
            c.name,
            c.checks_suppressed
        );
    }
}

#[test]
fn a_silent_client_is_closed_within_the_consent_timeout_and_freed() {
    let (mut w, alice, bob) = call_without_client_checks(32);
    w.run_for(Duration::from_secs(20));
    let silent_at = w.elapsed();
    // No DTLS close, no RTCP BYE, nothing: the client vanishes.
    w.members[alice].client.alive = false;
    let alice_peer = w.members[alice].peer;
    let gone = w.run_until(Duration::from_secs(60), |w| !w.core.has_peer(alice_peer));
    assert!(gone, "the silent publisher is closed");
    let (at, _, reason) = closes(&w)
        .into_iter()
        .find(|(_, p, _)| *p == alice_peer)
        .expect("PeerClosed");
    assert_eq!(reason, CloseReason::Disconnected);
    let after = at - silent_at;
    // Not on the first lost check (a short outage is survived), never past RFC 7675's 30 s.
    assert!(
        CLOSED_AFTER.contains(&after),
        "closed {after:?} after it went silent, expected {CLOSED_AFTER:?}"
    );
    let s = w.core.stats();
    assert_eq!((s.peers, s.tracks, s.subscriptions), (1, 0, 0), "{s:?}");
    assert!(w.core.has_peer(w.members[bob].peer), "the subscriber stays");
}

/// A binding request as a client would send it, `USERNAME = server_ufrag:client_ufrag`,
/// with a MESSAGE-INTEGRITY that is not keyed by the server's password.
fn forged_check(username: &str) -> Vec<u8> {
    let msg = str0m::ice::StunMessage::binding_request(
        username,
        str0m::ice::TransId::new(),
        true,
        7,
        0x6e00_01ff,
        true,
    );
    let mut buf = vec![0u8; 300];
    let n = msg
        .to_bytes(Some(b"not-the-password"), &mut buf, |_, _| [0x5a; 20])
        .expect("serialize");
    buf.truncate(n);
    buf
}

fn ufrag_in(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .expect("a=ice-ufrag")
        .to_string()
}

#[test]
fn forged_consent_checks_get_no_answer_are_counted_and_keep_nobody_alive() {
    let (mut w, alice, _bob) = call_without_client_checks(33);
    let server = w.server;
    let alice_addr = w.members[alice].client.addr;
    let alice_peer = w.members[alice].peer;
    let server_ufrag = ufrag_in(w.members[alice].client.answer.as_deref().unwrap());
    let client_ufrag = w.members[alice]
        .client
        .rtc
        .direct_api()
        .local_ice_credentials()
        .ufrag;
    let victim = format!("{server_ufrag}:{client_ufrag}");
    let stranger: SocketAddr = "10.9.9.9:4000".parse().unwrap();

    w.members[alice].client.alive = false;
    let silent = w.now;
    let before = w.core.stats().clone();
    let answered_before = w
        .net
        .stun_responses_to
        .get(&alice_addr)
        .copied()
        .unwrap_or(0);
    let mut sent = 0u64;
    // Every 500 ms, for as long as alice's peer exists (at most a minute): her own
    // credentials with a wrong password, from her address and from a stranger's, and a
    // ufrag nobody has.
    while w.core.has_peer(alice_peer) && w.now - silent < Duration::from_secs(60) {
        let now = w.now;
        w.core
            .handle_datagram(now, alice_addr, server, &forged_check(&victim));
        w.core
            .handle_datagram(now, stranger, server, &forged_check(&victim));
        w.core
            .handle_datagram(now, stranger, server, &forged_check("nobody:x"));
        sent += 1;
        w.run_for(Duration::from_millis(500));
    }
    assert!(
        !w.core.has_peer(alice_peer),
        "the forged checks kept alice alive"
    );
    let lived = w.now - silent;
    assert!(
        lived <= *CLOSED_AFTER.end() + Duration::from_millis(500),
        "{lived:?}"
    );

    let s = w.core.stats();
    let grew = |r: DropReason| s.drops_for(r) - before.drops_for(r);
    assert_eq!(grew(DropReason::StunAuthFailed), 2 * sent, "{s:?}");
    assert_eq!(grew(DropReason::UnknownStunUser), sent, "{s:?}");
    assert_eq!(
        s.demux_entries,
        before.demux_entries - 2,
        "no tuple learned"
    );
    assert_eq!(
        w.net.sent_to.get(&stranger),
        None,
        "nothing answers the stranger"
    );
    let answered = w
        .net
        .stun_responses_to
        .get(&alice_addr)
        .copied()
        .unwrap_or(0);
    assert_eq!(
        answered, answered_before,
        "no response to a forged check from alice's address"
    );
}

/// Offers without usable candidates: none at all (a client that trickles them, which WHIP
/// without PATCH never delivers), or only an mDNS name we cannot resolve. The client's own
/// check then teaches the server's agent a peer-reflexive candidate, which it checks itself,
/// and the call stays up on the server's checks alone.
#[test]
fn a_peer_reflexive_pair_is_checked_and_kept_when_the_offer_names_no_usable_candidate() {
    let no_candidates = |sdp: String| -> String {
        sdp.split_inclusive('\n')
            .filter(|l| !l.starts_with("a=candidate:"))
            .collect()
    };
    let mdns_only = |sdp: String| -> String {
        sdp.split_inclusive('\n')
            .map(|l| {
                if l.starts_with("a=candidate:") {
                    l.replace("10.0.1.1", "0d6c8e44-5b27-4b8e-9a1e-3f5d2c7e9a10.local")
                } else {
                    l.to_string()
                }
            })
            .collect()
    };
    for (seed, edit) in [
        (41, &no_candidates as &dyn Fn(String) -> String),
        (42, &mdns_only),
    ] {
        let mut w = World::new(seed);
        let alice = w.add_publisher_edited("alice", &[(None, 300)], edit);
        let bob = w.add_subscriber("bob");
        for m in &mut w.members {
            m.client.consent_checks = false;
        }
        assert!(
            w.run_until(Duration::from_secs(5), |w| w.all_connected()),
            "seed {seed}: connects on a peer-reflexive pair"
        );
        w.subscribe_all(bob, alice);
        w.run_for(Duration::from_secs(60));
        assert_eq!(closes(&w), [], "seed {seed}: nobody was closed");
        let before = w.received_packets(bob);
        w.run_for(Duration::from_secs(5));
        assert!(
            w.received_packets(bob) > before + 100,
            "seed {seed}: media flows"
        );
    }
}
