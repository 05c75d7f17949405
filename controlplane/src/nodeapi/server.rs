//! The media node's HTTP face: serves any `MediaNodeApi` (see the module docs of `nodeapi`
//! for the wire form). Every request carries a token for this node (`credential`), checked
//! before anything else; must never be exposed publicly, and never interprets calls itself — it only forwards them to the node, telling
//! the `EventLog` what the replies imply (a created peer, a settled offer).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{stream, StreamExt};
use serde_json::json;
use shardcast_dataplane::node::{MediaNodeApi, NodeError};

use crate::shutdown::Stopping;

use super::credential::{self, CredentialError, Verifier};
use super::eventlog::{EventLog, DEFAULT_REPLAY};
use super::{NodeCall, ResumeFrom, StreamLine, CALL_PATH, EVENTS_PATH};

#[derive(Clone)]
struct NodeServer {
    node: Arc<dyn MediaNodeApi>,
    credentials: Arc<Verifier>,
    log: Arc<EventLog>,
    /// Set on SIGTERM: no new peers.
    stopping: Stopping,
    /// Set once the stopping node's calls moved (or could not): event streams end and are
    /// refused, so control planes see the node lost and tell whoever is left.
    streams_end: Stopping,
}

/// The node API router for `node`, requiring `Authorization: Bearer <token>` that
/// `credentials` accepts (a token for this node's id and advertised address). Starts logging
/// the node's events at once (needs a runtime), so none is missed before a client connects.
pub fn router(node: Arc<dyn MediaNodeApi>, credentials: Verifier) -> Router {
    router_with_replay(node, credentials, DEFAULT_REPLAY)
}

/// As [`router`], keeping the last `replay` events for reconnecting clients.
pub fn router_with_replay(
    node: Arc<dyn MediaNodeApi>,
    credentials: Verifier,
    replay: usize,
) -> Router {
    let never = Stopping::new();
    router_full(node, credentials, replay, never.clone(), never)
}

/// As [`router`], refusing new peers once `stopping` is set, and ending the event streams
/// once `streams_end` is (a stopping node keeps them while its calls move elsewhere).
pub fn router_stopping(
    node: Arc<dyn MediaNodeApi>,
    credentials: Verifier,
    stopping: Stopping,
    streams_end: Stopping,
) -> Router {
    router_full(node, credentials, DEFAULT_REPLAY, stopping, streams_end)
}

fn router_full(
    node: Arc<dyn MediaNodeApi>,
    credentials: Verifier,
    replay: usize,
    stopping: Stopping,
    streams_end: Stopping,
) -> Router {
    let log = EventLog::start(node.clone(), replay);
    Router::new()
        .route(CALL_PATH, post(call))
        .route(EVENTS_PATH, get(events))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(1 << 20))
        .layer(axum::middleware::from_fn(crate::request_id::layer))
        .with_state(NodeServer {
            node,
            credentials: Arc::new(credentials),
            log,
            stopping,
            streams_end,
        })
}

/// Why the request's token is refused: not for this node, stale, or none.
/// Checks the request's token; returns until when (unix seconds) it stays valid.
fn authorize(s: &NodeServer, headers: &HeaderMap) -> Result<u64, CredentialError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    s.credentials.verify_header(header)?;
    Ok(header
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(credential::valid_until)
        .unwrap_or(0))
}

/// `401 {"error": {"code": "credential_..", "message": ..}}`; the node logs why, since the
/// control plane only sees its calls fail.
fn unauthorized(e: CredentialError) -> Response {
    tracing::info!(code = e.code(), "node api: credential refused: {e}");
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"error": {"code": e.code(), "message": e.to_string()}})),
    )
        .into_response()
}

