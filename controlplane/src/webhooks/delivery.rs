//! Delivery: one FIFO queue per room, drained by one task at a time, so a room's next event
//! waits until the previous one succeeded or finally failed (in order per room); rooms do not
//! wait for each other.
//!
//! At least once: an event is retried (`max_attempts`, back-off doubling from
//! `backoff_initial_ms` up to `backoff_max_ms`) until the receiver answers 2xx; a receiver
//! that took it but answered late sees it again, with the same `id`. Bounded: a tenant holds
//! at most `queue_per_tenant` events here; more are dropped and counted. A stopping process
//! delivers what is queued for a while (`Webhooks::flush`); events still queued when it
//! exits are lost (nothing is persisted).
//!
//! The tenant's webhook is read from the Store at delivery and kept for `TARGET_TTL`, so a
//! change made on another instance applies within that time, and a tenant without a webhook
//! costs one Store read per `TARGET_TTL` rather than one per event.
//! Must never: hold `queues` or `targets` across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::event::{Envelope, EventKind};
use super::target::WebhookRecord;
use super::{sign, WebhookSettings};
use crate::ids::TenantId;
use crate::services::{now_unix_ms, now_unix_secs};
use crate::store::Store;

/// How long a tenant's webhook (or its absence) read from the Store is trusted.
const TARGET_TTL: Duration = Duration::from_secs(2);
/// Tenants whose webhook is cached before stale entries are swept.
const MAX_CACHED_TARGETS: usize = 4096;
/// Requests in flight at once from this instance, all tenants together.
const MAX_IN_FLIGHT: usize = 32;

/// Counters since start, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WebhookCounts {
    /// Events a receiver acknowledged (2xx).
    pub delivered: u64,
    /// Attempts that failed and were retried.
    pub retried: u64,
    /// Events given up after `max_attempts` failed attempts.
    pub failed: u64,
    /// Events not queued because their tenant's queue was full.
    pub dropped: u64,
    /// Events waiting or being delivered now.
    pub queued: u64,
}

