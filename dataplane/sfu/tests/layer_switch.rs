//! Layer switches driven by the subscriber's preference (highest layer, hidden = paused) on a
//! clean network: every switch waits for a keyframe of the new layer, and the viewer sees
//! one stream throughout — one SSRC, gap-free sequence numbers, timestamps that never go
//! back, and VP8 picture ids that go up by one per frame across every switch and resume.

mod support;

use std::time::Duration;

use shardcast_sfu::LayerPreference;
use support::stream::continuous;
use support::World;

const LAYERS: [(Option<&str>, u64); 3] = [(Some("l"), 150), (Some("m"), 500), (Some("h"), 1_500)];

#[test]
fn preference_switches_and_pause_keep_one_continuous_stream() {
    let mut w = World::new(21);
    let alice = w.add_publisher("alice", &LAYERS);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    let track = w.video_track(alice);
    let peer = w.members[bob].peer;
    let prefer = |w: &mut World, max_layer, visible| {
        let now = w.now;
        w.core
            .set_preference(now, peer, track, LayerPreference { max_layer, visible })
            .expect("set_preference");
    };
    // Unconstrained link: the viewer climbs to the top layer.
    let top = w.run_until(Duration::from_secs(10), |w| {
        w.core.forwarded_layer(peer, track) == Some(2)
    });
    assert!(top, "reaches the top layer");

    // Down by preference: within a keyframe interval, not a bandwidth hold.
    for (max, want) in [(Some(0), 0u8), (Some(1), 1), (None, 2)] {
        prefer(&mut w, max, true);
        let ok = w.run_until(Duration::from_secs(3), |w| {
            w.core.forwarded_layer(peer, track) == Some(want)
        });
        assert!(ok, "preference {max:?} -> layer {want}");
        w.run_for(Duration::from_millis(500));
    }

    // Hidden: nothing is forwarded; visible again: it resumes on a keyframe.
    prefer(&mut w, None, false);
    w.run_for(Duration::from_millis(200));
    assert_eq!(w.core.forwarded_layer(peer, track), None);
    let paused = w.video(bob).packets;
    w.run_for(Duration::from_secs(1));
    assert_eq!(w.video(bob).packets, paused, "hidden means paused");
    prefer(&mut w, Some(1), true);
    let resumed = w.run_until(Duration::from_secs(3), |w| {
        w.core.forwarded_layer(peer, track) == Some(1)
    });
    assert!(resumed, "resumes on layer 1");
    w.run_for(Duration::from_secs(1));

    let v = w.video(bob).clone();
    assert_eq!(v.ssrcs.len(), 1, "one SSRC whatever the layer");
    // Every layer the viewer was moved to arrived, each first on a keyframe start.
    let mut switches = Vec::new();
    for pair in v.layers.windows(2) {
        if pair[1].1 != pair[0].1 {
            switches.push(pair[1]);
        }
    }
    assert!(switches.len() >= 3, "switches seen: {switches:?}");
    for s in &switches {
        assert!(
            v.keyframe_starts.contains(s),
            "switch to layer {} does not start on a keyframe",
            s.1
        );
    }
    assert_eq!(continuous(&v.video), Ok(()));
}