/// A query string the events route cannot read: `400 {"error": {"code": "bad_query", ..}}`
/// in the node API's error envelope, never axum's plain-text rejection.
fn bad_query(rejection: QueryRejection) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"code": "bad_query", "message": rejection.body_text()}})),
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
    if let Err(e) = authorize(&s, &headers) {
        return unauthorized(e);
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
    let (n, log) = (&s.node, &s.log);
    let result = match call {
        NodeCall::CreatePeer { .. } if s.stopping.is_set() => {
            Err(NodeError::Unavailable("the node is shutting down".into()))
        }
        NodeCall::CreatePeer { request } => n.create_peer(request).await.map(|c| {
            log.peer_created(c.peer);
            ok(c)
        }),
        NodeCall::Renegotiate { peer, offer } => {
            let pending = log.pending_offer(peer);
            n.renegotiate(peer, offer).await.map(|answer| {
                log.offer_settled(peer, pending);
                ok(answer)
            })
        }
        NodeCall::AcceptAnswer { peer, answer } => {
            let pending = log.pending_offer(peer);
            n.accept_answer(peer, answer).await.map(|()| {
                log.offer_settled(peer, pending);
                ok(())
            })
        }
        NodeCall::AddCandidates { peer, candidates } => {
            n.add_candidates(peer, candidates).await.map(ok)
        }
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
        NodeCall::SetCanSendData { peer, allowed } => {
            n.set_can_send_data(peer, allowed).await.map(ok)
        }
        NodeCall::ClosePeer { peer } => n.close_peer(peer).await.map(ok),
        NodeCall::Load => n.load().await.map(ok),
        NodeCall::Snapshot => n.snapshot().await.map(ok),
    };
    result.unwrap_or_else(error_response)
}

fn line_bytes(line: &StreamLine) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(line).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The event stream: a head line, the replayed events, then live ones. A client too slow for
/// the live channel loses its stream (not events): it reconnects and resumes from its last seq.
async fn events(
    State(s): State<NodeServer>,
    headers: HeaderMap,
    from: Result<Query<ResumeFrom>, QueryRejection>,
) -> Response {
    let valid_until = match authorize(&s, &headers) {
        Ok(until) => until,
        Err(e) => return unauthorized(e),
    };
    let from = match from {
        Ok(Query(from)) => from,
        Err(rejection) => return bad_query(rejection),
    };
    if s.streams_end.is_set() {
        return error_response(NodeError::Unavailable("the node is shutting down".into()));
    }
    let opened = s.log.open(&from);
    let mut first = line_bytes(&opened.head);
    for (seq, ev) in &opened.replay {
        first.extend(line_bytes(&StreamLine::Event {
            seq: *seq,
            event: (**ev).clone(),
        }));
    }
    let head = stream::once(async move { Ok::<_, std::io::Error>(first) });
    let tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(10),
        Duration::from_secs(10),
    );
    let stop = s.streams_end.clone();
    // The stream ends when the token that opened it would no longer verify: the control
    // plane reconnects with a fresh one and resumes from its last seq (nothing is lost), and
    // a retired secret cannot keep a stream open.
    let expired = Box::pin(tokio::time::sleep(credential::seconds_until(valid_until)));
    let lines = stream::unfold(
        (opened.live, tick, expired),
        move |(mut rx, mut tick, mut expired)| {
            let stop = stop.clone();
            async move {
                tokio::select! {
                    _ = stop.wait() => None,
                    _ = &mut expired => {
                        tracing::debug!("node api: event stream's token expired; closing it");
                        None
                    }
                    ev = rx.recv() => match ev {
                        Ok((seq, ev)) => {
                            let line = line_bytes(&StreamLine::Event { seq, event: (*ev).clone() });
                            Some((Ok::<_, std::io::Error>(line), (rx, tick, expired)))
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "node api: event stream lagged; closing it");
                            None
                        }
                        Err(_) => None,
                    },
                    _ = tick.tick() => Some((Ok(b"\n".to_vec()), (rx, tick, expired))),
                }
            }
        },
    );
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(head.chain(lines)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
