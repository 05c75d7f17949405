//! Services: the control plane's rules, between thin routes and the `Store`.
//!
//! Each function takes exactly what it needs (`&dyn Store`, `&dyn RoomEvents`, ...) so it is
//! testable without HTTP. Services change the Store first and publish a `RoomEvent` after.
//! They must never know about HTTP requests, and never reach a Store backend directly.

pub mod chat;
pub mod events;
pub mod nodes;
pub mod participants;
pub mod rooms;
pub mod seats;
pub mod tenants;

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
