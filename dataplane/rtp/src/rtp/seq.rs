//! Extending 16-bit RTP (and transport-cc) sequence numbers to 64 bits across wraps.
//!
//! Each number is placed within ±32 767 of the highest one seen so far, so reordering
//! and wraps in either direction resolve the way RFC 3550 A.1 and libwebrtc's unwrapper
//! do. Whether a far jump is a restart, loss or garbage is the caller's decision (it may
//! call [`SeqExtender::restart`]). Must never: allocate, or panic on any input order.

/// u16 → u64 sequence number extension. The first number seen keeps its value (cycle 0);
/// later ones are extended relative to the highest seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    pub const fn new() -> Self {
        SeqExtender { highest: None }
    }

    /// Extends `seq` and remembers it if it is the new highest. `None` only for a number
    /// from before the first one across a wrap (it would extend below 0): such a packet is
    /// older than anything this stream has tracked.
    pub fn extend(&mut self, seq: u16) -> Option<u64> {
        let ext = self.peek(seq)?;
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        Some(ext)
    }

    /// What [`SeqExtender::extend`] would return, without remembering anything.
    pub fn peek(&self, seq: u16) -> Option<u64> {
        let Some(highest) = self.highest else {
            return Some(u64::from(seq));
        };
        // A difference of exactly 32 768 counts as older (the i16 is negative).
        let delta = seq.wrapping_sub(highest as u16) as i16;
        if delta >= 0 {
            Some(highest.saturating_add(delta as u64))
        } else {
            highest.checked_sub(u64::from(delta.unsigned_abs()))
        }
    }

    /// The highest extended number seen, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// Starts over at `seq` (a sender restarted its numbering): it maps into the next
    /// cycle above everything seen so far, so it never equals an earlier extended number.
    pub fn restart(&mut self, seq: u16) -> u64 {
        let ext = match self.highest {
            None => u64::from(seq),
            Some(h) => ((h >> 16) + 1) << 16 | u64::from(seq),
        };
        self.highest = Some(ext);
        ext
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u16]) -> Vec<Option<u64>> {
        let mut x = SeqExtender::new();
        seqs.iter().map(|&s| x.extend(s)).collect()
    }

    #[test]
    fn forward_wrap() {
        assert_eq!(
            run(&[65_534, 65_535, 0, 1]),
            [Some(65_534), Some(65_535), Some(65_536), Some(65_537)]
        );
    }

    #[test]
    fn reordering_across_the_wrap_goes_back_a_cycle() {
        // 0 arrives (cycle 1), then the late 65 535 of cycle 0, then 1.
        assert_eq!(
            run(&[65_530, 0, 65_535, 1]),
            [Some(65_530), Some(65_536), Some(65_535), Some(65_537)]
        );
    }

    #[test]
    fn a_late_packet_does_not_lower_the_highest() {
        let mut x = SeqExtender::new();
        x.extend(100);
        x.extend(90);
        assert_eq!(x.highest(), Some(100));
        assert_eq!(x.extend(101), Some(101));
    }

    #[test]
    fn before_the_first_across_a_wrap_is_none() {
        let mut x = SeqExtender::new();
        assert_eq!(x.extend(2), Some(2));
        assert_eq!(x.extend(65_535), None);
        assert_eq!(x.extend(1), Some(1));
        assert_eq!(x.highest(), Some(2));
    }

    #[test]
    fn many_cycles_and_the_half_way_ambiguity() {
        let mut x = SeqExtender::new();
        let mut expected = 0u64;
        for _ in 0..10 {
            for step in 0..4u64 {
                let seq = (step * 16_384) as u16;
                assert_eq!(x.extend(seq), Some(expected + step * 16_384));
            }
            expected += 65_536;
        }
        // Exactly half a cycle away is taken as older.
        let h = x.highest().unwrap();
        assert_eq!(x.peek((h as u16).wrapping_add(32_768)), Some(h - 32_768));
        assert_eq!(x.peek((h as u16).wrapping_add(32_767)), Some(h + 32_767));
    }

    #[test]
    fn restart_maps_above_everything_seen() {
        let mut x = SeqExtender::new();
        x.extend(40_000);
        let r = x.restart(10_000);
        assert_eq!(r, 65_536 + 10_000);
        assert_eq!(x.extend(10_001), Some(r + 1));
    }
}
