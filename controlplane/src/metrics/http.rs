//! HTTP request counters of the control plane, by method, matched route template and
//! status code.
//!
//! The route label is axum's `MatchedPath` (`/v1/rooms/{room}`), never the raw path: a
//! label per room name or token would grow without bound. For the same reason an unusual
//! method is counted as `other` and an unmatched path as `unmatched`.
//! Must never: look at bodies or hold its lock across an `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use super::text::{Encoder, Kind};

/// Route label of a request no route matched (the JSON 404 fallback).
pub const UNMATCHED: &str = "unmatched";

/// (method, route template, status code).
type RequestKey = (&'static str, Arc<str>, u16);

/// Requests counted so far; one per server instance (no global registry, so servers built
/// side by side in one test process keep their own counts).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<RequestKey, u64>>,
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

impl HttpMetrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn count(&self, method: &'static str, route: Arc<str>, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((method, route, status)).or_insert(0) += 1;
    }

    pub fn encode(&self, e: &mut Encoder) {
        let snapshot: Vec<_> = {
            let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(k, v)| (k.clone(), *v)).collect()
        };
        let mut f = e.family(
            "shardcast_http_requests_total",
            Kind::Counter,
            "HTTP requests answered, by method, route template and status code.",
        );
        for ((method, route, status), n) in snapshot {
            let status = status.to_string();
            f.int(
                &[("method", method), ("route", &route), ("status", &status)],
                n,
            );
        }
    }
}

/// Middleware (`axum::middleware::from_fn_with_state`): counts each request once its
/// response is ready. Added with `Router::layer`, so it runs after routing and sees the
/// `MatchedPath` of the route that answers.
pub async fn track(State(m): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route: Arc<str> = match req.extensions().get::<MatchedPath>() {
        Some(p) => Arc::from(p.as_str()),
        None => Arc::from(UNMATCHED),
    };
    let resp = next.run(req).await;
    m.count(method, route, resp.status().as_u16());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn counts_by_route_template_not_raw_path() {
        let m = HttpMetrics::new();
        let app = Router::new()
            .route("/v1/rooms/{room}", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn_with_state(m.clone(), track));
        for uri in ["/v1/rooms/a", "/v1/rooms/b", "/nope/x"] {
            let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let req = Request::builder()
            .method("BREW")
            .uri("/v1/rooms/a")
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(req).await.unwrap();
        let mut e = Encoder::new();
        m.encode(&mut e);
        let text = e.finish();
        assert!(
            text.contains(
                "shardcast_http_requests_total{method=\"GET\",route=\"/v1/rooms/{room}\",status=\"200\"} 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "shardcast_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("{method=\"other\",route=\"/v1/rooms/{room}\",status=\"405\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("/v1/rooms/a"), "{text}");
    }
}
