//! Composition of a control-plane instance: cp-core's REST `app()` + signaling + WHIP/WHEP +
//! the demo page + (dev mode) `/dev/token`, over one Store and one placement. The CLI and the
//! tests build servers through here, so what is tested is what runs.
//!
//! Also the default tenant: created on first start, its key pair kept in the data directory
//! (`config::DefaultTenant`). Every request passes `metrics::http::track`, whose counts the
//! metrics listener exports. Must never: contain request logic beyond the dev token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::app::{app, ApiConfig, AppState};
use crate::auth::tokens::AccessClaims;
use crate::auth::TrustedProxies;
use crate::config::{DefaultTenant, SignalingConfig};
use crate::ids::{Identity, RoomName, TenantId};
use crate::metrics::HttpMetrics;
use crate::placement::Placement;
use crate::routes::ApiQuery;
use crate::services::{now_unix_secs, rooms, tenants};
use crate::signaling::{self, BusOptions, BusRoomEvents, DirectBus, Hub};
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
    /// Client addresses and time limits of HTTP requests.
    pub http: HttpOptions,
    /// The room bus between control-plane instances (secret, lease).
    pub bus: BusOptions,
    /// Recordings (`crate::egress`); `None`: the egress routes answer `503
    /// egress_unavailable`.
    pub egress: Option<crate::egress::EgressSettings>,
}

/// What the `[http]` section sets for requests (the listener's own limits are `serve`'s).
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Proxies whose `X-Forwarded-For` names the client (`http.trusted_proxies`).
    pub trusted_proxies: TrustedProxies,
    /// Longest a REST, WHIP/WHEP or page request may take, body upload included
    /// (`http.request_timeout_secs`); then `408 request_timeout`. Not WebSocket sessions.
    pub request_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            trusted_proxies: TrustedProxies::default(),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A built instance: its router and the parts tests want to reach.
pub struct Server {
    pub router: Router,
    pub state: AppState,
    pub hub: Arc<Hub>,
    /// The room bus: call [`DirectBus::advertise`] with the listener's address once bound.
    pub bus: Arc<DirectBus>,
    /// Request counters of this instance (`metrics::Metrics::with_control_plane`).
    pub http_metrics: Arc<HttpMetrics>,
    /// This instance's egresses (stopped, their files finished, before the hub shuts down).
    pub egresses: Option<crate::egress::Egresses>,
}

pub async fn build(
    store: Arc<dyn Store>,
    placement: Arc<Placement>,
    opts: ServerOptions,
) -> Server {
    let direct = DirectBus::start(store.clone(), opts.bus);
    let bus: Arc<dyn signaling::RoomBus> = direct.clone();
    let state =
        AppState::new(store, opts.api).with_events(Arc::new(BusRoomEvents::new(bus.clone())));
    let services = Arc::new(signaling::store_services::StoreServices::new(state.clone()));
    let hub = Hub::new(services, placement.clone(), bus, opts.signaling);
    hub.set_webhooks(state.webhooks.clone());
    let egresses = opts.egress.map(|settings| {
        crate::egress::Egresses::new(hub.clone(), settings, Some(state.webhooks.clone()))
    });
    if let Some(e) = &egresses {
        let _ = state.egress.set(e.clone());
        hub.set_egresses(e.clone());
    }
    let mut router = app(state.clone())
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
        .merge(match &egresses {
            Some(e) => crate::egress::hls::router(e.clone()),
            None => Router::new(),
        })
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
    // Every route so far is a request/response: bounded in time. The WebSocket route is
    // merged after, so a signaling session is not cut off by it.
    let router = router
        .layer(axum::middleware::from_fn_with_state(
            opts.http.request_timeout,
            request_deadline,
        ))
        .merge(signaling::router(hub.clone()))
        .merge(direct.router());
    // Every request can resolve its client address (`signaling::socket::source_ip`).
    let router = router.layer(axum::Extension(Arc::new(opts.http.trusted_proxies)));
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
        bus: direct,
        http_metrics,
        egresses,
    }
}

/// `408 request_timeout` for a request not answered within the limit (a slow body upload, a
/// node call that hangs); what it was doing is dropped.
async fn request_deadline(
    State(limit): State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            [(header::CONNECTION, "close")],
            Json(json!({
                "code": "request_timeout",
                "message": format!("the request took longer than {} s", limit.as_secs()),
            })),
        )
            .into_response(),
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets open requests end.
///
/// Not `axum::serve`: that sets no header-read timeout, so a client could hold a connection
/// (and a task) forever by sending half a request head. Here hyper closes a connection whose
/// request head is not complete within `header_read_timeout` (HTTP/1.1; WebSocket upgrades
/// work as before, and each request carries its peer as `ConnectInfo`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> std::io::Result<()> {
    use axum::extract::ConnectInfo;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    // Shutdown: `stop` tells every connection to finish its request and close; each
    // connection task holds a `done` receiver, so `done_tx.closed()` is "all have ended".
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let service = router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.map(axum::body::Body::new)
            },
        );
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .with_upgrades();
        let (mut stop, done) = (stop_rx.clone(), done_rx.clone());
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %peer, "http: connection ended");
            }
            drop(done);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
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
        let created = rooms::create(store, dev.state.events.as_ref(), &tenant, req).await;
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
        region: None,
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
