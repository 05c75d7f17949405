//! Two demo pages in one call in a small cluster, the scene the node-move tests (a node
//! killed, a node drained) break: a real etcd, media node `node-a`, one control plane, tenant
//! `acme` with room `page`, Alice and Bob in Chromium sending video both ways through node-a,
//! and `node-b` started after the room was placed, so the room can only move there.
//!
//! Everything is a real process stopped by PID when the [`PageCall`] drops (browsers first,
//! etcd last). Never: hide what a test does to the scene — the fault is the test's own.

use std::time::Duration;

use crate::chromium::Browser;
use crate::cluster::{ControlPlane, MediaNodeProcess, Rest};
use crate::etcd::Etcd;

pub struct PageCall {
    // Field order is drop order.
    pub alice: Browser,
    pub bob: Browser,
    pub rest: Rest,
    pub cp: ControlPlane,
    pub node_b: MediaNodeProcess,
    pub node_a: MediaNodeProcess,
    pub etcd: Etcd,
}

/// Video frames the page decoded from `who`.
pub fn frames(s: &serde_json::Value, who: &str) -> u64 {
    s["remote"][who]["video"]["framesDecoded"]
        .as_u64()
        .unwrap_or(0)
}

impl PageCall {
    /// Starts the scene (nodes on `lease_secs` leases) and waits until Alice sees Bob's video
    /// through node-a; node-b is up when it returns.
    pub fn start(lease_secs: u64) -> anyhow::Result<Self> {
        let etcd = Etcd::start()?;
        let node_a = MediaNodeProcess::start(&etcd, "node-a", lease_secs)?;
        let cp = ControlPlane::start(&etcd)?;
        let mut rest = Rest::new(&cp.base_url)?;
        rest.create_tenant("acme")?;
        rest.create_room("page")?;
        let url = |who: &str, name: &str| -> anyhow::Result<String> {
            Ok(format!(
                "{}/?room=page&identity={who}&name={name}&token={}&autojoin=1&width=640&height=360",
                cp.base_url,
                rest.token("page", who)?
            ))
        };
        let mut alice = Browser::launch("alice", &url("alice", "Alice")?)?;
        let bob = Browser::launch("bob", &url("bob", "Bob")?)?;
        alice.wait_stats("bob's video", Duration::from_secs(30), |s| {
            frames(s, "bob") > 30
        })?;
        anyhow::ensure!(rest.room_node("page")?.as_deref() == Some("node-a"));
        let node_b = MediaNodeProcess::start(&etcd, "node-b", lease_secs)?;
        Ok(Self {
            alice,
            bob,
            rest,
            cp,
            node_b,
            node_a,
            etcd,
        })
    }

    /// After the test's fault: both pages see `node_lost` within `told_within`, build fresh
    /// peer connections by themselves, and video flows both ways again through node-b, the
    /// pages still in the room.
    pub fn expect_rejoin_on_node_b(&mut self, told_within: Duration) -> anyhow::Result<()> {
        let (cp, alice) = (&self.cp, &mut self.alice);
        let r = alice.wait_stats("the page to see node_lost", told_within, |s| {
            s["nodeLost"] == 1
        });
        r.map_err(|e| e.context(format!("{}\n{}", cp.log_tail(30), alice.diagnostics())))?;
        // A fresh peer connection: its counters start again from zero.
        let r = alice.wait_stats("bob's video again", Duration::from_secs(20), |s| {
            frames(s, "bob") > 30 && s["connectionState"] == "connected"
        });
        r.map_err(|e| e.context(format!("{}\n{}", cp.log_tail(30), alice.diagnostics())))?;
        self.bob
            .wait_stats("alice's video again", Duration::from_secs(20), |s| {
                s["nodeLost"] == 1 && frames(s, "alice") > 30
            })?;
        anyhow::ensure!(
            self.rest.room_node("page")?.as_deref() == Some(self.node_b.id.as_str()),
            "the room is on node-b"
        );
        let s = self.alice.stats()?;
        anyhow::ensure!(s["joined"] == true, "still joined: {s}");
        anyhow::ensure!(
            s["status"]
                .as_str()
                .is_some_and(|t| t.starts_with("in room")),
            "in the room: {s}"
        );
        Ok(())
    }
}
