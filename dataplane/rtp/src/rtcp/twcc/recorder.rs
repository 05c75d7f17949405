//! [`TwccRecorder`]: records when each packet of the streams we receive arrived (by its
//! transport-wide seq) and writes transport-cc feedback for them, the way libwebrtc's
//! receiver does (TransportSequenceNumberFeedbackGenerator, PacketArrivalTimeMap):
//!
//! - A feedback covers the packets from the first not yet reported up to the highest
//!   received, lost ones as "not received"; it starts at a received packet's 64 ms step
//!   (the reference time) and ends with a received packet (so a later arrival of a packet
//!   at the tail is never contradicted).
//! - Deltas are rounded to the nearest 250 µs, and each is taken from the previous delta
//!   as reported (not as measured), so rounding never accumulates.
//! - A packet that arrives after its seq was reported moves the next feedback back to it:
//!   the range from there is reported again (the sender de-duplicates). Once everything
//!   is reported, packets older than 500 ms are forgotten, so that cannot reach far back.
//! - A feedback ends early when the next delta does not fit 16 bits (8.19 s), when it
//!   would not fit `out`, or after [`MAX_STATUS`] statuses; the next call goes on.
//!
//! Memory is one fixed ring of [`RING`] slots, allocated at creation and indexed by the
//! extended seq (each slot tagged with its seq, so a stale slot is never mistaken for an
//! arrival). When a peer's seqs jump forward by [`MAX_STATUS`] or more, the recorder
//! starts a new range instead of reporting thousands of losses: the unreported rest of the
//! old range is kept for the next feedback unless a second jump comes first. Two
//! consecutive packets far behind everything kept (a sender that restarted its numbering
//! lower) start a new range the same way. Nothing here grows with a peer's input.
//! Must never: allocate after creation, read the clock, or loop beyond [`RING`] slots.

use std::time::Instant;

use super::encode::{TwccWriter, MAX_STATUS};
use super::{DELTA_US, REFERENCE_US};
use crate::rtp::SeqExtender;

/// Slots of the arrival ring: about 2 s of a fast video publisher's packets.
pub const RING: usize = 1024;
/// Packets older than this before the newest arrival are forgotten once reported.
const BACK_WINDOW_US: i64 = 500_000;
/// Marks a slot that never held a packet.
const EMPTY: u64 = u64::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot {
    seq: u64,
    at_us: i64,
}

/// A packet far behind everything kept, remembered in case it starts a new range.
#[derive(Debug, Clone, Copy)]
struct Probe {
    seq: u64,
    transport_seq: u16,
    at_us: i64,
}

/// What a slot says about one extended seq.
enum Lookup {
    Received(i64),
    NotReceived,
    /// A newer range reused the slot: what happened to this seq is no longer known.
    Overwritten,
}

/// Transport-cc arrivals of one transport → feedback packets.
pub struct TwccRecorder {
    slots: Box<[Slot]>,
    /// The time base of arrivals: the first arrival ever.
    zero: Option<Instant>,
    seqs: SeqExtender,
    /// Kept arrivals are within `[begin, end)`, `end - begin <= RING`; `end` is one past
    /// the highest received.
    begin: u64,
    end: u64,
    /// First seq the next feedback covers (`next >= end`: all reported).
    next: u64,
    /// After a jump: the old range's unreported part, reported before the new range.
    old: Option<(u64, u64)>,
    /// The last packet far behind everything kept: if its successor follows, the sender
    /// restarted its numbering.
    restart_probe: Option<Probe>,
    fb_pkt_count: u8,
    ignored: u64,
}

impl core::fmt::Debug for TwccRecorder {
    // The ring is left out: 1 024 slots say nothing a reader of a log wants.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TwccRecorder")
            .field("begin", &self.begin)
            .field("end", &self.end)
            .field("next", &self.next)
            .field("old", &self.old)
            .field("fb_pkt_count", &self.fb_pkt_count)
            .field("ignored", &self.ignored)
            .finish_non_exhaustive()
    }
}

impl Default for TwccRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl TwccRecorder {
    /// A recorder with its ring allocated (16 KiB).
    pub fn new() -> Self {
        TwccRecorder {
            slots: vec![
                Slot {
                    seq: EMPTY,
                    at_us: 0
                };
                RING
            ]
            .into_boxed_slice(),
            zero: None,
            seqs: SeqExtender::new(),
            begin: 0,
            end: 0,
            next: 0,
            old: None,
            restart_probe: None,
            fb_pkt_count: 0,
            ignored: 0,
        }
    }

