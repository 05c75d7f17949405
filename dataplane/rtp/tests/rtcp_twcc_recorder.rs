//! TwccRecorder behaviour a publisher's bandwidth estimate depends on: what each feedback
//! covers, losses, late and duplicate packets, jumps and restarts of the sequence, and
//! buffers too small.

use std::time::{Duration, Instant};

use shardcast_rtp::rtcp::{parse_compound, RtcpPacket, TwccFeedback, TwccRecorder};

fn twcc(packet: &[u8]) -> TwccFeedback<'_> {
    match parse_compound(packet).next() {
        Some(Ok(RtcpPacket::TransportCc(fb))) => fb,
        other => panic!("not transport-cc: {other:?}"),
    }
}

/// A recorder in virtual time: `at(ms)` records, `build()` drains feedback.
struct Rig {
    rec: TwccRecorder,
    start: Instant,
}

/// One feedback as (base, status count, fb count, reference time, per-packet arrivals
/// in µs since the first arrival ever).
#[derive(Debug)]
struct Fb {
    base: u16,
    count: u16,
    fb_count: u8,
    reference: i32,
    packets: Vec<(u16, Option<i64>)>,
}

impl Rig {
    fn new() -> Self {
        Rig {
            rec: TwccRecorder::new(),
            start: Instant::now(),
        }
    }

    fn at(&mut self, seq: u16, ms: u64) {
        self.rec
            .on_packet(seq, self.start + Duration::from_millis(ms));
    }

    fn build_into(&mut self, out_len: usize) -> Vec<Fb> {
        let mut out = vec![0u8; out_len];
        let mut fbs = vec![];
        while let Some(len) = self.rec.build_feedback(1, 2, &mut out) {
            let f = twcc(&out[..len]);
            fbs.push(Fb {
                base: f.base_seq,
                count: f.status_count,
                fb_count: f.fb_pkt_count,
                reference: f.reference_time,
                packets: f
                    .packets()
                    .map(|p| (p.seq, p.arrival_us.map(|a| a + f.reference_time_us())))
                    .collect(),
            });
        }
        fbs
    }

    fn build(&mut self) -> Vec<Fb> {
        self.build_into(1200)
    }
}

fn received(fb: &Fb) -> Vec<u16> {
    fb.packets
        .iter()
        .filter(|p| p.1.is_some())
        .map(|p| p.0)
        .collect()
}

#[test]
fn nothing_to_report() {
    let mut rig = Rig::new();
    assert!(rig.build().is_empty());
    assert!(!rig.rec.has_unreported());
    rig.at(5, 0);
    assert!(rig.rec.has_unreported());
    assert_eq!(rig.build().len(), 1);
    assert!(rig.build().is_empty());
}

#[test]
fn losses_between_arrivals_and_counts_and_reference_times() {
    let mut rig = Rig::new();
    rig.at(10, 0);
    rig.at(11, 10);
    rig.at(13, 20);
    let fb = rig.build();
    assert_eq!(fb.len(), 1);
    assert_eq!(
        (fb[0].base, fb[0].count, fb[0].fb_count, fb[0].reference),
        (10, 4, 0, 0)
    );
    assert_eq!(
        fb[0].packets,
        [
            (10, Some(0)),
            (11, Some(10_000)),
            (12, None),
            (13, Some(20_000))
        ]
    );
    // Trailing losses are not reported until something after them arrives.
    rig.at(17, 200);
    let fb = rig.build();
    assert_eq!((fb[0].base, fb[0].count, fb[0].fb_count), (14, 4, 1));
    assert_eq!(received(&fb[0]), [17]);
    // Reference time: the 64 ms step of the feedback's first arrival (200 ms → 3).
    assert_eq!(fb[0].reference, 3);
    assert_eq!(fb[0].packets[3], (17, Some(200_000)));
}

#[test]
fn a_late_packet_is_reported_with_what_follows_it() {
    let mut rig = Rig::new();
    for (seq, ms) in [(1, 0), (2, 1), (4, 2), (5, 3)] {
        rig.at(seq, ms);
    }
    let fb = rig.build();
    assert_eq!(received(&fb[0]), [1, 2, 4, 5]);
    // 3 arrives late: the next feedback starts at 3 and reports 4 and 5 again (the draft
    // allows the base to go back; the sender ignores what it already knows).
    rig.at(3, 40);
    let fb = rig.build();
    assert_eq!(fb.len(), 1);
    assert_eq!(fb[0].base, 3);
    assert_eq!(
        fb[0].packets,
        [(3, Some(40_000)), (4, Some(2_000)), (5, Some(3_000))]
    );
    // Duplicates are ignored and counted.
    rig.at(5, 50);
    assert!(rig.build().is_empty());
    assert_eq!(rig.rec.ignored(), 1);
}

