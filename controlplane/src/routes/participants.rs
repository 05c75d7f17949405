//! `/v1/rooms/{room}/participants`: list, inspect and host controls (HTTP Basic).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::rooms::room_name;
use super::{route, ApiJson, ApiPath, RouteSpec, Verb};
use crate::app::AppState;
use crate::auth::TenantAuth;
use crate::error::ApiError;
use crate::ids::Identity;
use crate::services::participants::{self, PermissionsUpdate};
use crate::store::records::{ParticipantRecord, ParticipantRole};

const ONE: &str = "/v1/rooms/{room}/participants/{identity}";

pub fn routes() -> Vec<RouteSpec> {
    vec![
        route(Verb::Get, "/v1/rooms/{room}/participants", list),
        route(Verb::Get, ONE, get),
        route(Verb::Delete, ONE, remove),
        route(
            Verb::Post,
            "/v1/rooms/{room}/participants/{identity}/tracks/{track}/mute",
            mute_track,
        ),
        route(
            Verb::Post,
            "/v1/rooms/{room}/participants/{identity}/pause_video",
            pause_video,
        ),
        route(
            Verb::Patch,
            "/v1/rooms/{room}/participants/{identity}/permissions",
            permissions,
        ),
        route(
            Verb::Post,
            "/v1/rooms/{room}/participants/{identity}/admit",
            admit,
        ),
        route(
            Verb::Post,
            "/v1/rooms/{room}/participants/{identity}/deny",
            deny,
        ),
    ]
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ParticipantList {
    pub participants: Vec<ParticipantRecord>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuteBody {
    pub muted: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    pub paused: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PermissionsBody {
    pub role: Option<ParticipantRole>,
    pub can_publish: Option<bool>,
    pub can_subscribe: Option<bool>,
    pub can_chat: Option<bool>,
    pub room_admin: Option<bool>,
}

fn identity(raw: String) -> Result<Identity, ApiError> {
    Identity::parse(raw.clone()).map_err(|_| ApiError::participant_not_found(raw))
}

async fn list(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath(room): ApiPath<String>,
) -> Result<Json<ParticipantList>, ApiError> {
    let room = room_name(room)?;
    let participants = participants::list(state.store.as_ref(), &auth.tenant, &room).await?;
    Ok(Json(ParticipantList { participants }))
}

async fn get(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath((room, who)): ApiPath<(String, String)>,
) -> Result<Json<ParticipantRecord>, ApiError> {
    let room = room_name(room)?;
    let who = identity(who)?;
    Ok(Json(
        participants::get(state.store.as_ref(), &auth.tenant, &room, &who).await?,
    ))
}

async fn remove(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath((room, who)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let room = room_name(room)?;
    let who = identity(who)?;
    participants::remove(
        state.store.as_ref(),
        state.events.as_ref(),
        &auth.tenant,
        &room,
        &who,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn mute_track(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath((room, who, track)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<MuteBody>,
) -> Result<Json<ParticipantRecord>, ApiError> {
    let room = room_name(room)?;
    let who = identity(who)?;
    let track: u64 = track
        .parse()
        .map_err(|_| ApiError::InvalidRequest(format!("track id {track:?} is not a number")))?;
    let p = participants::mute_track(
        state.store.as_ref(),
        state.events.as_ref(),
        &auth.tenant,
        &room,
        &who,
        track,
        body.muted,
    )
    .await?;
    Ok(Json(p))
}

async fn pause_video(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath((room, who)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PauseBody>,
) -> Result<Json<ParticipantRecord>, ApiError> {
    let room = room_name(room)?;
    let who = identity(who)?;
    let p = participants::pause_video(
        state.store.as_ref(),
        state.events.as_ref(),
        &auth.tenant,
        &room,
        &who,
        body.paused,
    )
    .await?;
    Ok(Json(p))
}

async fn permissions(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath((room, who)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PermissionsBody>,
) -> Result<Json<ParticipantRecord>, ApiError> {
    let room = room_name(room)?;
    let who = identity(who)?;
    let change = PermissionsUpdate {
        role: body.role,
        can_publish: body.can_publish,
        can_subscribe: body.can_subscribe,
        can_chat: body.can_chat,
        room_admin: body.room_admin,
    };
    let p = participants::update_permissions(
        state.store.as_ref(),
        state.events.as_ref(),
        &auth.tenant,
        &room,
        &who,
        change,
    )
    .await?;
    Ok(Json(p))
}

async fn admit(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath((room, who)): ApiPath<(String, String)>,
) -> Result<Json<ParticipantRecord>, ApiError> {
    let room = room_name(room)?;
    let who = identity(who)?;
    let p = participants::admit(
        state.store.as_ref(),
        state.events.as_ref(),
        &auth.tenant,
        &room,
        &who,
    )
    .await?;
    Ok(Json(p))
}

async fn deny(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath((room, who)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let room = room_name(room)?;
    let who = identity(who)?;
    participants::deny(
        state.store.as_ref(),
        state.events.as_ref(),
        &auth.tenant,
        &room,
        &who,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
