//! Sequence numbers of the room bus, both ends, without I/O or clock (unit-tested here).
//!
//! A sending instance numbers its events per room: a *stream* (a random id, new whenever the
//! sender starts numbering that room afresh) and a sequence number that grows by one per event
//! of that room. Every interested receiver gets every event of the stream from the moment it
//! became interested, so a receiver expects `last + 1` from each (sender, room):
//! - the next number: deliver;
//! - a number already seen: a duplicate (a retried batch): drop;
//! - a number further on: events were lost: deliver, and resync the room from state;
//! - another stream id: the sender restarted the room's numbering without saying `bye`:
//!   whatever it sent last may be lost: resync;
//! - no record: first contact (the receiver registered after the sender started): deliver.
//!   The registration handshake (`hello`) creates the record before the receiver's sessions
//!   take their snapshot, so a first event lost after that is a gap, not a first contact.
//!
//! Must never: grow without bound — records live while the receiver holds sessions in the
//! room and the sender is interested (`bye`, or its interest key going away, ends them).

use std::collections::HashMap;

/// A (tenant, room) pair.
pub type RoomKey = (String, String);

/// One sender's position in one room's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub stream: u64,
    pub seq: u64,
}

/// The sending side: the next number per room.
#[derive(Debug, Default)]
pub struct Numbering {
    rooms: HashMap<RoomKey, Position>,
}

impl Numbering {
    /// Numbers the next event of `room`; a room not numbered yet starts a stream with
    /// `new_stream` (random, from the caller).
    pub fn next(&mut self, room: &RoomKey, new_stream: impl FnOnce() -> u64) -> Position {
        let p = self.rooms.entry(room.clone()).or_insert_with(|| Position {
            stream: new_stream(),
            seq: 0,
        });
        p.seq += 1;
        *p
    }

    /// Where `room`'s stream stands (what the last event carried), if numbered.
    pub fn current(&self, room: &RoomKey) -> Option<Position> {
        self.rooms.get(room).copied()
    }

    /// Forgets `room` (after `bye`): the next event starts a new stream.
    pub fn forget(&mut self, room: &RoomKey) {
        self.rooms.remove(room);
    }

    /// Keeps only the rooms `keep` says.
    pub fn retain(&mut self, mut keep: impl FnMut(&RoomKey) -> bool) {
        self.rooms.retain(|r, _| keep(r));
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

/// What a receiver does with one numbered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// In order (or first contact): deliver.
    Deliver,
    /// Seen before: drop.
    Duplicate,
    /// Deliver, and resync the room: events before it were lost (or may have been).
    DeliverAndResync,
}

/// What a receiver knows of one (sender, room).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    At(Position),
    /// The handshake with this sender failed: the first event decides nothing, resync then.
    Unknown,
}

/// The receiving side: per (sender instance, room), the last position delivered.
#[derive(Debug, Default)]
pub struct Tracker {
    records: HashMap<(String, RoomKey), Record>,
}

impl Tracker {
    /// The handshake told us where `sender` stands in `room` (`None`: it has not numbered the
    /// room yet). Events that already arrived past that point are kept.
    pub fn expect(&mut self, sender: &str, room: &RoomKey, at: Option<Position>) {
        // `None`: nothing numbered yet; the first event starts the stream, no record needed
        // (unless an event already made one).
        if let Some(at) = at {
            let key = (sender.to_string(), room.clone());
            let keep = matches!(self.records.get(&key),
                Some(Record::At(p)) if p.stream == at.stream && p.seq >= at.seq);
            if !keep {
                self.records.insert(key, Record::At(at));
            }
        }
    }

    /// The handshake with `sender` failed: resync at its first event in `room`.
    pub fn unknown(&mut self, sender: &str, room: &RoomKey) {
        self.records
            .entry((sender.to_string(), room.clone()))
            .or_insert(Record::Unknown);
    }

    /// One event from `sender` in `room` at `at`.
    pub fn receive(&mut self, sender: &str, room: &RoomKey, at: Position) -> Verdict {
        let key = (sender.to_string(), room.clone());
        let verdict = match self.records.get(&key) {
            None => Verdict::Deliver,
            Some(Record::Unknown) => Verdict::DeliverAndResync,
            Some(Record::At(p)) if p.stream != at.stream => Verdict::DeliverAndResync,
            Some(Record::At(p)) if at.seq <= p.seq => return Verdict::Duplicate,
            Some(Record::At(p)) if at.seq == p.seq + 1 => Verdict::Deliver,
            Some(Record::At(_)) => Verdict::DeliverAndResync,
        };
        self.records.insert(key, Record::At(at));
        verdict
    }

    /// `sender` said `bye` for `room` (its stream ended in order) at `at`: forget it. A
    /// `bye` past a gap still needs the resync (`true`).
    pub fn bye(&mut self, sender: &str, room: &RoomKey, at: Position) -> bool {
        let key = (sender.to_string(), room.clone());
        match self.records.remove(&key) {
            Some(Record::At(p)) => p.stream != at.stream || p.seq != at.seq,
            Some(Record::Unknown) => true,
            None => false,
        }
    }

