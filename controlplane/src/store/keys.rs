//! The Store keyspace: every key the control plane writes, in one place.
//!
//! Documented in docs/ARCHITECTURE.md ("Store keyspace"); change both together. Prefixes end
//! in `/` so that tenant `a` never lists tenant `ab`'s keys.

use crate::ids::{ApiKeyId, Identity, NodeId, RoomName, TenantId};

pub const ROOT: &str = "/shardcast/";

pub fn tenants_prefix() -> String {
    format!("{ROOT}tenants/")
}
pub fn tenant(t: &TenantId) -> String {
    format!("{ROOT}tenants/{t}")
}

/// The tenant's webhook URL and signing secret (`crate::webhooks::target`).
pub fn webhook(t: &TenantId) -> String {
    format!("{ROOT}webhooks/{t}")
}

pub fn api_keys_prefix() -> String {
    format!("{ROOT}apikeys/")
}
pub fn api_key(k: &ApiKeyId) -> String {
    format!("{ROOT}apikeys/{k}")
}

pub fn rooms_prefix(t: &TenantId) -> String {
    format!("{ROOT}rooms/{t}/")
}
pub fn room(t: &TenantId, r: &RoomName) -> String {
    format!("{ROOT}rooms/{t}/{r}")
}

/// Present while a room is empty, on a lease of its `empty_timeout_secs`: its expiry (a
/// delete) closes the room (`services::rooms::expire_empty_rooms`).
pub fn empty_rooms_prefix() -> String {
    format!("{ROOT}empty/")
}
pub fn empty_room(t: &TenantId, r: &RoomName) -> String {
    format!("{ROOT}empty/{t}/{r}")
}

pub fn participants_prefix(t: &TenantId, r: &RoomName) -> String {
    format!("{ROOT}participants/{t}/{r}/")
}
pub fn participants_tenant_prefix(t: &TenantId) -> String {
    format!("{ROOT}participants/{t}/")
}
pub fn participant(t: &TenantId, r: &RoomName, i: &Identity) -> String {
    format!("{ROOT}participants/{t}/{r}/{i}")
}

pub fn chat_prefix(t: &TenantId, r: &RoomName) -> String {
    format!("{ROOT}chat/{t}/{r}/")
}
pub fn chat_tenant_prefix(t: &TenantId) -> String {
    format!("{ROOT}chat/{t}/")
}
/// Zero-padded so key order is sequence order.
pub fn chat_message(t: &TenantId, r: &RoomName, seq: u64) -> String {
    format!("{ROOT}chat/{t}/{r}/{seq:020}")
}
pub fn chat_seq(t: &TenantId, r: &RoomName) -> String {
    format!("{ROOT}chatseq/{t}/{r}")
}
pub fn chat_seq_tenant_prefix(t: &TenantId) -> String {
    format!("{ROOT}chatseq/{t}/")
}

pub fn nodes_prefix() -> String {
    format!("{ROOT}nodes/")
}
pub fn node(n: &NodeId) -> String {
    format!("{ROOT}nodes/{n}")
}
/// Drain flags live apart from the node's own (leased, rewritten) record so a node's
/// heartbeat never undoes an operator's drain.
pub fn drain_prefix() -> String {
    format!("{ROOT}drain/")
}
pub fn drain(n: &NodeId) -> String {
    format!("{ROOT}drain/{n}")
}

pub fn bindings_tenant_prefix(t: &TenantId) -> String {
    format!("{ROOT}bindings/{t}/")
}
pub fn binding(t: &TenantId, r: &RoomName) -> String {
    format!("{ROOT}bindings/{t}/{r}")
}

/// The seats of a room with `max_participants` (`services::seats`).
pub fn seats(t: &TenantId, r: &RoomName) -> String {
    format!("{ROOT}seats/{t}/{r}")
}
pub fn seats_tenant_prefix(t: &TenantId) -> String {
    format!("{ROOT}seats/{t}/")
}

/// Wrong room-password attempts from one source address (on a lease: one rate-limit window).
pub fn password_failures(t: &TenantId, r: &RoomName, source: std::net::IpAddr) -> String {
    format!("{ROOT}pwfail/{t}/{r}/{source}")
}
pub fn password_failures_tenant_prefix(t: &TenantId) -> String {
    format!("{ROOT}pwfail/{t}/")
}
