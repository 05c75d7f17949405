//! A client's SDP offer through `ShardCore::create_peer`, the path a WHIP POST body or a
//! WebSocket `offer` takes to the media node (after the control plane checked it is UTF-8
//! text starting with `v=0`). Malformed SDP must be a `CoreError`, never a panic; an offer
//! that is accepted must get an answer str0m can parse back, and closing the peer must free
//! it. The input's length picks the role (a conference peer, WHIP, viewer, WHEP), so every
//! role sees every offer shape over a run.
#![no_main]

use std::cell::RefCell;
use std::time::Instant;

use shardcast_sfu::{CoreConfig, CreatePeer, Output, PeerId, PeerRole, RoomId, ShardCore, ShardId};
use str0m::change::SdpAnswer;

const ROLES: [PeerRole; 4] = [
    PeerRole::Both,
    PeerRole::Publish,
    PeerRole::Subscribe,
    PeerRole::Play,
];

struct Node {
    core: ShardCore,
    now: Instant,
    next: u64,
}

thread_local! {
    static NODE: RefCell<Option<Node>> = const { RefCell::new(None) };
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(offer) = std::str::from_utf8(data) else {
        return;
    };
    NODE.with(|cell| {
        let mut slot = cell.borrow_mut();
        let node = slot.get_or_insert_with(|| {
            let now = Instant::now();
            let addr = "10.0.0.1:5000".parse().expect("address");
            Node {
                core: ShardCore::new(CoreConfig::default(), ShardId(0), addr, now),
                now,
                next: 1,
            }
        });
        node.next += 1;
        let id = PeerId::new(ShardId(0), node.next);
        let req = CreatePeer {
            room: RoomId::new("fuzz"),
            identity: "fuzzer".into(),
            role: ROLES[data.len() % ROLES.len()],
            offer: offer.to_string(),
            bind_tracks: Vec::new(),
            can_send_data: true,
            video_codecs: Vec::new(),
        };
        if let Ok(answer) = node.core.create_peer(node.now, id, req) {
            if let Err(e) = SdpAnswer::from_sdp_string(&answer) {
                panic!("our answer does not parse: {e}\n{answer}");
            }
            node.core.close_peer(node.now, id);
        }
        while !matches!(node.core.poll_output(), Output::Timeout(_)) {}
        node.core.drain_datagrams(|_, _| {});
        assert_eq!(
            node.core.stats().peers,
            0,
            "a closed or refused peer is gone"
        );
    });
});
