//! `/v1/tenants/{tenant}/webhook`: a tenant's webhook URL and signing secret (admin key
//! required, as every tenant setting). A read never returns the secret.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;

use super::{route, ApiJson, ApiPath, RouteSpec, Verb};
use crate::app::AppState;
use crate::auth::AdminAuth;
use crate::error::ApiError;
use crate::ids::TenantId;
use crate::services::tenants;
use crate::webhooks::{target, WebhookError, WebhookView};

pub fn routes() -> Vec<RouteSpec> {
    vec![
        route(Verb::Put, "/v1/tenants/{tenant}/webhook", put),
        route(Verb::Get, "/v1/tenants/{tenant}/webhook", get),
        route(Verb::Delete, "/v1/tenants/{tenant}/webhook", remove),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetWebhook {
    pub url: String,
    /// Omitted: keep the current secret, or generate one (shown once, in this answer).
    pub secret: Option<String>,
}

async fn put(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<SetWebhook>,
) -> Result<Json<WebhookView>, ApiError> {
    let tenant = TenantId::parse(tenant)?;
    tenants::get(state.store.as_ref(), &tenant).await?;
    let url = target::check_url(&body.url)?;
    if let Some(s) = &body.secret {
        target::check_secret(s)?;
    }
    let settings = state.webhooks.settings();
    if settings.check_reachable {
        let limit = std::time::Duration::from_millis(settings.timeout_ms);
        target::check_reachable(&url, limit).await?;
    }
    let (record, generated) =
        target::put(state.store.as_ref(), &tenant, body.url, body.secret).await?;
    state.webhooks.invalidate(tenant.as_str());
    Ok(Json(WebhookView::of(&record, generated)))
}

async fn get(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<Json<WebhookView>, ApiError> {
    let tenant = TenantId::parse(tenant)?;
    tenants::get(state.store.as_ref(), &tenant).await?;
    let record = target::get(state.store.as_ref(), &tenant)
        .await?
        .ok_or(WebhookError::NotFound)?;
    Ok(Json(WebhookView::of(&record, false)))
}

async fn remove(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath(tenant): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = TenantId::parse(tenant)?;
    tenants::get(state.store.as_ref(), &tenant).await?;
    target::remove(state.store.as_ref(), &tenant).await?;
    state.webhooks.invalidate(tenant.as_str());
    Ok(StatusCode::NO_CONTENT)
}
