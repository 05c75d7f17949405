//! VP9 SVC from Chromium (issue 17). The publisher's page sends one VP9 encoding in
//! `L3T3_KEY` (three spatial layers and three temporal layers on one SSRC; `?codec=vp9
//! &svc=L3T3_KEY`); two receive-only Chromium viewers play it: one on the host, unshaped,
//! the other in a network namespace whose downlink `tc` caps between the layers. The
//! unshaped viewer decodes the top spatial layer; the capped one falls to a lower spatial
//! layer and keeps decoding, and the unshaped one stays on the top layer meanwhile.
//!
//! "Layer" is the width of the frames a viewer decodes, against the width the publisher
//! encodes its top spatial layer at right now (Chromium's outbound-rtp `frameWidth` of an
//! SVC encoding; it may scale down when the machine is busy).

use std::time::{Duration, Instant};

use serde_json::Value;
use shardcast_tests::chromium::Browser;
use shardcast_tests::layers::{report, video_encoding, viewer_video};
use shardcast_tests::netns::NetNs;
use shardcast_tests::server::Server;
use shardcast_tests::wait_for;

/// The capped viewer's downlink: the lowest spatial layer (240 px, with every temporal
/// layer) and Opus in RED fit, the middle one with it does not.
const CAP_KBIT: u32 = 360;

/// The publisher's one video encoding: (codec, scalability mode, frame width).
fn svc_sent(s: &Value) -> (String, String, u64) {
    let o = video_encoding(s);
    (
        o["codec"].as_str().unwrap_or("").to_string(),
        o["scalabilityMode"].as_str().unwrap_or("").to_string(),
        o["frameWidth"].as_u64().unwrap_or(0),
    )
}

/// The codec a viewer decodes the publisher's video with.
fn received_codec(s: &Value, who: &str) -> String {
    s["remote"][who]["video"]["codec"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn vp9_svc_gives_each_viewer_the_spatial_layer_its_downlink_carries() -> anyhow::Result<()> {
    // Declared first, dropped last: the browsers and the server stop before the link goes.
    let mut ns = NetNs::create()?;
    let server = Server::start_on(ns.host_ip().into(), &[])?;
    let url = format!(
        "{}&codec=vp9&svc=L3T3_KEY",
        server.page_url("svc", "alice", "Alice")
    );
    let mut alice = Browser::launch("alice", &url)?;
    let bob_url = format!("{}&publish=0", server.page_url("svc", "bob", "Bob"));
    let mut bob = Browser::launch("bob", &bob_url)?;
    let vic_url = format!("{}&publish=0", server.page_url("svc", "vic", "Vic"));
    let mut vic = Browser::launch_in("vic", &vic_url, &ns)?;
    let fail = |e: anyhow::Error, b: &[&Browser]| e.context(report(&server, b));

    // The publisher sends VP9 in L3T3_KEY, and both viewers decode its top spatial layer.
    let started = Instant::now();
    let mut last = String::new();
    let r = wait_for(
        "both viewers on the top spatial layer",
        Duration::from_secs(60),
        || {
            let (codec, mode, top) = svc_sent(&alice.stats()?);
            let (b, bf) = viewer_video(&bob.stats()?, "alice");
            let (v, vf) = viewer_video(&vic.stats()?, "alice");
            last = format!(
                "alice sends {codec} {mode} at {top} px; bob decodes {b} px ({bf} frames), \
                 vic {v} px ({vf} frames)"
            );
            let done = codec.eq_ignore_ascii_case("video/vp9")
                && mode == "L3T3_KEY"
                && top > 0
                && b == top
                && v == top
                && bf > 30
                && vf > 30;
            Ok(done.then_some(top))
        },
    );
    r.map_err(|e| fail(e.context(last), &[&alice, &bob, &vic]))?;
    let t_top = started.elapsed();
    for (viewer, b) in [("bob", &mut bob), ("vic", &mut vic)] {
        let codec = received_codec(&b.stats()?, "alice");
        assert!(
            codec.eq_ignore_ascii_case("video/vp9"),
            "{viewer} decodes {codec:?}, not VP9"
        );
    }

    // Capped, vic drops to a lower spatial layer (one SSRC: the server drops the upper
    // layers' packets) and keeps decoding; bob is not affected.
    ns.shape_downlink(CAP_KBIT)?;
    let capped = Instant::now();
    let r = wait_for(
        &format!("a lower spatial layer under a {CAP_KBIT} kbit/s cap"),
        Duration::from_secs(30),
        || {
            let (_, _, top) = svc_sent(&alice.stats()?);
            let (v, _) = viewer_video(&vic.stats()?, "alice");
            Ok((v > 0 && v < top).then_some(v))
        },
    );
    let low = r.map_err(|e| fail(e, &[&alice, &bob, &vic]))?;
    let t_drop = capped.elapsed();
    let frames_low = viewer_video(&vic.stats()?, "alice").1;
    let bob_before = viewer_video(&bob.stats()?, "alice").1;
    std::thread::sleep(Duration::from_secs(5));
    let s = vic.stats()?;
    let (_, frames_later) = viewer_video(&s, "alice");
    assert!(
        frames_later >= frames_low + 25,
        "vic's video stalled on the lower layer ({low} px): {frames_low} -> {frames_later} \
         frames in 5 s; paused: {}\n{}",
        s["bandwidthPaused"],
        report(&server, &[&alice, &bob, &vic])
    );
    let (_, _, top) = svc_sent(&alice.stats()?);
    let (bob_width, bob_frames) = viewer_video(&bob.stats()?, "alice");
    assert!(
        bob_width == top && bob_frames >= bob_before + 25,
        "bob, unshaped, left the top layer ({bob_width} px of {top}) or stalled \
         ({bob_before} -> {bob_frames} frames in 5 s)"
    );
    // The figures the bounds were set from; `--no-capture` shows them.
    eprintln!(
        "svc: both viewers on the top layer ({top} px) after {:.1} s; under {CAP_KBIT} kbit/s \
         the capped one decodes {low} px after {:.1} s",
        t_top.as_secs_f64(),
        t_drop.as_secs_f64()
    );
    Ok(())
}
