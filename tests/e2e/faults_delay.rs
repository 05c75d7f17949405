//! Delay and reordering on both directions of a call (issue 14). A Chromium publisher sending
//! simulcast video (q, h, f) and a receive-only Chromium viewer both run in a network
//! namespace; once the viewer decodes the top layer, every UDP packet between the namespace
//! and the server is held `ONE_WAY` each way, and `REORDER` % of them a little longer, so
//! later packets overtake them: the publisher's packets reach the server out of order, and
//! the server's reach the viewer out of order.
//!
//! What a user would see, as the code is designed: a fixed delay is not congestion (the
//! delay-based estimate looks at how the delay changes, not at its size) and a reordered
//! packet is not a lost one (a NACK waits for reordering; the forwarder rewrites sequence
//! numbers per packet, in any order), so
//! - while the link is slow and reordering, the video keeps decoding and is never paused,
//!   and the viewer is back on the top layer before the delay ends;
//! - the round trip the viewer measures shows the delay (the stand-in is on the path);
//! - once the delay is over, the viewer is on the top layer and still decoding.
//!
//! The delay is [`shardcast_tests::delay::Delay`] (NFQUEUE), a stand-in for
//! `tc netem delay … reorder …`: this kernel has no sch_netem.

use std::time::{Duration, Instant};

use serde_json::Value;
use shardcast_tests::chromium::Browser;
use shardcast_tests::free_tcp_port;
use shardcast_tests::interop::{metric_sum, scrape};
use shardcast_tests::layers::{report, sent_width, viewer_video, wait_top_layer};
use shardcast_tests::netns::NetNs;
use shardcast_tests::server::Server;

/// Each way: a transatlantic path's delay.
const ONE_WAY: Duration = Duration::from_millis(100);
/// Packets held longer than the rest (by `delay::REORDER_EXTRA`).
const REORDER: u32 = 10;
/// How long the link stays slow.
const DELAYED_FOR: Duration = Duration::from_secs(35);
/// Decoding "keeps going": the publisher sends 30 frames/s; a third of that is still video.
const MIN_FPS: f64 = 10.0;
/// How long after the delay starts the viewer may take to be on the top layer again (the
/// onset of the delay looks like a queue building up, once).
const TOP_WITHIN: Duration = Duration::from_secs(30);

/// The viewer's link as its browser measures it: the ICE round trip (seconds, from its
/// consent checks), and its video streams' freezes and NACKs.
fn link(browser: &mut Browser) -> anyhow::Result<Value> {
    browser.eval(
        "(async () => { const o = { rtt: null, freezes: 0, nacks: 0 }; if (!S.pc) return o; \
         (await S.pc.getStats()).forEach(r => { \
           if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded' \
               && r.currentRoundTripTime !== undefined) o.rtt = r.currentRoundTripTime; \
           if (r.type === 'inbound-rtp' && r.kind === 'video') { \
             o.freezes += r.freezeCount || 0; o.nacks += r.nackCount || 0; } }); \
         return o; })()",
    )
}

fn paused(s: &Value) -> bool {
    s["bandwidthPaused"]
        .as_array()
        .is_some_and(|p| !p.is_empty())
}