    /// `sender`'s interest in `room` went away (its key was deleted). Without a `bye` first
    /// (a crash, a lease that ran out) its last events may be lost: `true` = resync.
    pub fn gone(&mut self, sender: &str, room: &RoomKey) -> bool {
        self.records
            .remove(&(sender.to_string(), room.clone()))
            .is_some()
    }

    /// This instance has no session in `room` any more: nothing to track there.
    pub fn forget_room(&mut self, room: &RoomKey) {
        self.records.retain(|(_, r), _| r != room);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(r: &str) -> RoomKey {
        ("t".into(), r.into())
    }

    fn at(stream: u64, seq: u64) -> Position {
        Position { stream, seq }
    }

    #[test]
    fn the_sender_numbers_each_room_from_one_on_its_own_stream() {
        let mut n = Numbering::default();
        assert_eq!(n.next(&room("a"), || 7), at(7, 1));
        assert_eq!(n.next(&room("a"), || 99), at(7, 2));
        assert_eq!(n.next(&room("b"), || 8), at(8, 1));
        assert_eq!(n.current(&room("a")), Some(at(7, 2)));
        n.forget(&room("a"));
        assert_eq!(n.next(&room("a"), || 9), at(9, 1));
    }

    #[test]
    fn in_order_events_are_delivered_and_repeats_dropped() {
        let mut t = Tracker::default();
        let r = room("a");
        assert_eq!(
            t.receive("b", &r, at(7, 1)),
            Verdict::Deliver,
            "first contact"
        );
        assert_eq!(t.receive("b", &r, at(7, 2)), Verdict::Deliver);
        assert_eq!(t.receive("b", &r, at(7, 2)), Verdict::Duplicate);
        assert_eq!(t.receive("b", &r, at(7, 1)), Verdict::Duplicate);
        assert_eq!(t.receive("b", &r, at(7, 3)), Verdict::Deliver);
        // Another sender, another room: their own counts.
        assert_eq!(t.receive("c", &r, at(5, 40)), Verdict::Deliver);
        assert_eq!(t.receive("b", &room("x"), at(7, 9)), Verdict::Deliver);
    }

    #[test]
    fn a_gap_resyncs_once_and_numbering_goes_on_from_there() {
        let mut t = Tracker::default();
        let r = room("a");
        t.receive("b", &r, at(7, 1));
        assert_eq!(t.receive("b", &r, at(7, 4)), Verdict::DeliverAndResync);
        assert_eq!(t.receive("b", &r, at(7, 5)), Verdict::Deliver);
    }

    #[test]
    fn a_new_stream_without_bye_resyncs_and_after_bye_does_not() {
        let mut t = Tracker::default();
        let r = room("a");
        t.receive("b", &r, at(7, 3));
        assert_eq!(t.receive("b", &r, at(8, 1)), Verdict::DeliverAndResync);
        assert!(!t.bye("b", &r, at(8, 1)), "bye right after the last event");
        assert_eq!(t.receive("b", &r, at(9, 1)), Verdict::Deliver);
        // A bye that skipped events still resyncs.
        assert!(t.bye("b", &r, at(9, 3)));
    }

    #[test]
    fn the_handshake_position_makes_a_lost_first_event_a_gap() {
        let mut t = Tracker::default();
        let r = room("a");
        t.expect("b", &r, Some(at(7, 10)));
        // Event 11 was lost on the way; 12 arrives.
        assert_eq!(t.receive("b", &r, at(7, 12)), Verdict::DeliverAndResync);
        // An event that beat the handshake is kept: the handshake does not move it back.
        let r2 = room("b");
        assert_eq!(t.receive("b", &r2, at(3, 5)), Verdict::Deliver);
        t.expect("b", &r2, Some(at(3, 4)));
        assert_eq!(t.receive("b", &r2, at(3, 6)), Verdict::Deliver);
    }

    #[test]
    fn a_failed_handshake_resyncs_at_the_first_event() {
        let mut t = Tracker::default();
        let r = room("a");
        t.unknown("b", &r);
        assert_eq!(t.receive("b", &r, at(7, 1)), Verdict::DeliverAndResync);
        assert_eq!(t.receive("b", &r, at(7, 2)), Verdict::Deliver);
    }

    #[test]
    fn a_sender_that_vanishes_without_bye_resyncs_and_records_are_dropped() {
        let mut t = Tracker::default();
        let r = room("a");
        t.receive("b", &r, at(7, 1));
        t.receive("c", &r, at(2, 1));
        assert!(t.gone("b", &r));
        assert!(!t.gone("b", &r), "once");
        t.forget_room(&r);
        assert!(t.is_empty());
    }
}
