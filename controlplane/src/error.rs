//! `ApiError`: the one error type REST handlers return.
//!
//! Renders as JSON `{ "code": "...", "message": "..." }` with the matching status. Codes are
//! stable snake_case strings that clients may branch on (listed in docs/API.md); messages are
//! for humans. Store and internal failures are logged here and shown only as a generic
//! message: internals never reach the caller.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::ids::InvalidId;
use crate::store::StoreError;

/// Longest part of a message that quotes a client's own bad input back to it.
pub const MAX_DETAIL: usize = 256;

/// `text` cut to [`MAX_DETAIL`] bytes, at a character boundary, marked with `…`. Parser
/// errors (serde, axum's rejections, jsonwebtoken) quote the offending value escaped, and
/// escaping grows it (`\u{7f}` is 8 bytes for 1): uncut, an error reply could send a client
/// several times what it sent (found by fuzz/fuzz_targets/signaling_msg.rs).
///
/// The bound is on the detail as a JSON reply carries it: a backslash, a quote or a control
/// character costs its escape (2 or 6 bytes), so a detail made of them is cut sooner (the
/// fuzz target found a 256-byte cut of backslashes and line breaks doubling in the reply).
pub fn cut_detail(mut text: String) -> String {
    let mut escaped = 0;
    let mut cut = None;
    for (at, c) in text.char_indices() {
        escaped += match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if escaped > MAX_DETAIL {
            cut = Some(at);
            break;
        }
    }
    if let Some(at) = cut {
        text.truncate(at);
        text.push('…');
    }
    text
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("the access token has expired")]
    TokenExpired,
    #[error("the access token is not valid yet")]
    TokenNotYetValid,
    #[error("the access token is invalid: {0}")]
    TokenInvalid(String),
    #[error("the access token is for another room")]
    TokenWrongRoom,
    #[error("the access token belongs to another tenant")]
    TokenWrongTenant,
    #[error("the room password is wrong")]
    WrongPassword,
    /// 404 with a specific code (`room_not_found`, `participant_not_found`, ...).
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    /// 409 with a specific code (`room_exists`, `not_waiting`, ...).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("malformed JSON body: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// 400 with a specific code (`invalid_webhook_url`, `webhook_unreachable`, ...).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 503 with a specific code (`egress_unavailable`, `room_full`, ...).
    #[error("{message}")]
    ServiceUnavailable { code: &'static str, message: String },
    /// 503: the store could not be reached. Detail is logged, not returned.
    #[error("the store is unavailable")]
    Unavailable(String),
    /// 500: a bug or corrupt data. Detail is logged, not returned.
    #[error("internal error")]
    Internal(String),
}

/// The JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn room_not_found(room: impl std::fmt::Display) -> Self {
        Self::NotFound {
            code: "room_not_found",
            message: format!("room {room} does not exist"),
        }
    }
    pub fn participant_not_found(identity: impl std::fmt::Display) -> Self {
        Self::NotFound {
            code: "participant_not_found",
            message: format!("participant {identity} is not in the room"),
        }
    }
    pub fn tenant_not_found(tenant: impl std::fmt::Display) -> Self {
        Self::NotFound {
            code: "tenant_not_found",
            message: format!("tenant {tenant} does not exist"),
        }
    }
    pub fn api_key_not_found(key: impl std::fmt::Display) -> Self {
        Self::NotFound {
            code: "api_key_not_found",
            message: format!("api key {key} does not exist"),
        }
    }
    pub fn node_not_found(node: impl std::fmt::Display) -> Self {
        Self::NotFound {
            code: "node_not_found",
            message: format!("media node {node} is not registered"),
        }
    }
    pub fn track_not_found(track: u64) -> Self {
        Self::NotFound {
            code: "track_not_found",
            message: format!("the participant has no track {track}"),
        }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_)
            | Self::TokenExpired
            | Self::TokenNotYetValid
            | Self::TokenInvalid(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_)
            | Self::TokenWrongRoom
            | Self::TokenWrongTenant
            | Self::WrongPassword => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::InvalidJson(_) | Self::InvalidRequest(_) | Self::BadRequest { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) | Self::ServiceUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::TokenInvalid(_) => "token_invalid",
            Self::TokenWrongRoom => "token_wrong_room",
            Self::TokenWrongTenant => "token_wrong_tenant",
            Self::WrongPassword => "wrong_password",
            Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::BadRequest { code, .. }
            | Self::ServiceUnavailable { code, .. } => code,
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidRequest(_) => "invalid_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "store_unavailable",
            Self::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_owned(),
            message: self.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Backend(detail) => Self::Unavailable(detail),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<InvalidId> for ApiError {
    fn from(e: InvalidId) -> Self {
        Self::InvalidRequest(cut_detail(e.to_string()))
    }
}

/// A short random id that ties an error a client saw to its detail in the server log.
pub fn error_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..12].to_string()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The detail (etcd errors, keys, node addresses) goes to the log only, under an id
        // the client gets with the generic message.
        let mut body = self.body();
        match &self {
            Self::Unavailable(detail) => {
                let id = error_id();
                tracing::warn!(target: "api", error_id = %id, %detail, "store unavailable");
                body.message = format!("{} (error id {id})", body.message);
            }
            Self::Internal(detail) => {
                let id = error_id();
                tracing::error!(target: "api", error_id = %id, %detail, "internal error");
                body.message = format!("{} (error id {id})", body.message);
            }
            _ => {}
        }
        let status = self.status();
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::RateLimited { retry_after_secs } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_of_escaped_characters_is_cut_by_its_escaped_size() {
        let detail = "\\\r\n".repeat(300);
        let json = serde_json::to_string(&cut_detail(detail)).unwrap();
        assert!(json.len() <= MAX_DETAIL + 8, "{} bytes", json.len());
    }

    #[test]
    fn a_message_quoting_client_input_is_cut() {
        // InvalidId quotes the value with Debug escaping: 8 bytes for each DEL character.
        let long = "\u{7f}".repeat(10_000);
        let e = ApiError::from(crate::ids::RoomName::parse(long).unwrap_err());
        let ApiError::InvalidRequest(message) = &e else {
            panic!("{e:?}");
        };
        assert!(message.starts_with("invalid room name"));
        assert!(
            message.len() <= MAX_DETAIL + '…'.len_utf8(),
            "{}",
            message.len()
        );
        // Cut at a character boundary: a multi-byte character straddling the limit goes whole.
        // ("x" then two-byte characters: byte MAX_DETAIL falls inside one of them.)
        let cut = cut_detail(format!("x{}", "é".repeat(MAX_DETAIL)));
        assert_eq!(cut, format!("x{}…", "é".repeat((MAX_DETAIL - 1) / 2)));
        assert_eq!(cut_detail("short".into()), "short");
    }
}
