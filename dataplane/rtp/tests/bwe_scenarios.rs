//! Transport-cc scenarios on the simulated bottleneck (tests/bwe_sim): convergence under
//! the capacity, reacting to a growing queue before it overflows, a capacity drop, and
//! recovery with probes. Each failure message carries the trace.

mod bwe_sim;

use bwe_sim::{config, Feedback, Sim};

const MBIT: f64 = 1e6;

fn est(s: &bwe_sim::Sample) -> f64 {
    s.estimate.map_or(f64::INFINITY, |e| e as f64)
}

#[test]
fn converges_under_the_capacity_without_loss() {
    let cap = 2.5 * MBIT;
    let mut sim = Sim::new(
        config(1_000_000),
        Feedback::TransportCc,
        cap as u64,
        4_000_000,
    );
    sim.run_until(40.0);
    let trace = sim.dump();

    let converged = sim.first(0.0, |s| est(s) >= 0.8 * cap && est(s) <= cap);
    assert!(
        converged.is_some_and(|s| s.t < 10.0),
        "not within 80-100% of capacity by 10 s\n{trace}"
    );

    // After convergence: never far over the capacity (GCC lets the queue grow ~25 ms/s
    // before it calls it overuse, so the sawtooth's top may cross it by a few percent),
    // and on average 80-100% of it.
    let after: Vec<f64> = sim.window(10.0, 40.0).map(est).collect();
    let (lo, hi) = after
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), e| (lo.min(*e), hi.max(*e)));
    let mean = after.iter().sum::<f64>() / after.len() as f64;
    assert!(
        lo >= 0.75 * cap && hi <= 1.05 * cap,
        "range {lo}..{hi}\n{trace}"
    );
    assert!((0.8 * cap..=cap).contains(&mean), "mean {mean}\n{trace}");

    // It backed off by delay alone: decreases, yet nothing was ever dropped and the
    // queue stayed far from its 250 ms limit.
    let decreases = after.windows(2).filter(|w| w[1] < 0.95 * w[0]).count();
    assert!(decreases > 0, "never backed off: {lo}..{hi}\n{trace}");
    assert_eq!(sim.dropped_packets, 0, "\n{trace}");
    let worst_queue = sim
        .window(10.0, 40.0)
        .map(|s| s.queue_ms)
        .fold(0.0, f64::max);
    assert!(
        worst_queue < 150.0,
        "queue reached {worst_queue} ms\n{trace}"
    );

    // The periodic probes (at 2x the estimate, capped at the 4 Mbit/s wanted) are not
    // congestion events themselves: one sent while the estimate is under 95% of the
    // capacity (where the AIMD would not back off by itself) leaves it no lower.
    let probes: Vec<f64> = sim
        .probe_targets
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t > 10.0 && *t < 38.0)
        .collect();
    let mut under = 0;
    for t in probes {
        let before = sim.first(t - 0.1, |_| true).map_or(0.0, |s| est(&s));
        if before >= 0.95 * cap {
            continue;
        }
        under += 1;
        let after = sim.first(t + 1.5, |_| true).map_or(0.0, |s| est(&s));
        assert!(
            after >= 0.98 * before,
            "probe at {t}: {before} -> {after}\n{trace}"
        );
    }
    assert!(
        under > 0,
        "no periodic probe under the capacity: {:?}\n{trace}",
        sim.probe_targets
    );
}

/// Open loop: 2 Mbit/s over a 2.5 Mbit/s link, then 3 Mbit/s whatever the estimate says.
/// The queue grows 200 ms per second; the delay-based part must notice (the estimate falls
/// under the capacity) before the queue reaches a typical 250 ms buffer. What it sees lags
/// by the queue itself plus RTT plus the feedback interval (about 350 ms here), and the
/// trendline needs about nine frame groups to clear its threshold.
#[test]
fn reacts_to_a_growing_queue_before_it_overflows() {
    let mut sim = Sim::new(
        config(2_000_000),
        Feedback::TransportCc,
        2_500_000,
        2_000_000,
    );
    sim.link.queue_limit = usize::MAX;
    sim.fixed_rate = Some(2_000_000);
    sim.run_until(10.0);
    assert!(
        sim.window(5.0, 10.0).all(|s| s.queue_ms < 40.0),
        "{}",
        sim.dump()
    );
    sim.fixed_rate = Some(3_000_000);
    sim.set_desired(3_000_000);
    sim.run_until(15.0);
    let trace = sim.dump();
    let noticed = sim.first(10.0, |s| est(s) < 2.5 * MBIT);
    let Some(noticed) = noticed else {
        panic!("never noticed\n{trace}")
    };
    assert!(noticed.queue_ms < 200.0, "noticed at {noticed:?}\n{trace}");
    // Without a reaction the queue would be 1 s long by 15 s.
    assert!(noticed.t < 11.0, "noticed at {noticed:?}\n{trace}");
}

