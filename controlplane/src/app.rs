//! `AppState` and `app()`: the axum application, built from the route table.
//!
//! `app(state)` is what `main` serves and what tests drive with `tower::ServiceExt::oneshot`.
//! The state holds swappable parts behind `Arc<dyn _>`: the Store backend, the room-event
//! hook, and handles to media nodes (filled by the signaling/placement layer).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use shardcast_dataplane::node::MediaNodeApi;

use crate::auth::{PasswordLimiter, TokenService};
use crate::error::ApiError;
use crate::ids::NodeId;
use crate::routes;
use crate::services::events::{LocalRoomEvents, RoomEvents};
use crate::store::Store;
use crate::webhooks::{HookedRoomEvents, Webhooks};

/// REST-facing settings (part of the binary's config).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Bearer key for admin routes; `None` closes them.
    pub admin_key: Option<String>,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// Wrong room-password attempts allowed per (room, source) per window.
    pub password_max_failures: u32,
    pub password_window: Duration,
    /// Chat history returned when the caller gives no limit, and the most it may ask for —
    /// also how many messages a room keeps (older ones are deleted as new ones arrive).
    pub chat_history_default: usize,
    pub chat_history_max: usize,
    /// Longest chat message, in bytes.
    pub chat_max_bytes: usize,
    /// The lease participant records are put on (`store::lease`): a killed instance's
    /// participants vanish this long after its last keep-alive.
    pub session_lease: Duration,
    /// A valid token for a room that does not exist creates it (default settings) on join,
    /// WHIP or WHEP; off: such a join is `room_not_found`.
    pub rooms_auto_create: bool,
    /// Origins whose pages may call WHIP/WHEP and the REST API (`crate::cors`).
    pub cors_whip_origins: Vec<String>,
    pub cors_api_origins: Vec<String>,
    /// TURN/STUN servers and the secret their credentials are made with (`crate::turn`).
    pub turn: crate::turn::TurnSettings,
    /// Attempts, back-off, timeouts and queue bound of tenants' webhooks (`crate::webhooks`).
    pub webhooks: crate::webhooks::WebhookSettings,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            admin_key: None,
            body_limit_bytes: 64 * 1024,
            password_max_failures: 5,
            password_window: Duration::from_secs(60),
            chat_history_default: 50,
            chat_history_max: 500,
            chat_max_bytes: 4096,
            session_lease: Duration::from_secs(10),
            rooms_auto_create: true,
            cors_whip_origins: vec!["*".into()],
            cors_api_origins: Vec::new(),
            turn: crate::turn::TurnSettings::default(),
            webhooks: crate::webhooks::WebhookSettings::default(),
        }
    }
}

/// Media node handles by node id: the in-process node in all-in-one mode, HTTP clients for
/// remote nodes. Filled by whoever registers nodes; read on the signaling path.
#[derive(Clone, Default)]
pub struct NodeHandles {
    inner: Arc<RwLock<HashMap<NodeId, Arc<dyn MediaNodeApi>>>>,
}

impl NodeHandles {
    pub fn insert(&self, id: NodeId, node: Arc<dyn MediaNodeApi>) {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, node);
    }

    pub fn get(&self, id: &NodeId) -> Option<Arc<dyn MediaNodeApi>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn remove(&self, id: &NodeId) -> Option<Arc<dyn MediaNodeApi>> {
        self.inner
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    pub fn ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self
            .inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }
}

/// Everything a handler may use. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ApiConfig>,
    pub tokens: Arc<TokenService>,
    pub events: Arc<dyn RoomEvents>,
    pub password_limiter: Arc<PasswordLimiter>,
    pub nodes: NodeHandles,
    /// This instance's webhook sender (`crate::webhooks`).
    pub webhooks: Webhooks,
    /// This instance's egresses, once `server::build` made them (empty in an `app()` built
    /// without a hub: the egress routes then answer `503 egress_unavailable`).
    pub egress: crate::egress::EgressSlot,
}

impl AppState {
    /// State with in-process room events and default token policy.
    pub fn new(store: Arc<dyn Store>, config: ApiConfig) -> Self {
        let password_limiter = Arc::new(PasswordLimiter::new(
            config.password_max_failures,
            config.password_window,
        ));
        let webhooks = Webhooks::new(store.clone(), config.webhooks.clone());
        Self {
            store,
            config: Arc::new(config),
            tokens: Arc::new(TokenService::default()),
            events: Arc::new(HookedRoomEvents::new(
                Arc::new(LocalRoomEvents::default()),
                webhooks.clone(),
            )),
            password_limiter,
            nodes: NodeHandles::default(),
            webhooks,
            egress: Default::default(),
        }
    }

    /// Room events go to `events`, past the webhook hook (room started/finished).
    pub fn with_events(mut self, events: Arc<dyn RoomEvents>) -> Self {
        self.events = Arc::new(HookedRoomEvents::new(events, self.webhooks.clone()));
        self
    }

    pub fn with_tokens(mut self, tokens: TokenService) -> Self {
        self.tokens = Arc::new(tokens);
        self
    }
}

/// The whole HTTP application: every route in [`routes::table`], a JSON 404 fallback and the
/// body size limit.
pub fn app(state: AppState) -> Router {
    let mut router: Router<AppState> = Router::new();
    for spec in routes::table() {
        router = router.route(spec.path, spec.handler);
    }
    let router = router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes));
    let router = match crate::cors::api_layer(&state.config.cors_api_origins) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "no such endpoint; see /v1/openapi.json".into(),
    }
}
