//! [`StreamRewriter`]: one per subscription. Maps the packets it is told to forward — from any
//! simulcast layer, each with its own SSRC, sequence space and timestamp base — onto one
//! outgoing sequence-number and timestamp space, so the subscriber sees one continuous stream.
//!
//! The stream is cut into *segments*: a segment starts at a layer switch or at a resume after
//! a pause, and inside it the mapping is a fixed offset. So a gap the publisher's network made
//! stays a gap (the subscriber NACKs it) while packets we chose not to forward leave none.
//!
//! Owns: the seq/ts offsets and the frame-interval estimate. Must never: read the clock
//! (time is passed in), allocate, or decide *what* to forward (that is the layer selector).

use std::time::Instant;

/// Where a forwarded packet lands in the outgoing stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub seq: u16,
    pub ts: u32,
    /// First packet of a new segment: codec rewriters (VP8 picture id) must resync too.
    pub new_segment: bool,
}

/// Why a packet was dropped instead of mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// A late packet of the SSRC we switched away from.
    OldSource,
    /// A packet older than the start of the current segment: its slot in the outgoing
    /// sequence already belongs to packets forwarded before the switch. Also a late packet
    /// from before more skips than are remembered, whose slot can no longer be found.
    BeforeSegment,
}

/// Skips remembered per segment, to map late packets from before them.
const SKIP_MEMORY: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Segment {
    ssrc: u32,
    /// Extended (wrap-free) incoming seq of the segment's first packet and of the newest one.
    first_in: u64,
    highest_in: u64,
    /// out_ext = in_ext + seq_offset (wrapping), for packets after the last skip.
    seq_offset: u64,
    /// Ring of (skipped in_ext, offset that applies below it), newest at `skips_next - 1`.
    skips: [(u64, u64); SKIP_MEMORY],
    skips_len: usize,
    skips_next: usize,
    /// Packets below this lost their mapping when the ring overflowed.
    skips_floor: u64,
    /// out_ts = in_ts + ts_offset (wrapping, as RTP timestamps do).
    ts_offset: u32,
    last_in_ts: u32,
}

/// See the module docs. Create one per subscription with the track's RTP clock rate.
#[derive(Debug, Clone)]
pub struct StreamRewriter {
    clock_rate: u32,
    seg: Option<Segment>,
    prev_ssrc: Option<u32>,
    /// Highest extended outgoing seq so far.
    out_highest: u64,
    /// Newest outgoing timestamp and when it was forwarded.
    out_ts: u32,
    out_at: Option<Instant>,
    /// Smoothed timestamp step between consecutive frames, in clock ticks.
    frame_ticks: u32,
    start: Option<(u16, u32)>,
}

impl StreamRewriter {
    /// The first forwarded packet keeps its own seq and timestamp.
    pub fn new(clock_rate: u32) -> Self {
        StreamRewriter {
            clock_rate: clock_rate.max(1),
            seg: None,
            prev_ssrc: None,
            out_highest: 0,
            out_ts: 0,
            out_at: None,
            frame_ticks: (clock_rate / 30).max(1),
            start: None,
        }
    }

    /// The first forwarded packet is mapped to `seq` / `ts` (e.g. random, per RFC 3550).
    pub fn with_start(clock_rate: u32, seq: u16, ts: u32) -> Self {
        StreamRewriter {
            start: Some((seq, ts)),
            ..Self::new(clock_rate)
        }
    }

    /// The timestamp offset of the current segment: outgoing = incoming + offset
    /// (wrapping). `None` before the first packet.
    pub fn ts_offset(&self) -> Option<u32> {
        self.seg.map(|s| s.ts_offset)
    }

    /// The current estimate of one frame's duration in clock ticks.
    pub fn frame_ticks(&self) -> u32 {
        self.frame_ticks
    }

