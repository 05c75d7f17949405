//! Media nodes as operators see them: list, drain, and the node a room is on.
//!
//! Registration (on a lease) and room bindings are in `store::nodes`; choosing a node for a
//! room is placement's job, not this module's.

use super::now_unix_ms;
use crate::error::ApiError;
use crate::ids::{NodeId, RoomName, TenantId};
use crate::store::nodes::{self, NodeView};
use crate::store::Store;

pub async fn list(store: &dyn Store) -> Result<Vec<NodeView>, ApiError> {
    Ok(nodes::list(store).await?)
}

/// Marks a live node draining (it gets no new rooms) or clears the mark.
pub async fn set_draining(
    store: &dyn Store,
    id: &NodeId,
    draining: bool,
) -> Result<NodeView, ApiError> {
    if nodes::get(store, id).await?.is_none() {
        return Err(ApiError::node_not_found(id));
    }
    nodes::set_draining(store, id, draining, now_unix_ms()).await?;
    nodes::get(store, id)
        .await?
        .ok_or_else(|| ApiError::node_not_found(id))
}

/// The node `room` is bound to, with its registration (`None`: the node is gone), or `None`
/// when the room is not placed.
pub async fn of_room(
    store: &dyn Store,
    tenant: &TenantId,
    room: &RoomName,
) -> Result<Option<(NodeId, Option<NodeView>)>, ApiError> {
    let Some(b) = nodes::binding(store, tenant, room).await? else {
        return Ok(None);
    };
    let view = nodes::get(store, &b.node).await?;
    Ok(Some((b.node, view)))
}
