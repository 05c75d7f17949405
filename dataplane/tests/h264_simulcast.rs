//! H264 simulcast through a real media node (loopback, DTLS-SRTP): a publisher sends three
//! H264 layers (packetization-mode 1: single NAL units and FU-A); a subscriber asked for the
//! low layer gets it, then switched to the middle one gets that — each switch on an IDR of
//! the target layer (the new layer's frames are decodable from the switch on), one SSRC.

mod call;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use call::{node, Call, Peer};
use shardcast_client::{Client, ClientConfig, TimeBase, VideoCodec, VideoSpec};
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::node::{
    CreatePeer, LayerPreference, MediaNodeApi, PeerRole, RoomId, TrackId,
};

fn video(c: &Call, sub: usize) -> Option<shardcast_client::TrackStats> {
    c.peers[sub].client.stats().video_tracks().next().cloned()
}

fn prefer(c: &mut Call, sub: usize, track: TrackId, layer: u8) {
    let peer = c.peers[sub].id;
    let pref = LayerPreference {
        max_layer: Some(layer),
        visible: true,
    };
    c.rt.block_on(c.node.set_preference(peer, track, pref))
        .expect("set_preference");
}

#[test]
fn h264_simulcast_layers_switch_on_keyframes() {
    let mut c = Call::new(node(IoBackend::Portable, 1, 10));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let now = Instant::now();
    let config = ClientConfig::new("alice", 1, TimeBase::real())
        .with_audio()
        .with_video(VideoSpec::simulcast3().with_codec(VideoCodec::H264));
    let mut client = Client::new(config, socket.local_addr().unwrap(), now).unwrap();
    let offer = client.create_offer(now).unwrap();
    assert!(offer.contains("H264"), "the publisher offers H264");
    let created =
        c.rt.block_on(c.node.create_peer(CreatePeer {
            room: RoomId::new("room"),
            identity: "alice".into(),
            role: PeerRole::Both,
            offer,
            bind_tracks: Vec::new(),
            can_send_data: true,
            video_codecs: Vec::new(),
        }))
        .expect("create_peer");
    client
        .accept_answer(Instant::now(), &created.answer)
        .unwrap();
    c.peers.push(Peer {
        id: created.peer,
        client,
        link: call::Link::Udp(socket),
    });
    let alice = c.peers.len() - 1;
    let bob = c.join("room", "bob", 2, false);
    let ready = c.run_until(Duration::from_secs(10), |c| {
        c.peers.iter().all(|p| p.client.is_connected()) && c.published(alice).len() == 2
    });
    assert!(ready, "peers connect, alice's tracks are published");
    c.subscribe_all(bob, alice);
    let track = c
        .seen
        .iter()
        .find_map(|e| match e {
            shardcast_dataplane::node::NodeEvent::TrackPublished {
                track, kind, rids, ..
            } if *kind == shardcast_dataplane::node::MediaKind::Video => {
                assert_eq!(rids.len(), 3, "three simulcast layers");
                Some(*track)
            }
            _ => None,
        })
        .expect("video track");

    // Low layer first.
    prefer(&mut c, bob, track, 0);
    let low = c.run_until(Duration::from_secs(15), |c| {
        video(c, bob).is_some_and(|v| v.current_layer == Some(0) && v.decodable_per_layer[0] >= 30)
    });
    assert!(low, "bob decodes layer 0: {:?}", video(&c, bob));

    // Up to the middle layer: the switch waits for an IDR on layer 1.
    let before = video(&c, bob).unwrap();
    prefer(&mut c, bob, track, 1);
    let mid = c.run_until(Duration::from_secs(15), |c| {
        video(c, bob).is_some_and(|v| v.current_layer == Some(1) && v.decodable_per_layer[1] >= 30)
    });
    let v = video(&c, bob).unwrap();
    assert!(mid, "bob decodes layer 1 after the switch: {v:?}");
    assert_eq!(v.ssrcs.len(), 1, "one SSRC across the switch");
    assert!(
        v.layer_switches > before.layer_switches,
        "a switch happened"
    );
    assert!(
        v.keyframes > before.keyframes,
        "the switch landed on a keyframe"
    );
    assert_eq!(
        v.frames_incomplete, 0,
        "no partial frame around the switch: {v:?}"
    );
}
