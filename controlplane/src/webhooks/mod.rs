//! Signed webhooks: each tenant may register one HTTP(S) URL and a signing secret; this
//! instance POSTs a JSON event there for every room and participant change that happens on
//! it (docs/API.md, "Webhooks").
//!
//! Files: `event` (the event kinds and the JSON body), `sign` (the `Shardcast-Signature`
//! header: HMAC-SHA256 over `timestamp.body`), `target` (the tenant's URL and secret in the
//! Store, their checks), `delivery` (per-room queues, retries with back-off, counters).
//!
//! Emitted once, by the instance where the action happens: the hub calls [`Webhooks::on_signal`]
//! where it *publishes* a presence or track event (never where it receives one from the bus),
//! and [`HookedRoomEvents`] sees room creation and closing where the service performs them.
//!
//! Owns: the webhook queue of this instance. Must never: block or delay its caller (emitting
//! is a bounded push under a short lock; the HTTP work runs on its own tasks), grow without
//! bound (a bounded queue per tenant, overflow counted as `dropped`), or follow redirects.

mod delivery;
pub mod event;
pub mod sign;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::services::events::{EventFuture, RoomEvent, RoomEvents};
use crate::signaling::bus::RoomEventKind;
use crate::store::Store;

pub use delivery::WebhookCounts;
pub use event::{Envelope, EventKind};
pub use target::{WebhookRecord, WebhookView};

/// Webhook errors; each maps to a `400` with a stable code (or to the store's error).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    InvalidUrl(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    InvalidSecret(String),
    #[error("this tenant has no webhook")]
    NotFound,
}

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        let message = e.to_string();
        match e {
            WebhookError::InvalidUrl(_) => ApiError::BadRequest {
                code: "invalid_webhook_url",
                message,
            },
            WebhookError::Unreachable(_) => ApiError::BadRequest {
                code: "webhook_unreachable",
                message,
            },
            WebhookError::InvalidSecret(_) => ApiError::BadRequest {
                code: "invalid_webhook_secret",
                message,
            },
            WebhookError::NotFound => ApiError::NotFound {
                code: "webhook_not_found",
                message,
            },
        }
    }
}

/// The `[webhooks]` config section: how hard this instance tries, and how much it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Attempts per event (the first included); then the event is counted `failed`.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub backoff_initial_ms: u64,
    /// The longest wait between two attempts.
    pub backoff_max_ms: u64,
    /// One attempt (connect, send, response head) may take this long.
    pub timeout_ms: u64,
    /// Events of one tenant waiting on this instance; more are dropped (and counted).
    pub queue_per_tenant: usize,
    /// Setting a webhook connects to its host first and refuses a URL it cannot reach.
    pub check_reachable: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            timeout_ms: 5_000,
            queue_per_tenant: 1_000,
            check_reachable: true,
        }
    }
}

impl WebhookSettings {
    /// `(key, problem)` for the first bad value.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=100).contains(&self.max_attempts) {
            return Err(("webhooks.max_attempts", "between 1 and 100".into()));
        }
        if self.timeout_ms == 0 {
            return Err(("webhooks.timeout_ms", "must be > 0".into()));
        }
        if self.backoff_initial_ms == 0 {
            return Err(("webhooks.backoff_initial_ms", "must be > 0".into()));
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return Err((
                "webhooks.backoff_max_ms",
                "must be at least backoff_initial_ms".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.queue_per_tenant) {
            return Err(("webhooks.queue_per_tenant", "between 1 and 1000000".into()));
        }
        Ok(())
    }

    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self
            .backoff_initial_ms
            .saturating_mul(1u64 << (attempt.saturating_sub(1)).min(32));
        Duration::from_millis(doubled.min(self.backoff_max_ms))
    }
}

/// The webhook sender of one control-plane instance. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<delivery::Dispatcher>,
}

impl Webhooks {
    pub fn new(store: Arc<dyn Store>, settings: WebhookSettings) -> Self {
        Self {
            inner: delivery::Dispatcher::new(store, settings),
        }
    }

    pub fn settings(&self) -> &WebhookSettings {
        self.inner.settings()
    }

    /// Queues `kind` for the tenant's webhook; returns at once. Nothing happens when the
    /// tenant has none.
    pub fn emit(&self, tenant: &str, room: &str, kind: EventKind) {
        self.inner.emit(tenant, room, kind);
    }

    /// The hub's hook: a presence or track change it is about to publish for a session it
    /// holds.
    pub fn on_signal(&self, tenant: &str, room: &str, kind: &RoomEventKind) {
        if let Some(kind) = EventKind::from_signal(kind) {
            self.emit(tenant, room, kind);
        }
    }

    /// Forget the cached webhook of `tenant` (it was just set or removed here).
    pub fn invalidate(&self, tenant: &str) {
        self.inner.invalidate(tenant);
    }

    pub fn counts(&self) -> WebhookCounts {
        self.inner.counts()
    }

    /// At shutdown, once the sessions are closed (their `participant_left` queued): waits
    /// until every queued event was delivered or finally failed, or `within` passed.
    /// Returns how many were still queued then; they are lost when the process exits.
    pub async fn flush(&self, within: Duration) -> u64 {
        let until = tokio::time::Instant::now() + within;
        loop {
            let queued = self.counts().queued;
            if queued == 0 {
                return 0;
            }
            if tokio::time::Instant::now() >= until {
                tracing::warn!(queued, "webhooks: events still queued at shutdown are lost");
                return queued;
            }
            tokio::time::sleep(FLUSH_POLL).await;
        }
    }
}

/// How often [`Webhooks::flush`] looks at the queues.
const FLUSH_POLL: Duration = Duration::from_millis(20);

/// `RoomEvents` that also emits `room_started` and `room_finished` on the instance whose
/// service created or closed the room, then hands the event on unchanged.
pub struct HookedRoomEvents {
    inner: Arc<dyn RoomEvents>,
    hooks: Webhooks,
}

impl HookedRoomEvents {
    pub fn new(inner: Arc<dyn RoomEvents>, hooks: Webhooks) -> Self {
        Self { inner, hooks }
    }
}

impl RoomEvents for HookedRoomEvents {
    fn publish(&self, event: RoomEvent) -> EventFuture<'_> {
        match &event {
            RoomEvent::RoomCreated { tenant, room } => {
                self.hooks
                    .emit(tenant.as_str(), room.as_str(), EventKind::RoomStarted {})
            }
            RoomEvent::RoomClosed { tenant, room } => {
                self.hooks
                    .emit(tenant.as_str(), room.as_str(), EventKind::RoomFinished {})
            }
            _ => {}
        }
        self.inner.publish(event)
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RoomEvent> {
        self.inner.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = WebhookSettings {
            backoff_initial_ms: 100,
            backoff_max_ms: 1_000,
            ..WebhookSettings::default()
        };
        let waits: Vec<u64> = (1..=6).map(|a| s.backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(s.backoff(200), Duration::from_millis(1_000));
    }

    #[test]
    fn settings_name_the_bad_key() {
        let bad = WebhookSettings {
            max_attempts: 0,
            ..WebhookSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "webhooks.max_attempts");
        let bad = WebhookSettings {
            backoff_initial_ms: 10,
            backoff_max_ms: 5,
            ..WebhookSettings::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "webhooks.backoff_max_ms");
        assert!(WebhookSettings::default().check().is_ok());
    }
}
