//! A page that loses its signaling socket mid-call resumes the same session (join with
//! `resume`, then an ICE-restart offer) and the call goes on in both directions.

use std::time::Duration;

use serde_json::Value;
use shardcast_tests::chromium::Browser;
use shardcast_tests::server::Server;

fn frames(s: &Value, who: &str) -> u64 {
    s["remote"][who]["video"]["framesDecoded"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_dropped_signaling_socket_resumes_the_session() -> anyhow::Result<()> {
    let server = Server::start()?;
    let mut alice = Browser::launch("alice", &server.page_url("resume", "alice", "Alice"))?;
    let mut bob = Browser::launch("bob", &server.page_url("resume", "bob", "Bob"))?;
    alice.wait_stats("bob's video", Duration::from_secs(20), |s| {
        frames(s, "bob") > 30
    })?;
    let session = alice.stats()?["session"].clone();
    assert!(session.is_string(), "joined carries a session id");

    // Drop the socket the way a network change would (the page did not ask to leave).
    alice.eval("S.ws.close(); true")?;
    let r = alice.wait_stats("the same session back", Duration::from_secs(15), |s| {
        s["joined"] == true
            && s["session"] == session
            && s["status"]
                .as_str()
                .is_some_and(|t| t.starts_with("in room"))
    });
    if let Err(e) = r {
        let report = format!("server:\n{}\n{}", server.log_tail(30), alice.diagnostics());
        return Err(e.context(report));
    }
    let a0 = frames(&alice.stats()?, "bob");
    let b0 = frames(&bob.stats()?, "alice");
    alice.wait_stats("bob's video still flowing", Duration::from_secs(15), |s| {
        frames(s, "bob") > a0 + 30
    })?;
    bob.wait_stats(
        "alice's video still flowing",
        Duration::from_secs(15),
        |s| frames(s, "alice") > b0 + 30,
    )?;
    // Nobody left: bob never saw alice go.
    let ps = bob.stats()?["participants"].clone();
    assert!(
        ps.as_array()
            .is_some_and(|p| p.iter().any(|p| p["identity"] == "alice")),
        "{ps}"
    );
    Ok(())
}
