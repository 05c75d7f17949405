//! etcd stopped during a call (10 s here instead of the 30 s, to keep CI short; the
//! code paths are the same — nothing on the media path waits on the store): media between
//! joined participants keeps flowing through the outage; a new join is refused with
//! `store_unavailable` and a token request with `503 store_unavailable`, neither naming an
//! internal address or etcd error; once etcd is back everything recovers without a restart:
//! a new join succeeds and sees the chat sent before the outage.

use std::time::{Duration, Instant};

use shardcast_tests::cluster::{ControlPlane, MediaNodeProcess, Rest};
use shardcast_tests::etcd::Etcd;
use shardcast_tests::participant::{pump_until, try_join, Participant};
use shardcast_tests::wait_for;

const OUTAGE: Duration = Duration::from_secs(10);

fn names_internals(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    ["127.0.0.1", "etcd", "grpc", "tonic", "transport", "http://"]
        .iter()
        .any(|w| t.contains(w))
}

#[test]
fn an_etcd_outage_keeps_media_flowing_refuses_joins_and_recovers() -> anyhow::Result<()> {
    let mut etcd = Etcd::start()?;
    let _node = MediaNodeProcess::start(&etcd, "node-a", 10)?;
    let cp = ControlPlane::start(&etcd)?;
    let mut rest = Rest::new(&cp.base_url)?;
    rest.create_tenant("acme")?;
    rest.create_room("room")?;
    let mut sub = Participant::join(&cp.base_url, &rest.token("room", "sub")?, "sub", false)?;
    let mut publ = Participant::join(&cp.base_url, &rest.token("room", "pub")?, "pub", true)?;
    let late = rest.token("room", "late")?;
    pump_until(
        &mut [&mut publ, &mut sub],
        "media before the outage",
        Duration::from_secs(30),
        |p| p[1].received() > 50,
    )?;
    publ.chat("sent before the outage")?;
    sub.wait_for("chat", Duration::from_secs(5))?;

    etcd.stop();
    let down = Instant::now();
    // A new join: refused with a stable code, no internals.
    let refused = try_join(&cp.base_url, &late, Duration::from_secs(30))?;
    println!(
        "join during the outage answered after {:?}: {refused}",
        down.elapsed()
    );
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "store_unavailable", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(!names_internals(message), "{refused}");
    // A token request (REST) alike.
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .post(format!("{}/v1/rooms/room/tokens", cp.base_url))
        .basic_auth("nobody", Some("nothing"))
        .json(&serde_json::json!({"identity": "x"}))
        .send()?;
    let status = r.status().as_u16();
    let body = r.text()?;
    println!("token request during the outage: {status} {body}");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"store_unavailable\""), "{body}");
    assert!(!names_internals(&body), "{body}");
    // Media keeps flowing, second by second, until the outage ends.
    while down.elapsed() < OUTAGE {
        let before = sub.received();
        pump_until(
            &mut [&mut publ, &mut sub],
            "media during the outage",
            Duration::from_secs(2),
            |p| p[1].received() > before + 20,
        )?;
        std::thread::sleep(Duration::from_millis(500));
    }

    etcd.restart()?;
    let up = Instant::now();
    let joined = wait_for("a join after the outage", Duration::from_secs(30), || {
        let token = match rest.token("room", "after") {
            Ok(t) => t,
            Err(_) => return Ok(None),
        };
        let v = try_join(&cp.base_url, &token, Duration::from_secs(15))?;
        Ok((v["type"] == "joined").then_some(v))
    })?;
    println!("joined again {:?} after etcd came back", up.elapsed());
    let chat = joined["chat"].as_array().cloned().unwrap_or_default();
    assert!(
        chat.iter().any(|c| c["text"] == "sent before the outage"),
        "{joined}"
    );
    let before = sub.received();
    pump_until(
        &mut [&mut publ, &mut sub],
        "media after the outage",
        Duration::from_secs(10),
        |p| p[1].received() > before + 50,
    )?;
    Ok(())
}
