//! SIGTERM on each role, as systemd stops a service (`TimeoutStopSec=15s` for serve and
//! controlplane, 30 s for medianode, in systemd/): the process stops taking new work
//! (`/readyz` 503 with `shutdown`, joins refused with `server_shutdown`), tells its clients
//! (`server_shutdown`; a media node first marks itself draining, so its sessions get
//! `node_lost` with reason `draining` and move to another node while it still forwards),
//! a media node revokes its lease (its key leaves `/v1/nodes` at once, long before its ttl),
//! and the process exits 0 within `shutdown.timeout_secs`, below the stop timeout.

use std::time::{Duration, Instant};

use serde_json::Value;
use shardcast_tests::cluster::{ControlPlane, MediaNodeProcess, Rest};
use shardcast_tests::cluster_call::ClusterCall;
use shardcast_tests::etcd::Etcd;
use shardcast_tests::participant::{try_join, Participant};
use shardcast_tests::server::Server;
use shardcast_tests::wait_for;

/// Long enough to probe the stopping instance; `timeout_secs` stays below systemd's 15 s.
const SHUTDOWN: &str = "[shutdown]\nlinger_ms = 4000\ntimeout_secs = 10\n";
/// systemd's TimeoutStopSec for serve and controlplane (systemd/*.service).
const SYSTEMD_STOP_TIMEOUT: Duration = Duration::from_secs(15);

fn readyz(base: &str) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?
        .get(format!("{base}/readyz"))
        .send()?;
    Ok((r.status().as_u16(), r.json()?))
}

fn assert_stopping_readyz(base: &str) -> anyhow::Result<()> {
    let (status, body) = readyz(base)?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["checks"]["shutdown"], "shutting down", "{body}");
    Ok(())
}

#[test]
fn serve_on_sigterm_tells_its_clients_refuses_joins_and_exits_0() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("shutdown.toml");
    std::fs::write(&config, SHUTDOWN)?;
    let mut server = Server::start_with_args(&["--config", config.to_str().unwrap()])?;
    assert_eq!(readyz(&server.base_url)?.0, 200);
    let late = server.dev_token("stop", "late")?;
    let mut alice = Participant::join(
        &server.base_url,
        &server.dev_token("stop", "alice")?,
        "alice",
        true,
    )?;

    let sent = Instant::now();
    server.terminate();
    alice
        .wait_for("server_shutdown", Duration::from_secs(5))
        .map_err(|e| e.context(server.log_tail(30)))?;
    println!("serve: server_shutdown after {:?}", sent.elapsed());
    // Still listening (linger): not ready, and a new join is refused with a stable code.
    assert_stopping_readyz(&server.base_url)?;
    let refused = try_join(&server.base_url, &late, Duration::from_secs(5))?;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "server_shutdown", "{refused}");
    let code = server.wait_exit(SYSTEMD_STOP_TIMEOUT.saturating_sub(sent.elapsed()))?;
    assert_eq!(code, Some(0), "{}", server.log_tail(30));
    println!("serve: exited 0 after {:?}", sent.elapsed());
    Ok(())
}

#[test]
fn controlplane_on_sigterm_tells_its_clients_and_their_participants_leave() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let _node = MediaNodeProcess::start(&etcd, "node-a", 10)?;
    let mut stopping = ControlPlane::start_with_config(&etcd, SHUTDOWN)?;
    let other = ControlPlane::start(&etcd)?;
    let mut rest = Rest::new(&other.base_url)?;
    rest.create_tenant("acme")?;
    rest.create_room("room")?;
    let late = rest.token("room", "late")?;
    let mut alice = Participant::join(
        &stopping.base_url,
        &rest.token("room", "alice")?,
        "alice",
        true,
    )?;
    assert_eq!(rest.participants("room")?.len(), 1);

    let sent = Instant::now();
    stopping.terminate();
    alice
        .wait_for("server_shutdown", Duration::from_secs(5))
        .map_err(|e| e.context(stopping.log_tail(30)))?;
    assert_stopping_readyz(&stopping.base_url)?;
    let refused = try_join(&stopping.base_url, &late, Duration::from_secs(5))?;
    assert_eq!(refused["code"], "server_shutdown", "{refused}");
    // The room saw alice leave: the other instance lists nobody.
    wait_for("alice's record to go", Duration::from_secs(5), || {
        Ok(rest.participants("room")?.is_empty().then_some(()))
    })?;
    let code = stopping.wait_exit(SYSTEMD_STOP_TIMEOUT.saturating_sub(sent.elapsed()))?;
    assert_eq!(code, Some(0), "{}", stopping.log_tail(30));
    println!("controlplane: exited 0 after {:?}", sent.elapsed());
    // The client reconnects through the other instance and joins again.
    let again = try_join(
        &other.base_url,
        &rest.token("room", "alice")?,
        Duration::from_secs(10),
    )?;
    assert_eq!(again["type"], "joined", "{again}");
    Ok(())
}

#[test]
fn medianode_on_sigterm_revokes_its_lease_and_its_sessions_move() -> anyhow::Result<()> {
    // A 60 s lease: the node leaving /v1/nodes within seconds proves it revoked it.
    const LEASE_SECS: u64 = 60;
    let mut c = ClusterCall::start(LEASE_SECS, SHUTDOWN)?;
    assert_eq!(c.rest.room_node("room")?.as_deref(), Some("node-a"));
    // The survivor joins now, so the only node the room can move to is node-b.
    let node_b = MediaNodeProcess::start(&c.etcd, "node-b", LEASE_SECS)?;
    assert_eq!((readyz(&c.node_a.api_url)?.0), 200);

    let sent = Instant::now();
    c.node_a.terminate();
    wait_for("node-a to leave /v1/nodes", Duration::from_secs(3), || {
        let ids: Vec<String> = c.rest.nodes()?.into_iter().map(|(id, _)| id).collect();
        Ok((ids == [node_b.id.clone()]).then_some(()))
    })
    .map_err(|e| e.context(format!("{}\n{}", c.node_a.log_tail(20), c.cp.log_tail(20))))?;
    println!("medianode: left /v1/nodes after {:?}", sent.elapsed());
    assert_stopping_readyz(&c.node_a.api_url)?;
    // Its sessions moved before it went (its own drain mark: told `draining`, not `lost`)
    // and media flows through node-b.
    c.pump_until("media through node-b", Duration::from_secs(15), |_, sub| {
        sub.media_restarted_at.len() == 1 && sub.received_by_current_client() > 50
    })
    .map_err(|e| e.context(c.cp.log_tail(30)))?;
    assert_eq!(c.publ.node_lost_reasons, ["draining"]);
    assert_eq!(c.sub.node_lost_reasons, ["draining"]);
    let moved = c.sub.media_restarted_at[0] - sent;
    println!("medianode: its calls moved {moved:?} after SIGTERM");
    assert_eq!(c.rest.room_node("room")?.as_deref(), Some("node-b"));
    // Its own drain mark went before its key: started again under this id, it takes rooms.
    let (_, mark) = c.etcd.revision_and("/shardcast/drain/node-a")?;
    assert_eq!(mark, 0, "node-a's stopping mark is gone");
    let code = c
        .node_a
        .wait_exit(Duration::from_secs(30).saturating_sub(sent.elapsed()))?;
    assert_eq!(code, Some(0), "{}", c.node_a.log_tail(30));
    println!("medianode: exited 0 after {:?}", sent.elapsed());
    Ok(())
}
