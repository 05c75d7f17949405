//! Room data over data channels (issue 17, point 5) between two Chromium pages: the demo
//! page opens `shardcast` (reliable) and `shardcast-lossy` (unordered, no retransmissions)
//! before its first offer; what one participant sends reaches the other with the sender's
//! identity, over Chromium's SCTP/DCEP against the server's (str0m's). Revoking `canChat`
//! over REST stops a participant's messages at the node; granting it again lets them through.
//! A second stack: aiortc (its SCTP in Python) joins over the signaling WebSocket with only a
//! data channel and exchanges room data with a Chromium page.

use std::time::Duration;

use serde_json::{json, Value};
use shardcast_tests::chromium::Browser;
use shardcast_tests::interop::StackPeer;
use shardcast_tests::layers::report;
use shardcast_tests::server::Server;

/// The room data a page received: (from, label, text).
fn received(s: &Value) -> Vec<(String, String, String)> {
    s["data"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|m| {
                    let f = |k: &str| m[k].as_str().unwrap_or_default().to_string();
                    (f("from"), f("label"), f("text"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has(s: &Value, from: &str, label: &str, text: &str) -> bool {
    received(s)
        .iter()
        .any(|(f, l, t)| f == from && l == label && t == text)
}

fn channels_open(s: &Value) -> bool {
    s["dataChannels"]["shardcast"] == "open" && s["dataChannels"]["shardcast-lossy"] == "open"
}

fn send(b: &mut Browser, text: &str, lossy: bool) -> anyhow::Result<()> {
    let sent = b.eval(&format!("shardcastSendData({}, {lossy})", json!(text)))?;
    anyhow::ensure!(sent == true, "the page could not send {text:?}: {sent}");
    Ok(())
}

#[test]
fn room_data_reaches_the_other_page_with_its_sender_and_follows_can_chat() -> anyhow::Result<()> {
    let server = Server::start()?;
    let mut alice = Browser::launch("alice", &server.page_url("data", "alice", "Alice"))?;
    let bob_url = format!("{}&publish=0", server.page_url("data", "bob", "Bob"));
    let mut bob = Browser::launch("bob", &bob_url)?;
    let fail = |e: anyhow::Error, b: &[&Browser]| e.context(report(&server, b));

    for b in [&mut alice, &mut bob] {
        b.wait_stats(
            "both room-data channels open",
            Duration::from_secs(30),
            channels_open,
        )
        .map_err(|e| e.context(server.log_tail(40)))?;
    }

    send(&mut alice, "hello from alice", false)?;
    bob.wait_stats("alice's reliable message", Duration::from_secs(10), |s| {
        has(s, "alice", "shardcast", "hello from alice")
    })
    .map_err(|e| fail(e, &[&alice, &bob]))?;

    // The lossy channel: a reaction, as the page's button sends it. Lossy means a message
    // may be lost on a lossy link; on loopback a few tries are plenty.
    let reaction = r#"{"reaction":"👍"}"#;
    let mut got = false;
    for _ in 0..5 {
        send(&mut bob, reaction, true)?;
        if alice
            .wait_stats("bob's reaction", Duration::from_secs(3), |s| {
                has(s, "bob", "shardcast-lossy", reaction)
            })
            .is_ok()
        {
            got = true;
            break;
        }
    }
    anyhow::ensure!(got, "bob's lossy reaction never arrived");
    let alice_stats = alice.stats()?;
    assert!(
        !has(&alice_stats, "alice", "shardcast", "hello from alice"),
        "never echoed to its sender"
    );

    // canChat revoked: bob's messages stop at the node. Granted again: they flow, on the same
    // ordered channel, so the one sent while revoked would have arrived first.
    let path = "/v1/rooms/data/participants/bob/permissions";
    server.tenant_request(
        reqwest::Method::PATCH,
        path,
        Some(json!({ "canChat": false })),
    )?;
    // The node hears of it through the room bus and a node call: well under a second here.
    std::thread::sleep(Duration::from_millis(1500));
    send(&mut bob, "while revoked", false)?;
    std::thread::sleep(Duration::from_millis(500));
    server.tenant_request(
        reqwest::Method::PATCH,
        path,
        Some(json!({ "canChat": true })),
    )?;
    std::thread::sleep(Duration::from_millis(1500));
    send(&mut bob, "granted again", false)?;
    let s = alice
        .wait_stats(
            "bob's message after canChat came back",
            Duration::from_secs(10),
            |s| has(s, "bob", "shardcast", "granted again"),
        )
        .map_err(|e| fail(e, &[&alice, &bob]))?;
    assert!(
        !has(&s, "bob", "shardcast", "while revoked"),
        "a message sent without canChat reached the room: {:?}",
        received(&s)
    );
    Ok(())
}

#[test]
fn aiortc_and_chromium_exchange_room_data() -> anyhow::Result<()> {
    let server = Server::start()?;
    let room = "data-interop";
    let mut alice = Browser::launch("alice", &server.page_url(room, "alice", "Alice"))?;
    alice
        .wait_stats(
            "both room-data channels open",
            Duration::from_secs(30),
            channels_open,
        )
        .map_err(|e| e.context(server.log_tail(40)))?;

    // bob: a viewer that receives no media (no canSubscribe: no server offers), chat allowed.
    let token = server.tenant_request(
        reqwest::Method::POST,
        &format!("/v1/rooms/{room}/tokens"),
        Some(json!({ "identity": "bob", "role": "viewer", "grants": {
            "canPublish": false, "canSubscribe": false, "canChat": true, "roomAdmin": false } })),
    )?["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let dir = tempfile::tempdir()?;
    let ws_url = format!("{}/v1/rtc", server.base_url.replacen("http", "ws", 1));
    let mut bob =
        StackPeer::aiortc_room_data(&ws_url, &token, 60, "hello from aiortc", dir.path())?;
    let fail = |what: &str, bob: &StackPeer| {
        anyhow::anyhow!(
            "{what}\n{}\n--- server ---\n{}",
            bob.log_tail(30),
            server.log_tail(30)
        )
    };
    shardcast_tests::wait_for("aiortc's channel to open", Duration::from_secs(30), || {
        bob.check_running()?;
        Ok(bob
            .reports()
            .iter()
            .any(|r| r["event"] == "open")
            .then_some(()))
    })
    .map_err(|e| fail(&format!("{e:#}"), &bob))?;

    alice
        .wait_stats("aiortc's message", Duration::from_secs(10), |s| {
            has(s, "bob", "shardcast", "hello from aiortc")
        })
        .map_err(|e| e.context(fail("", &bob)))?;
    send(&mut alice, "hello from chromium", false)?;
    let got = shardcast_tests::wait_for(
        "chromium's message at aiortc",
        Duration::from_secs(10),
        || {
            Ok(bob
                .reports()
                .into_iter()
                .find(|r| r["event"] == "data" && r["from"] == "alice"))
        },
    )
    .map_err(|e| fail(&format!("{e:#}"), &bob))?;
    assert_eq!(got["text"], "hello from chromium", "{got}");
    assert_eq!(got["binary"], true, "delivered as a binary envelope: {got}");
    assert!(
        !bob.reports().iter().any(|r| r["event"] == "garbage"),
        "{}",
        bob.log_tail(20)
    );
    Ok(())
}
