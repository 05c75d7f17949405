//! `GET /hls/{egress}/{key}/{file}`: an HLS egress's playlist and segments, straight from
//! its directory. The URL is the credential (a capability: `key` is 128 random bits, shown
//! only in the egress's `playlist`), so players on any origin may fetch it (CORS `*`, no
//! cookies); it stops working when the egress ends. Players resolve segment names relative
//! to the playlist, so they carry the key without rewriting the playlist.
//!
//! Must never: serve a path outside the egress's directory (names are checked by
//! `Egresses::hls_file`: letters, digits, `._-`, a playlist or segment extension).

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::cors::{Any, CorsLayer};

use super::Egresses;
use crate::routes::ApiPath;

pub fn router(egresses: Egresses) -> Router {
    Router::new()
        .route("/hls/{egress}/{key}/{file}", get(serve))
        .with_state(egresses)
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET]),
        )
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": "not_found", "message": "no such stream or segment"})),
    )
        .into_response()
}

async fn serve(
    State(egresses): State<Egresses>,
    ApiPath((id, key, file)): ApiPath<(String, String, String)>,
) -> Response {
    let Some(path) = egresses.hls_file(&id, &key, &file) else {
        return not_found();
    };
    let Ok(body) = tokio::fs::read(&path).await else {
        // Not written yet, or already rolled off the end of the playlist.
        return not_found();
    };
    let (ctype, cache) = if file.ends_with(".m3u8") {
        ("application/vnd.apple.mpegurl", "no-cache")
    } else {
        ("video/mp2t", "max-age=60")
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}
