//! Keyframe requests toward a publisher are coalesced per track and layer, whoever asks:
//! a burst of requests from other shards reaches the publisher as one PLI.

mod support;

use std::time::Duration;

use shardcast_sfu::{ShardId, ShardMessage};
use support::World;

#[test]
fn burst_of_shard_requests_sends_one_pli() {
    let mut w = World::new(13);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.run_for(Duration::from_secs(1));
    let track = w.video_track(alice);
    let before = w.core.stats().keyframe_requests_sent;

    // Twenty subscribers on three other shards ask at once.
    for i in 0..20u16 {
        w.deliver_from_shard(
            ShardId(1 + i % 3),
            ShardMessage::KeyframeRequest { track, layer: 0 },
        );
    }
    assert_eq!(w.core.stats().keyframe_requests_sent, before + 1);

    // A layer the track does not have is never requested.
    w.deliver_from_shard(
        ShardId(1),
        ShardMessage::KeyframeRequest { track, layer: 7 },
    );
    assert_eq!(w.core.stats().keyframe_requests_sent, before + 1);

    // After the interval the next request goes out again.
    w.run_for(Duration::from_millis(400));
    w.deliver_from_shard(
        ShardId(2),
        ShardMessage::KeyframeRequest { track, layer: 0 },
    );
    assert_eq!(w.core.stats().keyframe_requests_sent, before + 2);
}
