//! A bounded history of one published track's packets, keyed by extended sequence number,
//! for answering subscribers' NACKs (RTX) without asking the publisher again.
//!
//! A ring of `capacity` slots (a power of two, so a slot is `ext_seq & mask`), allocated
//! once. Each slot remembers the full extended number it holds, and every stored number lies
//! within `capacity` of the newest, so a slot reused by a later packet can never answer for
//! an earlier one. Limits, each enforced by evicting the oldest packets: `capacity` packets,
//! `max_bytes` in total (by the sizes given at insert, on insert), and `max_age` (when the
//! caller calls [`PacketHistory::evict`]).
//!
//! Must never: allocate after creation (the payload itself is the caller's, typically an
//! `Arc<[u8]>` shared with every subscriber's send path), or return a packet for a number
//! it was not stored under.

use std::time::{Duration, Instant};

/// What [`PacketHistory::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Stored (possibly evicting older packets).
    Stored,
    /// Already held: the first copy is kept.
    Duplicate,
    /// Older than what the history still covers (more than `capacity` behind the newest, or
    /// behind packets already evicted): not stored.
    Stale,
    /// Bigger than `max_bytes` on its own: not stored.
    TooLarge,
}

#[derive(Debug)]
struct Slot<T> {
    ext_seq: u64,
    inserted: Instant,
    bytes: usize,
    item: T,
}

/// A bounded history keyed by extended sequence number.
#[derive(Debug)]
pub struct PacketHistory<T> {
    slots: Box<[Option<Slot<T>>]>,
    mask: u64,
    max_age: Duration,
    max_bytes: usize,
    len: usize,
    bytes: usize,
    /// Every stored packet's number is in `oldest..=newest`, a span under `capacity`.
    oldest: u64,
    newest: Option<u64>,
}

impl<T> PacketHistory<T> {
    /// `capacity` packets (rounded up to a power of two, at least 1), kept at most `max_age`
    /// and `max_bytes` in total.
    pub fn new(capacity: usize, max_age: Duration, max_bytes: usize) -> Self {
        let capacity = capacity.max(1).next_power_of_two();
        PacketHistory {
            slots: (0..capacity).map(|_| None).collect(),
            mask: capacity as u64 - 1,
            max_age,
            max_bytes,
            len: 0,
            bytes: 0,
            oldest: 0,
            newest: None,
        }
    }

    /// Store `item` (of `bytes` bytes) under `ext_seq`, received at `now`.
    pub fn insert(&mut self, ext_seq: u64, now: Instant, bytes: usize, item: T) -> Insert {
        if bytes > self.max_bytes {
            return Insert::TooLarge;
        }
        match self.newest {
            None => {
                self.oldest = ext_seq;
                self.newest = Some(ext_seq);
            }
            Some(newest) if ext_seq > newest => {
                self.newest = Some(ext_seq);
                self.drop_below(ext_seq.saturating_sub(self.mask));
            }
            Some(_) if ext_seq < self.oldest => return Insert::Stale,
            Some(_) => {}
        }
        if self.get(ext_seq).is_some() {
            return Insert::Duplicate;
        }
        // `bytes <= max_bytes` here, so this cannot underflow (and a sum could overflow).
        while self.bytes > self.max_bytes - bytes {
            match self.front() {
                Some(i) if self.oldest < ext_seq => {
                    self.remove(i);
                    self.oldest += 1;
                }
                // Only newer packets left: a late one does not push them out.
                _ => return Insert::Stale,
            }
        }
        let i = self.index(ext_seq);
        if let Some(slot) = self.slots.get_mut(i) {
            if let Some(old) = slot.replace(Slot {
                ext_seq,
                inserted: now,
                bytes,
                item,
            }) {
                // Unreachable while the span invariant holds; keep the totals right anyway.
                self.len -= 1;
                self.bytes -= old.bytes;
            }
            self.len += 1;
            self.bytes += bytes;
        }
        Insert::Stored
    }

    /// The packet stored under `ext_seq`, if it still is.
    pub fn get(&self, ext_seq: u64) -> Option<&T> {
        match self.slots.get(self.index(ext_seq)) {
            Some(Some(slot)) if slot.ext_seq == ext_seq => Some(&slot.item),
            _ => None,
        }
    }

    /// Drop packets stored `max_age` or longer before `now`. Walks from the oldest number and
    /// stops at the first young enough packet, so one inserted late (out of order) can hold
    /// back packets after it by at most its own lateness.
    pub fn evict(&mut self, now: Instant) {
        while let Some(i) = self.front() {
            let expired = self
                .slots
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|s| now.saturating_duration_since(s.inserted) >= self.max_age);
            if !expired {
                break;
            }
            self.remove(i);
            self.oldest = self.oldest.saturating_add(1);
        }
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total size of the packets held, by the sizes given at insert.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Packets the ring can hold (the requested capacity rounded up to a power of two).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    fn index(&self, ext_seq: u64) -> usize {
        (ext_seq & self.mask) as usize
    }

    /// Forget every packet numbered below `floor`.
    fn drop_below(&mut self, floor: u64) {
        if floor <= self.oldest {
            return;
        }
        if floor - self.oldest > self.mask {
            // Further than the ring spans: look at each slot once rather than each number.
            for i in 0..self.slots.len() {
                if self
                    .slots
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.ext_seq < floor)
                {
                    self.remove(i);
                }
            }
        } else {
            for seq in self.oldest..floor {
                let i = self.index(seq);
                if self
                    .slots
                    .get(i)
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.ext_seq == seq)
                {
                    self.remove(i);
                }
            }
        }
        self.oldest = floor;
    }

    /// Move `oldest` up to the oldest stored packet and return its slot, if any is stored.
    /// Each number is stepped over once in the history's life; one call steps at most
    /// `capacity` times (the span invariant).
    fn front(&mut self) -> Option<usize> {
        let newest = self.newest?;
        while self.len > 0 {
            let i = self.index(self.oldest);
            if self
                .slots
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.ext_seq == self.oldest)
            {
                return Some(i);
            }
            if self.oldest >= newest {
                break; // unreachable while the span invariant holds
            }
            self.oldest += 1;
        }
        None
    }

    fn remove(&mut self, i: usize) {
        if let Some(old) = self.slots.get_mut(i).and_then(Option::take) {
            self.len -= 1;
            self.bytes -= old.bytes;
        }
    }
}
