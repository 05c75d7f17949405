//! A control plane killed outright (SIGKILL by PID: no leave, no cleanup) leaves no ghosts:
//! its participant records live on its session lease (`[cluster] session_lease_secs`), so
//! they vanish from the room within one lease ttl, and the seats of a room with
//! `max_participants` that they held are free again for joins through another instance.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};
use shardcast_tests::cluster::{ControlPlane, Rest};
use shardcast_tests::etcd::Etcd;
use shardcast_tests::participant::try_join;
use tokio_tungstenite::tungstenite::{self, stream::MaybeTlsStream, Message, WebSocket};

const LEASE_SECS: u64 = 3;

/// Joins over signaling and keeps the socket open (the session stays until it closes).
fn join_and_stay(
    base_url: &str,
    token: &str,
) -> anyhow::Result<WebSocket<MaybeTlsStream<TcpStream>>> {
    let url = format!("{}/v1/rtc", base_url.replacen("http://", "ws://", 1));
    let (mut ws, _) = tungstenite::connect(&url).with_context(|| format!("connect {url}"))?;
    ws.send(Message::text(
        json!({"type": "join", "token": token}).to_string(),
    ))?;
    loop {
        if let Message::Text(t) = ws.read()? {
            let v: Value = serde_json::from_str(&t)?;
            match v["type"].as_str() {
                Some("joined") => return Ok(ws),
                Some("error") => anyhow::bail!("join refused: {v}"),
                _ => {}
            }
        }
    }
}

#[test]
fn a_killed_control_planes_participants_vanish_within_its_lease() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let config = format!("[cluster]\nsession_lease_secs = {LEASE_SECS}\n");
    let mut doomed = ControlPlane::start_with_config(&etcd, &config)?;
    let other = ControlPlane::start_with_config(&etcd, &config)?;
    let mut rest = Rest::new(&other.base_url)?;
    rest.create_tenant("acme")?;
    rest.create_room_with("capped", json!({"max_participants": 2}))?;
    let _a = join_and_stay(&doomed.base_url, &rest.token("capped", "a")?)?;
    let _b = join_and_stay(&doomed.base_url, &rest.token("capped", "b")?)?;
    assert_eq!(rest.participants("capped")?.len(), 2);
    let refused = try_join(
        &other.base_url,
        &rest.token("capped", "c")?,
        Duration::from_secs(10),
    )?;
    assert_eq!(refused["code"], "room_full", "{refused}");

    doomed.kill();
    let killed = Instant::now();
    // Gone within one ttl of the last keep-alive (plus etcd's expiry check, ~0.5 s).
    let limit = Duration::from_secs(LEASE_SECS) + Duration::from_secs(2);
    loop {
        let left = rest.participants("capped")?;
        if left.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() < limit,
            "after {:?}, still listed: {left:?}",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("participants gone {:?} after the kill", killed.elapsed());

    // The seats they held are free: two new participants fit, through the other instance.
    // (A seat is kept `SEAT_GRACE_MS` = 5 s after it was taken whatever happens: the
    // deadline allows for it.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stay = Vec::new();
    for who in ["c", "d"] {
        loop {
            match join_and_stay(&other.base_url, &rest.token("capped", who)?) {
                Ok(ws) => {
                    stay.push(ws);
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("{who}: {e}; again");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e).context(format!("{who} never got a seat")),
            }
        }
    }
    let listed: Vec<String> = rest
        .participants("capped")?
        .iter()
        .filter_map(|p| p["identity"].as_str().map(str::to_string))
        .collect();
    assert_eq!(listed, ["c", "d"]);
    Ok(())
}
