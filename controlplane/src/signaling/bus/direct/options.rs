//! The bus's settings and what `/metrics` shows of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The bus's settings (`[cluster]` in the config: `secret`, `previous_secret`,
/// `bus_lease_secs`; the address comes from `cluster.controlplane_advertise`).
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Signs and checks the links' tokens. `None`: a random one (a single instance).
    pub secret: Option<String>,
    pub previous_secret: Option<String>,
    /// The interest keys' lease.
    pub lease: Duration,
    /// Events one peer's outbox holds before it drops and has the room resynced.
    pub outbox_events: usize,
    /// Events the hub's inbox holds before rooms are resynced instead.
    pub inbox_events: usize,
    /// How long a room stays registered after its last local session left (a session that
    /// leaves and rejoins does not re-register; the last leave's events still take the
    /// registered path).
    pub linger: Duration,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            secret: None,
            previous_secret: None,
            lease: Duration::from_secs(10),
            outbox_events: 4096,
            inbox_events: 4096,
            linger: Duration::from_secs(2),
        }
    }
}

/// What `/metrics` shows of the bus (docs/API.md, "Metrics").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Events published by this instance.
    pub published: u64,
    /// Events (and `bye`s) received from other instances.
    pub received: u64,
    /// Events handed to other instances' links that went out.
    pub sent: u64,
    /// Events not sent: an outbox was full, or a batch was given up (their rooms resynced).
    pub dropped: u64,
    /// Received again (a retried batch) and dropped.
    pub duplicates: u64,
    /// Room resyncs, by why: a gap in a sender's numbering (or a new stream without
    /// `bye`), a sender reporting lost events, a sender whose interest vanished without
    /// `bye`, the inbox being full, this instance's own interest lease having run out, or a
    /// peer registering again after its lease ran out (its records rewritten).
    pub resync_gap: u64,
    pub resync_lost: u64,
    pub resync_vanished: u64,
    pub resync_inbox: u64,
    pub resync_lease: u64,
    pub resync_restored: u64,
    /// Rooms this instance is registered in now; other instances it has links to.
    pub rooms: u64,
    pub peers: u64,
    /// Interest registrations (store writes) done, and publishes that could not find
    /// the room's instances (store unreachable).
    pub registrations: u64,
    pub publish_failures: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) published: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) resync_gap: AtomicU64,
    pub(super) resync_lost: AtomicU64,
    pub(super) resync_vanished: AtomicU64,
    pub(super) resync_inbox: AtomicU64,
    pub(super) resync_lease: AtomicU64,
    pub(super) resync_restored: AtomicU64,
    pub(super) registrations: AtomicU64,
    pub(super) publish_failures: AtomicU64,
}

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
