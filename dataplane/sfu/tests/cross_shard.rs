//! Cross-shard hand-off between two cores: the publisher's shard decrypts once and hands
//! packets over; the subscriber's shard re-encrypts; keyframe requests travel back.

mod support;

use std::time::{Duration, Instant};

use shardcast_sfu::{CoreConfig, ShardId};
use support::World;

#[test]
fn subscriber_on_another_shard_receives_audio_and_video() {
    let start = Instant::now();
    let mut a = World::with_shard(
        1,
        CoreConfig::default(),
        ShardId(0),
        start,
        "10.0.0.1:5000".parse().unwrap(),
    );
    let mut b = World::with_shard(
        2,
        CoreConfig::default(),
        ShardId(1),
        start,
        "10.0.0.2:5001".parse().unwrap(),
    );
    let alice = a.add_publisher("alice", &[(None, 300)]);
    let bob = b.add_subscriber("bob");
    let step = Duration::from_millis(10);
    let lockstep = |a: &mut World, b: &mut World, dur: Duration| {
        let end = a.now + dur;
        while a.now < end {
            a.run_for(step);
            b.run_for(step);
            for (shard, msg) in std::mem::take(&mut a.to_shards) {
                assert_eq!(shard, ShardId(1));
                b.deliver_from_shard(ShardId(0), msg);
            }
            for (shard, msg) in std::mem::take(&mut b.to_shards) {
                assert_eq!(shard, ShardId(0));
                a.deliver_from_shard(ShardId(1), msg);
            }
        }
    };
    lockstep(&mut a, &mut b, Duration::from_secs(3));
    assert!(a.all_connected() && b.all_connected());

    let bob_peer = b.members[bob].peer;
    for info in a.published(alice) {
        assert_eq!(info.track.shard(), ShardId(0));
        a.core.add_remote_fanout(info.track, ShardId(1));
        b.core
            .subscribe(b.now, bob_peer, info)
            .expect("subscribe to a remote track");
    }
    lockstep(&mut a, &mut b, Duration::from_secs(4));

    let received = &b.members[bob].client.received;
    let audio = received
        .values()
        .find(|r| r.audio)
        .expect("audio crosses shards");
    let video = received
        .values()
        .find(|r| !r.layers.is_empty())
        .expect("video crosses shards");
    assert!(audio.packets > 100, "audio packets: {}", audio.packets);
    assert!(video.packets > 60, "video packets: {}", video.packets);
    // Decrypted once on the publisher's shard, forwarded by the subscriber's shard.
    assert!(a.core.stats().rtp_to_shards > 0);
    assert_eq!(a.core.stats().rtp_forwarded, 0);
    assert!(b.core.stats().rtp_forwarded >= audio.packets + video.packets);
    // The new subscriber's keyframe request reached the publisher across shards.
    assert!(a.members[alice].client.keyframe_requests > 0);
}
