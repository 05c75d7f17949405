//! A subscriber that did not negotiate the publisher's video codec (a VP9-only client and a
//! VP8 publisher) gets no video from it, and is told once: `VideoPaused { reason: Codec }`
//! (signaling `video_paused` with `reason: "codec"`). Its audio plays; a subscriber that has
//! the codec is not affected.

mod support;

use std::time::Duration;

use shardcast_sfu::api::PauseReason;
use shardcast_sfu::CoreEvent;
use support::{ClientOptions, SvcMode, World};

#[test]
fn a_subscriber_without_the_publishers_codec_is_told_once_and_gets_audio() {
    let mut w = World::new(5);
    let alice = w.add_publisher("alice", &[(None, 400)]);
    let vp9_only = w.add_subscriber_with(
        "vp9-only",
        ClientOptions {
            vp9: Some(SvcMode::L1T3),
            ..Default::default()
        },
    );
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(vp9_only, alice);
    w.subscribe_all(bob, alice);
    w.run_for(Duration::from_secs(4));

    let track = w.video_track(alice);
    let told = |who: usize| {
        let peer = w.members[who].peer;
        w.events
            .iter()
            .filter(|(_, e)| matches!(e, CoreEvent::VideoPaused { peer: p, track: t, .. } if *p == peer && *t == track))
            .map(|(_, e)| e.clone())
            .collect::<Vec<_>>()
    };
    let peer = w.members[vp9_only].peer;
    assert_eq!(
        told(vp9_only),
        [CoreEvent::VideoPaused {
            peer,
            track,
            paused: true,
            reason: PauseReason::Codec
        }],
        "told once, though every packet of the track misses the codec"
    );
    let got = &w.members[vp9_only].client.received;
    assert!(
        got.values().all(|r| r.video.is_empty()),
        "no video reached it"
    );
    assert!(
        got.values().any(|r| r.audio && r.audio_packets.len() > 100),
        "its audio plays"
    );
    assert!(told(bob).is_empty(), "bob has VP8: nothing to tell");
    assert!(w.video(bob).video.len() > 50, "bob gets the video");
}
