//! Transport-cc feedback: known bytes (the draft's chunk examples, a str0m vector), and
//! the recorder's feedback read by str0m's parser (an independent implementation): the
//! same per-packet received/lost and arrival times as we recorded, within the 250 µs
//! resolution.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shardcast_rtp::rtcp::{parse_compound, RtcpPacket, TwccArrival, TwccFeedback, TwccRecorder};
use str0m::rtp::rtcp::Rtcp;

fn twcc(packet: &[u8]) -> TwccFeedback<'_> {
    match parse_compound(packet).next() {
        Some(Ok(RtcpPacket::TransportCc(fb))) => fb,
        other => panic!("not transport-cc: {other:?}"),
    }
}

fn arrivals(fb: &TwccFeedback<'_>) -> Vec<(u16, Option<i64>)> {
    fb.packets()
        .map(|TwccArrival { seq, arrival_us }| (seq, arrival_us))
        .collect()
}

#[test]
fn str0m_vector_with_padding() {
    // From str0m's tests: base 82, 3 packets in one run of small deltas, reference time 25,
    // feedback count 17, P bit with 3 bytes of padding.
    let packet = [
        0xaf, 0xcd, 0x00, 0x06, 0, 0, 0, 1, 0, 0, 0, 0, 0x00, 0x52, 0x00, 0x03, 0x00, 0x00, 0x19,
        0x11, 0x20, 0x03, 0x7c, 0x93, 0x84, 0x00, 0x00, 0x03,
    ];
    let fb = twcc(&packet);
    assert_eq!((fb.sender_ssrc, fb.media_ssrc), (1, 0));
    assert_eq!((fb.base_seq, fb.status_count), (82, 3));
    assert_eq!((fb.reference_time, fb.fb_pkt_count), (25, 17));
    assert_eq!(fb.reference_time_us(), 25 * 64_000);
    // 0x7c = 124 × 250 µs, then +147 ×, then +132 ×.
    assert_eq!(
        arrivals(&fb),
        [(82, Some(31_000)), (83, Some(67_750)), (84, Some(100_750))]
    );
}

fn feedback(base: u16, count: u16, reference: u32, chunks: &[u16], deltas: &[u8]) -> Vec<u8> {
    let mut p = vec![0x8F, 205, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2];
    p.extend_from_slice(&base.to_be_bytes());
    p.extend_from_slice(&count.to_be_bytes());
    p.extend_from_slice(&reference.to_be_bytes()[1..]);
    p.push(0);
    for c in chunks {
        p.extend_from_slice(&c.to_be_bytes());
    }
    p.extend_from_slice(deltas);
    // Zero padding without the P bit, as the draft draws it.
    while p.len() % 4 != 0 {
        p.push(0);
    }
    let words = (p.len() / 4 - 1) as u16;
    p[2..4].copy_from_slice(&words.to_be_bytes());
    p
}

#[test]
fn draft_status_vector_example() {
    // |1|0|0 1 1 1 1 1 0 0 0 1 1 1 0 0|: 1 lost, 5 received, 3 lost, 3 received, 2 lost.
    let chunk = 0b1001_1111_0001_1100;
    let packet = feedback(100, 14, 0, &[chunk], &[4; 8]);
    let fb = twcc(&packet);
    let got = arrivals(&fb);
    let received: Vec<u16> = got.iter().filter(|p| p.1.is_some()).map(|p| p.0).collect();
    assert_eq!(received, [101, 102, 103, 104, 105, 109, 110, 111]);
    assert_eq!(got.len(), 14);
    assert_eq!(got[13], (113, None));
    // Each delta is 1 ms after the previous received packet.
    assert_eq!(got[8], (108, None));
    assert_eq!(got[9], (109, Some(6_000)));
    assert_eq!(fb.received_count(), 8);
}

#[test]
fn draft_run_length_example_and_large_negative_deltas() {
    // |0|0 0|0 0 0 0 0 1 1 0 1 1 1 0 1|: 221 not received; then a two-bit vector:
    // large, small, lost, large (negative), then 3 more lost.
    let vector = 0b11_10_01_00_10_00_00_00;
    let deltas = [0x01, 0x00, 0x10, 0xFF, 0xFC];
    let packet = feedback(65_500, 225, 0xFF_FFFF, &[0x00DD, vector], &deltas);
    let fb = twcc(&packet);
    // Reference time -1 (24-bit signed): -64 ms.
    assert_eq!(fb.reference_time, -1);
    let got = arrivals(&fb);
    assert_eq!(got.len(), 225);
    assert!(got[..221].iter().all(|p| p.1.is_none()));
    assert_eq!(got[0].0, 65_500);
    // Sequence numbers wrap past 65 535.
    assert_eq!(got[221], (185, Some(256 * 250)));
    assert_eq!(got[222], (186, Some(256 * 250 + 16 * 250)));
    assert_eq!(got[223], (187, None));
    assert_eq!(got[224], (188, Some(256 * 250 + 16 * 250 - 4 * 250)));
}

