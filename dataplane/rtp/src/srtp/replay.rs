//! Receive state per SSRC: the highest packet index seen, a sliding replay window behind it
//! (RFC 3711 §3.3.2), and from the highest index the rollover-counter estimate of §3.3.1.
//!
//! Owns a table of at most [`MAX_STREAMS`] entries per table; at the cap a new SSRC is
//! refused (`TooManyStreams`) rather than evicting one, since forgetting a stream would
//! let its old packets be replayed. The caller frees entries of streams that ended with
//! [`super::SrtpOpener::forget_ssrc`].
//! Must never: change anything on a check (only [`Streams::accept`], called after the tag
//! verified, does), or allocate once an entry exists.

use super::SrtpError;

/// SSRCs tracked per table (the opener has one for SRTP, one for SRTCP senders). A
/// publisher's transport carries a few tracks × 3 simulcast layers × (media + RTX).
pub const MAX_STREAMS: usize = 64;

/// Packets behind the highest one that may still arrive (late retransmissions, reordering):
/// libwebrtc's window size. Anything older is `TooOld`.
pub const REPLAY_WINDOW: u64 = 1024;

const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// One stream's highest index and which of the [`REPLAY_WINDOW`] indices up to it arrived.
/// The bitmap is a ring: index `i` is bit `i % REPLAY_WINDOW`.
#[derive(Clone)]
pub(super) struct Window {
    highest: u64,
    seen: [u64; WORDS],
}

impl Window {
    fn new(index: u64) -> Window {
        let mut w = Window {
            highest: index,
            seen: [0; WORDS],
        };
        w.set(index);
        w
    }

    pub(super) fn highest(&self) -> u64 {
        self.highest
    }

