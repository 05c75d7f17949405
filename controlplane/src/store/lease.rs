//! `InstanceLease`: the one lease a control-plane instance puts its sessions' records on.
//!
//! Granted on first use and kept alive by a task every third of its ttl. When the process
//! dies (SIGKILL, a lost host) nobody keeps it alive: etcd deletes every participant record
//! of that instance one ttl later, so ghosts stop counting toward `max_participants`. One
//! lease for all sessions costs one keep-alive per instance, never a write per session.
//!
//! A lease lost while the instance lives (a store outage longer than the ttl) took its
//! records with it; the next write asks for a new lease ([`InstanceLease::lost`]) and the
//! sessions' next record writes (a track, a mute, a rejoin) put them back. Must never: block
//! a caller on keep-alives, or keep a lease alive after the last handle is dropped.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{LeaseId, Store, StoreError};

pub struct InstanceLease {
    store: Arc<dyn Store>,
    ttl: Duration,
    current: tokio::sync::Mutex<Option<LeaseId>>,
    /// The lease the keep-alive task refreshes (shared with it, cleared when lost).
    kept: Arc<Mutex<Option<LeaseId>>>,
}

impl InstanceLease {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            ttl,
            current: tokio::sync::Mutex::new(None),
            kept: Arc::new(Mutex::new(None)),
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The live lease, granted (and its keep-alive task started) on first use.
    pub async fn get(self: &Arc<Self>) -> Result<LeaseId, StoreError> {
        let mut current = self.current.lock().await;
        if let Some(l) = *current {
            if *self.kept.lock().unwrap() == Some(l) {
                return Ok(l);
            }
        }
        let lease = self.store.grant_lease(self.ttl).await?;
        *current = Some(lease);
        *self.kept.lock().unwrap() = Some(lease);
        tokio::spawn(keep_alive(Arc::downgrade(self), lease));
        Ok(lease)
    }

    /// `lease` was refused as unknown: the next [`InstanceLease::get`] grants a new one.
    pub fn lost(&self, lease: LeaseId) {
        let mut kept = self.kept.lock().unwrap();
        if *kept == Some(lease) {
            *kept = None;
        }
    }

    /// Ends the lease now (a clean shutdown): its records go at once.
    pub async fn revoke(&self) {
        let lease = self.kept.lock().unwrap().take();
        if let Some(l) = lease {
            let _ = self.store.revoke_lease(l).await;
        }
    }
}

async fn keep_alive(me: Weak<InstanceLease>, lease: LeaseId) {
    loop {
        let (store, period) = {
            let Some(me) = me.upgrade() else { return };
            if *me.kept.lock().unwrap() != Some(lease) {
                return; // replaced or revoked
            }
            (
                me.store.clone(),
                (me.ttl / 3).max(Duration::from_millis(300)),
            )
        };
        tokio::time::sleep(period).await;
        match store.keep_alive(lease).await {
            Ok(()) => {}
            Err(StoreError::LeaseNotFound(_)) => {
                tracing::warn!(
                    ?lease,
                    "session lease lost; its records are gone until rewritten"
                );
                if let Some(me) = me.upgrade() {
                    me.lost(lease);
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "session lease: keep-alive failed"),
        }
    }
}
