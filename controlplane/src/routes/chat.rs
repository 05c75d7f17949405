//! `GET /v1/rooms/{room}/chat`: stored chat history, oldest first (HTTP Basic).
//! Sending chat is a signaling message, not a REST call.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::rooms::room_name;
use super::{route, ApiPath, ApiQuery, RouteSpec, Verb};
use crate::app::AppState;
use crate::auth::TenantAuth;
use crate::error::ApiError;
use crate::services::chat;
use crate::store::records::ChatRecord;

pub fn routes() -> Vec<RouteSpec> {
    vec![route(Verb::Get, "/v1/rooms/{room}/chat", history)]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChatHistory {
    pub messages: Vec<ChatRecord>,
}

async fn history(
    auth: TenantAuth,
    State(state): State<AppState>,
    ApiPath(room): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<ChatHistory>, ApiError> {
    let room = room_name(room)?;
    let max = state.config.chat_history_max;
    let limit = query.limit.unwrap_or(state.config.chat_history_default);
    if limit == 0 || limit > max {
        return Err(ApiError::InvalidRequest(format!("limit must be 1-{max}")));
    }
    let messages = chat::history(state.store.as_ref(), &auth.tenant, &room, limit).await?;
    Ok(Json(ChatHistory { messages }))
}
