//! After a lost lease: the records of this instance's live sessions are written again before
//! any room is resynced from the store, so a store outage longer than the leases removes no
//! live session from its room (docs/OPERATIONS.md, section 8).
//!
//! Triggers: the session lease found lost (`SignalServices::record_losses`: by its
//! keep-alive, or by a write it refused) or the bus's interest lease (`Delivery::LeaseLost`).
//! One task does the work; a trigger that arrives while it runs makes it run once more, and a
//! run that meets a store failure is retried until it completes. A run:
//! 1. confirms the session lease (a new one if etcd expired it);
//! 2. for every joined or waiting session: a joined one takes its seat again if it lost it
//!    (a room that filled up meanwhile, or was deleted, closes the session instead: never
//!    more than `max_participants`); its record is written only where none is (a newer
//!    session of the identity, here or on another instance, keeps its own); a session that
//!    ended while its record was being written has it deleted again (by revision);
//! 3. has the bus register its rooms again: the other instances in them resync (they may
//!    have read the store while these records were missing), and so does this one.
//!
//! Must never: write over a newer record, bring back a session that left, or resync a room
//! before step 2 is done.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{node_id_of, Hub, Phase, Session};
use crate::signaling::messages::ServerMsg;
use crate::signaling::services::{Presence, Restored, SignalError};

/// What one run did, for the log.
#[derive(Debug, Default)]
struct Rewritten {
    written: usize,
    present: usize,
    closed: usize,
}

impl Hub {
    /// Starts the task that rewrites records after a lost lease (called once, by `new`).
    pub(super) fn watch_lost_leases(self: &Arc<Self>) {
        let mut losses = self.services.record_losses();
        let notify = self.restore.clone();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                // Some(changed) when the session lease's watch woke us.
                let woke = match losses.as_mut() {
                    Some(l) => tokio::select! {
                        changed = l.changed() => Some(changed.is_ok()),
                        _ = notify.notified() => None,
                    },
                    None => {
                        notify.notified().await;
                        None
                    }
                };
                if woke == Some(false) {
                    losses = None; // the services are gone
                }
                let lease_lost = woke == Some(true);
                let Some(hub) = weak.upgrade() else { return };
                let bus_lost = hub.restore_pending.swap(false, Ordering::SeqCst);
                if bus_lost || lease_lost {
                    hub.restore_until_done(losses.as_mut()).await;
                }
            }
        });
    }

    /// The bus's lease ran out: rewrite the records, then register again (the task above;
    /// a wake-up whose trigger a run has handled already is skipped).
    pub(super) fn request_restore(&self) {
        self.restore_pending.store(true, Ordering::SeqCst);
        self.restore.notify_one();
    }

    async fn restore_until_done(&self, mut losses: Option<&mut watch::Receiver<u64>>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.restore_once(losses.as_deref_mut()).await {
                Ok(r) => {
                    tracing::info!(
                        written = r.written,
                        present = r.present,
                        closed = r.closed,
                        "signaling: live sessions' records rewritten after a lost lease"
                    );
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e.message,
                        "signaling: rewriting records after a lost lease failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn restore_once(
        &self,
        losses: Option<&mut watch::Receiver<u64>>,
    ) -> Result<Rewritten, SignalError> {
        self.services.confirm_lease().await?;
        // Every loss so far (the one `confirm_lease` may just have found included) is what
        // this run repairs; a later one runs it again.
        if let Some(l) = losses {
            l.borrow_and_update();
        }
        let sessions = self.session_list();
        let mut done = Rewritten::default();
        for s in &sessions {
            if self.restore_session(s, &mut done).await? {
                done.closed += 1;
            }
        }
        self.bus.reregister().await.map_err(|e| {
            SignalError::hidden("store_unavailable", "registering the rooms again failed", e)
        })?;
        Ok(done)
    }

    /// One session's record back; `true` when the session had to end instead.
    async fn restore_session(
        &self,
        s: &Arc<Session>,
        done: &mut Rewritten,
    ) -> Result<bool, SignalError> {
        let presence = match s.phase() {
            Phase::Joined => Presence::Joined,
            Phase::Waiting => Presence::Waiting,
            Phase::Closed => return Ok(false),
        };
        let m = s.member_now();
        if presence == Presence::Joined {
            // Its seat outlived the lease (seats are not on one) unless a join into the full
            // room gave it away while the record was missing (`services::seats`).
            match self.services.take_seat(&m).await {
                Ok(()) => {}
                Err(e) if matches!(e.code, "room_full" | "room_not_found") => {
                    tracing::warn!(code = e.code, tenant = %m.tenant, room = %m.room,
                        identity = %m.identity,
                        "signaling: a session lost its place while its record was gone");
                    self.close(s, Some(ServerMsg::error(e.code, e.message)))
                        .await;
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
        }
        let node = node_id_of(s);
        let tracks = s.tracks();
        match self
            .services
            .restore_participant(&m, presence, node.as_deref(), &tracks)
            .await?
        {
            Restored::Present => done.present += 1,
            Restored::Written { revision } => {
                if s.phase() == Phase::Closed {
                    // It left while we wrote: its leave may have deleted nothing.
                    self.services.forget_restored(&m, revision).await;
                } else {
                    done.written += 1;
                }
            }
        }
        Ok(false)
    }
}
