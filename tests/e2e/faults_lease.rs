//! etcd frozen (SIGSTOP) for longer than the control plane's session and bus leases (3 s
//! here, `[cluster] session_lease_secs` / `bus_lease_secs`), then continued: etcd expires
//! both leases as soon as it runs again, deleting the call's participant records and the
//! control plane's room-interest key. The control plane must notice, write its live
//! sessions' records again on a new lease before it resyncs the room from the store
//! (`signaling/hub/restore.rs`), and so the call goes on untouched: media keeps flowing with
//! no rejoin, the REST participant list still has both participants, and a new join sees
//! them. (Before this was built, the resync removed them and media stopped.)

use std::time::{Duration, Instant};

use shardcast_tests::cluster_call::ClusterCall;
use shardcast_tests::participant::try_join;
use shardcast_tests::wait_for;

const LEASE_SECS: u64 = 3;
/// Well past a lease ttl after the last keep-alive before the freeze.
const FREEZE: Duration = Duration::from_secs(8);
/// The media node's registration lease: longer than the freeze, so only the control plane's
/// leases run out (the node's own re-registration is another test's subject).
const NODE_LEASE_SECS: u64 = 30;

#[test]
fn a_freeze_longer_than_the_leases_keeps_the_call_its_records_and_media() -> anyhow::Result<()> {
    let cp_config = format!(
        "[cluster]\nsession_lease_secs = {LEASE_SECS}\nbus_lease_secs = {LEASE_SECS}\n\
         [etcd]\nrequest_timeout_ms = 4000\n"
    );
    let mut c = ClusterCall::start_with(NODE_LEASE_SECS, "", &cp_config)?;
    assert_eq!(listed(&c)?, ["pub", "sub"]);

    c.etcd.freeze();
    let frozen = Instant::now();
    while frozen.elapsed() < FREEZE {
        let before = c.sub.received();
        c.pump_until(
            "media while etcd is frozen",
            Duration::from_secs(2),
            |_, sub| sub.received() > before + 20,
        )
        .map_err(|e| e.context(c.cp.log_tail(30)))?;
    }
    c.etcd.thaw();
    let thawed = Instant::now();

    // The control plane finds its leases gone (so this test did make them expire) and
    // writes both records again.
    let rewritten = |c: &ClusterCall| {
        let log = plain(&c.cp.log_tail(100_000));
        log.contains("session lease lost; its records are gone")
            && log.contains("records rewritten after a lost lease written=2")
    };
    while !rewritten(&c) {
        anyhow::ensure!(
            thawed.elapsed() < Duration::from_secs(20),
            "the records were not rewritten within 20 s of the thaw:\n{}",
            c.cp.log_tail(60)
        );
        c.pump_until("a moment", Duration::from_millis(200), |_, _| false)
            .ok();
    }
    println!("records rewritten {:?} after the thaw", thawed.elapsed());

    // Media goes on, checked in two-second slices for longer than a lease (the room was
    // resynced from the store in between).
    let after = Instant::now();
    while after.elapsed() < Duration::from_secs(8) {
        let before = c.sub.received();
        c.pump_until(
            "media after the leases ran out",
            Duration::from_secs(2),
            |_, sub| sub.received() > before + 20,
        )
        .map_err(|e| e.context(c.cp.log_tail(60)))?;
    }
    let log = plain(&c.cp.log_tail(100_000));
    assert!(
        log.contains("room bus: resyncing a room's sessions"),
        "the room was never resynced after the lease loss:\n{}",
        c.cp.log_tail(60)
    );

    assert_eq!(listed(&c)?, ["pub", "sub"]);
    let joined = wait_for("a join after the thaw", Duration::from_secs(20), || {
        let Ok(token) = c.rest.token("room", "late") else {
            return Ok(None);
        };
        let v = try_join(&c.cp.base_url, &token, Duration::from_secs(10))?;
        Ok((v["type"] == "joined").then_some(v))
    })?;
    let mut seen: Vec<&str> = joined["participants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["identity"].as_str())
        .collect();
    seen.sort();
    assert_eq!(seen, ["pub", "sub"], "{joined}");
    let tracks = joined["tracks"].as_array().map_or(0, Vec::len);
    assert!(tracks >= 2, "the publisher's tracks are missing: {joined}");
    Ok(())
}

/// The room's participants as the REST API lists them, by identity.
fn listed(c: &ClusterCall) -> anyhow::Result<Vec<String>> {
    let mut ids: Vec<String> = c
        .rest
        .participants("room")?
        .iter()
        .filter_map(|p| p["identity"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The log without terminal colour codes (`ESC [ … m`), as an operator's grep sees it.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}
