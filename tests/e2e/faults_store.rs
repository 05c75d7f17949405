//! etcd failing during a call, in two ways:
//!
//! - stopped (10 s here instead of the 30 s, to keep CI short; the code paths are the
//!   same — nothing on the media path waits on the store): its port refuses connections, so
//!   every store call fails at once;
//! - frozen (SIGSTOP): its port still accepts TCP and the control plane's connection stays
//!   up, but no request is ever answered — only the control plane's own etcd request
//!   timeout ends a call.
//!
//! Either way media between joined participants keeps flowing; a new join is refused with
//! `store_unavailable` and a token request with `503 store_unavailable`, neither naming an
//! internal address or etcd error, and neither hanging; once etcd is back everything recovers
//! without a restart: a new join succeeds and sees the chat sent before the outage.

use std::time::{Duration, Instant};

use shardcast_tests::cluster_call::ClusterCall;
use shardcast_tests::participant::try_join;
use shardcast_tests::wait_for;

const OUTAGE: Duration = Duration::from_secs(10);
/// The control plane's etcd request timeout in the freeze test (`etcd.request_timeout_ms`,
/// default 10 s): the longest one store call waits on a frozen etcd. 12 s, so the freeze
/// also outlasts a 10 s lease (the session and bus leases are 30 s; a freeze longer than
/// them, with the records written again after it, is `faults_lease.rs`).
const ETCD_REQUEST_TIMEOUT: Duration = Duration::from_secs(12);
/// A join or REST call that stops at its first failed store call answers within the request
/// timeout and a little work; one that retried or chained store calls would take a multiple,
/// and one that ignored the configured timeout would answer after the default 10 s.
const FROZEN_ANSWER_WITHIN: Duration = Duration::from_secs(15);
const FROZEN_ANSWER_AFTER: Duration = Duration::from_secs(11);

fn names_internals(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    ["127.0.0.1", "etcd", "grpc", "tonic", "transport", "http://"]
        .iter()
        .any(|w| t.contains(w))
}

#[test]
fn an_etcd_outage_keeps_media_flowing_refuses_joins_and_recovers() -> anyhow::Result<()> {
    let mut c = ClusterCall::start(10, "")?;
    let late = c.rest.token("room", "late")?;
    c.publ.chat("sent before the outage")?;
    c.sub.wait_for("chat", Duration::from_secs(5))?;

    c.etcd.stop();
    let down = Instant::now();
    // A new join: refused with a stable code, no internals.
    let refused = try_join(&c.cp.base_url, &late, Duration::from_secs(30))?;
    println!(
        "join during the outage answered after {:?}: {refused}",
        down.elapsed()
    );
    assert_store_unavailable_join(&refused);
    // A token request (REST) alike.
    let (status, body) = token_request(&c.cp.base_url)?;
    println!("token request during the outage: {status} {body}");
    assert_store_unavailable_rest(status, &body);
    // Media keeps flowing, second by second, until the outage ends.
    while down.elapsed() < OUTAGE {
        let before = c.sub.received();
        c.pump_until(
            "media during the outage",
            Duration::from_secs(2),
            |_, sub| sub.received() > before + 20,
        )?;
        std::thread::sleep(Duration::from_millis(500));
    }

    c.etcd.restart()?;
    let up = Instant::now();
    join_again_and_see_the_old_chat(&mut c, "sent before the outage")?;
    println!("joined again {:?} after etcd came back", up.elapsed());
    Ok(())
}