    /// Map one packet chosen for forwarding. `switch` is true on the first packet after a
    /// layer switch or a resume (the layer selector says so); a new SSRC also starts a new
    /// segment, except the one we just switched away from, whose late packets are dropped.
    pub fn rewrite(
        &mut self,
        now: Instant,
        ssrc: u32,
        seq: u16,
        ts: u32,
        switch: bool,
    ) -> Result<Rewritten, Stale> {
        let same_source = self.seg.is_some_and(|s| s.ssrc == ssrc);
        if !switch && !same_source && self.prev_ssrc == Some(ssrc) {
            return Err(Stale::OldSource);
        }
        if switch || !same_source {
            return Ok(self.start_segment(now, ssrc, seq, ts));
        }
        let Some(mut seg) = self.seg else {
            return Ok(self.start_segment(now, ssrc, seq, ts));
        };
        let in_ext = extend(seg.highest_in, seq);
        if in_ext < seg.first_in {
            return Err(Stale::BeforeSegment);
        }
        let Some(offset) = seg.offset_for(in_ext) else {
            return Err(Stale::BeforeSegment);
        };
        let out_ext = in_ext.wrapping_add(offset);
        let out_ts = ts.wrapping_add(seg.ts_offset);
        if in_ext > seg.highest_in {
            seg.highest_in = in_ext;
            let step = ts.wrapping_sub(seg.last_in_ts);
            // A new frame in order: learn the frame interval (ignore jumps over a second).
            if step > 0 && step < self.clock_rate {
                self.frame_ticks =
                    ((u64::from(self.frame_ticks) * 7 + u64::from(step)) / 8).max(1) as u32;
            }
            if (step as i32) > 0 {
                seg.last_in_ts = ts;
            }
        }
        self.out_highest = self.out_highest.max(out_ext);
        if (out_ts.wrapping_sub(self.out_ts) as i32) > 0 {
            self.out_ts = out_ts;
            self.out_at = Some(now);
        }
        self.seg = Some(seg);
        Ok(Rewritten {
            seq: out_ext as u16,
            ts: out_ts,
            new_segment: false,
        })
    }

    /// A packet of the current source that we chose not to forward (padding-only, a dropped
    /// temporal layer): later packets close up over it, so the subscriber sees no gap to NACK.
    /// Only a packet newer than all seen so far can be skipped this way (packets still missing
    /// below it keep their slots); a late one is ignored and stays a gap like upstream loss.
    pub fn skip(&mut self, ssrc: u32, seq: u16) {
        let Some(seg) = self.seg.as_mut() else {
            return;
        };
        if seg.ssrc != ssrc {
            return;
        }
        let in_ext = extend(seg.highest_in, seq);
        if in_ext <= seg.highest_in {
            return;
        }
        seg.highest_in = in_ext;
        if seg.skips_len == SKIP_MEMORY {
            // Evict the oldest; packets below it can no longer be mapped.
            let oldest = seg.skips[seg.skips_next];
            seg.skips_floor = oldest.0;
        } else {
            seg.skips_len += 1;
        }
        seg.skips[seg.skips_next] = (in_ext, seg.seq_offset);
        seg.skips_next = (seg.skips_next + 1) % SKIP_MEMORY;
        seg.seq_offset = seg.seq_offset.wrapping_sub(1);
    }

