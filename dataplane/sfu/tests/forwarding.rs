//! One publisher → one subscriber on a simulated network: audio and VP8 arrive, one SSRC
//! per track, sequence numbers without gaps, keyframe first.

mod support;

use std::time::Duration;

use support::World;

#[test]
fn audio_and_video_reach_one_subscriber() {
    let mut w = World::new(1);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    let bob = w.add_subscriber("bob");
    assert!(
        w.run_until(Duration::from_secs(5), |w| w.all_connected()),
        "ICE/DTLS must connect"
    );
    w.subscribe_all(bob, alice);
    w.run_for(Duration::from_secs(5));

    let received = &w.members[bob].client.received;
    assert_eq!(
        received.len(),
        2,
        "one m-line each for audio and video: {received:?}"
    );
    let audio = received.values().find(|r| r.audio).expect("audio arrives");
    let video = received
        .values()
        .find(|r| !r.layers.is_empty())
        .expect("video arrives");
    // ~50 audio packets/s and ~30 frames/s for most of 5 s.
    assert!(audio.packets > 150, "audio packets: {}", audio.packets);
    assert!(video.packets > 90, "video packets: {}", video.packets);
    for r in [audio, video] {
        assert_eq!(r.ssrcs.len(), 1, "one SSRC per track");
        assert_gap_free(&r.seqs);
    }
    let stats = w.core.stats();
    assert!(stats.rtp_forwarded >= audio.packets + video.packets);
    assert_eq!(stats.peers, 2);
    assert_eq!(stats.tracks, 2);
    assert_eq!(stats.subscriptions, 2);
}

/// Sorted and deduplicated, the sequence numbers form one run without holes.
pub fn assert_gap_free(seqs: &[u64]) {
    let mut s = seqs.to_vec();
    s.sort_unstable();
    s.dedup();
    for pair in s.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "gap in sequence numbers after {}",
            pair[0]
        );
    }
}
