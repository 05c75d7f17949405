//! Stopping a process (SIGTERM or Ctrl-C) on every role, in this order:
//!
//! 1. [`Stopping`] is set: `/readyz` answers 503 with `"shutdown": "shutting down"`, joins are
//!    refused with `server_shutdown`, a media node refuses new peers;
//! 2. the control plane tells every session `server_shutdown` and closes it (`Hub::shutdown`);
//!    a media node first marks itself draining, so the control planes move its calls to other
//!    nodes while it still forwards (`Registration::move_calls_off`, at most half of
//!    `shutdown.timeout_secs`), then ends its event streams and revokes its registration lease
//!    (its key disappears at once, not after the lease's ttl), so control planes stop placing
//!    rooms on it and tell whoever is left `node_lost`; a control plane then delivers the
//!    webhook events still queued, for up to 5 s (`Webhooks::flush`);
//! 3. the listener keeps answering for `shutdown.linger_ms`, then stops;
//! 4. the process exits 0, at the latest after `shutdown.timeout_secs` (below systemd's
//!    `TimeoutStopSec`).
//!
//! Owns the flag and the signal; the roles (cli/serve.rs) run the steps.

use std::sync::Arc;

use tokio::sync::watch;

/// Set once when the process begins to stop; shared by every part that must refuse work.
#[derive(Debug, Clone)]
pub struct Stopping(Arc<watch::Sender<bool>>);

impl Default for Stopping {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Stopping {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn begin(&self) {
        self.0.send_replace(true);
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once `begin` was called.
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|set| *set).await;
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ShutdownConfig;

    fn stop_timeout_secs(unit: &str) -> u64 {
        let line = unit
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .expect("the unit sets TimeoutStopSec");
        line.trim_end_matches('s')
            .parse()
            .expect("TimeoutStopSec in seconds")
    }

    /// The default stop deadline leaves systemd no reason to SIGKILL a stopping process.
    #[test]
    fn the_default_stop_deadline_is_below_every_units_stop_timeout() {
        let ours = ShutdownConfig::default().timeout_secs;
        for unit in [
            include_str!("../../systemd/shardcast-serve.service"),
            include_str!("../../systemd/shardcast-controlplane.service"),
            include_str!("../../systemd/shardcast-medianode.service"),
        ] {
            assert!(ours < stop_timeout_secs(unit), "{ours} s vs {unit}");
        }
    }
}
