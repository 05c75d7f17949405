//! The browser harness and the demo page without a Shardcast server: Chromium starts with
//! the fake devices, the page loads without script errors, exposes its automation hooks,
//! and reports a failed join (no dev-token endpoint) instead of hanging.

use std::time::Duration;

use serde_json::Value;
use shardcast_tests::chromium::Browser;
use shardcast_tests::static_site::StaticSite;
use shardcast_tests::{wait_for, web_dir};

#[test]
fn demo_page_loads_and_exposes_stats() -> anyhow::Result<()> {
    let site = StaticSite::serve(&web_dir())?;
    let mut b = Browser::launch("alice", &format!("{}/?room=r1&name=Alice", site.url()))?;
    wait_for("the page script", Duration::from_secs(20), || {
        Ok((b.eval("typeof window.shardcastStats")? == "function").then_some(()))
    })?;
    let stats = b.stats()?;
    assert_eq!(stats["joined"], Value::Bool(false), "{stats}");
    assert_eq!(stats["connectionState"], "none", "{stats}");
    // URL parameters fill the join form.
    assert_eq!(b.eval("document.querySelector('#room').value")?, "r1");
    assert_eq!(b.eval("document.querySelector('#name').value")?, "Alice");
    assert!(b.page.exceptions.is_empty(), "{}", b.diagnostics());
    Ok(())
}

#[test]
fn fake_camera_and_microphone_are_available() -> anyhow::Result<()> {
    let site = StaticSite::serve(&web_dir())?;
    let mut b = Browser::launch("cam", &format!("{}/", site.url()))?;
    let kinds = b.eval(
        "navigator.mediaDevices.getUserMedia({audio: true, video: {width: 960, height: 540}})
           .then(s => s.getTracks().map(t => t.kind).sort())",
    )?;
    assert_eq!(
        kinds,
        serde_json::json!(["audio", "video"]),
        "{}",
        b.diagnostics()
    );
    Ok(())
}

#[test]
fn autojoin_without_token_endpoint_reports_an_error() -> anyhow::Result<()> {
    let site = StaticSite::serve(&web_dir())?;
    let url = format!("{}/?room=r1&name=Bob&autojoin=1", site.url());
    let mut b = Browser::launch("bob", &url)?;
    let status = wait_for("an error status", Duration::from_secs(20), || {
        let state = b.eval("document.querySelector('#status').dataset.state")?;
        Ok((state == "error").then(|| b.eval("document.querySelector('#status').textContent")))
    })??;
    let text = status.as_str().unwrap_or_default().to_string();
    assert!(
        text.contains("404"),
        "status should name the failed token request: {text}"
    );
    assert_eq!(b.stats()?["joined"], Value::Bool(false));
    // The form is usable again for another attempt.
    assert_eq!(
        b.eval("document.querySelector('#join-btn').disabled")?,
        false
    );
    Ok(())
}
