//! `/v1/rooms`: a tenant's rooms (HTTP Basic with an API key pair).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};

use super::{route, ApiJson, ApiPath, RouteSpec, Verb};
use crate::app::AppState;
use crate::auth::TenantAuth;
use crate::error::ApiError;
use crate::ids::{NodeId, Region, RoomName};
use crate::services::nodes;
use crate::services::rooms::{self, CreateRoom, UpdateRoom};
use crate::store::records::{RoomRecord, RoomSettings, VideoCodec};

pub fn routes() -> Vec<RouteSpec> {
    vec![
        route(Verb::Post, "/v1/rooms", create),
        route(Verb::Get, "/v1/rooms", list),
        route(Verb::Get, "/v1/rooms/{room}", get),
        route(Verb::Patch, "/v1/rooms/{room}", update),
        route(Verb::Delete, "/v1/rooms/{room}", delete),
    ]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoomBody {
    pub name: String,
    pub password: Option<String>,
    pub max_participants: Option<u32>,
    #[serde(default)]
    pub ask_before_join: bool,
    pub empty_timeout_secs: Option<u32>,
    #[serde(default)]
    pub video_codecs: Vec<VideoCodec>,
}

/// Present-and-null is "clear", absent is "keep".
fn some_or_null<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoomBody {
    #[serde(default, deserialize_with = "some_or_null")]
    pub password: Option<Option<String>>,
    #[serde(default, deserialize_with = "some_or_null")]
    pub max_participants: Option<Option<u32>>,
    pub ask_before_join: Option<bool>,
    pub empty_timeout_secs: Option<u32>,
    pub video_codecs: Option<Vec<VideoCodec>>,
}

/// A room as the API shows it: whether it has a password, never the hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomView {
    pub name: RoomName,
    pub has_password: bool,
    pub max_participants: Option<u32>,
    pub ask_before_join: bool,
    pub empty_timeout_secs: u32,
    /// Empty: no preference.
    #[serde(default)]
    pub video_codecs: Vec<VideoCodec>,
    pub created_at: u64,
    /// `GET /v1/rooms/{room}` only: the media nodes carrying the room (one today; none
    /// until its first participant's offer places it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<RoomNode>>,
}

/// A media node a room is on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomNode {
    pub id: NodeId,
    pub region: Option<Region>,
    /// False when the node's registration is gone (it died or stopped): the room moves to
    /// another node at its next participant's offer.
    pub live: bool,
}

impl From<RoomRecord> for RoomView {
    fn from(r: RoomRecord) -> Self {
        Self {
            name: r.name,
            has_password: r.password_hash.is_some(),
            max_participants: r.settings.max_participants,
            ask_before_join: r.settings.ask_before_join,
            empty_timeout_secs: r.settings.empty_timeout_secs,
            video_codecs: r.settings.video_codecs,
            created_at: r.created_at,
            nodes: None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RoomList {
    pub rooms: Vec<RoomView>,
}

async fn create(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreateRoomBody>,
) -> Result<(StatusCode, Json<RoomView>), ApiError> {
    let defaults = RoomSettings::default();
    let req = CreateRoom {
        name: RoomName::parse(body.name)?,
        password: body.password,
        settings: RoomSettings {
            max_participants: body.max_participants,
            ask_before_join: body.ask_before_join,
            empty_timeout_secs: body
                .empty_timeout_secs
                .unwrap_or(defaults.empty_timeout_secs),
            video_codecs: body.video_codecs,
        },
    };
    let room = rooms::create(
        state.store.as_ref(),
        state.events.as_ref(),
        &auth.tenant,
        req,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(room.into())))
}

async fn list(auth: TenantAuth, State(state): State<AppState>) -> Result<Json<RoomList>, ApiError> {
    let rooms = rooms::list(state.store.as_ref(), &auth.tenant).await?;
    Ok(Json(RoomList {
        rooms: rooms.into_iter().map(RoomView::from).collect(),
    }))
}

/// Parses a room path segment; a name that cannot exist is simply not found.
pub(crate) fn room_name(raw: String) -> Result<RoomName, ApiError> {
    RoomName::parse(raw.clone()).map_err(|_| ApiError::room_not_found(raw))
}

async fn get(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath(room): ApiPath<String>,
) -> Result<Json<RoomView>, ApiError> {
    let room = room_name(room)?;
    let store = state.store.as_ref();
    let mut view = RoomView::from(rooms::get(store, &auth.tenant, &room).await?);
    let on = nodes::of_room(store, &auth.tenant, &room).await?;
    view.nodes = Some(
        on.into_iter()
            .map(|(id, node)| RoomNode {
                id,
                live: node.is_some(),
                region: node.and_then(|n| n.record.region),
            })
            .collect(),
    );
    Ok(Json(view))
}

async fn update(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath(room): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateRoomBody>,
) -> Result<Json<RoomView>, ApiError> {
    let room = room_name(room)?;
    let req = UpdateRoom {
        password: body.password,
        max_participants: body.max_participants,
        ask_before_join: body.ask_before_join,
        empty_timeout_secs: body.empty_timeout_secs,
        video_codecs: body.video_codecs,
    };
    let updated = rooms::update(state.store.as_ref(), &auth.tenant, &room, req).await?;
    Ok(Json(updated.into()))
}

async fn delete(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath(room): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let room = room_name(room)?;
    rooms::delete(
        state.store.as_ref(),
        state.events.as_ref(),
        &auth.tenant,
        &room,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
