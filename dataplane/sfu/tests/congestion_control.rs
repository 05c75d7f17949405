//! Downlink congestion control on (the default), off (`bwe_initial_kbps = 0`, the server's
//! `media.congestion_control = false`), and on for a subscriber that negotiates no
//! transport-cc, side by side on the same clean network. There is no pacer in any mode:
//! every packet of a frame leaves in the turn it arrived, and the core wakes only for its
//! own timers (RTCP, NACK, feedback, ticks), never once per packet. On: a downlink estimate
//! exists and decides the layer (the top one on this clean link). Off: no estimate, the top
//! layer the preference allows. No transport-cc: no estimate either (nothing says the link
//! is short), so that subscriber is neither throttled nor delayed.

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

fn run(config: CoreConfig, transport_cc: bool) -> Seen {
    let mut w = World::with_config(41, config);
    let alice = w.add_publisher("alice", &LAYERS);
    let bob = w.add_subscriber_with(
        "bob",
        support::ClientOptions {
            transport_cc,
            ..Default::default()
        },
    );
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    let track = w.video_track(alice);
    let peer = w.members[bob].peer;
    w.run_for(Duration::from_secs(6));
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

/// Every frame in one turn, ~30 frames/s over the 3 s window, and far fewer core wake-ups
/// than packets.
fn unpaced(name: &str, s: &Seen) {
    assert!(
        s.spreads.len() >= 80,
        "{name}: ~30 frames/s for 3 s, got {}",
        s.spreads.len()
    );
    assert!(
        s.spreads.iter().all(|d| d.is_zero()),
        "{name}: every frame in one turn: {:?}",
        s.spreads.iter().max()
    );
    assert!(
        s.wakeups_per_packet < 0.5,
        "{name}: {:.2} wake-ups per packet",
        s.wakeups_per_packet
    );
    assert!(s.packets > 0);
}

#[test]
fn no_mode_paces_and_only_a_transport_cc_subscriber_gets_an_estimate() {
    let on = run(CoreConfig::default(), true);
    let off = run(
        CoreConfig {
            bwe_initial_kbps: 0,
            ..CoreConfig::default()
        },
        true,
    );
    let no_twcc = run(CoreConfig::default(), false);

    assert!(on.estimate.is_some(), "on: a downlink estimate");
    assert_eq!(
        on.layer,
        Some(2),
        "on: the clean link carries the top layer"
    );
    unpaced("on", &on);

    assert_eq!(off.estimate, None, "off: no downlink estimate");
    assert_eq!(
        off.layer,
        Some(2),
        "off: the top layer the preference allows"
    );
    unpaced("off", &off);

    assert_eq!(
        no_twcc.estimate, None,
        "no transport-cc, no loss: unconstrained, not a made-up estimate"
    );
    assert_eq!(no_twcc.layer, Some(2), "no transport-cc: not throttled");
    unpaced("no transport-cc", &no_twcc);
}
