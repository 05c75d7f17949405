//! `/v1/tenants`: tenants and their API keys (admin key required).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{route, ApiJson, ApiPath, RouteSpec, Verb};
use crate::app::AppState;
use crate::auth::AdminAuth;
use crate::error::ApiError;
use crate::ids::{ApiKeyId, TenantId};
use crate::services::tenants;
use crate::store::records::{ApiKeyRecord, TenantRecord};

pub fn routes() -> Vec<RouteSpec> {
    vec![
        route(Verb::Post, "/v1/tenants", create),
        route(Verb::Get, "/v1/tenants", list),
        route(Verb::Get, "/v1/tenants/{tenant}", get),
        route(Verb::Delete, "/v1/tenants/{tenant}", remove),
        route(Verb::Post, "/v1/tenants/{tenant}/keys", create_key),
        route(Verb::Get, "/v1/tenants/{tenant}/keys", list_keys),
        route(Verb::Delete, "/v1/tenants/{tenant}/keys/{key}", revoke_key),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub id: String,
    pub name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TenantList {
    pub tenants: Vec<TenantRecord>,
}

/// An API key as listed: never the secret.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiKeyView {
    pub id: ApiKeyId,
    pub tenant: TenantId,
    pub created_at: u64,
}

/// The one response that carries the secret.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    pub id: ApiKeyId,
    pub tenant: TenantId,
    pub secret: String,
    pub created_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApiKeyList {
    pub keys: Vec<ApiKeyView>,
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(k: ApiKeyRecord) -> Self {
        Self {
            id: k.id,
            tenant: k.tenant,
            created_at: k.created_at,
        }
    }
}

async fn create(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<TenantRecord>), ApiError> {
    let id = TenantId::parse(body.id)?;
    let tenant = tenants::create(state.store.as_ref(), id, body.name).await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

async fn list(_: AdminAuth, State(state): State<AppState>) -> Result<Json<TenantList>, ApiError> {
    let tenants = tenants::list(state.store.as_ref()).await?;
    Ok(Json(TenantList { tenants }))
}

async fn get(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<TenantRecord>, ApiError> {
    let tenant = TenantId::parse(tenant)?;
    Ok(Json(tenants::get(state.store.as_ref(), &tenant).await?))
}

async fn remove(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = TenantId::parse(tenant)?;
    tenants::remove(state.store.as_ref(), state.events.as_ref(), &tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn create_key(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<(StatusCode, Json<ApiKeyCreated>), ApiError> {
    let tenant = TenantId::parse(tenant)?;
    let k = tenants::create_api_key(state.store.as_ref(), &tenant).await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyCreated {
            id: k.id,
            tenant: k.tenant,
            secret: k.secret,
            created_at: k.created_at,
        }),
    ))
}

async fn list_keys(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<ApiKeyList>, ApiError> {
    let tenant = TenantId::parse(tenant)?;
    tenants::get(state.store.as_ref(), &tenant).await?;
    let keys = tenants::list_api_keys(state.store.as_ref(), &tenant).await?;
    Ok(Json(ApiKeyList {
        keys: keys.into_iter().map(ApiKeyView::from).collect(),
    }))
}

async fn revoke_key(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath((tenant, key)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = TenantId::parse(tenant)?;
    let key = ApiKeyId::parse(key).map_err(|_| ApiError::api_key_not_found("(malformed)"))?;
    tenants::revoke_api_key(state.store.as_ref(), &tenant, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}
