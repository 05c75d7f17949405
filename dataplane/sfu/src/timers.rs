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

/// Rounds peer deadlines up to a grid, so the periodic timers of many peers (str0m's ICE
/// and DTLS timers, RTCP reports, BWE updates) fall due in the same shard turn instead of
/// waking the shard once per peer. A deadline moves later by less than one `step`; `step`
/// zero keeps deadlines exact. Deadlines closer than `EXACT_WITHIN` stay exact: those are a
/// probe's next padding packet, and rounding each gap between them up would lower the
/// probe's rate (a 5 ms gap + up to 1 ms is up to 20% slower). A packet str0m wants sent at
/// once never comes here (see `core/drain.rs`).
#[derive(Debug, Clone, Copy)]
pub struct TimerGrid {
    origin: Instant,
    step_nanos: u128,
}

impl TimerGrid {
    pub fn new(origin: Instant, step: std::time::Duration) -> Self {
        Self {
            origin,
            step_nanos: step.as_nanos(),
        }
    }

    /// Deadlines less than this ahead of `now` are not rounded.
    pub const EXACT_WITHIN: std::time::Duration = std::time::Duration::from_millis(10);

    pub fn round_up(&self, now: Instant, at: Instant) -> Instant {
        if self.step_nanos == 0 || at <= self.origin || at < now + Self::EXACT_WITHIN {
            return at;
        }
        let since = at.duration_since(self.origin).as_nanos();
        let rest = since % self.step_nanos;
        if rest == 0 {
            return at;
        }
        // Far-future deadlines ("not happening") overflow the grid: leave them as they are.
        let pad = (self.step_nanos - rest) as u64;
        at.checked_add(std::time::Duration::from_nanos(pad))
            .unwrap_or(at)
    }
}

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

    #[test]
    fn the_grid_rounds_up_by_less_than_one_step_and_keeps_exact_points() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let us = Duration::from_micros;
        let g = TimerGrid::new(t0, ms);
        // Seen from t0, far enough ahead to be rounded.
        assert_eq!(g.round_up(t0, t0 + us(20_001)), t0 + 21 * ms);
        assert_eq!(g.round_up(t0, t0 + us(20_999)), t0 + 21 * ms);
        assert_eq!(g.round_up(t0, t0 + 20 * ms), t0 + 20 * ms);
        assert_eq!(g.round_up(t0, t0 + us(40_001)), t0 + 41 * ms);
        // A probe's next padding packet (closer than EXACT_WITHIN) keeps its instant.
        assert_eq!(g.round_up(t0, t0 + us(4_500)), t0 + us(4_500));
        assert_eq!(g.round_up(t0 + 30 * ms, t0 + us(35_500)), t0 + us(35_500));
        // Before the origin and with a zero step nothing moves.
        assert_eq!(g.round_up(t0, t0), t0);
        let exact = TimerGrid::new(t0, Duration::ZERO);
        assert_eq!(exact.round_up(t0, t0 + us(20_007)), t0 + us(20_007));
        // Two peers' deadlines in the same step share one instant.
        let a = g.round_up(t0, t0 + us(30_100));
        let b = g.round_up(t0, t0 + us(30_900));
        assert_eq!(a, b);
    }
}
