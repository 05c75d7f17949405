//! Which of the most recent [`WINDOW`] extended sequence numbers have arrived: a fixed
//! bitmap, so both [`super::ReceiveStats`] and [`super::NackGenerator`] can tell a duplicate
//! from a late packet without a set that grows. Never allocates; never looks further back
//! than the window (older numbers are "unknown", for the caller to treat as too old).

/// Sequence numbers remembered behind the highest one (a power of two, so `seq % WINDOW`
/// is a mask).
pub(crate) const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

#[derive(Debug, Clone)]
pub(crate) struct SeqWindow {
    bits: [u64; WORDS],
    highest: u64,
}

impl SeqWindow {
    /// A window whose only arrival so far is `seq`.
    pub(crate) fn new(seq: u64) -> Self {
        let mut w = SeqWindow {
            bits: [0; WORDS],
            highest: seq,
        };
        w.set(seq);
        w
    }

    /// Forget everything and start again at `seq`.
    pub(crate) fn reset(&mut self, seq: u64) {
        *self = SeqWindow::new(seq);
    }

    /// `Some(arrived)` for a number inside the window, `None` for one older than it or newer
    /// than the highest.
    pub(crate) fn contains(&self, seq: u64) -> Option<bool> {
        if seq > self.highest || self.highest - seq >= WINDOW {
            return None;
        }
        let (word, bit) = Self::at(seq);
        Some(self.bits.get(word).is_some_and(|w| w & bit != 0))
    }

    /// Mark `seq` arrived. A number newer than the highest moves the window forward (the
    /// numbers skipped over are marked missing); one older than the window is ignored.
    pub(crate) fn set(&mut self, seq: u64) {
        if seq > self.highest {
            let ahead = seq - self.highest;
            if ahead >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                // At most WINDOW - 1 steps, and one per sequence number over a stream's life.
                for skipped in self.highest + 1..seq {
                    let (word, bit) = Self::at(skipped);
                    if let Some(w) = self.bits.get_mut(word) {
                        *w &= !bit;
                    }
                }
            }
            self.highest = seq;
        } else if self.highest - seq >= WINDOW {
            return;
        }
        let (word, bit) = Self::at(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= bit;
        }
    }

    fn at(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_arrived_missing_and_outside_apart() {
        let mut w = SeqWindow::new(10);
        w.set(13);
        assert_eq!(w.contains(10), Some(true));
        assert_eq!(w.contains(11), Some(false));
        assert_eq!(w.contains(13), Some(true));
        assert_eq!(w.contains(14), None, "newer than the highest");
        w.set(11);
        assert_eq!(w.contains(11), Some(true));
    }

    #[test]
    fn moving_forward_clears_the_slots_it_reuses() {
        let mut w = SeqWindow::new(0);
        for s in 0..WINDOW {
            w.set(s);
        }
        // WINDOW + 5 reuses slot 5 (and skips WINDOW..WINDOW+4, which reuse slots 0..4).
        w.set(WINDOW + 5);
        for s in WINDOW..WINDOW + 5 {
            assert_eq!(w.contains(s), Some(false), "{s} was skipped, not received");
        }
        assert_eq!(w.contains(5), None, "older than the window now");
        assert_eq!(w.contains(6), Some(true));
    }

    #[test]
    fn a_jump_beyond_the_window_forgets_everything() {
        let mut w = SeqWindow::new(100);
        w.set(101);
        w.set(100 + 30_000);
        assert_eq!(w.contains(100 + 30_000 - 1), Some(false));
        assert_eq!(w.contains(101), None);
        // The extremes of u64 neither panic nor wrap.
        w.set(u64::MAX);
        assert_eq!(w.contains(u64::MAX), Some(true));
        assert_eq!(w.contains(0), None);
        w.set(0);
        assert_eq!(w.contains(0), None);
    }
}
