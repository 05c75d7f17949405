//! `/v1/rooms/{room}/egress`: recordings of a room's participants (HTTP Basic). The work is
//! `crate::egress`'s; an instance lists the egresses it started.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::rooms::room_name;
use super::{route, ApiJson, ApiPath, RouteSpec, Verb};
use crate::app::AppState;
use crate::auth::TenantAuth;
use crate::egress::{EgressView, Egresses, StartEgress};
use crate::error::ApiError;
use crate::ids::Identity;
use crate::services::rooms;

const ONE: &str = "/v1/rooms/{room}/egress/{egress}";

pub fn routes() -> Vec<RouteSpec> {
    vec![
        route(Verb::Post, "/v1/rooms/{room}/egress", start),
        route(Verb::Get, "/v1/rooms/{room}/egress", list),
        route(Verb::Get, ONE, get),
        route(Verb::Delete, ONE, stop),
    ]
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EgressList {
    pub egresses: Vec<EgressView>,
}

fn egresses(state: &AppState) -> Result<&Egresses, ApiError> {
    state
        .egress
        .get()
        .ok_or_else(|| ApiError::ServiceUnavailable {
            code: "egress_unavailable",
            message: "this instance does not run egresses".into(),
        })
}

/// The room, checked to exist for the caller's tenant.
async fn room(state: &AppState, auth: &TenantAuth, raw: String) -> Result<String, ApiError> {
    let name = room_name(raw)?;
    rooms::get(state.store.as_ref(), &auth.tenant, &name).await?;
    Ok(name.to_string())
}

async fn start(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(body): ApiJson<StartEgress>,
) -> Result<(StatusCode, Json<EgressView>), ApiError> {
    let room = room(&state, &auth, raw).await?;
    if let Some(who) = &body.participant {
        Identity::parse(who.clone())?;
    }
    let view = egresses(&state)?
        .start(auth.tenant.as_str(), &room, body)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn list(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> Result<Json<EgressList>, ApiError> {
    let room = room(&state, &auth, raw).await?;
    Ok(Json(EgressList {
        egresses: egresses(&state)?.list(auth.tenant.as_str(), &room),
    }))
}

async fn get(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath((raw, id)): ApiPath<(String, String)>,
) -> Result<Json<EgressView>, ApiError> {
    let room = room(&state, &auth, raw).await?;
    Ok(Json(egresses(&state)?.get(
        auth.tenant.as_str(),
        &room,
        &id,
    )?))
}

/// Stops the egress and answers once its file is finished.
async fn stop(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath((raw, id)): ApiPath<(String, String)>,
) -> Result<Json<EgressView>, ApiError> {
    let room = room(&state, &auth, raw).await?;
    Ok(Json(
        egresses(&state)?
            .stop(auth.tenant.as_str(), &room, &id)
            .await?,
    ))
}