#[test]
fn packets_before_the_first_are_kept() {
    let mut rig = Rig::new();
    rig.at(100, 0);
    rig.at(98, 1);
    rig.at(99, 2);
    let fb = rig.build();
    assert_eq!(fb[0].base, 98);
    assert_eq!(received(&fb[0]), [98, 99, 100]);
}

#[test]
fn a_jump_of_30000_starts_a_new_range() {
    let mut rig = Rig::new();
    for s in 0..10u16 {
        rig.at(s, u64::from(s));
    }
    // Unreported 0..10, then the sender jumps: no 30 000 "not received".
    rig.at(30_010, 20);
    rig.at(30_011, 21);
    let fb = rig.build();
    assert_eq!(fb.len(), 2);
    assert_eq!((fb[0].base, fb[0].count), (0, 10));
    assert_eq!((fb[1].base, fb[1].count), (30_010, 2));
    assert_eq!((fb[0].fb_count, fb[1].fb_count), (0, 1));
    // And back to normal after it.
    rig.at(30_013, 22);
    let fb = rig.build();
    assert_eq!((fb[0].base, fb[0].count), (30_012, 2));
    // A jump far ahead (wrapping) after everything was reported: one new range, nothing else.
    rig.at(60_000, 30);
    let fb = rig.build();
    assert_eq!(fb.len(), 1);
    assert_eq!((fb[0].base, fb[0].count), (60_000, 1));
}

#[test]
fn a_gap_within_one_feedback_span_is_reported_as_losses() {
    let mut rig = Rig::new();
    rig.at(0, 0);
    rig.at(300, 500);
    let fb = rig.build();
    assert_eq!(fb.len(), 1);
    assert_eq!((fb[0].base, fb[0].count), (0, 301));
    assert_eq!(received(&fb[0]), [0, 300]);
}

#[test]
fn a_sender_restarting_lower_is_followed() {
    let mut rig = Rig::new();
    for s in 40_000..40_100u16 {
        rig.at(s, 0);
    }
    rig.build();
    // 10 000 after 40 100 reads as 30 100 behind; a second one right after it means a
    // restart: both are reported, and what follows.
    rig.at(10_000, 100);
    rig.at(10_001, 101);
    rig.at(10_002, 102);
    let fb = rig.build();
    assert_eq!(fb.len(), 1);
    assert_eq!((fb[0].base, fb[0].count), (10_000, 3));
    // A stray packet of the old numbering right after the restart reads as a jump
    // forward (30 048 ahead of 10 002): it is reported on its own, and the stream is
    // picked up again two packets later (the first of them read as far behind).
    rig.at(40_050, 103);
    rig.at(10_003, 104);
    rig.at(10_004, 105);
    rig.at(10_005, 106);
    let fb = rig.build();
    assert_eq!(fb.len(), 2);
    assert_eq!(received(&fb[0]), [40_050]);
    assert_eq!(received(&fb[1]), [10_003, 10_004, 10_005]);
    // Both packets read as far behind were recorded in the end.
    assert_eq!(rig.rec.ignored(), 0);
}

#[test]
fn a_buffer_too_small_for_one_packet_keeps_everything_for_later() {
    let mut rig = Rig::new();
    rig.at(1, 0);
    assert!(rig.build_into(23).is_empty());
    assert!(rig.rec.has_unreported());
    let fb = rig.build_into(24);
    assert_eq!(fb.len(), 1);
    assert_eq!(received(&fb[0]), [1]);
}

#[test]
fn old_reported_packets_are_forgotten_after_half_a_second() {
    let mut rig = Rig::new();
    for s in 0..10u16 {
        rig.at(s, u64::from(s));
    }
    rig.build();
    // 2 s later: everything older than 500 ms is forgotten, so a late 5 cannot make
    // 5..10 be reported again.
    rig.at(10, 2_000);
    rig.build();
    rig.at(5, 2_001);
    assert!(rig.build().iter().all(|f| !received(f).contains(&6)));
}

#[test]
fn feedback_packet_count_wraps() {
    let mut rig = Rig::new();
    let mut last = None;
    for s in 0..300u16 {
        rig.at(s, u64::from(s));
        for fb in rig.build() {
            if let Some(prev) = last {
                assert_eq!(fb.fb_count, u8::wrapping_add(prev, 1));
            }
            last = Some(fb.fb_count);
        }
    }
    assert_eq!(last, Some((299 % 256) as u8));
}

#[test]
fn hostile_sequences_stay_bounded_and_parseable() {
    let mut rig = Rig::new();
    let mut x = 0xDEAD_BEEFu32;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for i in 0..100_000u64 {
        let seq = match next() % 4 {
            0 => next() as u16,
            _ => (i as u16).wrapping_mul(7),
        };
        // Time jumps around too (but the Instant never goes below the start).
        let ms = (next() % 100_000) as u64;
        rig.at(seq, ms);
        if i % 64 == 0 {
            for fb in rig.build_into(300) {
                assert!(usize::from(fb.count) <= 512);
                assert_eq!(fb.packets.len(), usize::from(fb.count));
            }
        }
    }
}
