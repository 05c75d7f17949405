//! The shard's timer structure: each peer's next str0m deadline in a min-heap, so a timeout
//! touches only due peers and the shard can sleep until the earliest deadline.
//!
//! Entries are never removed in place: a peer whose deadline changed gets a new entry and
//! the old one is recognised as stale when popped (its deadline no longer matches what the
//! caller holds). Must never decide anything about peers itself.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use crate::ids::PeerId;

#[derive(Debug, Default)]
pub struct TimerHeap {
    heap: BinaryHeap<Reverse<(Instant, PeerId)>>,
}

impl TimerHeap {
    /// Schedule `peer` at `at`. The caller keeps the current deadline per peer and calls this
    /// only when it changed.
    pub fn schedule(&mut self, peer: PeerId, at: Instant) {
        // Stale entries stay until their instant passes, so the heap holds at most the
        // deadlines set within one str0m timeout window per peer.
        self.heap.push(Reverse((at, peer)));
    }

    /// Pop the next entry due at `now`, if any. The caller checks it against the peer's
    /// current deadline and ignores stale ones.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, PeerId)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Earliest entry (possibly stale: waking early is harmless).
    pub fn earliest(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_only_due_entries_in_order() {
        let t0 = Instant::now();
        let mut h = TimerHeap::default();
        h.schedule(PeerId(2), t0 + Duration::from_millis(20));
        h.schedule(PeerId(1), t0 + Duration::from_millis(10));
        h.schedule(PeerId(3), t0 + Duration::from_millis(30));
        assert_eq!(h.earliest(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(h.pop_due(t0), None);
        let now = t0 + Duration::from_millis(25);
        assert_eq!(h.pop_due(now).map(|e| e.1), Some(PeerId(1)));
        assert_eq!(h.pop_due(now).map(|e| e.1), Some(PeerId(2)));
        assert_eq!(h.pop_due(now), None);
        assert_eq!(h.len(), 1);
    }
}
