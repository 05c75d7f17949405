//! Active speaker: two publishers in one room send audio with RFC 6464 levels; the core
//! names the louder one, follows when the other takes over, and moves on when the speaker
//! leaves.

mod support;

use std::time::Duration;

use shardcast_sfu::{CoreEvent, PeerId};
use support::World;

/// The ActiveSpeaker events so far, in order.
fn speakers(w: &World) -> Vec<PeerId> {
    w.events
        .iter()
        .filter_map(|(_, e)| match e {
            CoreEvent::ActiveSpeaker { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

#[test]
fn louder_publisher_is_the_active_speaker() {
    let mut w = World::new(11);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    let bob = w.add_publisher("bob", &[(None, 300)]);
    // Levels are -dBov: smaller is louder.
    w.members[alice].client.audio_level = 20;
    w.members[bob].client.audio_level = 60;
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.run_for(Duration::from_secs(2));
    let (a, b) = (w.members[alice].peer, w.members[bob].peer);
    assert_eq!(speakers(&w), vec![a], "alice is louder");

    // Bob starts talking loudly, alice quietens: bob takes over, once.
    w.members[alice].client.audio_level = 60;
    w.members[bob].client.audio_level = 10;
    w.run_for(Duration::from_secs(2));
    assert_eq!(speakers(&w), vec![a, b]);

    // Bob leaves: the remaining talker becomes the speaker again.
    w.core.close_peer(w.now, b);
    w.run_for(Duration::from_secs(1));
    assert_eq!(speakers(&w), vec![a, b, a]);
}
