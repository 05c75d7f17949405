//! Which sequence numbers of one incoming stream to NACK (RFC 4585 §6.2.1), when to ask again,
//! and when to give up and ask for a keyframe instead. Shaped after libwebrtc's
//! NackRequester and mediasoup's NackGenerator (the constants are theirs where they agree).
//!
//! When: a gap is NACKed as soon as it is seen, unless this stream has shown reordering.
//! Like libwebrtc, late packets that were not retransmissions feed a histogram of how far
//! behind the newest they arrive, and a new gap is held until as many newer packets have
//! arrived as cover half of those reorderings, but never longer than REORDER_HOLD (libwebrtc
//! bounds the same wait by its 20 ms process tick). Our `on_packet` is not told which
//! packets are retransmissions, so a late packet counts as reordered only if it arrives
//! before the sender could have answered our NACK for it (not NACKed, or NACKed once less
//! than half an RTT ago).
//!
//! Then each missing packet is asked again every RTT (at least MIN_RESEND), up to
//! MAX_RETRIES times, and forgotten MAX_NACK_AGE after it went missing or once it is
//! MAX_SEQ_AGE packets behind. At most MAX_MISSING are tracked: when a gap would overflow
//! that, entries older than a recent keyframe go first (a decoder needs nothing before it);
//! if that is not enough (or one gap alone is bigger, say a jump of thousands) the list is
//! cleared and [`NackGenerator::take_keyframe_needed`] reports that a keyframe is needed.
//!
//! Must never: allocate after creation (its queues are preallocated to their caps), or
//! enumerate a gap before knowing it fits.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::reorder::ReorderHistogram;
use super::window::SeqWindow;
use super::MAX_DROPOUT;

/// Missing packets tracked at once (libwebrtc and mediasoup allow 1000).
pub const MAX_MISSING: usize = 500;
/// NACKs sent for one packet before giving up on it (libwebrtc, mediasoup).
pub const MAX_RETRIES: u8 = 10;
/// A packet missing longer than this is given up (a sender keeps about a second of history).
pub const MAX_NACK_AGE: Duration = Duration::from_secs(1);
/// A packet this many behind the newest is given up (RFC 3550 A.1's MAX_DROPOUT).
pub const MAX_SEQ_AGE: u64 = MAX_DROPOUT;
/// Floor on the interval between two NACKs for one packet, whatever the RTT says.
pub const MIN_RESEND: Duration = Duration::from_millis(20);
/// Longest a new gap is held for reordering before its first NACK.
pub const REORDER_HOLD: Duration = Duration::from_millis(20);
/// The resend interval before the first `poll` says otherwise.
const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// Recent keyframe starts remembered for trimming an overflowing list.
const KEYFRAMES: usize = 8;

/// What one packet's arrival meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The newest so far (possibly after a gap, which is now missing); also the first packet.
    InOrder,
    /// Older than the newest and not seen before: it fills a gap. `nacked` if we had asked
    /// for it (a NACK repaired it, or it was late enough to be asked for).
    Late {
        /// Whether a NACK had been sent for it.
        nacked: bool,
    },
    /// Seen before.
    Duplicate,
    /// Older than anything tracked: whether it is a duplicate is unknown.
    TooOld,
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    ext_seq: u64,
    detected: Instant,
    last_sent: Option<Instant>,
    retries: u8,
    /// Newer packets to wait for before the first NACK (from the reordering histogram).
    wait: u8,
}

impl Missing {
    fn due(&self, newest: u64, resend: Duration) -> Option<Instant> {
        if self.retries >= MAX_RETRIES {
            return None;
        }
        match self.last_sent {
            Some(sent) => sent.checked_add(resend),
            None if newest >= self.ext_seq.saturating_add(u64::from(self.wait)) => {
                Some(self.detected)
            }
            None => self.detected.checked_add(REORDER_HOLD),
        }
    }
}

