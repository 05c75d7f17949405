//! `InstanceLease`: the one lease a control-plane instance puts its sessions' records on.
//!
//! Granted on first use and kept alive by a task every third of its ttl. When the process
//! dies (SIGKILL, a lost host) nobody keeps it alive: etcd deletes every participant record
//! of that instance one ttl later, so ghosts stop counting toward `max_participants`. One
//! lease for all sessions costs one keep-alive per instance, never a write per session.
//!
//! A lease lost while the instance lives (a store outage longer than the ttl: etcd expires
//! it when it answers again) took its records with it. Whoever finds out — the keep-alive
//! task, or a write refused with `LeaseNotFound` — calls [`InstanceLease::lost`]: the next
//! [`InstanceLease::get`] grants a new lease, and [`InstanceLease::losses`] ticks so the
//! signaling hub rewrites its live sessions' records on the new one (`hub::restore`).
//! Must never: block a caller on keep-alives, or keep a lease alive after the last handle
//! is dropped.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use super::{LeaseId, Store, StoreError};

pub struct InstanceLease {
    store: Arc<dyn Store>,
    ttl: Duration,
    current: tokio::sync::Mutex<Option<LeaseId>>,
    /// The lease the keep-alive task refreshes (shared with it, cleared when lost).
    kept: Arc<Mutex<Option<LeaseId>>>,
    /// How many live leases were found lost so far.
    losses: watch::Sender<u64>,
}

impl InstanceLease {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            ttl,
            current: tokio::sync::Mutex::new(None),
            kept: Arc::new(Mutex::new(None)),
            losses: watch::channel(0).0,
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

    /// `lease` was refused as unknown: the next [`InstanceLease::get`] grants a new one, and
    /// (if it was the live lease, not one replaced already) [`InstanceLease::losses`] ticks.
    pub fn lost(&self, lease: LeaseId) {
        let mut kept = self.kept.lock().unwrap();
        if *kept == Some(lease) {
            *kept = None;
            drop(kept);
            tracing::warn!(
                ?lease,
                "session lease lost; its records are gone until rewritten"
            );
            self.losses.send_modify(|n| *n += 1);
        }
    }

    /// Ticks once per lease found lost while this instance lived.
    pub fn losses(&self) -> watch::Receiver<u64> {
        self.losses.subscribe()
    }

    /// The live lease, checked with the store now (one keep-alive): a lease that etcd has
    /// expired is reported [`InstanceLease::lost`] and replaced. What a rewrite of the
    /// records calls first, so it never writes on a lease that is already gone.
    pub async fn confirm(self: &Arc<Self>) -> Result<LeaseId, StoreError> {
        let lease = self.get().await?;
        match self.store.keep_alive(lease).await {
            Ok(()) => Ok(lease),
            Err(StoreError::LeaseNotFound(_)) => {
                self.lost(lease);
                self.get().await
            }
            Err(e) => Err(e),
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
                if let Some(me) = me.upgrade() {
                    me.lost(lease);
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "session lease: keep-alive failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;

    /// A lease revoked behind the instance's back (what etcd does to an expired one) is
    /// found by `confirm`, replaced, and counted once in `losses`; a write-side report of the
    /// same (already replaced) lease does not count again.
    #[tokio::test]
    async fn a_lost_lease_is_replaced_and_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
        let lease = InstanceLease::new(store.clone(), Duration::from_secs(30));
        let losses = lease.losses();
        let first = lease.get().await.unwrap();
        assert_eq!(lease.confirm().await.unwrap(), first);
        assert_eq!(*losses.borrow(), 0);

        store.revoke_lease(first).await.unwrap();
        let second = lease.confirm().await.unwrap();
        assert_ne!(second, first);
        assert_eq!(*losses.borrow(), 1);
        lease.lost(first);
        assert_eq!(*losses.borrow(), 1);
        assert_eq!(lease.get().await.unwrap(), second);
    }
}