    pub(super) fn check(&self, index: u64) -> Result<(), SrtpError> {
        if index > self.highest {
            return Ok(());
        }
        if self.highest - index >= REPLAY_WINDOW {
            return Err(SrtpError::TooOld);
        }
        if self.is_set(index) {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    fn accept(&mut self, index: u64) {
        if index > self.highest {
            let ahead = index - self.highest;
            if ahead >= REPLAY_WINDOW {
                self.seen = [0; WORDS];
            } else {
                self.clear_after_highest(ahead);
            }
            self.highest = index;
        }
        self.set(index);
    }

    /// Forgets the ring positions of the `count` indices after `highest` (they held indices
    /// a whole window older), word by word: at most WORDS + 1 steps.
    fn clear_after_highest(&mut self, count: u64) {
        let mut pos = (self.highest + 1) % REPLAY_WINDOW;
        let mut left = count;
        while left > 0 {
            let bit = pos % 64;
            let n = left.min(64 - bit);
            let mask = if n == 64 {
                !0
            } else {
                ((1u64 << n) - 1) << bit
            };
            if let Some(word) = self.seen.get_mut((pos / 64) as usize) {
                *word &= !mask;
            }
            left -= n;
            pos = (pos + n) % REPLAY_WINDOW;
        }
    }

    fn set(&mut self, index: u64) {
        let pos = index % REPLAY_WINDOW;
        if let Some(word) = self.seen.get_mut((pos / 64) as usize) {
            *word |= 1 << (pos % 64);
        }
    }

    fn is_set(&self, index: u64) -> bool {
        let pos = index % REPLAY_WINDOW;
        self.seen
            .get((pos / 64) as usize)
            .is_some_and(|w| w & (1 << (pos % 64)) != 0)
    }
}

/// SSRC → window, bounded. A linear scan: at most 64 `u32` compares, cheaper than hashing
/// at this size, and the vector only grows when a new SSRC authenticates.
#[derive(Default)]
pub(super) struct Streams {
    entries: Vec<(u32, Window)>,
}

/// Where a checked packet's stream is: known (at a position) or new (room to add it).
#[derive(Clone, Copy)]
pub(super) enum Slot {
    Known(usize),
    New,
}

impl Streams {
    /// The slot a packet of this SSRC would take and its window (`None`: a new stream).
    /// Changes nothing; `TooManyStreams` when the SSRC is new and the table full.
    pub(super) fn lookup(&self, ssrc: u32) -> Result<(Slot, Option<&Window>), SrtpError> {
        let found = self.entries.iter().position(|(s, _)| *s == ssrc);
        match found.and_then(|i| self.entries.get(i).map(|(_, w)| (i, w))) {
            Some((i, w)) => Ok((Slot::Known(i), Some(w))),
            None if self.entries.len() >= MAX_STREAMS => Err(SrtpError::TooManyStreams),
            None => Ok((Slot::New, None)),
        }
    }

    /// May a packet with this index on this SSRC be opened? Changes nothing.
    pub(super) fn check(&self, ssrc: u32, index: u64) -> Result<Slot, SrtpError> {
        let (slot, window) = self.lookup(ssrc)?;
        match window {
            Some(w) => w.check(index).map(|()| slot),
            None => Ok(slot),
        }
    }

    /// Records an authenticated packet at the slot `check` returned for it.
    pub(super) fn accept(&mut self, slot: Slot, ssrc: u32, index: u64) {
        match slot {
            Slot::Known(i) => {
                if let Some((_, w)) = self.entries.get_mut(i) {
                    w.accept(index);
                }
            }
            Slot::New => self.entries.push((ssrc, Window::new(index))),
        }
    }

    pub(super) fn forget(&mut self, ssrc: u32) {
        self.entries.retain(|(s, _)| *s != ssrc);
    }
}

/// RFC 3711 §3.3.1: the ROC a received sequence number most likely belongs to, from the
/// highest index of its stream (`None`: first packet, ROC 0). Returns the 48-bit index, or
/// `TooOld` for a packet from before the stream's first rollover counter (v = -1).
pub(super) fn estimate_index(highest: Option<u64>, seq: u16) -> Result<u64, SrtpError> {
    let Some(highest) = highest else {
        return Ok(u64::from(seq));
    };
    let roc = i64::try_from(highest >> 16).map_err(|_| SrtpError::TooOld)?;
    let s_l = i64::from(highest as u16);
    let seq_i = i64::from(seq);
    let v = if s_l < 0x8000 {
        if seq_i - s_l > 0x8000 {
            roc - 1
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq_i {
        roc + 1
    } else {
        roc
    };
    // A 32-bit ROC: below 0 is before the stream began, above u32::MAX cannot be encoded.
    let v = u32::try_from(v).map_err(|_| SrtpError::TooOld)?;
    Ok(u64::from(v) << 16 | u64::from(seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_estimate_follows_rfc3711_3_3_1() {
        assert_eq!(estimate_index(None, 65_000), Ok(65_000));
        // Just past a wrap: the next ROC.
        assert_eq!(estimate_index(Some(65_530), 3), Ok(1 << 16 | 3));
        // A late packet from before the wrap, after the wrap was seen.
        assert_eq!(estimate_index(Some(1 << 16 | 3), 65_530), Ok(65_530));
        // Ordinary progress and small reordering stay in the ROC.
        assert_eq!(estimate_index(Some(5 << 16 | 100), 101), Ok(5 << 16 | 101));
        assert_eq!(estimate_index(Some(5 << 16 | 100), 90), Ok(5 << 16 | 90));
        // Before the first packet's ROC 0: cannot be placed.
        assert_eq!(estimate_index(Some(5), 65_000), Err(SrtpError::TooOld));
    }

    #[test]
    fn window_rejects_replays_and_ancient_packets_and_slides() {
        let mut w = Window::new(5000);
        assert_eq!(w.check(5000), Err(SrtpError::Replayed));
        assert_eq!(w.check(5000 - REPLAY_WINDOW + 1), Ok(()));
        assert_eq!(w.check(5000 - REPLAY_WINDOW), Err(SrtpError::TooOld));
        w.accept(4990);
        assert_eq!(w.check(4990), Err(SrtpError::Replayed));
        // Slide by less than a window: 4990 still remembered, the freed positions clear.
        w.accept(5000 + 700);
        assert_eq!(w.check(4990), Err(SrtpError::Replayed));
        assert_eq!(w.check(5001), Ok(()));
        assert_eq!(w.check(5699), Ok(()));
        // Slide past it: 4990 falls out of the window, and a position reused by a newer
        // index is free again.
        w.accept(5000 + 1100);
        assert_eq!(w.check(4990), Err(SrtpError::TooOld));
        assert_eq!(w.check(5000 + 1100 - 1), Ok(()));
        assert_eq!(w.check(5700), Err(SrtpError::Replayed));
        // A jump of more than a window clears all.
        w.accept(1_000_000);
        assert_eq!(w.check(1_000_000 - 1), Ok(()));
        assert_eq!(w.check(1_000_000), Err(SrtpError::Replayed));
    }

    #[test]
    fn every_index_in_a_long_run_is_accepted_once() {
        let mut w = Window::new(0);
        // Steps of varied size cross word and ring boundaries.
        let mut i = 0u64;
        for step in (1..200u64).cycle().take(5000) {
            i += step % 67 + 1;
            assert_eq!(w.check(i), Ok(()), "index {i}");
            w.accept(i);
            assert_eq!(w.check(i), Err(SrtpError::Replayed), "index {i}");
            // Indices skipped within the window are still acceptable.
            if step % 67 > 0 {
                assert_eq!(w.check(i - 1), Ok(()), "skipped {}", i - 1);
            }
        }
    }

    #[test]
    fn the_table_is_capped() {
        let mut s = Streams::default();
        for ssrc in 0..MAX_STREAMS as u32 {
            let slot = s.check(ssrc, 1).unwrap();
            s.accept(slot, ssrc, 1);
        }
        assert_eq!(s.check(999, 1).err(), Some(SrtpError::TooManyStreams));
        assert!(matches!(s.check(3, 2), Ok(Slot::Known(3))));
        s.forget(3);
        assert!(matches!(s.check(999, 1), Ok(Slot::New)));
    }
}
