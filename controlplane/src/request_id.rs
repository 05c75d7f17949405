//! Request ids: every HTTP request (REST, WHIP/WHEP, the node API) is handled inside a
//! `request` span carrying its id — the caller's `X-Request-Id` when it is a sane token, else
//! a fresh one — and the response carries the id back. Node API calls made while handling a
//! request send the same id (`current()`), so the media node's log lines for that call carry
//! the id the client saw: one grep follows a request across processes. Work that no request
//! of this process started takes an id too (`adopt`): a room event runs under the id of the
//! request that published it, on every instance; a media node's event under a fresh one.
//!
//! Owns the header, the span and the task-local. Must never trust the header's contents
//! beyond a short token of safe characters (it ends up in every log line).

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest id accepted from a caller.
const MAX_LEN: usize = 64;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request this task is handling, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.clone()).ok()
}

/// Runs `fut` as part of request `id` (for work a request hands to another task).
pub async fn scope<F: std::future::Future>(id: String, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// Spawns `fut` as part of the current request — its id and its span — for work a request
/// hands to a task of its own (a session's subscriptions after its answer, its expiry after
/// a dropped socket): that task's log lines and node API calls carry the request's id.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let span = tracing::Span::current();
    match current() {
        Some(id) => tokio::spawn(CURRENT.scope(id, fut).instrument(span)),
        None => tokio::spawn(fut.instrument(span)),
    }
}

/// A caller's id when it is 1–64 characters of `[A-Za-z0-9._:-]`.
fn accepted(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    sane(s).then(|| s.to_string())
}

fn sane(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The id for work that no HTTP request of this process started (a room event from the bus,
/// a media node's event): the id it came with when that is a sane token, else a fresh one.
pub fn adopt(id: Option<&str>) -> String {
    id.filter(|s| sane(s))
        .map(str::to_string)
        .unwrap_or_else(fresh)
}

/// A fresh id: 16 random bytes in hex.
pub fn fresh() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Middleware (`axum::middleware::from_fn`): the span, the task-local and the response header.
pub async fn layer(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(accepted)
        .unwrap_or_else(fresh);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let started = Instant::now();
    let mut resp = CURRENT
        .scope(id.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    let status = resp.status();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), ms, "request done");
        }
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_short_safe_tokens_only() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(accepted(&v("abc-123_x.y:z")), Some("abc-123_x.y:z".into()));
        assert_eq!(accepted(&v("")), None);
        assert_eq!(accepted(&v("has space")), None);
        assert_eq!(accepted(&v("quote\"")), None);
        assert_eq!(accepted(&v(&"a".repeat(65))), None);
        assert_eq!(accepted(&v(&"a".repeat(64))).map(|s| s.len()), Some(64));
    }

    #[test]
    fn work_keeps_a_sane_id_it_came_with_and_gets_a_fresh_one_otherwise() {
        assert_eq!(adopt(Some("abc-1")), "abc-1");
        for bad in [None, Some(""), Some("a b"), Some("x\n")] {
            let id = adopt(bad);
            assert_eq!(id.len(), 32, "{bad:?} -> {id}");
        }
    }

    #[test]
    fn fresh_ids_are_32_hex_and_differ() {
        let (a, b) = (fresh(), fresh());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