#[test]
fn a_frozen_etcd_gets_joins_refused_in_bounded_time_keeps_media_and_recovers() -> anyhow::Result<()>
{
    let mut c = ClusterCall::start_with(
        10,
        "",
        &format!(
            "[etcd]\nrequest_timeout_ms = {}\n",
            ETCD_REQUEST_TIMEOUT.as_millis()
        ),
    )?;
    let late = c.rest.token("room", "late")?;
    c.publ.chat("sent before the freeze")?;
    c.sub.wait_for("chat", Duration::from_secs(5))?;

    // The join and the token request wait on the frozen store in threads of their own, while
    // this thread keeps the call's media moving and checks it flows throughout.
    c.etcd.freeze();
    let frozen = Instant::now();
    let base = c.cp.base_url.clone();
    let join = std::thread::spawn(move || {
        let started = Instant::now();
        let answer = try_join(&base, &late, Duration::from_secs(30));
        (started.elapsed(), answer)
    });
    let base = c.cp.base_url.clone();
    let token = std::thread::spawn(move || {
        let started = Instant::now();
        let answer = token_request(&base);
        (started.elapsed(), answer)
    });
    let mut slices = 0;
    while !(join.is_finished() && token.is_finished()) {
        anyhow::ensure!(
            frozen.elapsed() < Duration::from_secs(40),
            "a join or token request is still waiting {:?} into the freeze",
            frozen.elapsed()
        );
        let before = c.sub.received();
        c.pump_until(
            "media while etcd is frozen",
            Duration::from_secs(2),
            |_, sub| sub.received() > before + 20,
        )
        .map_err(|e| e.context(c.cp.log_tail(30)))?;
        slices += 1;
    }
    let media_for = frozen.elapsed();
    let (join_took, refused) = join.join().expect("join thread");
    let refused = refused?;
    println!("join while etcd is frozen answered after {join_took:?}: {refused}");
    assert_store_unavailable_join(&refused);
    assert!(
        (FROZEN_ANSWER_AFTER..=FROZEN_ANSWER_WITHIN).contains(&join_took),
        "the join waited {join_took:?} on a frozen etcd (request timeout \
         {ETCD_REQUEST_TIMEOUT:?})"
    );
    let (token_took, answer) = token.join().expect("token thread");
    let (status, body) = answer?;
    println!("token request while etcd is frozen: {status} {body} after {token_took:?}");
    assert_store_unavailable_rest(status, &body);
    assert!(
        (FROZEN_ANSWER_AFTER..=FROZEN_ANSWER_WITHIN).contains(&token_took),
        "the token request waited {token_took:?} on a frozen etcd (request timeout \
         {ETCD_REQUEST_TIMEOUT:?})"
    );
    println!("media flowed for {media_for:?} of freeze ({slices} two-second checks)");

    c.etcd.thaw();
    let thawed = Instant::now();
    join_again_and_see_the_old_chat(&mut c, "sent before the freeze")?;
    println!(
        "joined again {:?} after etcd was continued",
        thawed.elapsed()
    );
    Ok(())
}

/// A join refused for the store: the stable code, nothing internal in the message.
fn assert_store_unavailable_join(refused: &serde_json::Value) {
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "store_unavailable", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(!names_internals(message), "{refused}");
}

/// A REST answer refused for the store: 503 with the stable code, nothing internal.
fn assert_store_unavailable_rest(status: u16, body: &str) {
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"store_unavailable\""), "{body}");
    assert!(!names_internals(body), "{body}");
}

/// A token request (REST) as an application back-end makes it; its status and body.
fn token_request(base_url: &str) -> anyhow::Result<(u16, String)> {
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .post(format!("{base_url}/v1/rooms/room/tokens"))
        .basic_auth("nobody", Some("nothing"))
        .json(&serde_json::json!({"identity": "x"}))
        .send()?;
    let status = r.status().as_u16();
    Ok((status, r.text()?))
}

/// Once the store is back: a new participant joins (retrying while the control plane
/// reconnects) and sees `chat`, sent before the outage; the call's media still flows.
fn join_again_and_see_the_old_chat(c: &mut ClusterCall, chat: &str) -> anyhow::Result<()> {
    let joined = wait_for("a join after the outage", Duration::from_secs(30), || {
        let token = match c.rest.token("room", "after") {
            Ok(t) => t,
            Err(_) => return Ok(None),
        };
        let v = try_join(&c.cp.base_url, &token, Duration::from_secs(15))?;
        Ok((v["type"] == "joined").then_some(v))
    })?;
    let history = joined["chat"].as_array().cloned().unwrap_or_default();
    assert!(history.iter().any(|m| m["text"] == chat), "{joined}");
    let before = c.sub.received();
    c.pump_until(
        "media after the outage",
        Duration::from_secs(10),
        |_, sub| sub.received() > before + 50,
    )
    .map_err(|e| e.context(c.cp.log_tail(40)))
}
