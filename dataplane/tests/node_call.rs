//! The media node end to end on loopback: DTLS-SRTP with shardcast-client peers, a
//! subscriber on the publisher's shard and one on another shard, both io backends; a flood
//! of random datagrams during the call; the node API's replies and events.

mod call;

use std::time::Duration;

use call::{node, Call};
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::node::{MediaNodeApi, NodeError, NodeEvent, PeerId, TrackId};

const BACKENDS: [IoBackend; 2] = [IoBackend::IoUring, IoBackend::Portable];

/// alice publishes; bob shares her shard; carol lands on the other shard (2 peers per shard).
fn three_party_call(backend: IoBackend) -> (Call, usize, usize, usize) {
    let mut c = Call::new(node(backend, 2, 2));
    let alice = c.join("room-1", "alice", 1, true);
    let bob = c.join("room-1", "bob", 2, false);
    let carol = c.join("room-1", "carol", 3, false);
    assert_eq!(
        c.peers[alice].id.shard(),
        c.peers[bob].id.shard(),
        "room affinity"
    );
    assert_ne!(
        c.peers[alice].id.shard(),
        c.peers[carol].id.shard(),
        "shard full"
    );
    let connected = c.run_until(Duration::from_secs(10), |c| {
        c.peers.iter().all(|p| p.client.is_connected()) && c.published(alice).len() == 2
    });
    assert!(
        connected,
        "{backend}: peers connect and alice's tracks are published"
    );
    c.subscribe_all(bob, alice);
    c.subscribe_all(carol, alice);
    (c, alice, bob, carol)
}

#[test]
fn audio_and_video_reach_subscribers_on_both_shards() {
    for backend in BACKENDS {
        let (mut c, alice, bob, carol) = three_party_call(backend);
        assert_eq!(c.node.backend(), backend);
        let flowing = c.run_until(Duration::from_secs(15), |c| {
            let (bv, ba) = c.received(bob, alice);
            let (cv, ca) = c.received(carol, alice);
            bv >= 30 && ba >= 50 && cv >= 30 && ca >= 50
        });
        let (bob_rx, carol_rx) = (c.received(bob, alice), c.received(carol, alice));
        assert!(
            flowing,
            "{backend}: decodable frames / audio packets: bob {bob_rx:?}, carol {carol_rx:?}"
        );
        // Carol's media crossed shards: decrypted once on alice's shard, handed over.
        let snaps = c.node.shard_snapshots();
        let alice_shard = &snaps[c.peers[alice].id.shard().0 as usize];
        let snaps_ok = c.run_until(Duration::from_secs(3), |c| {
            let s = &c.node.shard_snapshots()[c.peers[alice].id.shard().0 as usize];
            s.logic.rtp_to_shards > 0
        });
        assert!(snaps_ok, "{backend}: {:?}", alice_shard.logic);
    }
}

#[test]
fn random_datagrams_during_a_call_are_dropped_and_counted() {
    for backend in BACKENDS {
        let (mut c, alice, bob, _carol) = three_party_call(backend);
        assert!(c.run_until(Duration::from_secs(15), |c| c.received(bob, alice).0 >= 10));
        let target = c.shard_addr(alice);
        let shard = c.peers[alice].id.shard().0 as usize;
        let drops_before: u64 = c.node.shard_snapshots()[shard].logic.drops.iter().sum();
        let before = c.received(bob, alice);
        let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        for i in 0..3000 {
            // Every first-byte class (STUN, DTLS, RTP/RTCP, garbage), sizes 0..3000.
            let len = rng.usize(0..3000);
            let mut d: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if let Some(b) = d.first_mut() {
                *b = [0x00, 0x01, 0x16, 0x80, 0x90, 0xff, *b][i % 7];
            }
            let _ = attacker.send_to(&d, target);
            if i % 100 == 0 {
                c.turn();
            }
        }
        let kept_flowing = c.run_until(Duration::from_secs(10), |c| {
            let now = c.received(bob, alice);
            now.0 >= before.0 + 30 && now.1 >= before.1 + 50
        });
        assert!(kept_flowing, "{backend}: call stalled after the flood");
        let counted = c.run_until(Duration::from_secs(5), |c| {
            let drops: u64 = c.node.shard_snapshots()[shard].logic.drops.iter().sum();
            drops >= drops_before + 1000
        });
        let snap = &c.node.shard_snapshots()[shard];
        assert!(
            counted,
            "{backend}: drops {:?}, driver {:?}",
            snap.logic.drops, snap.driver
        );
        assert_eq!(snap.counters.panics, 0);
    }
}