#[test]
fn a_call_over_a_delayed_reordering_link_plays_on_and_recovers() -> anyhow::Result<()> {
    // Declared first, dropped last: the browsers and the server stop before the link goes.
    let ns = NetNs::create()?;
    let metrics_listen = format!("127.0.0.1:{}", free_tcp_port());
    let metrics = format!("http://{metrics_listen}");
    let server = Server::start_on(ns.host_ip().into(), &["--metrics-listen", &metrics_listen])?;
    let alice_url = server.page_url("delayed", "alice", "Alice");
    let mut alice = Browser::launch_in("alice", &alice_url, &ns)?;
    let viewer_url = format!("{}&publish=0", server.page_url("delayed", "vic", "Vic"));
    let mut vic = Browser::launch_in("vic", &viewer_url, &ns)?;
    let fail = |e: anyhow::Error, vic: &Browser, alice: &Browser| {
        e.context(report(&server, &[vic, alice]))
    };

    let r = wait_top_layer(
        &mut vic,
        &mut alice,
        "alice",
        "the top layer on the clean link",
        Duration::from_secs(60),
        30,
    );
    let t_top = r.map_err(|e| fail(e, &vic, &alice))?;
    let clean = link(&mut vic)?;
    let text = scrape(&metrics)?;
    let nacks_to_publisher_before = metric_sum(&text, "shardcast_nacks_sent_total", &[]);
    let rtx_before = metric_sum(&text, "shardcast_rtx_sent_total", &[]);

    // Slow and reordering, both ways.
    let frames_before = viewer_video(&vic.stats()?, "alice").1;
    let delay = ns.delay_udp(ONE_WAY, REORDER)?;
    let start = Instant::now();
    let (mut lowest, mut top_again, mut rtt) = (u64::MAX, None, 0.0f64);
    let mut last = Value::Null;
    while start.elapsed() < DELAYED_FOR {
        let s = vic.stats()?;
        let (width, _) = viewer_video(&s, "alice");
        let top = sent_width(&alice.stats()?, "f");
        if width > 0 {
            lowest = lowest.min(width);
        }
        if top > 0 && width == top && start.elapsed() > Duration::from_secs(2) {
            top_again.get_or_insert(start.elapsed());
        } else if width != top {
            top_again = None;
        }
        assert!(
            !paused(&s),
            "the video was paused {:.1} s into a {} ms delay: a fixed delay taken for \
             congestion\n{}",
            start.elapsed().as_secs_f64(),
            ONE_WAY.as_millis(),
            report(&server, &[&vic, &alice])
        );
        rtt = rtt.max(link(&mut vic)?["rtt"].as_f64().unwrap_or(0.0));
        last = s;
        std::thread::sleep(Duration::from_millis(250));
    }
    let during = link(&mut vic)?;
    let frames_delayed = viewer_video(&last, "alice").1;
    let fps = (frames_delayed - frames_before) as f64 / DELAYED_FOR.as_secs_f64();
    let counts = delay.counts();
    let text = scrape(&metrics)?;
    let nacks_to_publisher = metric_sum(&text, "shardcast_nacks_sent_total", &[]);
    let rtx = metric_sum(&text, "shardcast_rtx_sent_total", &[]);
    drop(delay);

    // The stand-in was on the path: packets went through it, some overtaken, and the
    // viewer's round trip grew by both delays.
    assert!(
        counts.delayed > 1000 && counts.reordered > 50,
        "the delay saw {} packets and reordered {}: not on the call's path",
        counts.delayed,
        counts.reordered
    );
    let floor = 2.0 * ONE_WAY.as_secs_f64() * 0.9;
    assert!(
        rtt >= floor,
        "the viewer measured a round trip of at most {rtt:.3} s under {} ms each way \
         (clean: {})",
        ONE_WAY.as_millis(),
        clean["rtt"]
    );
    assert!(
        fps >= MIN_FPS,
        "the video decoded at {fps:.1} frames/s over a slow, reordering link\n{}",
        report(&server, &[&vic, &alice])
    );
    let t_back = top_again.filter(|t| *t <= TOP_WITHIN).ok_or_else(|| {
        fail(
            anyhow::anyhow!(
                "the viewer was not back on the top layer within {TOP_WITHIN:?} of the delay \
                 starting (lowest {lowest} px, last seen {} px)",
                viewer_video(&last, "alice").0
            ),
            &vic,
            &alice,
        )
    })?;

    // The delay is over: the top layer, still decoding.
    let r = wait_top_layer(
        &mut vic,
        &mut alice,
        "alice",
        "the top layer once the delay is over",
        Duration::from_secs(20),
        frames_delayed + 30,
    );
    let t_after = r.map_err(|e| fail(e, &vic, &alice))?;
    // The figures the bounds were set from; `--no-capture` shows them.
    eprintln!(
        "delay: top layer after {:.1} s; {} ms each way, {REORDER} % reordered: {} packets \
         ({} reordered), viewer RTT {:.3} s (clean {}), {fps:.1} frames/s, lowest {lowest} px, \
         top again {:.1} s in; viewer freezes {} -> {}, NACKs {} -> {}; server NACKs to the \
         publisher {nacks_to_publisher_before} -> {nacks_to_publisher}, RTX {rtx_before} -> \
         {rtx}; top layer {:.1} s after",
        t_top.as_secs_f64(),
        ONE_WAY.as_millis(),
        counts.delayed,
        counts.reordered,
        rtt,
        clean["rtt"],
        t_back.as_secs_f64(),
        clean["freezes"],
        during["freezes"],
        clean["nacks"],
        during["nacks"],
        t_after.as_secs_f64()
    );
    Ok(())
}
