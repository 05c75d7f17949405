//! Three browsers in one room. One hides another's tile: the server pauses that video, so
//! its bytes stop growing, while the third participant's video keeps flowing. Showing the
//! tile again resumes it.

use std::time::{Duration, Instant};

use serde_json::Value;
use shardcast_tests::chromium::Browser;
use shardcast_tests::server::Server;

fn video_bytes(stats: &Value, who: &str) -> u64 {
    stats["remote"][who]["video"]["bytesReceived"]
        .as_u64()
        .unwrap_or(0)
}

fn frames(stats: &Value, who: &str) -> u64 {
    stats["remote"][who]["video"]["framesDecoded"]
        .as_u64()
        .unwrap_or(0)
}

fn click_tile_button(b: &mut Browser, identity: &str) -> anyhow::Result<()> {
    let js = format!(
        "(() => {{ const b = document.querySelector('.tile[data-identity=\"{identity}\"] .hide-btn');
                  if (!b) throw new Error('no hide button for {identity}'); b.click(); return b.textContent; }})()"
    );
    b.eval(&js)?;
    Ok(())
}

/// Video bytes from `who` over `window`, measured after letting in-flight packets drain.
fn growth_over(b: &mut Browser, who: &str, window: Duration) -> anyhow::Result<u64> {
    let before = video_bytes(&b.stats()?, who);
    let end = Instant::now() + window;
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(video_bytes(&b.stats()?, who).saturating_sub(before))
}

#[test]
fn hiding_a_tile_pauses_that_video_and_showing_resumes_it() -> anyhow::Result<()> {
    let server = Server::start()?;
    let mut alice = Browser::launch("alice", &server.page_url("hide", "alice", "Alice"))?;
    let _bob = Browser::launch("bob", &server.page_url("hide", "bob", "Bob"))?;
    let _carol = Browser::launch("carol", &server.page_url("hide", "carol", "Carol"))?;

    let flowing = alice.wait_stats("video from bob and carol", Duration::from_secs(30), |s| {
        frames(s, "bob") > 30 && frames(s, "carol") > 30
    });
    if let Err(e) = flowing {
        return Err(e.context(format!(
            "server log:\n{}\n{}",
            server.log_tail(40),
            alice.diagnostics()
        )));
    }

    click_tile_button(&mut alice, "bob")?;
    assert_eq!(alice.stats()?["hidden"], serde_json::json!(["bob"]));
    // Give the pause a moment to reach the media node and the last packets to arrive.
    std::thread::sleep(Duration::from_secs(2));
    let bob_hidden = growth_over(&mut alice, "bob", Duration::from_secs(3))?;
    let carol_meanwhile = growth_over(&mut alice, "carol", Duration::from_secs(3))?;
    assert_eq!(bob_hidden, 0, "bob's video kept flowing while hidden");
    assert!(
        carol_meanwhile > 0,
        "carol's video stopped although only bob was hidden"
    );

    click_tile_button(&mut alice, "bob")?;
    let resumed_from = video_bytes(&alice.stats()?, "bob");
    let frames_from = frames(&alice.stats()?, "bob");
    alice.wait_stats("bob's video to resume", Duration::from_secs(15), |s| {
        video_bytes(s, "bob") > resumed_from && frames(s, "bob") > frames_from + 10
    })?;
    Ok(())
}
