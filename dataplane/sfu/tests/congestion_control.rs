//! Downlink congestion control on (the default) and off (`bwe_initial_kbps = 0`, the server's
//! `media.congestion_control = false`), side by side on the same clean network. On: a
//! downlink estimate exists and str0m's pacer releases one packet per timeout, so each
//! packet after a frame's first waits for another wake-up of the core (in virtual time the
//! frame spreads by microseconds; on a loaded shard each of those wake-ups waits behind the
//! whole fan-out). Off: no estimate, every packet of a frame leaves in the turn it arrived,
//! the core wakes only for its own timers, and the viewer gets the top layer its preference
//! allows.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shardcast_sfu::CoreConfig;
use support::client::Received;
use support::World;

const LAYERS: [(Option<&str>, u64); 3] = [(Some("l"), 150), (Some("m"), 500), (Some("h"), 1_500)];

/// For each video frame (RTP timestamp) that arrived after `from`, the time between its
/// first and its last packet at the viewer.
fn frame_spreads(r: &Received, from: Instant) -> Vec<Duration> {
    let mut frames: BTreeMap<u32, (Instant, Instant)> = BTreeMap::new();
    for ((at, _layer), (_seq, ts, _pid)) in r.layers.iter().zip(&r.video) {
        if *at < from {
            continue;
        }
        let e = frames.entry(*ts).or_insert((*at, *at));
        e.0 = e.0.min(*at);
        e.1 = e.1.max(*at);
    }
    frames.values().map(|(a, b)| *b - *a).collect()
}

struct Seen {
    spreads: Vec<Duration>,
    /// Core wake-ups (its own deadlines) per video packet the viewer received, in the window.
    wakeups_per_packet: f64,
    layer: Option<u8>,
    estimate: Option<u64>,
    packets: u64,
}

fn run(config: CoreConfig) -> Seen {
    let mut w = World::with_config(41, config);
    let alice = w.add_publisher("alice", &LAYERS);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    let track = w.video_track(alice);
    let peer = w.members[bob].peer;
    w.run_for(Duration::from_secs(4));
    let (from, wakeups, packets) = (w.now, w.core_wakeups, w.video(bob).packets);
    w.run_for(Duration::from_secs(3));
    let video = w.video(bob).clone();
    Seen {
        spreads: frame_spreads(&video, from),
        wakeups_per_packet: (w.core_wakeups - wakeups) as f64 / (video.packets - packets) as f64,
        layer: w.core.forwarded_layer(peer, track),
        estimate: w.core.downlink_estimate(peer),
        packets: video.packets,
    }
}

#[test]
fn off_forwards_each_frame_at_once_on_the_preferred_layer_and_on_paces_by_estimate() {
    let on = run(CoreConfig::default());
    let off = run(CoreConfig {
        bwe_initial_kbps: 0,
        ..CoreConfig::default()
    });

    // On: an estimate, and the frames' packets leave one wake-up apart: at least one
    // wake-up of the core per forwarded packet.
    assert!(on.estimate.is_some(), "on: a downlink estimate");
    let spread_on = on.spreads.iter().filter(|d| !d.is_zero()).count();
    assert!(
        spread_on * 2 > on.spreads.len(),
        "on: most frames leave over several wake-ups, got {spread_on} of {}",
        on.spreads.len()
    );
    assert!(
        on.wakeups_per_packet >= 1.0,
        "on: {:.2} wake-ups per packet",
        on.wakeups_per_packet
    );

    // Off: no estimate, the top layer, every frame's packets in one turn, and fewer wake-ups
    // than packets (timers: RTCP, NACK and feedback checks, ticks), a third of "on" at most.
    assert_eq!(off.estimate, None, "off: no downlink estimate");
    assert_eq!(
        off.layer,
        Some(2),
        "off: the top layer the preference allows"
    );
    assert!(
        off.spreads.len() >= 80,
        "off: ~30 frames/s for 3 s, got {}",
        off.spreads.len()
    );
    assert!(
        off.spreads.iter().all(|d| d.is_zero()),
        "off: every frame in one turn: {:?}",
        off.spreads.iter().max()
    );
    assert!(
        off.wakeups_per_packet < 1.0 && off.wakeups_per_packet * 3.0 < on.wakeups_per_packet,
        "off: {:.2} wake-ups per packet (on: {:.2})",
        off.wakeups_per_packet,
        on.wakeups_per_packet
    );
    assert!(off.packets > 0 && on.packets > 0);
}
