//! One outbound link: this instance's room events for one other instance, in order.
//!
//! A bounded outbox drained by one task that POSTs batches to the peer's
//! `POST /internal/v1/bus/events` over a pooled keep-alive connection, one batch in flight at a
//! time (so batches arrive in order), authenticated with a room-bus token signed with the
//! cluster secret (`nodeapi::credential`, [`Audience::room_bus`]). A batch that fails is
//! retried for [`RETRY_FOR`] (the receiver drops repeats by sequence number), then given up:
//! its rooms, and the rooms of events that found the outbox full, are *lost* and the next
//! batch that gets through names them, so the receiver resyncs them. Memory per link is the
//! outbox bound plus one entry per lost room.
//!
//! Must never: block the publisher (pushing never waits), or retry forever.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

use super::seq::{Position, RoomKey};
use super::RoomEvent;
use crate::nodeapi::credential::Signer;

/// The receiving endpoint, on the peer's HTTP listener.
pub const EVENTS_PATH: &str = "/internal/v1/bus/events";
/// The registration handshake (`direct`).
pub const HELLO_PATH: &str = "/internal/v1/bus/hello";

/// Items per POST: keeps a batch far below the request body limit (chat text ≤ 4 KiB).
pub const MAX_BATCH: usize = 64;
/// How long a failing batch is retried before its rooms count as lost.
pub const RETRY_FOR: Duration = Duration::from_secs(3);

/// One numbered item of a (sender, room) stream. (Not boxed: built once per receiver and
/// serialized; a `bye` is rare.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum Item {
    Event {
        at: Position,
        event: RoomEvent,
    },
    /// The sender's stream for the room ends here (its last session there left).
    Bye {
        tenant: String,
        room: String,
        at: Position,
    },
}

impl Item {
    pub fn room(&self) -> RoomKey {
        match self {
            Item::Event { event, .. } => (event.tenant.clone(), event.room.clone()),
            Item::Bye { tenant, room, .. } => (tenant.clone(), room.clone()),
        }
    }
}

/// The body of `POST /internal/v1/bus/events`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    /// The sending instance's id.
    pub from: String,
    /// Rooms whose events to this receiver were lost on the way (outbox full, or a batch
    /// given up): resync them.
    #[serde(default)]
    pub lost: Vec<RoomKey>,
    pub items: Vec<Item>,
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<Item>,
    lost: HashSet<RoomKey>,
}

/// Counters a link adds to the bus's.
#[derive(Default)]
pub struct LinkCounters {
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    pub failed_batches: AtomicU64,
}

pub struct Link {
    pub instance: String,
    pub address: String,
    from: String,
    outbox: Mutex<Outbox>,
    capacity: usize,
    notify: Notify,
    closed: AtomicBool,
    signer: Signer,
    /// Items taken into batches that got through (or were given up), for `flushed`.
    done: watch::Sender<u64>,
    pushed: AtomicU64,
    counters: Arc<LinkCounters>,
}

impl Link {
    /// A link to `instance` at `address`, and its task.
    pub fn start(
        from: &str,
        instance: &str,
        address: &str,
        signer: Signer,
        capacity: usize,
        http: reqwest::Client,
        counters: Arc<LinkCounters>,
    ) -> Arc<Link> {
        let link = Arc::new(Link {
            instance: instance.to_string(),
            address: address.trim_end_matches('/').to_string(),
            from: from.to_string(),
            outbox: Mutex::default(),
            capacity: capacity.max(1),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            signer,
            done: watch::channel(0).0,
            pushed: AtomicU64::new(0),
            counters,
        });
        tokio::spawn(link.clone().run(http));
        link
    }

    /// Queues `item`; never waits. A full outbox drops it and marks its room lost.
    pub fn push(&self, item: Item) {
        let mut o = self.outbox.lock().unwrap();
        if o.queue.len() >= self.capacity {
            o.lost.insert(item.room());
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.done.send_modify(|d| *d += 1);
        } else {
            o.queue.push_back(item);
        }
        self.pushed.fetch_add(1, Ordering::Relaxed);
        drop(o);
        self.notify.notify_one();
    }

    /// Whether nothing is queued or lost (the link may be dropped).
    pub fn idle(&self) -> bool {
        let o = self.outbox.lock().unwrap();
        o.queue.is_empty() && o.lost.is_empty()
    }

    /// Waits until everything pushed so far went out (or was given up), at most `limit`.
    pub async fn flushed(&self, limit: Duration) {
        let target = self.pushed.load(Ordering::Relaxed);
        let mut done = self.done.subscribe();
        let _ = tokio::time::timeout(limit, done.wait_for(|d| *d >= target)).await;
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.notify.notify_one();
    }

    fn take_batch(&self) -> Option<Batch> {
        let mut o = self.outbox.lock().unwrap();
        if o.queue.is_empty() && o.lost.is_empty() {
            return None;
        }
        let n = o.queue.len().min(MAX_BATCH);
        Some(Batch {
            from: self.from.clone(),
            lost: o.lost.iter().cloned().collect(),
            items: o.queue.drain(..n).collect(),
        })
    }

    async fn run(self: Arc<Self>, http: reqwest::Client) {
        let url = format!("{}{EVENTS_PATH}", self.address);
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return;
            }
            let notified = self.notify.notified();
            let Some(batch) = self.take_batch() else {
                notified.await;
                continue;
            };
            let started = tokio::time::Instant::now();
            let mut backoff = Duration::from_millis(50);
            let delivered = loop {
                let sent = http
                    .post(&url)
                    .bearer_auth(self.signer.token())
                    .json(&batch)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => break true,
                    Ok(r) => {
                        tracing::warn!(peer = %self.instance, status = %r.status(), "room bus: batch refused")
                    }
                    Err(e) => {
                        tracing::debug!(peer = %self.instance, error = %e, "room bus: batch failed")
                    }
                }
                if started.elapsed() >= RETRY_FOR || self.closed.load(Ordering::Relaxed) {
                    break false;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            };
            let n = batch.items.len() as u64;
            {
                let mut o = self.outbox.lock().unwrap();
                if delivered {
                    for room in &batch.lost {
                        o.lost.remove(room);
                    }
                    self.counters.sent.fetch_add(n, Ordering::Relaxed);
                } else {
                    self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
                    self.counters.dropped.fetch_add(n, Ordering::Relaxed);
                    o.lost.extend(batch.items.iter().map(Item::room));
                }
            }
            self.done.send_modify(|d| *d += n);
            if !delivered {
                // The peer is down or refusing: do not spin on it.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
