//! What this transport sent, for matching transport-cc feedback against: a fixed ring of
//! the last [`HISTORY_CAPACITY`] packets (sequence number, send time, size, probe cluster),
//! and the rate actually sent over the last second.
//!
//! Must never: grow (the ring is allocated once, in `new`), or believe feedback about a
//! sequence number whose slot now holds another packet.
//!
//! Constants, and why:
//! - `HISTORY_CAPACITY` = 4096 packets of 24 bytes (96 KiB per transport). With 1200-byte
//!   packets that is 1 s of history at 40 Mbit/s and 4 s at 10 Mbit/s, while feedback
//!   comes every 50-100 ms plus a round trip. Feedback for a packet already overwritten
//!   is counted as unknown; the estimate just has fewer samples.
//! - `MAX_FEEDBACK_AGE` = 10 s: no real client answers later, and without it a low-rate
//!   transport (audio only keeps 80 s in the ring) could be fed results from minutes ago.
//! - The sent rate is the bytes of the last second in ten 100 ms buckets: long enough to
//!   span 30 frames, short enough to follow a layer switch.

/// Packets remembered for feedback (a power of two: the slot is `seq % capacity`).
pub(super) const HISTORY_CAPACITY: usize = 4096;
const MAX_FEEDBACK_AGE_US: i64 = 10_000_000;

const RATE_BUCKETS: usize = 10;
const RATE_BUCKET_US: i64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Fate {
    #[default]
    Empty,
    InFlight,
    Received,
    Lost,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    seq: u64,
    sent_us: i64,
    cluster: u32,
    bytes: u16,
    has_cluster: bool,
    fate: Fate,
}

/// A sent packet that feedback just told us about for the first time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SentPacket {
    pub sent_us: i64,
    pub bytes: u32,
    pub cluster: Option<u32>,
}

/// What one feedback result matched in the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Matched {
    /// Never sent, or already overwritten by a newer packet.
    Unknown,
    /// Sent longer ago than anyone answers.
    Stale,
    /// Already reported (received, or lost and lost again).
    Duplicate,
    /// First news of this packet; `late` when it was reported lost before.
    Fresh { packet: SentPacket, late: bool },
}

pub(super) struct SentHistory {
    slots: Box<[Slot]>,
    rate: SentRate,
}

impl SentHistory {
    pub fn new() -> Self {
        Self {
            slots: vec![Slot::default(); HISTORY_CAPACITY].into_boxed_slice(),
            rate: SentRate::default(),
        }
    }

    pub fn on_sent(&mut self, now_us: i64, seq: u64, bytes: usize, cluster: Option<u32>) {
        let bytes = u16::try_from(bytes).unwrap_or(u16::MAX);
        if let Some(slot) = self.slots.get_mut(slot_index(seq)) {
            *slot = Slot {
                seq,
                sent_us: now_us,
                cluster: cluster.unwrap_or(0),
                bytes,
                has_cluster: cluster.is_some(),
                fate: Fate::InFlight,
            };
        }
        self.rate.add(now_us, u64::from(bytes));
    }

    /// Records one feedback result; each packet is news at most once (twice when it is
    /// reported lost and then arrives late).
    pub fn on_feedback(&mut self, now_us: i64, seq: u64, received: bool) -> Matched {
        let Some(slot) = self.slots.get_mut(slot_index(seq)) else {
            return Matched::Unknown;
        };
        if slot.fate == Fate::Empty || slot.seq != seq {
            return Matched::Unknown;
        }
        if now_us.saturating_sub(slot.sent_us) > MAX_FEEDBACK_AGE_US {
            return Matched::Stale;
        }
        let late = match (slot.fate, received) {
            (Fate::InFlight, _) => false,
            (Fate::Lost, true) => true,
            _ => return Matched::Duplicate,
        };
        slot.fate = if received { Fate::Received } else { Fate::Lost };
        Matched::Fresh {
            packet: SentPacket {
                sent_us: slot.sent_us,
                bytes: u32::from(slot.bytes),
                cluster: slot.has_cluster.then_some(slot.cluster),
            },
            late,
        }
    }

    /// Whether `seq` was reported lost and has not arrived since (false once its slot holds
    /// another packet: too old to say).
    pub fn still_lost(&self, seq: u64) -> bool {
        self.slots
            .get(slot_index(seq))
            .is_some_and(|slot| slot.seq == seq && slot.fate == Fate::Lost)
    }

    /// The rate actually sent over the last second, in bits/s.
    pub fn sent_bps(&self, now_us: i64) -> f64 {
        self.rate.bps(now_us)
    }
}

fn slot_index(seq: u64) -> usize {
    // The remainder is below HISTORY_CAPACITY, so it fits a usize on every target.
    (seq % HISTORY_CAPACITY as u64) as usize
}