#[test]
fn follows_a_capacity_drop_within_two_seconds() {
    let mut sim = Sim::new(
        config(1_000_000),
        Feedback::TransportCc,
        3_000_000,
        4_000_000,
    );
    sim.run_until(15.0);
    let before = sim.bwe.estimate().unwrap();
    assert!(before as f64 > 2.4 * MBIT, "{}", sim.dump());
    sim.link.capacity_bps = 800_000;
    sim.run_until(25.0);
    let trace = sim.dump();
    let under = sim.first(15.0, |s| est(s) < 0.8 * MBIT);
    assert!(under.is_some_and(|s| s.t <= 17.0), "{under:?}\n{trace}");
    // And it does not collapse far below the new capacity either.
    assert!(
        sim.window(17.0, 25.0).all(|s| est(s) > 0.4 * MBIT),
        "\n{trace}"
    );
}

#[test]
fn probes_find_the_capacity_again_when_it_comes_back() {
    let mut sim = Sim::new(
        config(1_000_000),
        Feedback::TransportCc,
        3_000_000,
        4_000_000,
    );
    sim.run_until(15.0);
    sim.link.capacity_bps = 800_000;
    sim.run_until(30.0);
    assert!(
        sim.window(25.0, 30.0).all(|s| est(s) < 0.9 * MBIT),
        "{}",
        sim.dump()
    );
    sim.link.capacity_bps = 3_000_000;
    sim.run_until(45.0);
    let trace = sim.dump();
    let back = sim.first(30.0, |s| est(s) >= 0.8 * 3.0 * MBIT);
    assert!(back.is_some_and(|s| s.t < 40.0), "{back:?}\n{trace}");
    let probes_after: Vec<_> = sim
        .probe_targets
        .iter()
        .filter(|(t, _)| *t >= 30.0)
        .collect();
    assert!(!probes_after.is_empty(), "no probe after the rise\n{trace}");
    let mean = sim.window(40.0, 45.0).map(est).sum::<f64>() / sim.window(40.0, 45.0).count() as f64;
    assert!(mean > 0.8 * 3.0 * MBIT, "mean {mean}\n{trace}");
}

/// A shaper with a token bucket (`tc tbf ... burst 10kb`, as tests/e2e/downlink.rs caps a
/// viewer): a sender below the cap (a lower simulcast layer, 240 kbit/s under 360) keeps
/// the bucket full, and a short probe passes through it at its own rate, as if the link
/// were wide. Taken at its word, every periodic probe lifted the estimate to twice the
/// cap and the SFU switched the viewer up to a layer the link cannot carry (CI,
/// 2026-12-07). A probe must carry enough to empty the bucket and be measured by what
/// arrives once it is empty.
#[test]
fn a_shapers_burst_does_not_pass_for_capacity() {
    let cap = 360_000.0;
    let mut sim = Sim::new(
        config(300_000),
        Feedback::TransportCc,
        cap as u64,
        1_000_000,
    );
    sim.link.burst_bytes = 10_000;
    // `tc tbf ... latency 200ms`: the queue holds 200 ms at the rate.
    sim.link.queue_limit = (cap / 8.0 * 0.2) as usize;
    sim.fixed_rate = Some(240_000);
    sim.run_until(60.0);
    let trace = sim.dump();
    let worst = sim.window(5.0, 60.0).map(est).fold(0.0, f64::max);
    let lowest = sim.window(5.0, 60.0).map(est).fold(f64::MAX, f64::min);
    eprintln!("shaper: lowest estimate {lowest:.0}");
    assert!(
        worst <= 1.25 * cap,
        "estimate reached {worst} over a {cap} bit/s shaper\nprobes: {:?}\n{trace}",
        sim.probe_targets
    );
    // What confirming costs on such a link (`--no-capture` shows it): each confirmation
    // that fails builds a queue past the bucket.
    eprintln!(
        "shaper: worst estimate {worst:.0}, dropped {} of {} packets, worst queue {:.0} ms, \
         {} probes",
        sim.dropped_packets,
        sim.sent_packets,
        sim.window(5.0, 60.0)
            .map(|s| s.queue_ms)
            .fold(0.0, f64::max),
        sim.probe_targets.len(),
    );
    assert!(
        sim.probe_targets.iter().filter(|(t, _)| *t >= 5.0).count() >= 5,
        "it kept probing (the application wants more): {:?}",
        sim.probe_targets
    );
}

