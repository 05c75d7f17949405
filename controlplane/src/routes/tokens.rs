//! `POST /v1/rooms/{room}/tokens`: mint an access token for a participant (HTTP Basic).
//!
//! The token is signed with the API key the request authenticated with, so revoking that
//! key invalidates every token it minted.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::rooms::room_name;
use super::{route, ApiJson, ApiPath, RouteSpec, Verb};
use crate::app::AppState;
use crate::auth::tokens::AccessClaims;
use crate::auth::TenantAuth;
use crate::error::ApiError;
use crate::ids::{Identity, Region, RoomName};
use crate::services::{now_unix_secs, rooms};
use crate::store::records::{Grants, ParticipantRole};

pub fn routes() -> Vec<RouteSpec> {
    vec![route(Verb::Post, "/v1/rooms/{room}/tokens", mint)]
}

pub const MAX_DISPLAY_NAME: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub identity: String,
    pub name: Option<String>,
    pub role: Option<ParticipantRole>,
    /// Defaults follow the role.
    pub grants: Option<Grants>,
    pub ttl_secs: Option<u64>,
    /// Where the room should be placed if this participant is the one who places it.
    pub region: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token: String,
    pub identity: Identity,
    pub room: RoomName,
    pub expires_at: u64,
}

async fn mint(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath(room): ApiPath<String>,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    let room = room_name(room)?;
    let identity = Identity::parse(body.identity)?;
    let name = body.name.unwrap_or_else(|| identity.to_string());
    if name.len() > MAX_DISPLAY_NAME {
        return Err(ApiError::InvalidRequest(format!(
            "name longer than {MAX_DISPLAY_NAME} bytes"
        )));
    }
    let ttl = body.ttl_secs.unwrap_or(state.tokens.default_ttl_secs);
    if ttl == 0 || ttl > state.tokens.max_ttl_secs {
        return Err(ApiError::InvalidRequest(format!(
            "ttl_secs must be 1-{}",
            state.tokens.max_ttl_secs
        )));
    }
    rooms::get(state.store.as_ref(), &auth.tenant, &room).await?;
    let region = body.region.map(Region::parse).transpose()?;
    let role = body.role.unwrap_or(ParticipantRole::Participant);
    let now = now_unix_secs();
    let claims = AccessClaims {
        sub: identity.to_string(),
        name,
        room: room.clone(),
        role,
        grants: body.grants.unwrap_or_else(|| Grants::for_role(role)),
        exp: now + ttl,
        nbf: now,
        iat: now,
        iss: auth.key.id.to_string(),
        region,
    };
    let token = state.tokens.mint(&auth.key, &claims)?;
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token,
            identity,
            room,
            expires_at: claims.exp,
        }),
    ))
}
