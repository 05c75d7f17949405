//! Clients without transport-cc: nothing at all, receiver reports only, REMB only.
//! Such a subscriber must not be throttled by a made-up estimate: `None` until loss or
//! REMB says something.

mod bwe_sim;

use std::time::{Duration, Instant};

use bwe_sim::{config, Feedback, Sim};
use shardcast_rtp::bwe::{BweConfig, PacketResult, SendSideBwe};
use shardcast_rtp::report::ReportBlock;

#[test]
fn without_any_feedback_the_estimate_stays_none() {
    for feedback in [Feedback::Nothing, Feedback::ReceiverReports] {
        // A link with room to spare: receiver reports say 0% loss.
        let mut sim = Sim::new(config(1_000_000), feedback, 10_000_000, 3_000_000);
        sim.run_until(30.0);
        assert!(
            sim.trace.iter().all(|s| s.estimate.is_none()),
            "{feedback:?}\n{}",
            sim.dump()
        );
        assert!(
            sim.probe_targets.is_empty(),
            "probing with no feedback to measure it"
        );
        assert_eq!(sim.bwe.poll_timeout(), None, "nothing to wake up for");
    }
}

/// Receiver reports only, sending 3 Mbit/s unconstrained into 1.5 Mbit/s: about half is
/// lost. A limit appears after two lossy reports, from the rate actually sent, and falls;
/// when the capacity comes back it rises and, 10 s after the last lossy report, goes.
#[test]
fn receiver_report_loss_limits_then_lets_go() {
    let mut sim = Sim::new(
        config(1_000_000),
        Feedback::ReceiverReports,
        1_500_000,
        3_000_000,
    );
    sim.run_until(20.0);
    let trace = sim.dump();
    assert!(
        sim.window(0.0, 2.0).all(|s| s.estimate.is_none()),
        "one report is not enough\n{trace}"
    );
    let first = sim.first(0.0, |s| s.estimate.is_some()).expect(&trace);
    assert!(first.t < 3.0, "{first:?}\n{trace}");
    let first = first.estimate.unwrap_or(0);
    assert!(
        first < 2_700_000 && first > 1_500_000,
        "3 Mbit/s sent, ~50% lost: {first}\n{trace}"
    );
    let lowest = sim
        .window(0.0, 20.0)
        .filter_map(|s| s.estimate)
        .min()
        .unwrap_or(0);
    assert!(lowest < 1_700_000, "{trace}");
    assert!(
        sim.window(3.0, 20.0).all(|s| s.estimate.is_some()),
        "{trace}"
    );
    assert!(sim.probe_targets.is_empty());

    sim.link.capacity_bps = 10_000_000;
    sim.run_until(40.0);
    let trace = sim.dump();
    let at = |t: f64| sim.first(t, |_| true).and_then(|s| s.estimate);
    assert!(at(27.0) > at(21.0), "rises again without loss\n{trace}");
    let released = sim.first(20.0, |s| s.estimate.is_none()).expect(&trace);
    assert!(released.t < 33.0, "{released:?}\n{trace}");
    assert!(
        sim.window(released.t, 40.0).all(|s| s.estimate.is_none()),
        "{trace}"
    );
}

fn block(highest: u32, lost: i32) -> ReportBlock {
    ReportBlock {
        ssrc: 7,
        ext_highest_seq: highest,
        cumulative_lost: lost,
        ..ReportBlock::default()
    }
}

/// Scripted: 1000-byte packets every 4 ms (2 Mbit/s), a receiver report every second.
#[test]
fn the_loss_limit_starts_from_the_rate_actually_sent() {
    let start = Instant::now();
    let mut bwe = SendSideBwe::new(config(1_000_000));
    bwe.set_desired(start, 5_000_000);
    let (mut seq, mut lost) = (0u64, 0i32);
    let mut second = |bwe: &mut SendSideBwe, s: u64, loss_percent: i32| {
        for k in 0..250 {
            let now = start + Duration::from_millis(s * 1000 + k * 4);
            bwe.on_packet_sent(now, seq, 1000, None);
            seq += 1;
        }
        lost += 250 * loss_percent / 100;
        let now = start + Duration::from_secs(s + 1);
        bwe.on_receiver_report(
            now,
            &[block(seq as u32 - 1, lost)],
            Some(Duration::from_millis(80)),
        );
        bwe.poll_probe(now);
        bwe.estimate()
    };
    for s in 0..3 {
        assert_eq!(second(&mut bwe, s, 0), None);
    }
    assert_eq!(second(&mut bwe, 3, 20), None, "one lossy report");
    let limit = second(&mut bwe, 4, 20).expect("two lossy reports make a limit");
    // 2 Mbit/s sent, 20% lost: 2 Mbit/s * (1 - 0.2/2).
    assert!((limit as f64 - 1.8e6).abs() < 20e3, "{limit}");
    let lower = second(&mut bwe, 5, 20).unwrap();
    assert!((lower as f64 - 1.8e6 * 0.9).abs() < 20e3, "{lower}");
    assert_eq!(second(&mut bwe, 6, 5), Some(lower), "2-10% holds");
    let higher = second(&mut bwe, 7, 0).unwrap();
    assert!(
        (higher as f64 - (lower as f64 * 1.08 + 1000.0)).abs() < 2e3,
        "{higher}"
    );
    // Last loss at 2% or more was reported at 7 s: the limit goes at 17 s.
    for s in 8..15 {
        assert!(second(&mut bwe, s, 0).is_some(), "{s}");
    }
    let release = bwe.poll_timeout().expect("the release is a timer");
    assert_eq!(release, start + Duration::from_secs(17));
    bwe.poll_probe(release - Duration::from_millis(1));
    assert!(bwe.estimate().is_some());
    bwe.poll_probe(release);
    assert_eq!(bwe.estimate(), None);
}

