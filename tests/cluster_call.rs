//! One call in a small cluster, the scene the fault tests break one piece of: a real etcd,
//! media node `node-a`, one control plane, tenant `acme` with room `room`, and a native
//! subscriber `sub` and publisher `pub` joined through the control plane, media flowing
//! through node-a.
//!
//! Everything is a real process stopped by PID when the [`ClusterCall`] drops (clients
//! first, etcd last). Never: hide what a test does to the scene — faults are the test's own.

use std::time::Duration;

use crate::cluster::{ControlPlane, MediaNodeProcess, Rest};
use crate::etcd::Etcd;
use crate::participant::{pump_until, Participant};

pub struct ClusterCall {
    // Field order is drop order: the clients leave before the control plane stops, the
    // media node and etcd go last.
    pub publ: Participant,
    pub sub: Participant,
    pub rest: Rest,
    pub cp: ControlPlane,
    pub node_a: MediaNodeProcess,
    pub etcd: Etcd,
}

impl ClusterCall {
    /// Starts etcd, `node-a` (registered on a `lease_secs` lease, `node_config` TOML added to
    /// its config file) and a control plane; creates the tenant and the room; joins the
    /// subscriber, then the publisher, and waits until the subscriber receives media.
    pub fn start(lease_secs: u64, node_config: &str) -> anyhow::Result<Self> {
        Self::start_with(lease_secs, node_config, "")
    }

    /// As [`ClusterCall::start`], with `cp_config` as the control plane's TOML file.
    pub fn start_with(lease_secs: u64, node_config: &str, cp_config: &str) -> anyhow::Result<Self> {
        let etcd = Etcd::start()?;
        let node_a = MediaNodeProcess::start_with_config(&etcd, "node-a", lease_secs, node_config)?;
        let cp = ControlPlane::start_with_config(&etcd, cp_config)?;
        let mut rest = Rest::new(&cp.base_url)?;
        rest.create_tenant("acme")?;
        rest.create_room("room")?;
        let sub = Participant::join(&cp.base_url, &rest.token("room", "sub")?, "sub", false)?;
        let publ = Participant::join(&cp.base_url, &rest.token("room", "pub")?, "pub", true)?;
        let mut call = Self {
            publ,
            sub,
            rest,
            cp,
            node_a,
            etcd,
        };
        call.pump_until("media through node-a", Duration::from_secs(30), |_, sub| {
            sub.received() > 50
        })?;
        Ok(call)
    }

    /// Drives both clients until `done(publisher, subscriber)` holds (see
    /// [`pump_until`]).
    pub fn pump_until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Participant, &Participant) -> bool,
    ) -> anyhow::Result<()> {
        pump_until(&mut [&mut self.publ, &mut self.sub], what, timeout, |p| {
            done(p[0], p[1])
        })
    }
}