#[test]
fn node_api_replies_and_events() {
    let mut c = Call::new(node(IoBackend::Auto, 2, 100));
    // Errors are typed.
    let bad =
        c.rt.block_on(c.node.create_peer(shardcast_dataplane::node::CreatePeer {
            room: shardcast_dataplane::node::RoomId::new("r"),
            identity: "x".into(),
            role: shardcast_dataplane::node::PeerRole::Both,
            offer: "not sdp".into(),
            bind_tracks: Vec::new(),
            can_send_data: true,
            video_codecs: Vec::new(),
        }));
    assert!(matches!(bad, Err(NodeError::BadSdp(_))), "{bad:?}");
    let ghost = PeerId(0x0000_0000_0000_0042);
    let r = c.rt.block_on(c.node.subscribe(ghost, TrackId(1)));
    assert!(r.is_err());
    c.rt.block_on(c.node.close_peer(ghost))
        .expect("closing an unknown peer is fine");

    let alice = c.join("r", "alice", 1, true);
    let bob = c.join("r", "bob", 2, false);
    assert!(c.run_until(Duration::from_secs(10), |c| {
        c.published(alice).len() == 2 && c.peers.iter().all(|p| p.client.is_connected())
    }));
    let connected: Vec<PeerId> = c
        .seen
        .iter()
        .filter_map(|e| match e {
            NodeEvent::PeerConnected { peer } => Some(*peer),
            _ => None,
        })
        .collect();
    assert!(connected.contains(&c.peers[alice].id) && connected.contains(&c.peers[bob].id));
    c.subscribe_all(bob, alice);
    assert!(c.run_until(Duration::from_secs(10), |c| c.received(bob, alice).1 >= 20));
    assert!(c
        .seen
        .iter()
        .any(|e| matches!(e, NodeEvent::Offer { peer, .. } if *peer == c.peers[bob].id)));
    let load = c.rt.block_on(c.node.load()).unwrap();
    assert_eq!(load.shards, 2);
    assert_eq!(load.rooms, 1, "one room with peers");

    let alice_id = c.peers[alice].id;
    c.rt.block_on(c.node.close_peer(alice_id)).unwrap();
    assert!(c.run_until(Duration::from_secs(5), |c| {
        c.seen
            .iter()
            .any(|e| matches!(e, NodeEvent::PeerClosed { peer, .. } if *peer == alice_id))
    }));
    assert!(c.run_until(Duration::from_secs(5), |c| {
        c.seen
            .iter()
            .any(|e| matches!(e, NodeEvent::TrackUnpublished { peer, .. } if *peer == alice_id))
    }));
    // Peers report in the load within about a second.
    assert!(c.run_until(Duration::from_secs(5), |c| {
        c.rt.block_on(c.node.load()).unwrap().peers == 1
    }));
    assert_eq!(
        c.rt.block_on(c.node.load()).unwrap().rooms,
        1,
        "bob is still in it"
    );
    // The room's last peer leaves: the node forgets the room (a node hosting rooms one after
    // another must not keep every room it ever saw).
    let bob_id = c.peers[bob].id;
    c.rt.block_on(c.node.close_peer(bob_id)).unwrap();
    assert_eq!(c.rt.block_on(c.node.load()).unwrap().rooms, 0);
    assert!(c.run_until(Duration::from_secs(5), |c| {
        c.node
            .shard_snapshots()
            .iter()
            .all(|s| s.logic.rooms == 0 && s.logic.peers == 0)
    }));
}

#[test]
fn closing_the_remote_subscriber_ends_the_cross_shard_hand_off() {
    let (mut c, alice, bob, carol) = three_party_call(IoBackend::Auto);
    let shard = c.peers[alice].id.shard().0 as usize;
    let handing_over = c.run_until(Duration::from_secs(15), |c| {
        c.received(carol, alice).0 >= 10 && c.node.shard_snapshots()[shard].logic.rtp_to_shards > 0
    });
    assert!(handing_over, "carol receives through the other shard");
    let carol_id = c.peers[carol].id;
    c.rt.block_on(c.node.close_peer(carol_id)).unwrap();
    // Two consecutive snapshots of alice's shard with the same hand-off count.
    let mut last: Option<(Option<std::time::Instant>, u64)> = None;
    let stopped = c.run_until(Duration::from_secs(10), |c| {
        let s = &c.node.shard_snapshots()[shard];
        let now = (s.at, s.logic.rtp_to_shards);
        match last {
            Some((at, n)) if at != now.0 && n == now.1 => true,
            Some((at, _)) if at == now.0 => false,
            _ => {
                last = Some(now);
                false
            }
        }
    });
    assert!(
        stopped,
        "alice's shard still hands packets to carol's shard"
    );
    // The call goes on for bob.
    let before = c.received(bob, alice);
    assert!(
        c.run_until(Duration::from_secs(10), |c| c.received(bob, alice).1
            >= before.1 + 50)
    );
}