/// Bytes sent per 100 ms bucket over the last second.
#[derive(Debug, Default)]
struct SentRate {
    buckets: [u64; RATE_BUCKETS],
    /// Absolute index (time / bucket length) of the newest bucket, once anything was sent.
    newest: Option<i64>,
    first_us: i64,
}

impl SentRate {
    fn add(&mut self, now_us: i64, bytes: u64) {
        let index = now_us.div_euclid(RATE_BUCKET_US);
        let newest = match self.newest {
            None => {
                self.first_us = now_us;
                index
            }
            Some(newest) if index > newest => {
                // Clear the buckets skipped over (at most all of them).
                let skipped = (index - newest).min(RATE_BUCKETS as i64);
                for k in 1..=skipped {
                    let i = (newest + k).rem_euclid(RATE_BUCKETS as i64) as usize;
                    if let Some(b) = self.buckets.get_mut(i) {
                        *b = 0;
                    }
                }
                index
            }
            // Time went backwards: count it in the newest bucket.
            Some(newest) => newest,
        };
        self.newest = Some(newest);
        let i = newest.rem_euclid(RATE_BUCKETS as i64) as usize;
        if let Some(b) = self.buckets.get_mut(i) {
            *b = b.saturating_add(bytes);
        }
    }

    fn bps(&self, now_us: i64) -> f64 {
        let Some(newest) = self.newest else {
            return 0.0;
        };
        let index = now_us.div_euclid(RATE_BUCKET_US);
        let age = index.saturating_sub(newest).max(0);
        if age >= RATE_BUCKETS as i64 {
            return 0.0;
        }
        // Sum the buckets still inside the window ending at `now`.
        let mut sum = 0u64;
        for k in 0..(RATE_BUCKETS as i64 - age) {
            let i = (newest - k).rem_euclid(RATE_BUCKETS as i64) as usize;
            sum = sum.saturating_add(self.buckets.get(i).copied().unwrap_or(0));
        }
        let full = RATE_BUCKET_US * (RATE_BUCKETS as i64 - 1);
        let partial = now_us - index * RATE_BUCKET_US;
        let window_us = (full + partial)
            .min(now_us.saturating_sub(self.first_us))
            .max(RATE_BUCKET_US);
        sum as f64 * 8.0 * 1e6 / window_us as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_matches_only_the_packet_in_the_slot() {
        let mut h = SentHistory::new();
        h.on_sent(0, 7, 1000, None);
        assert_eq!(
            h.on_feedback(1_000, 8, true),
            Matched::Unknown,
            "never sent"
        );
        let aliased = 7 + HISTORY_CAPACITY as u64;
        assert_eq!(h.on_feedback(1_000, aliased, true), Matched::Unknown);
        let fresh = h.on_feedback(1_000, 7, true);
        assert!(matches!(fresh, Matched::Fresh { packet, late: false } if packet.bytes == 1000));
        assert_eq!(h.on_feedback(2_000, 7, true), Matched::Duplicate);
        assert_eq!(h.on_feedback(2_000, 7, false), Matched::Duplicate);
    }

    #[test]
    fn a_lost_packet_may_arrive_late_once() {
        let mut h = SentHistory::new();
        h.on_sent(0, 1, 500, Some(3));
        assert!(matches!(
            h.on_feedback(10, 1, false),
            Matched::Fresh { late: false, .. }
        ));
        assert_eq!(h.on_feedback(20, 1, false), Matched::Duplicate);
        let late = h.on_feedback(30, 1, true);
        assert!(matches!(late, Matched::Fresh { packet, late: true } if packet.cluster == Some(3)));
        assert_eq!(h.on_feedback(40, 1, true), Matched::Duplicate);
    }

    #[test]
    fn overwritten_and_stale_packets_are_not_matched() {
        let mut h = SentHistory::new();
        for seq in 0..(HISTORY_CAPACITY as u64 + 10) {
            h.on_sent(seq as i64, seq, 100, None);
        }
        assert_eq!(h.on_feedback(5_000, 3, true), Matched::Unknown);
        let newest = HISTORY_CAPACITY as u64 + 9;
        assert_eq!(h.on_feedback(20_000_000, newest, true), Matched::Stale);
    }

    #[test]
    fn sent_rate_covers_the_last_second() {
        let mut h = SentHistory::new();
        // 1250 bytes every 10 ms = 1 Mbit/s for 3 s.
        for i in 0..300 {
            h.on_sent(i * 10_000, i as u64, 1250, None);
        }
        let bps = h.sent_bps(2_995_000);
        assert!((bps - 1e6).abs() < 0.05e6, "{bps}");
        // Two seconds of silence: nothing sent in the last second.
        assert_eq!(h.sent_bps(5_000_000), 0.0);
        // Only 200 ms of history so far: the rate is not diluted over a whole second.
        let mut h = SentHistory::new();
        for i in 0..20 {
            h.on_sent(i * 10_000, i as u64, 1250, None);
        }
        let bps = h.sent_bps(200_000);
        assert!((bps - 1e6).abs() < 0.1e6, "{bps}");
    }
}
