//! `/v1/nodes`: live media nodes and draining (admin key required).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{route, ApiPath, RouteSpec, Verb};
use crate::app::AppState;
use crate::auth::AdminAuth;
use crate::error::ApiError;
use crate::ids::NodeId;
use crate::services::nodes;
use crate::store::nodes::NodeView;

pub fn routes() -> Vec<RouteSpec> {
    vec![
        route(Verb::Get, "/v1/nodes", list),
        route(Verb::Post, "/v1/nodes/{node}/drain", drain),
        route(Verb::Delete, "/v1/nodes/{node}/drain", undrain),
    ]
}

#[derive(Debug, Serialize, Deserialize)]
pub struct NodeList {
    pub nodes: Vec<NodeView>,
}

fn node_id(raw: String) -> Result<NodeId, ApiError> {
    NodeId::parse(raw.clone()).map_err(|_| ApiError::node_not_found(raw))
}

async fn list(_: AdminAuth, State(state): State<AppState>) -> Result<Json<NodeList>, ApiError> {
    Ok(Json(NodeList {
        nodes: nodes::list(state.store.as_ref()).await?,
    }))
}

async fn drain(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<NodeView>, ApiError> {
    let node = node_id(node)?;
    Ok(Json(
        nodes::set_draining(state.store.as_ref(), &node, true).await?,
    ))
}

async fn undrain(
    _: AdminAuth,
    State(state): State<AppState>,
    ApiPath(node): ApiPath<String>,
) -> Result<Json<NodeView>, ApiError> {
    let node = node_id(node)?;
    Ok(Json(
        nodes::set_draining(state.store.as_ref(), &node, false).await?,
    ))
}