/// Which sequence numbers to NACK, when, and when to give up.
#[derive(Debug, Clone)]
pub struct NackGenerator {
    newest: Option<u64>,
    window: SeqWindow,
    /// Sorted by `ext_seq` (gaps are appended in order; late arrivals are removed).
    missing: VecDeque<Missing>,
    /// Ascending extended sequence numbers of recent keyframes' first packets.
    keyframes: VecDeque<u64>,
    newest_was_keyframe: bool,
    reorder: ReorderHistogram,
    resend: Duration,
    keyframe_needed: bool,
    /// RFC 3550 A.1's `bad_seq`: the number that would confirm a restart far behind.
    restart_at: Option<u64>,
}

impl Default for NackGenerator {
    fn default() -> Self {
        Self::new()
    }
}

impl NackGenerator {
    /// A generator that has seen nothing yet (its queues allocated to their caps).
    pub fn new() -> Self {
        NackGenerator {
            newest: None,
            window: SeqWindow::new(0),
            missing: VecDeque::with_capacity(MAX_MISSING),
            keyframes: VecDeque::with_capacity(KEYFRAMES),
            newest_was_keyframe: false,
            reorder: ReorderHistogram::default(),
            resend: DEFAULT_RTT,
            keyframe_needed: false,
            restart_at: None,
        }
    }

    /// A packet arrived (an original or a retransmission, after SRTP): `keyframe` if it
    /// belongs to a keyframe (the first packet of one is enough). Returns what it meant.
    pub fn on_packet(&mut self, ext_seq: u64, keyframe: bool, now: Instant) -> Arrival {
        let Some(newest) = self.newest else {
            self.start(ext_seq, keyframe);
            return Arrival::InOrder;
        };
        if ext_seq <= newest {
            return self.on_old(ext_seq, newest, keyframe, now);
        }
        if keyframe && !self.newest_was_keyframe {
            if self.keyframes.len() == KEYFRAMES {
                self.keyframes.pop_front();
            }
            self.keyframes.push_back(ext_seq);
        }
        self.newest_was_keyframe = keyframe;
        while self
            .missing
            .front()
            .is_some_and(|m| m.ext_seq.saturating_add(MAX_SEQ_AGE) < ext_seq)
        {
            self.missing.pop_front();
        }
        if ext_seq - newest > 1 {
            self.add_missing(newest + 1, ext_seq, now);
        }
        self.newest = Some(ext_seq);
        self.window.set(ext_seq);
        Arrival::InOrder
    }

    fn start(&mut self, ext_seq: u64, keyframe: bool) {
        self.newest = Some(ext_seq);
        self.window.reset(ext_seq);
        self.missing.clear();
        self.keyframes.clear();
        if keyframe {
            self.keyframes.push_back(ext_seq);
        }
        self.newest_was_keyframe = keyframe;
        self.restart_at = None;
    }

    fn on_old(&mut self, ext_seq: u64, newest: u64, keyframe: bool, now: Instant) -> Arrival {
        if let Ok(i) = self.missing.binary_search_by_key(&ext_seq, |m| m.ext_seq) {
            let Some(m) = self.missing.remove(i) else {
                return Arrival::Duplicate; // unreachable: `i` was just found
            };
            self.window.set(ext_seq);
            let answered_too_soon = m.retries == 1
                && m.last_sent
                    .is_some_and(|t| now.saturating_duration_since(t) < self.resend / 2);
            if m.retries == 0 || answered_too_soon {
                self.reorder.add(newest - ext_seq);
            }
            return Arrival::Late {
                nacked: m.retries > 0,
            };
        }
        match self.window.contains(ext_seq) {
            Some(true) => Arrival::Duplicate,
            Some(false) => {
                self.window.set(ext_seq);
                Arrival::Late { nacked: false }
            }
            None if self.restart_at == Some(ext_seq) => {
                tracing::debug!(ext_seq, "nack: sequence restarted far behind, list cleared");
                self.start(ext_seq, keyframe);
                Arrival::InOrder
            }
            None => {
                self.restart_at = Some(ext_seq.wrapping_add(1));
                Arrival::TooOld
            }
        }
    }

