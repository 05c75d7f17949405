//! `/healthz` (the process answers) and `/readyz` (it can do its work) on every role, for
//! load balancers, orchestrators and `systemd` checks. No auth, and nothing in the answer
//! names an internal address or error: a check is `"ok"` or a fixed reason.
//!
//! - control plane (`serve`, `controlplane`): the store answers a read, and a media node
//!   can take rooms (all-in-one: the in-process node's shards answer; cluster: at least one
//!   live node is registered);
//! - media node (`medianode`): its shards answer.
//!
//! From SIGTERM on (`shutdown`), every role adds `"shutdown": "shutting down"` and answers 503,
//! so a load balancer stops sending new work before the listener closes.
//!
//! Each check has [`CHECK_TIMEOUT`]; `/readyz` is `200 {"ready":true,"checks":{…}}` or
//! `503 {"ready":false,"checks":{…}}`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use shardcast_dataplane::node::MediaNodeApi;

use crate::placement::Placement;
use crate::shutdown::Stopping;
use crate::store::Store;

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

async fn check<F, T, E>(fut: F, failed: &'static str) -> Result<T, &'static str>
where
    F: Future<Output = Result<T, E>>,
{
    match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(failed),
        Err(_) => Err("timed out"),
    }
}

fn answer(
    stopping: &Stopping,
    mut checks: Vec<(&'static str, Result<(), &'static str>)>,
) -> Response {
    if stopping.is_set() {
        checks.push(("shutdown", Err("shutting down")));
    }
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let mut map = Map::new();
    for (name, r) in checks {
        map.insert(name.into(), Value::from(r.err().unwrap_or("ok")));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready, "checks": map}))).into_response()
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The routes of a control plane (serve, controlplane).
pub fn control_plane(
    store: Arc<dyn Store>,
    placement: Arc<Placement>,
    stopping: Stopping,
) -> Router {
    Router::new().route("/healthz", get(healthz)).route(
        "/readyz",
        get(move || {
            let (store, placement, stopping) = (store.clone(), placement.clone(), stopping.clone());
            async move {
                let store_ok = check(store.get("/shardcast/readyz"), "unreachable")
                    .await
                    .map(|_| ());
                let media = check(placement.ready(), "no media node can take rooms").await;
                answer(&stopping, vec![("store", store_ok), ("media", media)])
            }
        }),
    )
}

/// The routes of a media node (next to its node API).
pub fn media_node(node: Arc<dyn MediaNodeApi>, stopping: Stopping) -> Router {
    Router::new().route("/healthz", get(healthz)).route(
        "/readyz",
        get(move || {
            let (node, stopping) = (node.clone(), stopping.clone());
            async move {
                let shards = check(node.load(), "not answering").await.map(|_| ());
                answer(&stopping, vec![("shards", shards)])
            }
        }),
    )
}