/// An SFU's viewer whose downlink gets capped under the layer it receives (the e2e
/// downlink test's `tc tbf rate 360kbit burst 10kb latency 200ms`): the queue overflows
/// until the switch down takes effect, and that loss must not drive the estimate under
/// the layer the cap carries (the SFU would pause the video).
#[test]
fn a_cap_under_the_forwarded_layer_keeps_the_layer_that_fits() {
    let cap = 360_000.0;
    let mut sim = Sim::new(
        config(300_000),
        Feedback::TransportCc,
        10_000_000,
        1_600_000,
    );
    sim.layers = vec![160_000, 500_000, 1_300_000];
    sim.audio_bps = 80_000;
    sim.run_until(10.0);
    let top = sim.window(9.0, 10.0).map(est).fold(f64::MAX, f64::min);
    assert!(
        top >= 1_380_000.0,
        "not on the top layer before the cap: {top}\n{}",
        sim.dump()
    );
    sim.link.capacity_bps = cap as u64;
    sim.link.burst_bytes = 10_000;
    sim.link.overhead_bytes = 42;
    sim.link.queue_limit = (cap / 8.0 * 0.2) as usize;
    sim.run_until(40.0);
    let trace = sim.dump();
    // The SFU pauses video when the estimate stays under the lowest layer plus audio for 1 s.
    let floor = 240_000.0;
    let mut below_since: Option<f64> = None;
    for s in sim.window(10.0, 40.0) {
        if est(s) < floor {
            let since = *below_since.get_or_insert(s.t);
            assert!(
                s.t - since < 1.0,
                "estimate under {floor} from {since:.1} s to {:.1} s: the video would pause\n{trace}",
                s.t
            );
        } else {
            below_since = None;
        }
    }
    let lowest = sim.window(10.0, 40.0).map(est).fold(f64::MAX, f64::min);
    let worst = sim.window(15.0, 40.0).map(est).fold(0.0, f64::max);
    eprintln!("cap hit: lowest estimate {lowest:.0}, highest after 15 s {worst:.0}\n{trace}");
}

/// Nobody probes for bandwidth the application will not use.
#[test]
fn probes_stay_under_what_the_application_wants() {
    let mut sim = Sim::new(
        config(300_000),
        Feedback::TransportCc,
        10_000_000,
        1_500_000,
    );
    sim.run_until(20.0);
    assert!(
        !sim.probe_targets.is_empty(),
        "the start-up probe was skipped"
    );
    assert!(
        sim.probe_targets.iter().all(|(_, bps)| *bps <= 1_500_000),
        "{:?}",
        sim.probe_targets
    );
    // Once the estimate is at what is wanted, probing stops.
    let last = sim.probe_targets.last().map_or(0.0, |(t, _)| *t);
    assert!(last < 5.0, "{:?}", sim.probe_targets);
    // More wanted later: probing resumes within about a second.
    sim.set_desired(6_000_000);
    sim.run_until(25.0);
    let resumed = sim.probe_targets.iter().find(|(t, _)| *t >= 20.0);
    assert!(
        resumed.is_some_and(|(t, bps)| *t < 21.5 && *bps <= 6_000_000),
        "{:?}",
        sim.probe_targets
    );
    let reached = sim.first(20.0, |s| est(s) >= 5.0 * MBIT);
    assert!(reached.is_some_and(|s| s.t < 25.0), "{}", sim.dump());
}

/// A layer switch: frames five times bigger at once (0.5 to 2.5 Mbit/s, open loop) on a
/// 3 Mbit/s link. Each frame now takes five times as long to drain through the bottleneck,
/// but the queue does not grow: that is not overuse, and the estimate must not drop.
#[test]
fn a_layer_switch_under_capacity_is_not_overuse() {
    let mut sim = Sim::new(config(2_800_000), Feedback::TransportCc, 3_000_000, 500_000);
    sim.fixed_rate = Some(500_000);
    sim.run_until(10.0);
    let before = sim.bwe.estimate().unwrap_or(0);
    sim.fixed_rate = Some(2_500_000);
    sim.run_until(15.0);
    let lowest = sim
        .window(10.0, 15.0)
        .filter_map(|s| s.estimate)
        .min()
        .unwrap_or(0);
    assert!(
        lowest as f64 >= 0.95 * before as f64,
        "{before} -> {lowest}\n{}",
        sim.dump()
    );
}

/// A long path that reorders (100 ms each way, 10% of the packets 25 ms late, plenty of
/// capacity), reached at 10 s on the top layer: neither the delay's onset nor the reordering
/// is congestion, and a packet that comes late is not lost. The estimate stays over the top
/// layer, or comes back over it within a few seconds, and stays there.
#[test]
fn a_long_reordering_path_keeps_the_top_layer() {
    let mut sim = Sim::new(
        config(300_000),
        Feedback::TransportCc,
        10_000_000,
        2_700_000,
    );
    sim.layers = vec![150_000, 500_000, 2_200_000];
    sim.audio_bps = 50_000;
    sim.run_until(10.0);
    let top = 2_250_000.0;
    let before = sim.window(9.0, 10.0).map(est).fold(f64::MAX, f64::min);
    assert!(
        before >= top,
        "not on the top layer before: {before}\n{}",
        sim.dump()
    );
    sim.link.one_way = std::time::Duration::from_millis(100);
    sim.link.reorder_percent = 10;
    sim.link.reorder_extra = std::time::Duration::from_millis(25);
    sim.run_until(40.0);
    let trace = sim.dump();
    assert_eq!(sim.dropped_packets, 0, "\n{trace}");
    let back = sim
        .window(10.0, 40.0)
        .filter(|s| est(s) < top)
        .map(|s| s.t)
        .fold(10.0, f64::max);
    assert!(
        back < 20.0,
        "under the top layer until {back:.1} s (delay and reordering from 10 s)\n{trace}"
    );
    let lowest = sim.window(10.0, 40.0).map(est).fold(f64::MAX, f64::min);
    eprintln!(
        "reordering: lowest estimate {lowest:.0}, last under the top layer at {back:.1} s\n{trace}"
    );
}