/// One event, serialized once: every attempt sends the same bytes.
struct Outgoing {
    id: String,
    kind: &'static str,
    tenant: String,
    room: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct TenantQueue {
    queued: usize,
    /// Non-empty queues only; a queue exists exactly while a task drains it.
    rooms: HashMap<String, VecDeque<Arc<Outgoing>>>,
}

type Target = Option<Arc<WebhookRecord>>;

pub(super) struct Dispatcher {
    store: Arc<dyn Store>,
    settings: WebhookSettings,
    client: reqwest::Client,
    queues: Mutex<HashMap<String, TenantQueue>>,
    targets: Mutex<HashMap<String, (Instant, Target)>>,
    in_flight: tokio::sync::Semaphore,
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

impl Dispatcher {
    pub(super) fn new(store: Arc<dyn Store>, settings: WebhookSettings) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(settings.timeout_ms))
            .user_agent(concat!("Shardcast-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "webhooks: HTTP client with defaults instead");
                reqwest::Client::new()
            });
        Arc::new(Self {
            store,
            settings,
            client,
            queues: Mutex::default(),
            targets: Mutex::default(),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            delivered: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    pub(super) fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// True when the Store said recently that the tenant has no webhook.
    fn known_absent(&self, tenant: &str) -> bool {
        let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        matches!(targets.get(tenant), Some((at, None)) if at.elapsed() < TARGET_TTL)
    }

    pub(super) fn invalidate(&self, tenant: &str) {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
    }

    pub(super) fn emit(self: &Arc<Self>, tenant: &str, room: &str, kind: EventKind) {
        if self.known_absent(tenant) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(tenant, room, "webhooks: no runtime; event not sent");
            return;
        };
        let name = kind.name();
        let envelope = Envelope::new(tenant, room, kind, now_unix_ms());
        let body = match serde_json::to_vec(&envelope) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "webhooks: cannot encode an event");
                return;
            }
        };
        let out = Arc::new(Outgoing {
            id: envelope.id,
            kind: name,
            tenant: tenant.to_string(),
            room: room.to_string(),
            body,
        });
        let start = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            let tq = queues.entry(tenant.to_string()).or_default();
            if tq.queued >= self.settings.queue_per_tenant {
                drop(queues);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    tenant,
                    room,
                    event = name,
                    "webhooks: tenant queue full; event dropped"
                );
                return;
            }
            tq.queued += 1;
            let q = tq.rooms.entry(room.to_string()).or_default();
            q.push_back(out);
            q.len() == 1
        };
        if start {
            let me = self.clone();
            let (tenant, room) = (tenant.to_string(), room.to_string());
            runtime.spawn(async move { me.drain(tenant, room).await });
        }
    }

    /// Delivers the room's events front to back until its queue is empty.
    async fn drain(self: Arc<Self>, tenant: String, room: String) {
        loop {
            let next = {
                let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                queues
                    .get(&tenant)
                    .and_then(|t| t.rooms.get(&room))
                    .and_then(|q| q.front().cloned())
            };
            let Some(out) = next else { return };
            self.deliver(&out).await;
            let more = {
                let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
                let Some(tq) = queues.get_mut(&tenant) else {
                    return;
                };
                tq.queued = tq.queued.saturating_sub(1);
                let more = match tq.rooms.get_mut(&room) {
                    Some(q) => {
                        q.pop_front();
                        !q.is_empty()
                    }
                    None => false,
                };
                if !more {
                    tq.rooms.remove(&room);
                    if tq.rooms.is_empty() {
                        queues.remove(&tenant);
                    }
                }
                more
            };
            if !more {
                return;
            }
        }
    }

    /// The tenant's webhook, from the cache or the Store.
    async fn target(&self, tenant: &str) -> Result<Target, String> {
        {
            let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, t)) = targets.get(tenant) {
                if at.elapsed() < TARGET_TTL {
                    return Ok(t.clone());
                }
            }
        }
        let id = TenantId::parse(tenant.to_string()).map_err(|e| e.to_string())?;
        let found = super::target::get(self.store.as_ref(), &id)
            .await
            .map_err(|e| format!("reading the webhook: {e}"))?
            .map(Arc::new);
        let mut targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
        // One entry per tenant that had an event lately: stale ones go once there are many.
        if targets.len() >= MAX_CACHED_TARGETS {
            targets.retain(|_, (at, _)| at.elapsed() < TARGET_TTL);
        }
        targets.insert(tenant.to_string(), (Instant::now(), found.clone()));
        Ok(found)
    }

    async fn deliver(&self, out: &Outgoing) {
        let max = self.settings.max_attempts;
        for attempt in 1..=max {
            let result = match self.target(&out.tenant).await {
                // Removed (or never set): nobody to tell.
                Ok(None) => return,
                Ok(Some(target)) => self.post(&target, out, attempt).await,
                Err(e) => Err(e),
            };
            let reason = match result {
                Ok(()) => {
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(reason) => reason,
            };
            if attempt == max {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    tenant = %out.tenant, room = %out.room, event = out.kind, id = %out.id,
                    attempts = max, %reason, "webhooks: delivery failed; event given up"
                );
                return;
            }
            self.retried.fetch_add(1, Ordering::Relaxed);
            let wait = self.settings.backoff(attempt);
            tracing::debug!(
                tenant = %out.tenant, room = %out.room, event = out.kind, attempt, %reason,
                wait_ms = wait.as_millis() as u64, "webhooks: attempt failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn post(
        &self,
        target: &WebhookRecord,
        out: &Outgoing,
        attempt: u32,
    ) -> Result<(), String> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| "shutting down".to_string())?;
        let signature = sign::header(&target.secret, now_unix_secs(), &out.body);
        let response = self
            .client
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(sign::HEADER, signature)
            .header("Shardcast-Event", out.kind)
            .header("Shardcast-Event-Id", &out.id)
            .header("Shardcast-Attempt", attempt.to_string())
            .body(out.body.clone())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {} ms", self.settings.timeout_ms)
                } else {
                    format!("request failed: {e}")
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered HTTP {}", status.as_u16()))
        }
    }

    pub(super) fn counts(&self) -> WebhookCounts {
        let queued = self
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|t| t.queued as u64)
            .sum();
        WebhookCounts {
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            queued,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;

    /// A receiver that accepts connections and never answers: every event stays in flight.
    async fn silent_receiver() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        (url, task)
    }

    /// (room, identity, attempt) of every request, in arrival order.
    type Log = Arc<Mutex<Vec<(String, String, u32)>>>;

    /// A receiver that answers 500 to every attempt for room `stuck`, and to the first
    /// attempt of each event elsewhere; 200 otherwise.
    async fn picky_receiver() -> (String, Log) {
        let log: Log = Arc::default();
        let sink = log.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let sink = sink.clone();
                    async move {
                        let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let room = e["room"].as_str().unwrap().to_string();
                        let who = e["payload"]["identity"].as_str().unwrap().to_string();
                        let attempt: u32 = headers["shardcast-attempt"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap();
                        let ok = room != "stuck" && attempt > 1;
                        sink.lock().unwrap().push((room, who, attempt));
                        if ok {
                            axum::http::StatusCode::OK
                        } else {
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR
                        }
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, log)
    }

    #[tokio::test]
    async fn a_room_waits_for_its_previous_event_and_no_room_waits_for_another() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
        let (url, log) = picky_receiver().await;
        let acme = TenantId::parse("acme").unwrap();
        super::super::target::put(store.as_ref(), &acme, url, Some("0123456789abcdef".into()))
            .await
            .unwrap();
        let settings = WebhookSettings {
            max_attempts: 3,
            backoff_initial_ms: 200,
            backoff_max_ms: 200,
            ..WebhookSettings::default()
        };
        let d = Dispatcher::new(store, settings);
        let left = |who: &str| EventKind::ParticipantLeft {
            identity: who.into(),
        };
        d.emit("acme", "stuck", left("s1"));
        for who in ["a", "b", "c"] {
            d.emit("acme", "ordered", left(who));
        }
        d.emit("acme", "stuck", left("s2"));
        for _ in 0..200 {
            if d.counts().queued == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let c = d.counts();
        assert_eq!(
            (c.delivered, c.failed, c.retried, c.queued),
            (3, 2, 3 + 4, 0)
        );
        let log = log.lock().unwrap().clone();
        let of = |room: &str| -> Vec<(String, u32)> {
            log.iter()
                .filter(|(r, ..)| r == room)
                .map(|(_, who, attempt)| (who.clone(), *attempt))
                .collect()
        };
        // In order, each event retried until acknowledged before the next one is sent.
        let ordered: Vec<(String, u32)> =
            [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1), ("c", 2)]
                .iter()
                .map(|(w, a)| (w.to_string(), *a))
                .collect();
        assert_eq!(of("ordered"), ordered);
        // The stuck room's second event waits for the first one's final failure.
        let stuck: Vec<(String, u32)> = [
            ("s1", 1),
            ("s1", 2),
            ("s1", 3),
            ("s2", 1),
            ("s2", 2),
            ("s2", 3),
        ]
        .iter()
        .map(|(w, a)| (w.to_string(), *a))
        .collect();
        assert_eq!(of("stuck"), stuck);
        // And the other room did not wait for it: its first event was acknowledged before the
        // stuck room gave up on its own first one (emitted earlier).
        let at = |room: &str, who: &str, attempt: u32| {
            log.iter()
                .position(|(r, w, a)| r == room && w == who && *a == attempt)
                .unwrap()
        };
        assert!(at("ordered", "a", 2) < at("stuck", "s1", 3), "{log:?}");
    }

    #[tokio::test]
    async fn a_full_tenant_queue_drops_and_counts_and_other_tenants_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).await.unwrap());
        let (url, receiver) = silent_receiver().await;
        let acme = TenantId::parse("acme").unwrap();
        super::super::target::put(store.as_ref(), &acme, url, Some("0123456789abcdef".into()))
            .await
            .unwrap();
        let settings = WebhookSettings {
            queue_per_tenant: 3,
            timeout_ms: 60_000,
            ..WebhookSettings::default()
        };
        let d = Dispatcher::new(store, settings);
        for i in 0..6 {
            let room = if i % 2 == 0 { "r1" } else { "r2" };
            d.emit(
                "acme",
                room,
                EventKind::ParticipantLeft {
                    identity: format!("p{i}"),
                },
            );
        }
        let c = d.counts();
        assert_eq!((c.queued, c.dropped), (3, 3));
        // A tenant with no webhook queues nothing for long, and is never dropped.
        d.emit("other", "r", EventKind::RoomStarted {});
        for _ in 0..100 {
            if d.counts().queued == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let c = d.counts();
        assert_eq!((c.queued, c.dropped, c.delivered, c.failed), (3, 3, 0, 0));
        d.emit("other", "r", EventKind::RoomFinished {});
        assert_eq!(
            d.counts().queued,
            3,
            "known to have no webhook: not even queued"
        );
        receiver.abort();
    }
}