    /// Packets not recorded: duplicates, and packets too old to keep.
    pub fn ignored(&self) -> u64 {
        self.ignored
    }

    /// Whether [`TwccRecorder::build_feedback`] has anything to write.
    pub fn has_unreported(&self) -> bool {
        self.old.is_some() || self.next < self.end
    }

    /// A packet carrying transport-wide seq `transport_seq` arrived at `arrival`.
    pub fn on_packet(&mut self, transport_seq: u16, arrival: Instant) {
        let zero = *self.zero.get_or_insert(arrival);
        let at_us = signed_us(arrival, zero);
        let started = self.seqs.highest().is_some();
        let Some(seq) = self.seqs.extend(transport_seq) else {
            self.ignored += 1;
            return;
        };
        if !started {
            self.start_range(seq, at_us);
        } else if seq >= self.end {
            self.on_newer(seq, at_us);
        } else if seq >= self.begin || self.can_keep_back_to(seq) {
            if matches!(self.lookup(seq), Lookup::Received(_)) {
                self.ignored += 1;
                return;
            }
            self.begin = self.begin.min(seq);
            self.store(seq, at_us);
            // Reported already (or before the range): report again from here, as
            // libwebrtc does.
            self.next = self.next.min(seq);
        } else {
            self.on_far_behind(seq, transport_seq, at_us);
        }
    }

    /// Whether the kept range can grow back to `seq` (a packet older than the first one
    /// kept): within the ring, and not into a previous range still to be reported.
    fn can_keep_back_to(&self, seq: u64) -> bool {
        self.end - seq <= RING as u64 && self.old.is_none_or(|(_, old_end)| seq >= old_end)
    }

    fn on_newer(&mut self, seq: u64, at_us: i64) {
        if seq - self.end >= MAX_STATUS as u64 {
            self.start_range(seq, at_us);
            return;
        }
        if self.next >= self.end {
            self.forget_old(seq, at_us);
        }
        self.end = seq + 1;
        self.begin = self.begin.max(self.end.saturating_sub(RING as u64));
        // Only when no feedback was built for a whole ring: those go unreported.
        self.next = self.next.max(self.begin);
        self.store(seq, at_us);
    }

    fn on_far_behind(&mut self, seq: u64, transport_seq: u16, at_us: i64) {
        // A late packet from before what we keep is dropped; a second one right after it,
        // far behind, means the sender restarted its numbering lower: both start a range.
        let far = self.end - seq > RING as u64;
        match self.restart_probe {
            Some(probe) if far && probe.seq + 1 == seq => {
                // The probe was counted as ignored when it came; it is recorded now.
                self.ignored = self.ignored.saturating_sub(1);
                let first = self.seqs.restart(probe.transport_seq);
                self.start_range(first, probe.at_us);
                if let Some(seq) = self.seqs.extend(transport_seq) {
                    self.on_newer(seq, at_us);
                }
            }
            _ => {
                self.restart_probe = far.then_some(Probe {
                    seq,
                    transport_seq,
                    at_us,
                });
                self.ignored += 1;
            }
        }
    }

    /// Starts a new range at `seq`, keeping the old range's unreported part (if any).
    fn start_range(&mut self, seq: u64, at_us: i64) {
        if self.next < self.end {
            self.old = Some((self.next, self.end));
        }
        self.begin = seq;
        self.next = seq;
        self.end = seq + 1;
        self.restart_probe = None;
        self.store(seq, at_us);
    }

    /// Everything is reported: drop kept packets more than the back window older than
    /// this arrival (and the gaps between them), so a late packet cannot re-report them.
    fn forget_old(&mut self, seq: u64, at_us: i64) {
        let limit = at_us.saturating_sub(BACK_WINDOW_US);
        while self.begin < seq && self.begin < self.end {
            match self.lookup(self.begin) {
                Lookup::Received(t) if t > limit => break,
                _ => self.begin += 1,
            }
        }
        self.next = self.next.max(self.begin);
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        self.slots.get_mut((seq % RING as u64) as usize)
    }

    fn store(&mut self, seq: u64, at_us: i64) {
        if let Some(slot) = self.slot_mut(seq) {
            *slot = Slot { seq, at_us };
        }
    }

