//! `PasswordLimiter`: caps wrong room-password attempts per (room, source address), for the
//! whole deployment — every control-plane instance counts in the same Store record.
//!
//! Check, verify and record are one step for the caller: `begin_attempt` counts the attempt
//! (compare-and-swap) BEFORE the password is verified, and refuses it when the count is used
//! up, so a guesser who sends many attempts at once gets exactly `max_failures` verified —
//! not one per request that slipped past a check while the others were still hashing. A
//! right password then clears the count (`record_success`).
//!
//! The source is the client's address as `auth::client_addr` resolves it: the TCP peer, or
//! the `X-Forwarded-For` client when the peer is a trusted proxy.
//!
//! A fixed window per (room, source): the first counted attempt creates
//! `/shardcast/pwfail/{tenant}/{room}/{source}` (create-if-absent) on a lease that lives one
//! window; each further wrong password bumps its count with a compare-and-swap on the key's
//! revision (no locks, no read-modify-write races between instances). Once the count reaches
//! `max_failures`, every attempt — the right password too — is refused until the window that
//! started with the first failure has passed: the lease then deletes the key (etcd; the
//! embedded store sweeps expired leases), and the record's own `window_ends_ms` makes an
//! expired record count as absent even before the sweep. A right password deletes the key.
//!
//! Must never: store the attempted password, or turn a store failure into an unlimited pass
//! (the caller gets the store error).

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{RoomName, TenantId};
use crate::store::typed::get_json;
use crate::store::{keys, CasOutcome, Expect, Store, StoreError};

/// The shared record of one (room, source) window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordFailures {
    pub failures: u32,
    /// Unix milliseconds when the window (and the refusal) ends.
    pub window_ends_ms: u64,
}

pub struct PasswordLimiter {
    max_failures: u32,
    window: Duration,
}

/// Compare-and-swap attempts before a failure is given up on (only under heavy contention on
/// one key, i.e. many instances hammering the same room from the same source at once).
const MAX_CAS_ATTEMPTS: usize = 16;

impl PasswordLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
        }
    }

    fn window_ms(&self) -> u64 {
        self.window.as_millis().max(1) as u64
    }

    /// `Ok(Err(retry_after))` if this source has used up its attempts on this room.
    pub async fn check(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        room: &RoomName,
        source: IpAddr,
        now_ms: u64,
    ) -> Result<Result<(), Duration>, StoreError> {
        let key = keys::password_failures(tenant, room, source);
        Ok(match get_json::<PasswordFailures>(store, &key).await? {
            Some(v) if v.value.failures >= self.max_failures && now_ms < v.value.window_ends_ms => {
                Err(Duration::from_millis(v.value.window_ends_ms - now_ms))
            }
            _ => Ok(()),
        })
    }

    /// Counts one attempt before its password is verified; `Ok(Err(retry_after))` (and
    /// nothing counted) when this source has used up its attempts on this room.
    pub async fn begin_attempt(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        room: &RoomName,
        source: IpAddr,
        now_ms: u64,
    ) -> Result<Result<u32, Duration>, StoreError> {
        self.count(store, tenant, room, source, now_ms, true).await
    }

    /// Counts one wrong password; returns the failures counted in the current window.
    pub async fn record_failure(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        room: &RoomName,
        source: IpAddr,
        now_ms: u64,
    ) -> Result<u32, StoreError> {
        Ok(self
            .count(store, tenant, room, source, now_ms, false)
            .await?
            .unwrap_or(self.max_failures))
    }

    /// One more in the window; with `refuse_when_used_up`, not past `max_failures`.
    async fn count(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        room: &RoomName,
        source: IpAddr,
        now_ms: u64,
        refuse_when_used_up: bool,
    ) -> Result<Result<u32, Duration>, StoreError> {
        let key = keys::password_failures(tenant, room, source);
        for attempt in 0..MAX_CAS_ATTEMPTS {
            crate::store::typed::pause_before_retry(attempt).await;
            let current = store.get(&key).await?;
            let live = current.as_ref().and_then(|kv| {
                let v: PasswordFailures = serde_json::from_slice(&kv.value).ok()?;
                (now_ms < v.window_ends_ms).then_some((kv, v))
            });
            let outcome = match live {
                Some((_, v)) if refuse_when_used_up && v.failures >= self.max_failures => {
                    return Ok(Err(Duration::from_millis(v.window_ends_ms - now_ms)));
                }
                Some((kv, v)) => {
                    let next = PasswordFailures {
                        failures: v.failures.saturating_add(1),
                        ..v
                    };
                    let cas = store
                        .compare_and_swap(
                            &key,
                            Expect::Revision(kv.mod_revision),
                            encode(&next),
                            kv.lease,
                        )
                        .await?;
                    (cas, next.failures)
                }
                None => {
                    // A new window: its own lease, so the key goes away by itself.
                    let lease = store.grant_lease(self.window).await?;
                    let first = PasswordFailures {
                        failures: 1,
                        window_ends_ms: now_ms + self.window_ms(),
                    };
                    let expect = match &current {
                        None => Expect::Absent,
                        // An expired record the sweep has not removed yet: replace it.
                        Some(kv) => Expect::Revision(kv.mod_revision),
                    };
                    let cas = store
                        .compare_and_swap(&key, expect, encode(&first), Some(lease))
                        .await?;
                    if !cas.swapped() {
                        store.revoke_lease(lease).await?;
                    }
                    (cas, 1)
                }
            };
            if let (CasOutcome::Swapped { .. }, failures) = outcome {
                return Ok(Ok(failures));
            }
        }
        Err(StoreError::Backend(format!(
            "password failures at {key} kept conflicting"
        )))
    }

    /// A right password clears the source's record for this room.
    pub async fn record_success(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        room: &RoomName,
        source: IpAddr,
    ) -> Result<(), StoreError> {
        let key = keys::password_failures(tenant, room, source);
        if let Some(kv) = store.get(&key).await? {
            store.delete(&key).await?;
            if let Some(lease) = kv.lease {
                store.revoke_lease(lease).await?;
            }
        }
        Ok(())
    }
}

fn encode(v: &PasswordFailures) -> Vec<u8> {
    // A struct of two integers always serializes.
    serde_json::to_vec(v).unwrap_or_default()
}