// ---- The recorder against str0m ----

/// Runs arrivals (seq, µs after start) through a recorder, building feedback whenever
/// `build_after` says so; returns the feedback packets.
fn record(
    arrivals: &[(u16, u64)],
    out_len: usize,
    mut build_after: impl FnMut(usize) -> bool,
) -> (Instant, Vec<Vec<u8>>) {
    let start = Instant::now();
    let mut rec = TwccRecorder::new();
    let mut packets = vec![];
    let mut drain = |rec: &mut TwccRecorder| {
        let mut out = vec![0u8; out_len];
        while let Some(len) = rec.build_feedback(0xAAAA, 0xBBBB, &mut out) {
            packets.push(out[..len].to_vec());
        }
    };
    for (i, &(seq, at)) in arrivals.iter().enumerate() {
        rec.on_packet(seq, start + Duration::from_micros(at));
        if build_after(i) {
            drain(&mut rec);
        }
    }
    drain(&mut rec);
    (start, packets)
}

/// Every feedback parsed by str0m and by us gives the same packets and times; every
/// packet recorded is reported received within 125 µs of its arrival (relative to the
/// first arrival); nothing unrecorded is ever reported received.
fn check_against_str0m(arrivals: &[(u16, u64)], start: Instant, packets: &[Vec<u8>]) {
    let truth: BTreeMap<u16, u64> = arrivals.iter().map(|&(s, t)| (s, t)).collect();
    let zero = arrivals[0].1 as i64;
    let mut reported: BTreeMap<u16, i64> = BTreeMap::new();
    for (n, packet) in packets.iter().enumerate() {
        assert_eq!(packet.len() % 4, 0);
        let ours = twcc(packet);
        assert_eq!(ours.fb_pkt_count, n as u8, "feedback packet count");
        assert_eq!((ours.sender_ssrc, ours.media_ssrc), (0xAAAA, 0xBBBB));
        // str0m wants the padding removed.
        let pad = if packet[0] & 0x20 != 0 {
            packet[packet.len() - 1] as usize
        } else {
            0
        };
        let Ok(Rtcp::Twcc(theirs)) = Rtcp::try_from(&packet[..packet.len() - pad]) else {
            panic!("str0m does not parse feedback {n}");
        };
        assert_eq!(theirs.base_seq, ours.base_seq);
        assert_eq!(theirs.status_count, ours.status_count);
        // str0m's time base: our first arrival (the recorder's zero) at `time_zero`.
        let time_zero = start + Duration::from_micros(zero as u64);
        let theirs: Vec<(u16, Option<Instant>)> = theirs
            .into_iter(time_zero, u64::from(ours.base_seq).into())
            .map(|(seq, _, at)| (*seq as u16, at))
            .collect();
        let ours: Vec<(u16, Option<i64>)> = ours
            .packets()
            .map(|p| (p.seq, p.arrival_us.map(|a| a + ours.reference_time_us())))
            .collect();
        assert_eq!(theirs.len(), ours.len());
        for ((s1, t1), (s2, t2)) in theirs.iter().zip(&ours) {
            assert_eq!(s1, s2);
            assert_eq!(
                t1.map(|t| (t - time_zero).as_micros() as i64),
                *t2,
                "seq {s1}"
            );
            match (t2, truth.get(s2)) {
                (Some(at), Some(&truth_at)) => {
                    let err = (at + zero - truth_at as i64).abs();
                    assert!(err <= 125, "seq {s2}: reported {at}, arrived {truth_at}");
                    reported.insert(*s2, *at);
                }
                (Some(_), None) => panic!("seq {s2} reported received, never arrived"),
                (None, _) => {}
            }
        }
    }
    let missing: Vec<_> = truth.keys().filter(|s| !reported.contains_key(s)).collect();
    assert!(missing.is_empty(), "never reported: {missing:?}");
}

struct Rng(u32);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }
}

#[test]
fn in_order_with_random_loss() {
    let mut rng = Rng(7);
    let mut arrivals = vec![];
    for s in 0..2_000u16 {
        if !rng.next().is_multiple_of(10) {
            arrivals.push((s, u64::from(s) * 5_000 + u64::from(rng.next() % 3_000)));
        }
    }
    let (start, packets) = record(&arrivals, 1200, |i| i % 20 == 19);
    assert!(packets.len() >= 90);
    check_against_str0m(&arrivals, start, &packets);
}

