//! AV1 SVC from Chromium (issue 17, point 2). The publisher's page sends one AV1 encoding in
//! `L1T3` (one spatial layer, three temporal layers; `?codec=av1&svc=L1T3`), with the
//! dependency descriptor the server negotiates and reads to know each frame's temporal
//! layer. Two receive-only Chromium viewers play it. One caps the publisher's video at layer
//! 0 (`set_subscription` with `max_layer: 0`, through the page's `shardcastSetMaxLayer`):
//! the server forwards only the base temporal layer's frames, so that viewer decodes about a
//! quarter of the frames the other one does, without a stall; lifting the cap brings its
//! frame rate back.

use std::time::{Duration, Instant};

use serde_json::Value;
use shardcast_tests::chromium::Browser;
use shardcast_tests::layers::{report, video_encoding, viewer_video};
use shardcast_tests::server::Server;
use shardcast_tests::wait_for;

/// The publisher's one video encoding: (codec, scalability mode, frames encoded).
fn sent(s: &Value) -> (String, String, u64) {
    let o = video_encoding(s);
    (
        o["codec"].as_str().unwrap_or("").to_string(),
        o["scalabilityMode"].as_str().unwrap_or("").to_string(),
        o["framesEncoded"].as_u64().unwrap_or(0),
    )
}

/// Frames each viewer decodes from alice in `window`.
fn frame_rates(viewers: &mut [&mut Browser], window: Duration) -> anyhow::Result<Vec<f64>> {
    let before: Vec<u64> = viewers
        .iter_mut()
        .map(|b| Ok(viewer_video(&b.stats()?, "alice").1))
        .collect::<anyhow::Result<_>>()?;
    std::thread::sleep(window);
    viewers
        .iter_mut()
        .zip(before)
        .map(|(b, n)| {
            let now = viewer_video(&b.stats()?, "alice").1;
            Ok(now.saturating_sub(n) as f64 / window.as_secs_f64())
        })
        .collect()
}

#[test]
fn av1_l1t3_gives_a_capped_viewer_the_base_temporal_layer() -> anyhow::Result<()> {
    let server = Server::start()?;
    let url = format!(
        "{}&codec=av1&svc=L1T3",
        server.page_url("av1", "alice", "Alice")
    );
    let mut alice = Browser::launch("alice", &url)?;
    let bob_url = format!("{}&publish=0", server.page_url("av1", "bob", "Bob"));
    let mut bob = Browser::launch("bob", &bob_url)?;
    let cap_url = format!("{}&publish=0", server.page_url("av1", "cap", "Cap"));
    let mut cap = Browser::launch("cap", &cap_url)?;
    let fail = |e: anyhow::Error, b: &[&Browser]| e.context(report(&server, b));

    let mut last = String::new();
    let r = wait_for(
        "both viewers decoding AV1 L1T3",
        Duration::from_secs(60),
        || {
            let (codec, mode, encoded) = sent(&alice.stats()?);
            let (_, bf) = viewer_video(&bob.stats()?, "alice");
            let (_, cf) = viewer_video(&cap.stats()?, "alice");
            last = format!(
                "alice sends {codec} {mode} ({encoded} frames); bob {bf}, cap {cf} decoded"
            );
            let done =
                codec.eq_ignore_ascii_case("video/av1") && mode == "L1T3" && bf > 30 && cf > 30;
            Ok(done.then_some(()))
        },
    );
    r.map_err(|e| fail(e.context(last), &[&alice, &bob, &cap]))?;

    let full = frame_rates(&mut [&mut bob, &mut cap], Duration::from_secs(3))?;
    cap.eval("window.shardcastSetMaxLayer('alice', 0)")?;
    std::thread::sleep(Duration::from_secs(2));
    let capped = frame_rates(&mut [&mut bob, &mut cap], Duration::from_secs(5))?;
    cap.eval("window.shardcastSetMaxLayer('alice', 2)")?;
    let lifted = Instant::now();
    let mut again = Vec::new();
    while lifted.elapsed() < Duration::from_secs(15) {
        again = frame_rates(&mut [&mut bob, &mut cap], Duration::from_secs(2))?;
        if again[1] >= 0.7 * again[0] {
            break;
        }
    }
    // The figures the bounds were set from; `--no-capture` shows them.
    eprintln!(
        "av1 L1T3, frames/s (bob, cap): both uncapped {full:.1?}, cap at layer 0 \
         {capped:.1?}, cap lifted {again:.1?} after {:.1} s",
        lifted.elapsed().as_secs_f64()
    );
    let why = || report(&server, &[&alice, &bob, &cap]);
    assert!(
        capped[1] > 0.5 && capped[1] < 0.5 * capped[0],
        "the capped viewer should decode the base layer only (about a quarter of the frames, \
         without stalling): {capped:?}\n{}",
        why()
    );
    assert!(
        again[1] >= 0.7 * again[0],
        "lifting the cap should bring the frame rate back: {again:?}\n{}",
        why()
    );
    Ok(())
}
