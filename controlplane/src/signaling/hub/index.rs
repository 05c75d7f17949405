//! The hub's sessions, by id and by room. A room's first session registers this instance's
//! interest in it on the bus, its last one ends it (`RoomBus::local_room`), so room events
//! reach this instance exactly while it has sessions there, and an event touches only the
//! sessions of its room.
//!
//! Must never: block — it runs under the hub's lock (the bus only flips a flag).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::Session;
use crate::signaling::bus::seq::RoomKey;
use crate::signaling::bus::RoomBus;

pub struct SessionIndex {
    by_id: HashMap<String, Arc<Session>>,
    by_room: HashMap<RoomKey, HashSet<String>>,
    bus: Arc<dyn RoomBus>,
}

fn room_of(s: &Session) -> RoomKey {
    (s.member.tenant.clone(), s.member.room.clone())
}

impl SessionIndex {
    pub fn new(bus: Arc<dyn RoomBus>) -> Self {
        Self {
            by_id: HashMap::new(),
            by_room: HashMap::new(),
            bus,
        }
    }

    pub fn insert(&mut self, id: String, session: Arc<Session>) -> Option<Arc<Session>> {
        let room = room_of(&session);
        let old = self.by_id.insert(id.clone(), session);
        if let Some(old) = &old {
            self.unindex(&old.id, room_of(old));
        }
        let ids = self.by_room.entry(room.clone()).or_default();
        if ids.is_empty() {
            self.bus.local_room(&room.0, &room.1, true);
        }
        ids.insert(id);
        old
    }

    pub fn remove(&mut self, id: &str) -> Option<Arc<Session>> {
        let old = self.by_id.remove(id)?;
        self.unindex(id, room_of(&old));
        Some(old)
    }

    fn unindex(&mut self, id: &str, room: RoomKey) {
        if let Some(ids) = self.by_room.get_mut(&room) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_room.remove(&room);
                self.bus.local_room(&room.0, &room.1, false);
            }
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Session>> {
        self.by_id.get(id)
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.by_id.values()
    }

    /// The sessions of one room.
    pub fn room(&self, tenant: &str, room: &str) -> Vec<Arc<Session>> {
        let key = (tenant.to_string(), room.to_string());
        self.by_room
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id).cloned())
            .collect()
    }
}