    fn lookup(&self, seq: u64) -> Lookup {
        match self.slots.get((seq % RING as u64) as usize) {
            Some(s) if s.seq == seq => Lookup::Received(s.at_us),
            Some(s) if s.seq != EMPTY && s.seq > seq => Lookup::Overwritten,
            _ => Lookup::NotReceived,
        }
    }

    /// Writes one feedback packet covering arrivals not reported yet into `out`. Call
    /// again while it returns `Some`: each call goes on where the last one stopped, with
    /// the next feedback packet count. `None` when nothing is left or `out` cannot hold a
    /// single packet's feedback (it needs at least 24 bytes).
    pub fn build_feedback(
        &mut self,
        sender_ssrc: u32,
        media_ssrc: u32,
        out: &mut [u8],
    ) -> Option<usize> {
        loop {
            let (from, to, is_old) = match self.old {
                Some((from, to)) => (from, to, true),
                None if self.next < self.end => (self.next, self.end, false),
                None => return None,
            };
            match self.write_range(from, to, sender_ssrc, media_ssrc, out) {
                Written::Packet { len, next, cut } => {
                    if is_old {
                        self.old = (!cut && next < to).then_some((next, to));
                    } else {
                        self.next = next;
                    }
                    return Some(len);
                }
                Written::Nothing => {
                    if is_old {
                        self.old = None;
                    } else {
                        self.next = self.end;
                        return None;
                    }
                }
                Written::NoRoom => return None,
            }
        }
    }

    fn write_range(
        &mut self,
        from: u64,
        to: u64,
        sender_ssrc: u32,
        media_ssrc: u32,
        out: &mut [u8],
    ) -> Written {
        // The first received packet in range; bounded by the ring (to - from <= RING).
        let mut first = None;
        for seq in from..to {
            match self.lookup(seq) {
                Lookup::Received(at) => {
                    first = Some((seq, at));
                    break;
                }
                Lookup::Overwritten => break,
                Lookup::NotReceived => {}
            }
        }
        let Some((first_seq, first_at)) = first else {
            return Written::Nothing;
        };
        // Losses before the first arrival beyond what one feedback spans go unreported.
        let base = from.max(first_seq.saturating_sub(MAX_STATUS as u64 - 1));
        let reference = first_at.div_euclid(REFERENCE_US);
        let Some(mut writer) = TwccWriter::new(
            out,
            sender_ssrc,
            media_ssrc,
            base as u16,
            reference,
            self.fb_pkt_count,
        ) else {
            return Written::NoRoom;
        };
        let mut reported_us = reference * REFERENCE_US;
        let mut next = base;
        let mut cut = false;
        for seq in first_seq..to {
            let at = match self.lookup(seq) {
                Lookup::Received(at) => at,
                Lookup::NotReceived => continue,
                Lookup::Overwritten => {
                    cut = true;
                    break;
                }
            };
            let Some(delta) = ticks(at.saturating_sub(reported_us)) else {
                break;
            };
            if !writer.add_received((seq - next) as usize, delta) {
                break;
            }
            reported_us += i64::from(delta) * DELTA_US;
            next = seq + 1;
        }
        if writer.status_count() == 0 {
            return Written::NoRoom;
        }
        let Some(len) = writer.finish() else {
            return Written::NoRoom;
        };
        self.fb_pkt_count = self.fb_pkt_count.wrapping_add(1);
        Written::Packet { len, next, cut }
    }
}

enum Written {
    /// A packet of `len` bytes; the next feedback starts at `next`; `cut`: the range ended
    /// at a slot a newer range reused.
    Packet { len: usize, next: u64, cut: bool },
    /// No received packet left in the range.
    Nothing,
    /// `out` cannot hold the first packet.
    NoRoom,
}

/// A time difference in 250 µs ticks, rounded half away from zero as libwebrtc does;
/// `None` beyond what a 16-bit delta holds.
fn ticks(us: i64) -> Option<i16> {
    let half = DELTA_US / 2;
    let t = if us >= 0 {
        us.saturating_add(half) / DELTA_US
    } else {
        us.saturating_sub(half) / DELTA_US
    };
    i16::try_from(t).ok()
}

/// `at - zero` in µs, negative when `at` is earlier, saturating far beyond any real use.
fn signed_us(at: Instant, zero: Instant) -> i64 {
    match at.checked_duration_since(zero) {
        Some(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        None => -i64::try_from(zero.duration_since(at).as_micros()).unwrap_or(i64::MAX),
    }
}
