//! The bus's two endpoints (`POST` events and hello from other instances), each behind the
//! link credential.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::super::link::Batch;
use super::{DirectBus, Hello};
use crate::nodeapi::credential::CredentialError;

/// Why a room-bus request was refused.
enum Refused {
    Credential(CredentialError),
    Body(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            Refused::Credential(e) => (StatusCode::UNAUTHORIZED, e.code(), e.to_string()),
            Refused::Body(m) => (StatusCode::BAD_REQUEST, "invalid_request", m),
        };
        (status, Json(json!({"code": code, "message": message}))).into_response()
    }
}

/// The body as `T`, once the caller's credential checked out (so an unauthenticated caller
/// learns nothing from parse errors).
fn authorized<T: serde::de::DeserializeOwned>(
    bus: &DirectBus,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Refused> {
    bus.verify(headers).map_err(Refused::Credential)?;
    serde_json::from_slice(body).map_err(|e| Refused::Body(crate::error::cut_detail(e.to_string())))
}

pub(super) async fn receive_batch(
    State(bus): State<Arc<DirectBus>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match authorized::<Batch>(&bus, &headers, &body) {
        Ok(batch) => {
            bus.receive(batch);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r.into_response(),
    }
}

pub(super) async fn receive_hello(
    State(bus): State<Arc<DirectBus>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match authorized::<Hello>(&bus, &headers, &body) {
        Ok(hello) => Json(bus.receive_hello(hello)).into_response(),
        Err(r) => r.into_response(),
    }
}