/// A stream's first report only sets its baseline, and a quiet stream's 0% cannot hide
/// a busy stream's loss: counts weigh by packets.
#[test]
fn report_blocks_weigh_by_packets() {
    let start = Instant::now();
    let mut bwe = SendSideBwe::new(config(1_000_000));
    let mut seq = 0u64;
    let mut send_until = |bwe: &mut SendSideBwe, s: u64| {
        while seq < s * 1000 {
            bwe.on_packet_sent(start + Duration::from_millis(seq), seq, 1000, None);
            seq += 1;
        }
    };
    let video = |highest, lost| ReportBlock {
        ssrc: 1,
        ext_highest_seq: highest,
        cumulative_lost: lost,
        ..ReportBlock::default()
    };
    let audio = |highest| ReportBlock {
        ssrc: 2,
        ext_highest_seq: highest,
        ..ReportBlock::default()
    };
    let t = |s| start + Duration::from_secs(s);
    send_until(&mut bwe, 1);
    bwe.on_receiver_report(t(1), &[video(1000, 0), audio(100)], None);
    for s in 2..4 {
        send_until(&mut bwe, s);
        // Video: 300 packets, 60 lost (20%); audio: 50 packets, none lost.
        let n = s as u32 - 1;
        bwe.on_receiver_report(
            t(s),
            &[video(1000 + 300 * n, 60 * n as i32), audio(100 + 50 * n)],
            None,
        );
    }
    // 17% overall (60 of 350): two such samples make a limit. Averaging the two streams'
    // fractions instead (20% and 0%) would have said 10%, and no limit.
    let limit = bwe.estimate().expect("17% overall is over 10%");
    assert!(
        (limit as f64 - 8e6 * (1.0 - 60.0 / 350.0 / 2.0)).abs() < 100e3,
        "{limit}"
    );
}

#[test]
fn remb_only_follows_remb() {
    let mut sim = Sim::new(
        BweConfig {
            initial_bps: 1_000_000,
            min_bps: 100_000,
            max_bps: 5_000_000,
        },
        Feedback::Nothing,
        10_000_000,
        8_000_000,
    );
    sim.run_until(1.0);
    assert_eq!(sim.bwe.estimate(), None, "before the first REMB");
    for (bps, expected) in [
        (2_000_000, 2_000_000),
        (600_000, 600_000),
        (3_500_000, 3_500_000),
        (50_000, 100_000),
        (u64::MAX, 5_000_000),
    ] {
        let now = sim.now;
        sim.bwe.on_remb(now, bps);
        sim.run_until(sim.secs() + 1.0);
        assert_eq!(sim.bwe.estimate(), Some(expected), "REMB {bps}");
    }
    assert!(
        sim.probe_targets.is_empty(),
        "nothing to measure a probe with"
    );
}

/// With transport-cc, a REMB the client also sends caps the estimate.
#[test]
fn remb_caps_a_transport_cc_estimate() {
    let start = Instant::now();
    let mut bwe = SendSideBwe::new(config(2_000_000));
    bwe.on_packet_sent(start, 0, 1000, None);
    let arrival = Some(Duration::from_millis(20));
    bwe.on_transport_feedback(
        start + Duration::from_millis(60),
        &[PacketResult {
            transport_seq: 0,
            arrival,
        }],
    );
    assert_eq!(
        bwe.estimate(),
        Some(2_000_000),
        "the initial rate, from the first feedback on"
    );
    bwe.on_remb(start + Duration::from_millis(70), 700_000);
    assert_eq!(bwe.estimate(), Some(700_000));
}
