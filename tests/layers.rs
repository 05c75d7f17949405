//! Reading a Chromium viewer's simulcast layer where a user would see it: the width of the
//! frames it decodes, against the width the publisher encodes its top layer at right now
//! (Chromium may scale every layer down when the machine is busy, so no fixed width is
//! assumed). Used by the tests that shape a viewer's downlink (`downlink`, `faults_loss`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::chromium::Browser;
use crate::server::Server;

/// Width of the frames the viewer decodes from `who`, and how many it has decoded.
pub fn viewer_video(s: &Value, who: &str) -> (u64, u64) {
    let v = &s["remote"][who]["video"];
    (
        v["frameWidth"].as_u64().unwrap_or(0),
        v["framesDecoded"].as_u64().unwrap_or(0),
    )
}

/// The publisher's page's one video encoding (an SVC publisher sends one), from its
/// `shardcastStats()`; `Null` before it sends any.
pub fn video_encoding(s: &Value) -> Value {
    s["outbound"]
        .as_array()
        .and_then(|o| o.iter().find(|e| e["kind"] == "video").cloned())
        .unwrap_or(Value::Null)
}

/// One number the publisher's page reports about its simulcast layer `rid` (0 while it is
/// not being sent).
pub fn sent(s: &Value, rid: &str, field: &str) -> u64 {
    s["outbound"]
        .as_array()
        .and_then(|o| {
            o.iter()
                .find(|e| e["kind"] == "video" && e["rid"] == rid)
                .and_then(|e| e[field].as_u64())
        })
        .unwrap_or(0)
}

/// Width the publisher encodes its layer `rid` at.
pub fn sent_width(s: &Value, rid: &str) -> u64 {
    sent(s, rid, "frameWidth")
}

/// The server's log tail and every browser's diagnostics, for a failure message.
pub fn report(server: &Server, browsers: &[&Browser]) -> String {
    // With a debug filter (`SHARDCAST_TEST_LOG`) the interesting lines are further back.
    let lines = if std::env::var_os("SHARDCAST_TEST_LOG").is_some() {
        3000
    } else {
        40
    };
    let mut out = format!(
        "--- server log (last {lines}):\n{}\n",
        server.log_tail(lines)
    );
    for b in browsers {
        out.push_str(&b.diagnostics());
        out.push('\n');
    }
    out
}

/// Polls both pages every 250 ms until `done(viewer width, frames decoded, publisher's top
/// width)` holds for the video of `from` (the publisher's identity); the time it took, or an
/// error with what was last seen.
pub fn wait_layer(
    viewer: &mut Browser,
    publisher: &mut Browser,
    from: &str,
    what: &str,
    timeout: Duration,
    mut done: impl FnMut(u64, u64, u64) -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut last = (0, 0, 0);
    while start.elapsed() < timeout {
        let (width, frames) = viewer_video(&viewer.stats()?, from);
        let top = sent_width(&publisher.stats()?, "f");
        last = (width, frames, top);
        if done(width, frames, top) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    anyhow::bail!(
        "timed out after {timeout:?} waiting for {what}: viewer decodes {} px wide \
         ({} frames), publisher's top layer is {} px wide",
        last.0,
        last.1,
        last.2
    )
}

/// [`wait_layer`] until the viewer decodes `from`'s top layer (the width the publisher
/// encodes it at right now) and has decoded more than `frames_after` frames in all.
pub fn wait_top_layer(
    viewer: &mut Browser,
    publisher: &mut Browser,
    from: &str,
    what: &str,
    timeout: Duration,
    frames_after: u64,
) -> anyhow::Result<Duration> {
    wait_layer(viewer, publisher, from, what, timeout, |w, frames, top| {
        top > 0 && w == top && frames > frames_after
    })
}
