//! Interest keys: which control-plane instances hold sessions in a room, and where to reach
//! them. `/shardcast/interest/{tenant}/{room}/{instance}` → [`Interest`], on the writing
//! instance's bus lease: written once when the instance's first session of the room arrives,
//! deleted when its last one has left (or with the lease, when the instance dies).
//!
//! The key layout lives here rather than in `store/keys.rs` because only the bus reads or
//! writes it. Must never: be written per event.

use serde::{Deserialize, Serialize};

use super::seq::RoomKey;
use crate::store::keys::ROOT;

/// What an interest key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interest {
    /// The instance's id (also the key's last segment).
    pub instance: String,
    /// Where other instances send it room events (`http://host:port`); empty when the
    /// instance cannot be reached (an in-process test server without an address).
    pub address: String,
}

pub fn prefix() -> String {
    format!("{ROOT}interest/")
}

pub fn room_prefix(room: &RoomKey) -> String {
    format!("{ROOT}interest/{}/{}/", room.0, room.1)
}

pub fn key(room: &RoomKey, instance: &str) -> String {
    format!("{}{instance}", room_prefix(room))
}

/// (room, instance) of an interest key; `None` for anything else.
pub fn parse_key(key: &str) -> Option<(RoomKey, String)> {
    let rest = key.strip_prefix(ROOT)?.strip_prefix("interest/")?;
    let mut parts = rest.split('/');
    let (tenant, room, instance) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || tenant.is_empty() || room.is_empty() || instance.is_empty() {
        return None;
    }
    Some(((tenant.into(), room.into()), instance.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let room: RoomKey = ("acme".into(), "standup".into());
        let k = key(&room, "cp-1");
        assert_eq!(k, "/shardcast/interest/acme/standup/cp-1");
        assert_eq!(parse_key(&k), Some((room, "cp-1".into())));
        assert_eq!(parse_key("/shardcast/interest/acme/standup"), None);
        assert_eq!(parse_key("/shardcast/rooms/acme/standup/x"), None);
    }
}