    fn start_segment(&mut self, now: Instant, ssrc: u32, seq: u16, ts: u32) -> Rewritten {
        // Extended values start at 2^16 so a late packet just before the start stays below.
        let in_ext = (1u64 << 16) | u64::from(seq);
        let (out_ext, out_ts) = match (self.seg, self.out_at) {
            (Some(_), Some(at)) => {
                // Advance by the wall time since the last forwarded frame (a resume after a
                // pause), and at least one frame (a switch right after the old layer's frame).
                let elapsed = now.saturating_duration_since(at);
                let ticks = elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000;
                let step = ticks.clamp(u128::from(self.frame_ticks), u128::from(u32::MAX / 2));
                (self.out_highest + 1, self.out_ts.wrapping_add(step as u32))
            }
            _ => match self.start {
                Some((s, t)) => ((1u64 << 16) | u64::from(s), t),
                None => (in_ext, ts),
            },
        };
        if let Some(old) = self.seg {
            if old.ssrc != ssrc {
                self.prev_ssrc = Some(old.ssrc);
            }
        }
        self.seg = Some(Segment {
            ssrc,
            first_in: in_ext,
            highest_in: in_ext,
            seq_offset: out_ext.wrapping_sub(in_ext),
            skips: [(0, 0); SKIP_MEMORY],
            skips_len: 0,
            skips_next: 0,
            skips_floor: 0,
            ts_offset: out_ts.wrapping_sub(ts),
            last_in_ts: ts,
        });
        self.out_highest = out_ext;
        self.out_ts = out_ts;
        self.out_at = Some(now);
        Rewritten {
            seq: out_ext as u16,
            ts: out_ts,
            new_segment: true,
        }
    }
}

impl Segment {
    /// The offset that maps `in_ext`: the current one, or the one before a later skip.
    fn offset_for(&self, in_ext: u64) -> Option<u64> {
        let mut offset = self.seq_offset;
        for k in 0..self.skips_len {
            let i = (self.skips_next + SKIP_MEMORY - 1 - k) % SKIP_MEMORY;
            let (at, before) = self.skips[i];
            if in_ext < at {
                offset = before;
            } else {
                return Some(offset);
            }
        }
        if in_ext < self.skips_floor {
            return None;
        }
        Some(offset)
    }
}

