//! Two real browsers join one room through the demo page served by `shardcast serve`.
//! Each must decode the other's video and hear its audio (from the page's getStats()), and
//! a chat message typed in one must arrive in the other.

use std::time::Duration;

use serde_json::Value;
use shardcast_tests::chromium::Browser;
use shardcast_tests::server::Server;

/// What the page reports about `who` (a remote participant), as numbers.
fn remote(stats: &Value, who: &str, kind: &str, field: &str) -> f64 {
    stats["remote"][who][kind][field].as_f64().unwrap_or(0.0)
}

fn fail_report(server: &Server, browsers: &[&Browser]) -> String {
    let mut out = format!("--- server log (last 40):\n{}\n", server.log_tail(40));
    for b in browsers {
        out.push_str(&b.diagnostics());
        out.push('\n');
    }
    out
}

#[test]
fn two_browsers_see_and_hear_each_other_and_chat() -> anyhow::Result<()> {
    let server = Server::start()?;
    let mut alice = Browser::launch("alice", &server.page_url("call", "alice", "Alice"))?;
    let mut bob = Browser::launch("bob", &server.page_url("call", "bob", "Bob"))?;

    for (me, other) in [(&mut alice, "bob"), (&mut bob, "alice")] {
        let r = me.wait_stats(
            &format!("decoding {other}'s video and hearing their audio"),
            Duration::from_secs(20),
            |s| {
                remote(s, other, "video", "framesDecoded") > 50.0
                    && remote(s, other, "audio", "totalSamplesReceived") > 0.0
                    && remote(s, other, "audio", "totalAudioEnergy") > 0.0
            },
        );
        if let Err(e) = r {
            let report = fail_report(&server, &[me]);
            return Err(e.context(report));
        }
    }

    // Each page publishes its camera as three simulcast layers (rids q, h, f), and the
    // server's answer accepted all three: every layer is being encoded and sent.
    for b in [&mut alice, &mut bob] {
        let s = b.wait_stats(
            "three simulcast layers sent",
            Duration::from_secs(10),
            |s| {
                let sending: Vec<&str> = s["outbound"]
                    .as_array()
                    .map(|o| {
                        o.iter()
                            .filter(|e| e["kind"] == "video" && e["bytesSent"].as_u64() > Some(0))
                            .filter_map(|e| e["rid"].as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                ["q", "h", "f"].iter().all(|r| sending.contains(r))
            },
        )?;
        assert_eq!(s["joined"], true);
    }

    // Alice types into the chat box and sends it, as a user would.
    alice.eval(
        "(() => { const i = document.querySelector('#chat-input'); i.value = 'hello from alice';
                  document.querySelector('#chat-form').requestSubmit(); return true; })()",
    )?;
    let got = bob.wait_stats("alice's chat message", Duration::from_secs(10), |s| {
        s["chat"].as_array().is_some_and(|c| {
            c.iter()
                .any(|m| m["text"] == "hello from alice" && m["identity"] == "alice")
        })
    });
    if let Err(e) = got {
        let report = fail_report(&server, &[&alice, &bob]);
        return Err(e.context(report));
    }
    // The sender sees its own message too (the server stores it, then fans it out).
    alice.wait_stats("its own chat message", Duration::from_secs(10), |s| {
        s["chat"]
            .as_array()
            .is_some_and(|c| c.iter().any(|m| m["text"] == "hello from alice"))
    })?;
    // The page shows it in the chat log.
    let shown = bob.eval("document.querySelector('#chat-log').textContent")?;
    assert!(
        shown
            .as_str()
            .unwrap_or_default()
            .contains("hello from alice"),
        "chat log shows: {shown}"
    );
    Ok(())
}

#[test]
fn a_receive_only_participant_sees_and_hears_the_publisher() -> anyhow::Result<()> {
    let server = Server::start()?;
    let mut alice = Browser::launch("alice", &server.page_url("watch", "alice", "Alice"))?;
    let viewer_url = format!("{}&publish=0", server.page_url("watch", "vic", "Vic"));
    let mut vic = Browser::launch("vic", &viewer_url)?;
    let r = vic.wait_stats(
        "decoding alice's video and hearing her audio",
        Duration::from_secs(20),
        |s| {
            remote(s, "alice", "video", "framesDecoded") > 50.0
                && remote(s, "alice", "audio", "totalSamplesReceived") > 0.0
        },
    );
    if let Err(e) = r {
        let report = fail_report(&server, &[&vic, &alice]);
        return Err(e.context(report));
    }
    // Vic publishes nothing, so alice receives no media from vic.
    let s = alice.stats()?;
    assert_eq!(remote(&s, "vic", "video", "bytesReceived"), 0.0, "{s}");
    assert!(
        vic.stats()?["outbound"]
            .as_array()
            .is_none_or(|o| o.is_empty()),
        "a receive-only page sends no media"
    );
    Ok(())
}
