//! REST request bodies and queries through the extractors the routes use (`ApiJson`,
//! `ApiQuery`: axum's JSON and query parsing, with rejections mapped to `ApiError`), then
//! the checks each handler makes before it touches the store (ids and names parsed, lengths
//! bounded). The first byte picks the body type (bit 3: a wrong Content-Type); the rest is
//! the body (or the query string). Every refusal must be a 4xx with a stable code, never a
//! panic or a 5xx. The store and the services behind the handlers are not reached: they see
//! typed values only, and their tests cover them.
#![no_main]

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{header, Method, Request};
use serde::de::DeserializeOwned;
use shardcast_controlplane::error::MAX_DETAIL;
use shardcast_controlplane::ids::{Identity, RoomName, TenantId};
use shardcast_controlplane::routes::chat::HistoryQuery;
use shardcast_controlplane::routes::participants::{MuteBody, PauseBody, PermissionsBody};
use shardcast_controlplane::routes::rooms::{CreateRoomBody, UpdateRoomBody};
use shardcast_controlplane::routes::tenants::CreateTenant;
use shardcast_controlplane::routes::tokens::{TokenRequest, MAX_DISPLAY_NAME};
use shardcast_controlplane::routes::{ApiJson, ApiQuery};
use shardcast_controlplane::services::tenants::MAX_TENANT_NAME;
use shardcast_controlplane::{ApiConfig, ApiError, AppState, EmbeddedStore};

struct Api {
    rt: tokio::runtime::Runtime,
    state: AppState,
    _dir: tempfile::TempDir,
}

fn api() -> Api {
    let rt = tokio::runtime::Builder::new_current_thread()
        // The embedded store's lease sweeper sleeps on tokio's timer.
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt.block_on(EmbeddedStore::open(dir.path())).expect("store");
    let state = AppState::new(Arc::new(store), ApiConfig::default());
    Api {
        rt,
        state,
        _dir: dir,
    }
}

thread_local! {
    static API: Api = api();
}

fn client_error(e: &ApiError) {
    assert!(
        e.status().is_client_error(),
        "refused with {} {}: {e}",
        e.status(),
        e.code()
    );
    // A message quotes the client's input at most MAX_DETAIL bytes long.
    assert!(
        e.to_string().len() <= 2 * MAX_DETAIL,
        "message grows with the input: {e}"
    );
}

async fn body<T: DeserializeOwned>(state: &AppState, json: bool, bytes: &[u8]) -> Option<T> {
    let content_type = if json {
        "application/json"
    } else {
        "text/plain"
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri("/")
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(bytes.to_vec()))
        .expect("request");
    match ApiJson::<T>::from_request(req, state).await {
        Ok(ApiJson(v)) => Some(v),
        Err(e) => {
            client_error(&e);
            None
        }
    }
}

/// A handler's `?` on an id or a length check: the error must be a 4xx.
fn check<T, E: Into<ApiError>>(r: Result<T, E>) {
    if let Err(e) = r {
        client_error(&e.into());
    }
}

fn bounded(s: Option<&String>, max: usize) -> Result<(), ApiError> {
    match s {
        Some(s) if s.len() > max => Err(ApiError::InvalidRequest("too long".into())),
        _ => Ok(()),
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let json = kind & 8 == 0;
    API.with(|api| {
        let state = &api.state;
        api.rt.block_on(async {
            match kind & 7 {
                0 => {
                    if let Some(b) = body::<CreateRoomBody>(state, json, bytes).await {
                        check(RoomName::parse(b.name));
                    }
                }
                1 => {
                    let _ = body::<UpdateRoomBody>(state, json, bytes).await;
                }
                2 => {
                    let _ = body::<MuteBody>(state, json, bytes).await;
                    let _ = body::<PauseBody>(state, json, bytes).await;
                }
                3 => {
                    let _ = body::<PermissionsBody>(state, json, bytes).await;
                }
                4 => {
                    if let Some(b) = body::<CreateTenant>(state, json, bytes).await {
                        check(TenantId::parse(b.id));
                        check(bounded(b.name.as_ref(), MAX_TENANT_NAME));
                    }
                }
                5 => {
                    if let Some(b) = body::<TokenRequest>(state, json, bytes).await {
                        check(Identity::parse(b.identity));
                        check(bounded(b.name.as_ref(), MAX_DISPLAY_NAME));
                    }
                }
                _ => {
                    // A query string (`GET .../chat?limit=`), and a path segment.
                    let Ok(text) = std::str::from_utf8(bytes) else {
                        return;
                    };
                    check(RoomName::parse(text));
                    let Ok(req) = Request::builder().uri(format!("/x?{text}")).body(()) else {
                        return;
                    };
                    let (mut parts, ()) = req.into_parts();
                    if let Err(e) =
                        ApiQuery::<HistoryQuery>::from_request_parts(&mut parts, state).await
                    {
                        client_error(&e);
                    }
                }
            }
        });
    });
});
