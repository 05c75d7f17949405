//! Request authentication as axum extractors.
//!
//! - [`AdminAuth`]: `Authorization: Bearer <admin key>` (the key from config or
//!   `SHARDCAST_ADMIN_KEY`). With no admin key configured, admin routes are closed.
//! - [`TenantAuth`]: HTTP Basic `<api key id>:<api secret>`; yields the tenant and the key.
//!
//! Failures are `401 unauthorized` with a message that says what to send, never which part
//! (key or secret) was wrong.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;

use super::constant_time_eq;
use crate::app::AppState;
use crate::error::ApiError;
use crate::ids::{ApiKeyId, TenantId};
use crate::services::tenants;
use crate::store::records::ApiKeyRecord;

/// Proof that the caller holds the admin key.
#[derive(Debug, Clone, Copy)]
pub struct AdminAuth;

/// The tenant a request acts for, and the API key it authenticated with.
#[derive(Debug, Clone)]
pub struct TenantAuth {
    pub tenant: TenantId,
    pub key: ApiKeyRecord,
}

fn authorization(parts: &Parts) -> Option<&str> {
    parts.headers.get(AUTHORIZATION)?.to_str().ok()
}

/// Splits `Scheme credentials`, scheme compared case-insensitively (RFC 9110).
fn scheme<'a>(value: &'a str, wanted: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(wanted).then(|| rest.trim())
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(admin_key) = state.config.admin_key.as_deref() else {
            return Err(ApiError::Forbidden(
                "the admin API is disabled: no admin key is configured".into(),
            ));
        };
        let given = authorization(parts)
            .and_then(|v| scheme(v, "Bearer"))
            .ok_or_else(|| {
                ApiError::Unauthorized("send Authorization: Bearer <admin key>".into())
            })?;
        if constant_time_eq(given.as_bytes(), admin_key.as_bytes()) {
            Ok(AdminAuth)
        } else {
            Err(ApiError::Unauthorized("the admin key is wrong".into()))
        }
    }
}

impl FromRequestParts<AppState> for TenantAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let missing =
            || ApiError::Unauthorized("send HTTP Basic credentials <api key>:<api secret>".into());
        let encoded = authorization(parts)
            .and_then(|v| scheme(v, "Basic"))
            .ok_or_else(missing)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| missing())?;
        let decoded = String::from_utf8(decoded).map_err(|_| missing())?;
        let (key_id, secret) = decoded.split_once(':').ok_or_else(missing)?;
        let key_id = ApiKeyId::parse(key_id).map_err(|_| bad_credentials())?;
        let key = tenants::authenticate(state.store.as_ref(), &key_id, secret).await?;
        Ok(TenantAuth {
            tenant: key.tenant.clone(),
            key,
        })
    }
}

pub(crate) fn bad_credentials() -> ApiError {
    ApiError::Unauthorized("the api key or secret is wrong".into())
}
