//! WHEP across shards on loopback with real DTLS-SRTP: a receive-only viewer whose tracks are
//! bound in its answer (no server offer) lands on another shard than the publisher and still
//! gets decodable video and audio, handed over once per packet from the publisher's shard.

mod call;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use call::{node, Call, Peer};
use shardcast_client::{Client, ClientConfig, TimeBase};
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::node::{CreatePeer, MediaNodeApi, PeerRole, RoomId};

#[test]
fn a_whep_viewer_on_another_shard_gets_the_bound_tracks() {
    for backend in [IoBackend::IoUring, IoBackend::Portable] {
        // One peer per shard: the viewer cannot share the publisher's shard.
        let mut c = Call::new(node(backend, 2, 1));
        let alice = c.join("live", "alice", 1, true);
        let published = c.run_until(Duration::from_secs(10), |c| {
            c.peers[alice].client.is_connected() && c.published(alice).len() == 2
        });
        assert!(published, "{backend}: alice connects and publishes");

        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let now = Instant::now();
        let config = ClientConfig::new("viewer", 9, TimeBase::real()).with_receive_offer();
        let mut viewer = Client::new(config, socket.local_addr().unwrap(), now).unwrap();
        let offer = viewer.create_offer(now).unwrap();
        let created =
            c.rt.block_on(c.node.create_peer(CreatePeer {
                room: RoomId::new("live"),
                identity: "viewer".into(),
                role: PeerRole::Subscribe,
                offer,
                bind_tracks: c.published(alice),
                can_send_data: true,
                video_codecs: Vec::new(),
            }))
            .expect("create_peer");
        assert_ne!(
            created.peer.shard(),
            c.peers[alice].id.shard(),
            "{backend}: the viewer is on the other shard"
        );
        assert_eq!(
            created.answer.matches("a=sendonly").count(),
            2,
            "{backend}: audio and video bound in the answer:\n{}",
            created.answer
        );
        viewer
            .accept_answer(Instant::now(), &created.answer)
            .unwrap();
        c.peers.push(Peer {
            id: created.peer,
            client: viewer,
            link: call::Link::Udp(socket),
        });
        let v = c.peers.len() - 1;

        let flowing = c.run_until(Duration::from_secs(20), |c| {
            let (video, audio) = c.received(v, alice);
            video >= 10 && audio >= 25
        });
        assert!(
            flowing,
            "{backend}: decodable frames / audio packets {:?}",
            c.received(v, alice)
        );
        let offers = c
            .seen
            .iter()
            .filter(|e| matches!(e, shardcast_dataplane::node::NodeEvent::Offer { peer, .. } if *peer == created.peer))
            .count();
        assert_eq!(offers, 0, "{backend}: no server offer to the viewer");
        let handed_over = c.run_until(Duration::from_secs(3), |c| {
            let s = &c.node.shard_snapshots()[c.peers[alice].id.shard().0 as usize];
            s.logic.rtp_to_shards > 0
        });
        assert!(handed_over, "{backend}: media crossed shards");
    }
}
