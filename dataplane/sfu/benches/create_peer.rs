//! What a join costs the shard thread: `ShardCore::create_peer` (SDP offer in, answer out:
//! the peer's `Rtc`, its DTLS instance, the negotiation) and `close_peer`, for a browser-like
//! publisher offer (audio + three-layer simulcast video). For scale, the part of it that
//! used to dominate: an `Rtc` built through Shardcast's key tap (one dimpl configuration and
//! one certificate per process) against one built through str0m's own aws-lc provider (a
//! dimpl configuration, which self-tests three key exchanges, and a certificate per `Rtc`).
//!
//! Run: `cargo bench -p shardcast-sfu --bench create_peer`. Report = time per peer.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use shardcast_rtp::srtp::tap;
use shardcast_sfu::{CoreConfig, CreatePeer, PeerId, PeerRole, RoomId, ShardCore, ShardId};
use str0m::media::{Direction, MediaKind, Simulcast, SimulcastLayer};
use str0m::RtcConfig;

/// A publisher's offer as a browser makes it: audio and simulcast video (l, m, h).
fn publisher_offer() -> String {
    let mut client = RtcConfig::new().build(Instant::now());
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let mut simulcast = Simulcast::new();
    for rid in ["l", "m", "h"] {
        simulcast.add_send_layer(SimulcastLayer::new(rid));
    }
    api.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        None,
        None,
        Some(simulcast),
    );
    let (offer, _pending) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

fn create_peer(c: &mut Criterion) {
    let offer = publisher_offer();
    let now = Instant::now();
    let addr = "10.0.0.1:5000".parse().expect("address");
    let mut core = ShardCore::new(CoreConfig::default(), ShardId(0), addr, now);
    let mut next = 0u64;
    c.bench_function("create_peer + close_peer (publisher offer)", |b| {
        b.iter(|| {
            next += 1;
            let id = PeerId::new(ShardId(0), next);
            let req = CreatePeer {
                room: RoomId::new("bench"),
                identity: "bench".into(),
                role: PeerRole::Both,
                offer: offer.clone(),
                bind_tracks: Vec::new(),
                can_send_data: true,
                video_codecs: Vec::new(),
            };
            let answer = core.create_peer(now, id, req).expect("an answer");
            black_box(answer);
            core.close_peer(now, id);
        })
    });
    c.bench_function("Rtc through the key tap", |b| {
        b.iter(|| black_box(tap::build_rtc(RtcConfig::new(), now)))
    });
    c.bench_function("Rtc through str0m's aws-lc provider", |b| {
        b.iter(|| black_box(RtcConfig::new().build(now)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = create_peer
}
criterion_main!(benches);
