//! A room's video codec preference (issue 17, point 7). The demo page offers VP8 first (its
//! default `?codec=vp8`); in a room created over REST with `video_codecs: ["vp9", "vp8"]`
//! the server's answer lists VP9 first, so the same page publishes VP9, and a receive-only
//! viewer decodes VP9; likewise AV1 in a room that prefers it. In a room without a
//! preference the page's own order stands: VP8.

use std::time::Duration;

use serde_json::{json, Value};
use shardcast_tests::chromium::Browser;
use shardcast_tests::layers::report;
use shardcast_tests::server::Server;

/// The codec of the publisher's video encodings (all of them, when they agree).
fn sent_codec(s: &Value) -> Option<String> {
    let codecs: Vec<&str> = s["outbound"]
        .as_array()?
        .iter()
        .filter(|o| o["kind"] == "video" && o["framesEncoded"].as_u64().unwrap_or(0) > 0)
        .filter_map(|o| o["codec"].as_str())
        .collect();
    let first = *codecs.first()?;
    codecs
        .iter()
        .all(|c| *c == first)
        .then(|| first.to_string())
}

/// (codec, frames decoded) of the viewer's video from `who`.
fn received(s: &Value, who: &str) -> (String, u64) {
    let v = &s["remote"][who]["video"];
    (
        v["codec"].as_str().unwrap_or("").to_string(),
        v["framesDecoded"].as_u64().unwrap_or(0),
    )
}

/// Alice publishes and Bob watches in `room`; the codec Alice sends and Bob decodes.
fn call_codec(server: &Server, room: &str) -> anyhow::Result<(String, String)> {
    let mut alice = Browser::launch("alice", &server.page_url(room, "alice", "Alice"))?;
    let bob_url = format!("{}&publish=0", server.page_url(room, "bob", "Bob"));
    let mut bob = Browser::launch("bob", &bob_url)?;
    let fail = |e: anyhow::Error, b: &[&Browser]| e.context(report(server, b));
    let s = bob
        .wait_stats("alice's video decoded", Duration::from_secs(40), |s| {
            received(s, "alice").1 > 30
        })
        .map_err(|e| fail(e, &[&alice, &bob]))?;
    let decoded = received(&s, "alice").0;
    let s = alice
        .wait_stats("alice's encodings", Duration::from_secs(10), |s| {
            sent_codec(s).is_some()
        })
        .map_err(|e| fail(e, &[&alice, &bob]))?;
    Ok((sent_codec(&s).unwrap_or_default(), decoded))
}

#[test]
fn a_room_that_prefers_vp9_or_av1_gets_it_from_a_vp8_first_page() -> anyhow::Result<()> {
    let server = Server::start()?;
    let created = server.tenant_request(
        reqwest::Method::POST,
        "/v1/rooms",
        Some(json!({ "name": "prefers-vp9", "video_codecs": ["vp9", "vp8"] })),
    )?;
    assert_eq!(created["video_codecs"], json!(["vp9", "vp8"]));

    let (sent, decoded) = call_codec(&server, "prefers-vp9")?;
    assert_eq!(
        (sent.as_str(), decoded.as_str()),
        ("video/VP9", "video/VP9"),
        "the room's first codec"
    );
    // AV1: a room that prefers it gets it from the same page, and the viewer decodes it.
    server.tenant_request(
        reqwest::Method::POST,
        "/v1/rooms",
        Some(json!({ "name": "prefers-av1", "video_codecs": ["av1"] })),
    )?;
    let (sent, decoded) = call_codec(&server, "prefers-av1")?;
    assert_eq!(
        (sent.as_str(), decoded.as_str()),
        ("video/AV1", "video/AV1"),
        "the room's AV1"
    );
    // The same page in a room without a preference: its own order, VP8 first.
    let (sent, decoded) = call_codec(&server, "no-preference")?;
    assert_eq!(
        (sent.as_str(), decoded.as_str()),
        ("video/VP8", "video/VP8"),
        "the page's own first codec"
    );
    Ok(())
}
