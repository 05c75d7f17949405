//! Composition of a control-plane instance: cp-core's REST `app()` + signaling + WHIP/WHEP +
//! the demo page + (dev mode) `/dev/token`, over one Store and one placement. The CLI and the
//! tests build servers through here, so what is tested is what runs.
//!
//! Also the default tenant: created on first start, its key pair kept in the data directory
//! (`config::DefaultTenant`). Every request passes `metrics::http::track`, whose counts the
//! metrics listener exports. Must never: contain request logic beyond the dev token.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::app::{app, ApiConfig, AppState};
use crate::auth::tokens::AccessClaims;
use crate::config::{DefaultTenant, SignalingConfig};
use crate::ids::{Identity, RoomName, TenantId};
use crate::metrics::HttpMetrics;
use crate::placement::Placement;
use crate::routes::ApiQuery;
use crate::services::{now_unix_secs, rooms, tenants};
use crate::signaling::{self, BusRoomEvents, Hub, StoreBus};
use crate::store::records::{ApiKeyRecord, Grants, ParticipantRole, RoomSettings};
use crate::store::typed::get_json;
use crate::store::{keys, Store};

/// The default tenant's id.
pub const DEFAULT_TENANT: &str = "default";

pub struct ServerOptions {
    pub api: ApiConfig,
    pub signaling: SignalingConfig,
    /// Dev mode: `/dev/token` mints host tokens with this key.
    pub dev_key: Option<ApiKeyRecord>,
    /// Serve the demo page from a directory instead of the built-in copy.
    pub web_dir: Option<PathBuf>,
}

/// A built instance: its router and the parts tests want to reach.
pub struct Server {
    pub router: Router,
    pub state: AppState,
    pub hub: Arc<Hub>,
    /// Request counters of this instance (`metrics::Metrics::with_control_plane`).
    pub http_metrics: Arc<HttpMetrics>,
}

pub async fn build(
    store: Arc<dyn Store>,
    placement: Arc<Placement>,
    opts: ServerOptions,
) -> Server {
    let bus = StoreBus::start(store.clone(), signaling::bus_prefix());
    bus.ready().await;
    let bus: Arc<dyn signaling::RoomBus> = bus;
    let state =
        AppState::new(store, opts.api).with_events(Arc::new(BusRoomEvents::new(bus.clone())));
    let services = Arc::new(signaling::store_services::StoreServices::new(state.clone()));
    let hub = Hub::new(services, placement.clone(), bus, opts.signaling);
    let mut router = app(state.clone())
        .merge(signaling::router(hub.clone()))
        .merge({
            let whip = crate::whip::router(hub.clone()).layer(
                axum::extract::DefaultBodyLimit::max(state.config.body_limit_bytes),
            );
            match crate::cors::whip_layer(&state.config.cors_whip_origins) {
                Some(cors) => whip.layer(cors),
                None => whip,
            }
        })
        .merge(web_router(opts.web_dir))
        .merge(crate::health::control_plane(
            state.store.clone(),
            placement.clone(),
            hub.stopping(),
        ));
    if let Some(key) = opts.dev_key {
        router = router.merge(
            Router::new()
                .route("/dev/token", get(dev_token))
                .with_state(DevState {
                    state: state.clone(),
                    key: Arc::new(key),
                }),
        );
    }
    // Last, so it wraps every route above (and the fallback) and sees their MatchedPath.
    let http_metrics = HttpMetrics::new();
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            http_metrics.clone(),
            crate::metrics::http::track,
        ))
        .layer(axum::middleware::from_fn(crate::request_id::layer));
    Server {
        router,
        state,
        hub,
        http_metrics,
    }
}

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

fn web_router(dir: Option<PathBuf>) -> Router {
    let file = move |name: &'static str, builtin: &'static str, ctype: &'static str| {
        let dir = dir.clone();
        get(move || async move {
            let body = match &dir {
                Some(d) => match tokio::fs::read_to_string(d.join(name)).await {
                    Ok(s) => s,
                    Err(_) => return StatusCode::NOT_FOUND.into_response(),
                },
                None => builtin.to_string(),
            };
            (
                [
                    (header::CONTENT_TYPE, ctype),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response()
        })
    };
    Router::new()
        .route(
            "/",
            file("index.html", INDEX_HTML, "text/html; charset=utf-8"),
        )
        .route(
            "/index.html",
            file("index.html", INDEX_HTML, "text/html; charset=utf-8"),
        )
        .route(
            "/app.js",
            file("app.js", APP_JS, "text/javascript; charset=utf-8"),
        )
        .route(
            "/style.css",
            file("style.css", STYLE_CSS, "text/css; charset=utf-8"),
        )
}

#[derive(Clone)]
struct DevState {
    state: AppState,
    key: Arc<ApiKeyRecord>,
}

#[derive(Deserialize)]
struct DevQuery {
    room: String,
    identity: String,
    name: Option<String>,
}

fn bad(code: &str, message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"code": code, "message": message.into()})),
    )
        .into_response()
}

/// Dev mode only: a host token for the default tenant; creates the room if needed, so the
/// demo page works with any room name.
async fn dev_token(State(dev): State<DevState>, ApiQuery(q): ApiQuery<DevQuery>) -> Response {
    let Ok(room) = RoomName::parse(q.room.clone()) else {
        return bad("invalid_request", "bad room name");
    };
    let Ok(identity) = Identity::parse(q.identity.clone()) else {
        return bad("invalid_request", "bad identity");
    };
    let store = dev.state.store.as_ref();
    let tenant = dev.key.tenant.clone();
    if rooms::get(store, &tenant, &room).await.is_err() {
        let req = rooms::CreateRoom {
            name: room.clone(),
            settings: RoomSettings::default(),
            password: None,
        };
        let created = rooms::create(store, &tenant, req).await;
        if let Err(e) = created {
            if e.code() != "room_exists" {
                return e.into_response();
            }
        }
    }
    let now = now_unix_secs();
    let claims = AccessClaims {
        sub: identity.to_string(),
        name: q.name.unwrap_or_else(|| identity.to_string()),
        room,
        role: ParticipantRole::Host,
        grants: Grants::for_role(ParticipantRole::Host),
        exp: now + 6 * 3600,
        nbf: now.saturating_sub(5),
        iat: now,
        iss: dev.key.id.to_string(),
    };
    match dev.state.tokens.mint(&dev.key, &claims) {
        Ok(token) => Json(json!({ "token": token })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The default tenant and its key pair: read from the data directory, created on first start.
pub async fn ensure_default_tenant(
    store: &dyn Store,
    data_dir: &std::path::Path,
) -> anyhow::Result<ApiKeyRecord> {
    let tenant = TenantId::parse(DEFAULT_TENANT)?;
    if let Some(saved) = DefaultTenant::read(data_dir)? {
        let id = crate::ids::ApiKeyId::parse(saved.api_key.clone())?;
        if let Some(rec) = get_json::<ApiKeyRecord>(store, &keys::api_key(&id)).await? {
            if rec.value.secret == saved.api_secret {
                return Ok(rec.value);
            }
        }
        tracing::warn!("default tenant credentials in the data directory are stale; new ones");
    }
    if tenants::get(store, &tenant).await.is_err() {
        tenants::create(store, tenant.clone(), Some("Default tenant".into())).await?;
    }
    let key = tenants::create_api_key(store, &tenant).await?;
    DefaultTenant {
        tenant: tenant.to_string(),
        api_key: key.id.to_string(),
        api_secret: key.secret.clone(),
    }
    .write(data_dir)?;
    Ok(key)
}
