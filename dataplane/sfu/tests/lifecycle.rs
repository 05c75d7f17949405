//! Lifecycle and bad input: a peer that goes silent is closed and everything it owned is
//! freed; garbage fired at the shard during a call is counted and the call keeps flowing;
//! random loss on both hops is repaired by NACK/RTX.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use shardcast_sfu::{CloseReason, CoreEvent, DropReason};
use support::World;

#[test]
fn silent_peer_is_closed_and_its_state_freed() {
    let mut w = World::new(3);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    w.run_for(Duration::from_secs(2));
    assert_eq!(w.core.stats().peers, 2);
    assert_eq!(w.core.stats().subscriptions, 2);

    // The publisher vanishes without a word (no DTLS close, no more STUN).
    w.members[alice].client.alive = false;
    let gone = w.run_until(Duration::from_secs(60), |w| w.core.stats().peers == 1);
    assert!(gone, "silent publisher is closed");
    let alice_peer = w.members[alice].peer;
    assert!(w.events.iter().any(|(_, e)| matches!(e,
        CoreEvent::PeerClosed { peer, reason: CloseReason::Disconnected } if *peer == alice_peer)));
    let unpublished = w
        .events
        .iter()
        .filter(
            |(_, e)| matches!(e, CoreEvent::TrackUnpublished { peer, .. } if *peer == alice_peer),
        )
        .count();
    assert_eq!(unpublished, 2, "both tracks unpublished");
    let s = w.core.stats();
    assert_eq!(s.tracks, 0);
    assert_eq!(
        s.subscriptions, 0,
        "the subscriber's subscriptions went with the tracks"
    );

    // And the subscriber, closed on request, leaves nothing behind.
    let bob_peer = w.members[bob].peer;
    w.core.close_peer(w.now, bob_peer);
    w.run_for(Duration::from_millis(100));
    let s = w.core.stats();
    assert_eq!(
        (s.peers, s.tracks, s.subscriptions, s.demux_entries),
        (0, 0, 0, 0)
    );
}

#[test]
fn garbage_during_a_call_is_counted_and_the_call_flows() {
    let mut w = World::new(5);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    w.run_for(Duration::from_secs(1));
    let before = w.members[bob]
        .client
        .received
        .values()
        .map(|r| r.packets)
        .sum::<u64>();

    let server = w.server;
    let stranger: SocketAddr = "10.9.9.9:1234".parse().unwrap();
    let alice_addr = w.members[alice].client.addr;
    let mut rng = fastrand::Rng::with_seed(99);
    for i in 0..2_000 {
        let len = rng.usize(0..1600);
        let mut buf: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        // Half look like RTP from the real publisher's address (forged SRTP).
        let from = if i % 2 == 0 {
            if let Some(b) = buf.first_mut() {
                *b = 0x80;
            }
            alice_addr
        } else {
            stranger
        };
        w.core.handle_datagram(w.now, from, server, &buf);
    }
    // A STUN binding request naming no peer.
    let stun = str0m::ice::StunMessage::binding_request(
        "nobody:x",
        str0m::ice::TransId::new(),
        false,
        0,
        0,
        false,
    );
    let mut buf = vec![0u8; 200];
    let n = stun
        .to_bytes(Some(b"pass"), &mut buf, |_, _| [0u8; 20])
        .unwrap_or(0);
    let unknown_before = w.core.stats().drops_for(DropReason::UnknownStunUser);
    if n > 0 {
        w.core.handle_datagram(w.now, stranger, server, &buf[..n]);
    }
    let unknown_after = w.core.stats().drops_for(DropReason::UnknownStunUser);
    w.core.handle_datagram(w.now, stranger, server, &[0x80; 5]);
    w.core
        .handle_datagram(w.now, stranger, server, &[0x80; 3000]);

    let s = w.core.stats();
    assert!(s.drops_for(DropReason::Garbage) > 0);
    assert!(s.drops_for(DropReason::Truncated) > 0);
    assert!(s.drops_for(DropReason::Oversize) > 0);
    assert!(s.drops_for(DropReason::UnknownSource) > 0);
    assert!(n > 0, "the STUN request was built");
    assert_eq!(unknown_after, unknown_before + 1, "STUN naming no peer");
    // Random bytes from the publisher's address never authenticate: our SRTP opener
    // rejects them before anything else looks at them.
    assert!(
        s.drops_for(DropReason::SrtpAuthFailed) > 0 && s.drops_for(DropReason::RtpUnknownSsrc) == 0,
        "forged SRTP is rejected by authentication: {s:?}"
    );
    assert_eq!(s.peer_panics, 0);
    assert_eq!(s.peers, 2);

    w.run_for(Duration::from_secs(2));
    let after = w.members[bob]
        .client
        .received
        .values()
        .map(|r| r.packets)
        .sum::<u64>();
    assert!(
        after > before + 100,
        "media keeps flowing: {before} → {after}"
    );
}

#[test]
fn nack_and_rtx_repair_five_percent_loss_on_both_hops() {
    let mut w = World::new(11);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    w.run_for(Duration::from_secs(1));
    w.uplink(alice).loss = 0.05;
    w.downlink(bob).loss = 0.05;
    w.run_for(Duration::from_secs(20));
    w.uplink(alice).loss = 0.0;
    w.downlink(bob).loss = 0.0;
    w.run_for(Duration::from_secs(2));

    let video = w.video(bob);
    let mut seqs = video.seqs.clone();
    seqs.sort_unstable();
    seqs.dedup();
    let span = seqs.last().unwrap() - seqs.first().unwrap() + 1;
    let delivered = seqs.len() as f64 / span as f64;
    assert!(
        w.net.lost > 100,
        "the links did lose packets: {}",
        w.net.lost
    );
    assert!(
        delivered >= 0.99,
        "delivered {:.4} of {span} video packets",
        delivered
    );
}
