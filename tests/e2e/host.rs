//! Host controls through the demo page: a host kicks a participant from the participant
//! list; the kicked page leaves the call and says why, the host's list drops them.
//! (Dev-mode tokens are host tokens, so every page here is a host.)

use std::time::Duration;

use shardcast_tests::chromium::Browser;
use shardcast_tests::server::Server;

fn has_participant(stats: &serde_json::Value, identity: &str) -> bool {
    stats["participants"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["identity"] == identity))
}

#[test]
fn a_host_kicks_a_participant_from_the_list() -> anyhow::Result<()> {
    let server = Server::start()?;
    let mut alice = Browser::launch("alice", &server.page_url("kick", "alice", "Alice"))?;
    let mut bob = Browser::launch("bob", &server.page_url("kick", "bob", "Bob"))?;
    alice.wait_stats(
        "bob in the participant list",
        Duration::from_secs(20),
        |s| has_participant(s, "bob"),
    )?;
    // The page shows host controls to hosts.
    assert_eq!(alice.eval("document.querySelector('#participants li[data-identity=\"bob\"] button.danger').textContent")?, "Kick");
    alice.eval(
        "document.querySelector('#participants li[data-identity=\"bob\"] button.danger').click()",
    )?;

    let r = bob.wait_stats("bob to be removed", Duration::from_secs(10), |s| {
        s["joined"] == false && s["status"].as_str().is_some_and(|t| t.contains("removed"))
    });
    if let Err(e) = r {
        return Err(e.context(format!(
            "server:\n{}\n{}",
            server.log_tail(30),
            bob.diagnostics()
        )));
    }
    alice.wait_stats("bob gone from alice's list", Duration::from_secs(10), |s| {
        !has_participant(s, "bob")
    })?;
    Ok(())
}