#[test]
fn reordering_gives_negative_deltas_and_late_packets_are_reported_again() {
    let mut rng = Rng(99);
    let mut seqs: Vec<u16> = (1_000..1_600).collect();
    // Swap neighbours often, and now and then hold a packet back by ten places.
    for i in 0..seqs.len() - 11 {
        match rng.next() % 8 {
            0 => seqs.swap(i, i + 1),
            1 => seqs[i..i + 11].rotate_left(1),
            _ => {}
        }
    }
    let arrivals: Vec<(u16, u64)> = seqs
        .iter()
        .enumerate()
        .map(|(i, &s)| (s, i as u64 * 2_000))
        .collect();
    let (start, packets) = record(&arrivals, 1200, |i| i % 7 == 6);
    check_against_str0m(&arrivals, start, &packets);
    // Some feedback had to go back in sequence (late packets are reported again).
    let bases: Vec<u16> = packets.iter().map(|p| twcc(p).base_seq).collect();
    assert!(bases.windows(2).any(|w| w[1] < w[0]));
}

#[test]
fn slow_packets_large_deltas_and_sequence_wrap() {
    // 20 packets 70 ms apart (large deltas), then fast ones, across the 16-bit wrap.
    let mut arrivals: Vec<(u16, u64)> = (0..20u16)
        .map(|i| (65_520u16.wrapping_add(i), u64::from(i) * 70_000))
        .collect();
    let t0 = 20 * 70_000;
    arrivals.extend((20..200u16).map(|i| (65_520u16.wrapping_add(i), t0 + u64::from(i) * 900)));
    // Feedback after the slow phase, so its run of large deltas ends that packet
    // (str0m 0.25 misreads a run of large deltas followed by more deltas).
    let (start, packets) = record(&arrivals, 1200, |i| i == 19 || i % 50 == 49);
    check_against_str0m(&arrivals, start, &packets);
}

#[test]
fn a_gap_longer_than_a_delta_holds_splits_the_feedback() {
    // 9 s between packets 3 and 4: more than the ±8.19 s of a 16-bit delta.
    let arrivals = [
        (1, 0),
        (2, 1_000),
        (3, 2_000),
        (4, 9_002_000),
        (5, 9_003_000),
    ];
    let (start, packets) = record(&arrivals, 1200, |_| false);
    assert_eq!(packets.len(), 2);
    check_against_str0m(&arrivals, start, &packets);
    assert_eq!(twcc(&packets[1]).base_seq, 4);
    // The second feedback's reference time is its own first arrival's 64 ms step.
    assert_eq!(twcc(&packets[1]).reference_time, 9_002_000 / 64_000);
}

#[test]
fn small_buffers_split_feedback_without_losing_packets() {
    let arrivals: Vec<(u16, u64)> = (0..300u16)
        .filter(|s| s % 13 != 0)
        .map(|s| (s, u64::from(s) * 1_000))
        .collect();
    let (start, packets) = record(&arrivals, 40, |_| false);
    assert!(packets.len() > 10);
    assert!(packets.iter().all(|p| p.len() <= 40));
    check_against_str0m(&arrivals, start, &packets);
}

#[test]
fn long_ranges_split_at_the_status_cap() {
    let arrivals: Vec<(u16, u64)> = (0..1_000u16).map(|s| (s, u64::from(s) * 100)).collect();
    let (start, packets) = record(&arrivals, 1500, |_| false);
    assert!(packets.len() >= 2);
    assert!(packets.iter().all(|p| twcc(p).status_count <= 512));
    check_against_str0m(&arrivals, start, &packets);
}

#[test]
fn random_arrivals_always_give_feedback_both_parsers_read() {
    let mut rng = Rng(2024);
    for round in 0..200 {
        let n = 50 + rng.next() % 400;
        let mut t = 0u64;
        let mut seq = (rng.next() % 65_536) as u16;
        let mut arrivals = vec![];
        let mut seen = std::collections::HashSet::new();
        for _ in 0..n {
            // Mostly forward, some loss, some reordering; time mostly forward.
            seq = match rng.next() % 10 {
                0 => seq.wrapping_add(2 + (rng.next() % 5) as u16),
                1 => seq.wrapping_sub(1 + (rng.next() % 4) as u16),
                _ => seq.wrapping_add(1),
            };
            t += u64::from(rng.next() % 40_000);
            if seen.insert(seq) {
                arrivals.push((seq, t));
            }
        }
        let (start, packets) = record(&arrivals, 200 + (round * 37) % 1000, |_| {
            rng.next().is_multiple_of(16)
        });
        check_against_str0m(&arrivals, start, &packets);
    }
}