    /// Track `start..end` as missing, or give up on NACKing if that cannot fit.
    fn add_missing(&mut self, start: u64, end: u64, now: Instant) {
        let count = end - start;
        let fits = |missing: &VecDeque<Missing>| missing.len() as u64 + count <= MAX_MISSING as u64;
        while !fits(&self.missing) && self.drop_until_keyframe() {}
        if !fits(&self.missing) {
            tracing::debug!(
                missing = self.missing.len(),
                gap = count,
                "nack: too much lost to repair, asking for a keyframe"
            );
            self.missing.clear();
            self.keyframe_needed = true;
            return;
        }
        let wait = self.reorder.wait_packets();
        self.missing.extend((start..end).map(|ext_seq| Missing {
            ext_seq,
            detected: now,
            last_sent: None,
            retries: 0,
            wait,
        }));
    }

    /// Forget the missing packets older than the oldest keyframe that is newer than some of
    /// them; false if no keyframe helps.
    fn drop_until_keyframe(&mut self) -> bool {
        while let Some(&keyframe) = self.keyframes.front() {
            let older = self.missing.partition_point(|m| m.ext_seq < keyframe);
            if older > 0 {
                self.missing.drain(..older);
                return true;
            }
            self.keyframes.pop_front();
        }
        false
    }

    /// Writes the sequence numbers (16-bit, in sequence order) to request now into `out`,
    /// and returns how many. Each missing packet is asked again after `rtt` (at least
    /// MIN_RESEND), at most MAX_RETRIES times, and given up MAX_NACK_AGE after it went
    /// missing. When `out` fills, the rest stay due for the next call.
    pub fn poll(&mut self, now: Instant, rtt: Duration, out: &mut [u16]) -> usize {
        self.resend = rtt.max(MIN_RESEND);
        let resend = self.resend;
        let newest = self.newest.unwrap_or(0);
        let mut written = 0;
        self.missing.retain_mut(|m| {
            if now.saturating_duration_since(m.detected) >= MAX_NACK_AGE {
                return false;
            }
            if m.due(newest, resend).is_some_and(|due| due <= now) {
                if let Some(slot) = out.get_mut(written) {
                    *slot = m.ext_seq as u16;
                    written += 1;
                    m.retries += 1;
                    m.last_sent = Some(now);
                }
            }
            true
        });
        written
    }

    /// When [`Self::poll`] would next return something, if ever (using the RTT it was last
    /// given). May be in the past: poll now.
    pub fn next_due(&self) -> Option<Instant> {
        let newest = self.newest.unwrap_or(0);
        self.missing
            .iter()
            .filter_map(|m| m.due(newest, self.resend))
            .min()
    }

    /// True once since the last call if so much was lost that NACKing is hopeless (the
    /// missing list would overflow MAX_MISSING, or one jump was bigger than that): ask the
    /// sender for a keyframe instead.
    pub fn take_keyframe_needed(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_needed)
    }

    /// Packets currently tracked as missing (asked for or not yet).
    pub fn missing_len(&self) -> usize {
        self.missing.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preallocated_queues_never_grow() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new();
        let (missing, keyframes) = (g.missing.capacity(), g.keyframes.capacity());
        let mut seq = 0u64;
        for i in 0..5_000u64 {
            // Lose every other packet, with a keyframe now and then and a huge jump midway.
            seq += if i == 2_500 { 30_000 } else { 2 };
            g.on_packet(seq, i % 50 == 0, t0 + Duration::from_millis(i));
            assert!(g.missing.len() <= MAX_MISSING);
        }
        assert_eq!(g.missing.capacity(), missing);
        assert_eq!(g.keyframes.capacity(), keyframes);
    }
}