/// Extend a 16-bit seq to 64 bits, choosing the value nearest to `highest`.
fn extend(highest: u64, seq: u16) -> u64 {
    let base = highest & !0xffff;
    let cand = base | u64::from(seq);
    if cand + 0x8000 < highest {
        cand + 0x1_0000
    } else if cand > highest + 0x8000 && cand >= 0x1_0000 {
        cand - 0x1_0000
    } else {
        cand
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LOW: u32 = 0x1111;
    const HIGH: u32 = 0x2222;

    struct Pub {
        ssrc: u32,
        seq: u16,
        ts: u32,
    }
    impl Pub {
        /// Next packet; `new_frame` advances the timestamp by 30 fps at 90 kHz.
        fn next(&mut self, new_frame: bool) -> (u32, u16, u32) {
            self.seq = self.seq.wrapping_add(1);
            if new_frame {
                self.ts = self.ts.wrapping_add(3000);
            }
            (self.ssrc, self.seq, self.ts)
        }
    }

    #[test]
    fn in_segment_mapping_keeps_upstream_gaps_and_wraps() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::with_start(90_000, 1000, 5000);
        let a = rw.rewrite(t0, LOW, 65534, 10, false).unwrap();
        assert_eq!((a.seq, a.ts, a.new_segment), (1000, 5000, true));
        let b = rw.rewrite(t0, LOW, 65535, 10, false).unwrap();
        assert_eq!((b.seq, b.new_segment), (1001, false));
        // Seq wraps upstream; 1 is lost, so the subscriber sees a gap and NACKs 1003.
        let c = rw.rewrite(t0, LOW, 0, 3010, false).unwrap();
        let d = rw.rewrite(t0, LOW, 2, 3010, false).unwrap();
        assert_eq!((c.seq, d.seq), (1002, 1004));
        assert_eq!(c.ts, 8000);
        // The lost one arrives late (reordered): it fills its own slot.
        assert_eq!(rw.rewrite(t0, LOW, 1, 3010, false).unwrap().seq, 1003);
    }

    #[test]
    fn switch_is_gap_free_and_timestamps_advance() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::new(90_000);
        let mut low = Pub {
            ssrc: LOW,
            seq: 100,
            ts: 1_000_000,
        };
        let mut high = Pub {
            ssrc: HIGH,
            seq: 65_000,
            ts: 4_000_000_000,
        };
        let mut outs = Vec::new();
        let mut now = t0;
        for f in 0..10 {
            now += Duration::from_millis(33);
            for p in 0..2 {
                let (s, q, t) = low.next(p == 0);
                outs.push(rw.rewrite(now, s, q, t, f == 0 && p == 0).unwrap());
                let _ = high.next(p == 0); // high layer runs, not forwarded
            }
        }
        let last_low_ts = outs.last().unwrap().ts;
        // Keyframe of the high layer, 10 ms after the last low frame.
        now += Duration::from_millis(10);
        let mut after = Vec::new();
        for f in 0..10 {
            for p in 0..3 {
                let (s, q, t) = high.next(p == 0);
                after.push(rw.rewrite(now, s, q, t, f == 0 && p == 0).unwrap());
            }
            now += Duration::from_millis(33);
            // Late packets of the old layer are dropped.
            let (s, q, t) = low.next(true);
            assert_eq!(
                rw.rewrite(now, s, q.wrapping_sub(5), t, false),
                Err(Stale::OldSource)
            );
        }
        outs.extend(after.iter().copied());
        for w in outs.windows(2) {
            assert_eq!(
                w[1].seq,
                w[0].seq.wrapping_add(1),
                "gap-free across the switch"
            );
            assert!(
                (w[1].ts.wrapping_sub(w[0].ts) as i32) >= 0,
                "timestamps never go back"
            );
        }
        // Step at the switch: one frame interval (the switch came sooner than that).
        assert_eq!(after[0].ts.wrapping_sub(last_low_ts), 3000);
        assert!(after[0].new_segment && !after[1].new_segment);
    }

    #[test]
    fn resume_after_pause_advances_by_wall_time() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::new(90_000);
        let a = rw.rewrite(t0, LOW, 10, 0, true).unwrap();
        rw.rewrite(t0, LOW, 11, 0, false).unwrap();
        // Paused for 5 s: packets 12..160 were not forwarded; resume on a keyframe.
        let r = rw
            .rewrite(t0 + Duration::from_secs(5), LOW, 160, 450_000, true)
            .unwrap();
        assert_eq!(r.seq, a.seq.wrapping_add(2));
        assert_eq!(r.ts.wrapping_sub(a.ts), 450_000);
        assert!(r.new_segment);
        // A straggler from before the resume is dropped, not mapped onto used slots.
        let late = rw.rewrite(t0 + Duration::from_secs(5), LOW, 150, 440_000, false);
        assert_eq!(late, Err(Stale::BeforeSegment));
        assert_eq!(
            rw.rewrite(t0, LOW, 161, 450_000, false).unwrap().seq,
            r.seq + 1
        );
    }

    #[test]
    fn skipped_packets_leave_no_gap_and_late_ones_map_before_the_skip() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::with_start(90_000, 500, 0);
        let mut out = Vec::new();
        out.push(rw.rewrite(t0, LOW, 65533, 0, true).unwrap().seq);
        // 65534 is not here yet (loss or reorder); 65535 is padding we drop; seq wraps.
        rw.skip(LOW, 65535);
        rw.skip(LOW, 0);
        out.push(rw.rewrite(t0, LOW, 1, 0, false).unwrap().seq);
        rw.skip(LOW, 2);
        rw.skip(LOW, 3);
        out.push(rw.rewrite(t0, LOW, 4, 0, false).unwrap().seq);
        assert_eq!(out, vec![500, 502, 503]);
        // The reordered 65534 fills the gap the subscriber saw, below the skips.
        assert_eq!(rw.rewrite(t0, LOW, 65534, 0, false).unwrap().seq, 501);
        // Skips of another source, or of a seq already passed, change nothing.
        rw.skip(HIGH, 5);
        rw.skip(LOW, 2);
        assert_eq!(rw.rewrite(t0, LOW, 5, 0, false).unwrap().seq, 504);
    }

    #[test]
    fn late_packets_older_than_the_remembered_skips_are_dropped() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::new(90_000);
        rw.rewrite(t0, LOW, 100, 0, true).unwrap();
        // 101 is late: a gap. Then many skips in a row.
        assert_eq!(rw.rewrite(t0, LOW, 102, 0, false).unwrap().seq, 102);
        for s in 103..103 + SKIP_MEMORY as u16 + 2 {
            rw.skip(LOW, s);
        }
        let next = 103 + SKIP_MEMORY as u16 + 2;
        assert_eq!(rw.rewrite(t0, LOW, next, 0, false).unwrap().seq, 103);
        assert_eq!(
            rw.rewrite(t0, LOW, 101, 0, false),
            Err(Stale::BeforeSegment)
        );
    }

    #[test]
    fn frame_interval_is_learned() {
        let t0 = Instant::now();
        let mut rw = StreamRewriter::new(90_000);
        for i in 0..100u16 {
            rw.rewrite(t0, LOW, i, u32::from(i) * 6000, false).unwrap();
        }
        assert!(
            (5900..=6000).contains(&rw.frame_ticks()),
            "{}",
            rw.frame_ticks()
        );
    }

    #[test]
    fn random_sequences_never_panic() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(3);
        let mut rw = StreamRewriter::new(48_000);
        for i in 0..100_000u64 {
            let now = t0 + Duration::from_millis(i);
            if rng.u8(..) < 20 {
                rw.skip(rng.u32(0..3), rng.u16(..));
            }
            let _ = rw.rewrite(now, rng.u32(0..3), rng.u16(..), rng.u32(..), rng.u8(..) < 3);
        }
    }

    /// Seeded mess: switches, skipped packets, reordering. Every output slot is used at most
    /// once, and every hole in the output is a packet that was never delivered or was dropped
    /// as stale — so the subscriber only NACKs what really went missing.
    #[test]
    fn outputs_are_unique_and_holes_are_accounted_for() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(11);
        let mut rw = StreamRewriter::new(90_000);
        let mut outs: Vec<u64> = Vec::new();
        let (mut stale, mut held_back) = (0u64, Vec::new());
        let mut seq = 60_000u16;
        let mut ssrc = 1u32;
        let mut switch = true;
        for i in 0..30_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            if i % 2_000 == 1_999 {
                ssrc += 1;
                seq = rng.u16(..);
                switch = true;
            }
            seq = seq.wrapping_add(1);
            let r = rng.u8(..);
            if r < 25 && !switch {
                rw.skip(ssrc, seq);
                continue;
            }
            if r < 40 && !switch {
                held_back.push((ssrc, seq));
                continue;
            }
            let mut deliver = vec![(ssrc, seq, switch)];
            switch = false;
            if rng.u8(..) < 30 {
                deliver.extend(held_back.drain(..).map(|(s, q)| (s, q, false)));
            }
            for (s, q, sw) in deliver {
                match rw.rewrite(now, s, q, i, sw) {
                    Ok(o) => outs.push(u64::from(o.seq)),
                    Err(_) => stale += 1,
                }
            }
        }
        // Unwrap the outgoing sequence in arrival order, then compare.
        let mut ext = Vec::with_capacity(outs.len());
        let mut hi = (1u64 << 16) | outs[0];
        for &o in &outs {
            let e = extend(hi, o as u16);
            hi = hi.max(e);
            ext.push(e);
        }
        ext.sort_unstable();
        let before = ext.len();
        ext.dedup();
        assert_eq!(ext.len(), before, "an output seq was used twice");
        let span = ext[ext.len() - 1] - ext[0] + 1;
        let holes = span - ext.len() as u64;
        let never_delivered = held_back.len() as u64;
        assert!(
            holes <= stale + never_delivered,
            "{holes} holes, {stale} stale, {never_delivered} held"
        );
        assert!(stale > 0 && holes > 0, "the run exercised late packets");
    }

    #[test]
    fn extend_picks_nearest() {
        assert_eq!(extend(0x1_fffe, 0x0001), 0x2_0001);
        assert_eq!(extend(0x2_0001, 0xfffe), 0x1_fffe);
        assert_eq!(extend(0x1_0005, 0x0003), 0x1_0003);
    }
}
