//! Layer choice for subscribers on another shard than the publisher: the subscriber shard's
//! own `LayerMonitor` (fed by the hand-off) and each subscription's selector pick the layer;
//! keyframe requests for a switch travel back to the publisher's shard. The publisher's
//! padding-only packets (never forwarded) cross too, so remote subscribers see no gap.

mod support;

use std::time::{Duration, Instant};

use shardcast_sfu::{CoreConfig, LayerPreference, ShardId, ShardMessage};
use support::stream::continuous;
use support::World;

const LAYERS: [(Option<&str>, u64); 3] = [(Some("l"), 150), (Some("m"), 500), (Some("h"), 1_500)];

/// Makes the hand-off look like a publisher that pads: after every 40th video packet of a
/// layer, a padding-only packet takes the next sequence number of that layer.
#[derive(Default)]
struct Padder {
    count: [u64; 3],
    shift: [u64; 3],
    sent: u64,
}

impl Padder {
    fn deliver(&mut self, b: &mut World, msg: ShardMessage) {
        let ShardMessage::Media(mut m) = msg else {
            return b.deliver_from_shard(ShardId(0), msg);
        };
        let l = usize::from(m.layer);
        if m.payload.last().is_none_or(|t| !(0xA0..0xA3).contains(t)) || l >= 3 {
            return b.deliver_from_shard(ShardId(0), ShardMessage::Media(m));
        }
        m.seq += self.shift[l];
        let mut pad = m.clone();
        b.deliver_from_shard(ShardId(0), ShardMessage::Media(m));
        self.count[l] += 1;
        if self.count[l].is_multiple_of(40) {
            pad.seq += 1;
            pad.keyframe = false;
            pad.payload = Vec::new().into();
            self.shift[l] += 1;
            self.sent += 1;
            b.deliver_from_shard(ShardId(0), ShardMessage::Media(pad));
        }
    }
}

fn lockstep(a: &mut World, b: &mut World, pad: &mut Padder, dur: Duration) {
    let step = Duration::from_millis(10);
    let end = a.now + dur;
    while a.now < end {
        a.run_for(step);
        b.run_for(step);
        for (_, msg) in std::mem::take(&mut a.to_shards) {
            pad.deliver(b, msg);
        }
        for (_, msg) in std::mem::take(&mut b.to_shards) {
            a.deliver_from_shard(ShardId(1), msg);
        }
    }
}

#[test]
fn remote_subscribers_get_the_layer_their_downlink_fits() {
    let start = Instant::now();
    let mut a = World::with_shard(
        3,
        CoreConfig::default(),
        ShardId(0),
        start,
        "10.0.0.1:5000".parse().unwrap(),
    );
    let mut b = World::with_shard(
        4,
        CoreConfig::default(),
        ShardId(1),
        start,
        "10.0.0.2:5001".parse().unwrap(),
    );
    let mut pad = Padder::default();
    let alice = a.add_publisher("alice", &LAYERS);
    let thin = b.add_subscriber("thin");
    let wide = b.add_subscriber("wide");
    b.downlink(thin).rate_bps = Some(400_000);
    b.downlink(wide).rate_bps = Some(5_000_000);
    lockstep(&mut a, &mut b, &mut pad, Duration::from_secs(3));
    assert!(a.all_connected() && b.all_connected());

    let track = a.video_track(alice);
    let infos = a.published(alice);
    for info in &infos {
        a.core.add_remote_fanout(info.track, ShardId(1));
    }
    for s in [thin, wide] {
        let peer = b.members[s].peer;
        for info in &infos {
            b.core
                .subscribe(b.now, peer, info.clone())
                .expect("subscribe to a remote track");
        }
    }
    lockstep(&mut a, &mut b, &mut pad, Duration::from_secs(10));
    let (thin_peer, wide_peer) = (b.members[thin].peer, b.members[wide].peer);
    assert_eq!(b.core.forwarded_layer(thin_peer, track), Some(0));
    assert_eq!(b.core.forwarded_layer(wide_peer, track), Some(2));

    // A preference on the subscriber's shard moves it down on the next keyframe of layer 1,
    // which the publisher's shard is asked for.
    let asked = a.members[alice].client.keyframe_requests;
    b.core
        .set_preference(
            b.now,
            wide_peer,
            track,
            LayerPreference {
                max_layer: Some(1),
                visible: true,
            },
        )
        .expect("set_preference");
    lockstep(&mut a, &mut b, &mut pad, Duration::from_secs(2));
    assert_eq!(b.core.forwarded_layer(wide_peer, track), Some(1));
    assert!(a.members[alice].client.keyframe_requests > asked);
    // Decrypted once on the publisher's shard; everything forwarded came from shard 1.
    assert_eq!(a.core.stats().rtp_forwarded, 0);

    assert!(pad.sent > 20, "padding injected: {}", pad.sent);
    for s in [thin, wide] {
        let v = b.video(s);
        assert_eq!(v.ssrcs.len(), 1);
        assert_eq!(continuous(&v.video), Ok(()), "viewer {s}'s stream");
    }
    let v = b.video(wide);
    let last_second = b.now - Duration::from_millis(500);
    assert!(v
        .layers
        .iter()
        .filter(|(at, _)| *at >= last_second)
        .all(|(_, l)| *l == 1));
}
