//! The hub's inbox: room events for this instance's sessions, and rooms to resync.
//!
//! Bounded: an event that finds the queue full is not queued; its room is marked for a
//! resync instead (a set of rooms, at most one entry per room this instance serves), so a
//! slow hub costs a state refresh, never unbounded memory and never a silent loss.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

use super::seq::RoomKey;
use super::RoomEvent;

/// What the hub does next. (Not boxed: built once, moved once; as `hub::Outgoing`.)
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Delivery {
    Event(RoomEvent),
    /// Events of this room may have been lost: resend its state to the room's sessions.
    Resync {
        tenant: String,
        room: String,
    },
    /// The bus's interest lease ran out (its keys are gone, and likely the session lease's
    /// records too): the hub rewrites its sessions' records, then has the bus register its
    /// rooms again (`hub::restore`).
    LeaseLost,
}

#[derive(Default)]
struct State {
    queue: VecDeque<RoomEvent>,
    resync: HashSet<RoomKey>,
    lease_lost: bool,
}

pub struct Inbox {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
}

impl Inbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::default(),
            notify: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues `event`; false when the queue was full and the room is to be resynced instead.
    pub fn push(&self, event: RoomEvent) -> bool {
        let mut s = self.state.lock().unwrap();
        let queued = if s.queue.len() < self.capacity {
            s.queue.push_back(event);
            true
        } else {
            s.resync.insert((event.tenant, event.room));
            false
        };
        drop(s);
        self.notify.notify_one();
        queued
    }

    /// Marks `room` for a resync (once, however often asked before the hub gets to it).
    pub fn resync(&self, room: RoomKey) {
        self.state.lock().unwrap().resync.insert(room);
        self.notify.notify_one();
    }

    /// Reports the interest lease lost (once, however often before the hub gets to it).
    pub fn lease_lost(&self) {
        self.state.lock().unwrap().lease_lost = true;
        self.notify.notify_one();
    }

    /// The next delivery: a lost lease first, then queued events (in order), then rooms to
    /// resync.
    pub async fn next(&self) -> Delivery {
        loop {
            let notified = self.notify.notified();
            if let Some(d) = self.try_next() {
                return d;
            }
            notified.await;
        }
    }

    pub fn try_next(&self) -> Option<Delivery> {
        let mut s = self.state.lock().unwrap();
        if std::mem::take(&mut s.lease_lost) {
            return Some(Delivery::LeaseLost);
        }
        if let Some(e) = s.queue.pop_front() {
            return Some(Delivery::Event(e));
        }
        let room = s.resync.iter().next().cloned()?;
        s.resync.remove(&room);
        Some(Delivery::Resync {
            tenant: room.0,
            room: room.1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::bus::RoomEventKind;

    fn ev(room: &str) -> RoomEvent {
        RoomEvent {
            tenant: "t".into(),
            room: room.into(),
            origin: None,
            request_id: None,
            kind: RoomEventKind::RoomClosed,
        }
    }

    #[test]
    fn a_full_inbox_turns_events_into_one_resync_per_room() {
        let inbox = Inbox::new(2);
        assert!(inbox.push(ev("a")));
        assert!(inbox.push(ev("a")));
        assert!(!inbox.push(ev("b")));
        assert!(!inbox.push(ev("b")));
        assert_eq!(inbox.try_next(), Some(Delivery::Event(ev("a"))));
        assert_eq!(inbox.try_next(), Some(Delivery::Event(ev("a"))));
        assert_eq!(
            inbox.try_next(),
            Some(Delivery::Resync {
                tenant: "t".into(),
                room: "b".into()
            })
        );
        assert_eq!(inbox.try_next(), None);
    }
}
