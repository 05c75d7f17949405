//! Screen share (issue 17): a Chromium publisher sends its camera and, through the demo
//! page's "Share screen" (`getDisplayMedia`; `?screen=1` starts it once joined), a screen.
//! Its offer names the screen's m-line in `sources`; a receive-only Chromium viewer learns
//! the track's source from `track_published`, decodes it at the size the publisher captures
//! it, and shows it in a tile of its own next to the camera's; the REST API lists each
//! track's source. When the publisher stops sharing, the screen's track is unpublished and
//! its tile goes, while the camera plays on.
//!
//! Chromium's fake screen (`--auto-select-desktop-capture-source`, headless) is captured at
//! 800x450 here, with sound; the camera is asked for 960x540, so the sizes tell the two
//! videos apart.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use shardcast_tests::chromium::Browser;
use shardcast_tests::layers::report;
use shardcast_tests::server::Server;

/// The viewer's inbound video of `who` with `source`: (frames decoded, width, height).
fn inbound(s: &Value, who: &str, source: &str) -> (u64, u64, u64) {
    let t = s["tracks"].as_array().and_then(|ts| {
        ts.iter()
            .find(|t| t["identity"] == who && t["kind"] == "video" && t["source"] == source)
    });
    t.map_or((0, 0, 0), |t| {
        (
            t["framesDecoded"].as_u64().unwrap_or(0),
            t["frameWidth"].as_u64().unwrap_or(0),
            t["frameHeight"].as_u64().unwrap_or(0),
        )
    })
}

/// The size a tile of `who` showing `source` plays, if the page has that tile.
fn tile(s: &Value, who: &str, source: &str) -> Option<(u64, u64)> {
    s["tiles"].as_array()?.iter().find_map(|t| {
        (t["identity"] == who && t["source"] == source).then(|| {
            (
                t["videoWidth"].as_u64().unwrap_or(0),
                t["videoHeight"].as_u64().unwrap_or(0),
            )
        })
    })
}

/// The sources of `who`'s tracks, as `GET /v1/rooms/{room}/participants/{who}` lists them.
fn rest_sources(server: &Server, room: &str, who: &str) -> anyhow::Result<Vec<String>> {
    let p = server.tenant_get(&format!("/v1/rooms/{room}/participants/{who}"))?;
    let mut out: Vec<String> = p["tracks"]
        .as_array()
        .context("tracks")?
        .iter()
        .map(|t| {
            format!(
                "{} {}",
                t["kind"].as_str().unwrap_or("?"),
                t["source"].as_str().unwrap_or("?")
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

#[test]
fn a_shared_screen_reaches_the_viewer_as_its_own_track_and_tile() -> anyhow::Result<()> {
    let server = Server::start()?;
    let alice_url = format!("{}&screen=1", server.page_url("screen", "alice", "Alice"));
    let mut alice = Browser::launch("alice", &alice_url)?;
    let bob_url = format!("{}&publish=0", server.page_url("screen", "bob", "Bob"));
    let mut bob = Browser::launch("bob", &bob_url)?;
    let fail = |e: anyhow::Error, b: &[&Browser]| e.context(report(&server, b));

    let sharing = alice
        .wait_stats("sharing its screen", Duration::from_secs(30), |s| {
            s["screen"]["width"].as_u64().is_some_and(|w| w > 0)
        })
        .map_err(|e| fail(e, &[&alice, &bob]))?;
    let (w, h) = (
        sharing["screen"]["width"].as_u64().unwrap_or(0),
        sharing["screen"]["height"].as_u64().unwrap_or(0),
    );

    // The viewer decodes the screen (at its captured size, or smaller if the publisher's
    // encoder scales it down on a busy machine), as a track whose source is `screen`, in a
    // tile of its own; the camera plays on in the participant's tile.
    let s = bob
        .wait_stats(
            &format!("alice's screen (captured at {w}x{h}) decoded in a tile of its own"),
            Duration::from_secs(60),
            |s| {
                let (frames, fw, fh) = inbound(s, "alice", "screen");
                let (cam_frames, cw, _) = inbound(s, "alice", "camera");
                frames > 10
                    && fw > 0
                    && fw <= w
                    && fh <= h
                    && tile(s, "alice", "screen") == Some((fw, fh))
                    && cam_frames > 10
                    && cw > 0
                    && tile(s, "alice", "camera").is_some_and(|(tw, _)| tw == cw)
            },
        )
        .map_err(|e| fail(e, &[&alice, &bob]))?;
    let (screen, camera) = (
        inbound(&s, "alice", "screen"),
        inbound(&s, "alice", "camera"),
    );
    eprintln!(
        "screen share: captured {w}x{h}, decoded {}x{}; camera {}x{}",
        screen.1, screen.2, camera.1, camera.2
    );

    // Chromium's fake screen comes with sound: that track is `screen_audio`.
    let mut expected = vec!["audio microphone", "video camera", "video screen"];
    if sharing["screen"]["audio"] == true {
        expected.insert(1, "audio screen_audio");
    }
    let sources = rest_sources(&server, "screen", "alice")?;
    assert_eq!(sources, expected, "REST lists each track with its source");

    // Stopping the share unpublishes the screen: its tile goes, the camera plays on.
    alice.eval("stopScreenShare()")?;
    let before = inbound(&bob.stats()?, "alice", "camera").0;
    bob.wait_stats(
        "the screen's tile gone after alice stopped sharing, her camera still playing",
        Duration::from_secs(20),
        |s| {
            tile(s, "alice", "screen").is_none()
                && tile(s, "alice", "camera").is_some()
                && inbound(s, "alice", "camera").0 > before + 30
        },
    )
    .map_err(|e| fail(e, &[&alice, &bob]))?;
    let sources = rest_sources(&server, "screen", "alice")?;
    assert_eq!(
        sources,
        ["audio microphone", "video camera"],
        "the screen's track is gone"
    );
    Ok(())
}
