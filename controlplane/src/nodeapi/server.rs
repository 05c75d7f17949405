//! The media node's HTTP face: serves any `MediaNodeApi` (see the module docs of `nodeapi`
//! for the wire form). Authenticated with the cluster secret; must never be exposed
//! publicly, and never interprets calls itself — it only forwards them to the node.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream;
use serde_json::json;
use shardcast_dataplane::node::{MediaNodeApi, NodeError};

use super::{NodeCall, CALL_PATH, EVENTS_PATH};

#[derive(Clone)]
struct NodeServer {
    node: Arc<dyn MediaNodeApi>,
    secret: Arc<str>,
}

/// The node API router for `node`, requiring `Authorization: Bearer <secret>`.
pub fn router(node: Arc<dyn MediaNodeApi>, secret: &str) -> Router {
    Router::new()
        .route(CALL_PATH, post(call))
        .route(EVENTS_PATH, get(events))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1 << 20))
        .with_state(NodeServer {
            node,
            secret: Arc::from(secret),
        })
}

fn authorized(s: &NodeServer, headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(token) = v.strip_prefix("Bearer ") else {
        return false;
    };
    crate::auth::constant_time_eq(token.as_bytes(), s.secret.as_bytes())
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {"code": "unavailable", "message": "bad cluster secret"}})),
    )
        .into_response()
}

fn error_response(e: NodeError) -> Response {
    let status = match &e {
        NodeError::BadSdp(_) | NodeError::BadState(_) => StatusCode::BAD_REQUEST,
        NodeError::UnknownPeer(_) | NodeError::UnknownTrack(_) => StatusCode::NOT_FOUND,
        NodeError::Full | NodeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(json!({ "error": e }))).into_response()
}

fn ok<T: serde::Serialize>(v: T) -> Response {
    Json(json!({ "ok": v })).into_response()
}

async fn call(
    State(s): State<NodeServer>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let call: NodeCall = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": {"code": "bad_state", "message": format!("malformed call: {e}")}}),
            ),
        )
            .into_response(),
    };
    let n = &s.node;
    let result = match call {
        NodeCall::CreatePeer { request } => n.create_peer(request).await.map(ok),
        NodeCall::Renegotiate { peer, offer } => n.renegotiate(peer, offer).await.map(ok),
        NodeCall::AcceptAnswer { peer, answer } => n.accept_answer(peer, answer).await.map(ok),
        NodeCall::Subscribe { subscriber, track } => n.subscribe(subscriber, track).await.map(ok),
        NodeCall::Unsubscribe { subscriber, track } => {
            n.unsubscribe(subscriber, track).await.map(ok)
        }
        NodeCall::SetPreference {
            subscriber,
            track,
            preference,
        } => n
            .set_preference(subscriber, track, preference)
            .await
            .map(ok),
        NodeCall::SetTrackMuted { track, muted } => n.set_track_muted(track, muted).await.map(ok),
        NodeCall::ClosePeer { peer } => n.close_peer(peer).await.map(ok),
        NodeCall::Load => n.load().await.map(ok),
    };
    result.unwrap_or_else(error_response)
}

async fn events(State(s): State<NodeServer>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return unauthorized();
    }
    let rx = s.node.events();
    let tick = tokio::time::interval(Duration::from_secs(10));
    let lines = stream::unfold((rx, tick), |(mut rx, mut tick)| async move {
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
                        line.push(b'\n');
                        return Some((Ok::<_, std::io::Error>(line), (rx, tick)));
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "node api: event stream lagged");
                    }
                    Err(_) => return None,
                },
                _ = tick.tick() => return Some((Ok(b"\n".to_vec()), (rx, tick))),
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(lines))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
