//! ReceiveStats against RFC 3550 A.1/A.3/A.8 with hand-computed expectations.

use std::time::{Duration, Instant};

use shardcast_rtp::recv::ReceiveStats;

const SSRC: u32 = 0x1234_5678;

/// Feeds `seqs` (in this order) as originals, 20 ms apart, timestamps on the same clock.
fn feed(stats: &mut ReceiveStats, t0: Instant, seqs: &[u64]) {
    for &seq in seqs {
        let at = t0 + Duration::from_millis(20 * seq);
        stats.on_packet(seq, (seq * 160) as u32, at, false);
    }
}

#[test]
fn loss_counts_gaps_but_not_duplicates_or_reordering() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(SSRC, 8000);
    // 103 and 104 lost, 106 duplicated, 107 and 108 swapped.
    feed(&mut s, t0, &[100, 101, 102, 105, 106, 106, 108, 107, 109]);
    let b = s.report_block(t0 + Duration::from_secs(3));
    assert_eq!(b.ssrc, SSRC);
    assert_eq!(s.packets_received(), 8);
    assert_eq!(b.ext_highest_seq, 109);
    assert_eq!(b.cumulative_lost, 2, "expected 10, received 8");
    assert_eq!(b.fraction_lost, 51, "(2 << 8) / 10");
}

#[test]
fn fraction_lost_covers_only_the_interval_since_the_previous_block() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(SSRC, 8000);
    let later = t0 + Duration::from_secs(10);
    feed(&mut s, t0, &[100, 101, 102, 105, 106, 107, 108, 109]);
    assert_eq!(s.report_block(later).fraction_lost, 51);

    // Interval 2: 110..=119 all arrive, and so does 103, late: 11 received of 10 expected.
    feed(&mut s, t0, &(110..120).collect::<Vec<_>>());
    feed(&mut s, t0, &[103]);
    let b = s.report_block(later);
    assert_eq!(
        (b.fraction_lost, b.cumulative_lost),
        (0, 1),
        "negative interval loss is 0"
    );

    // Interval 3: 121, 125 and 126 lost: 3 of 10.
    feed(&mut s, t0, &[120, 122, 123, 124, 127, 128, 129]);
    let b = s.report_block(later);
    assert_eq!(
        (b.fraction_lost, b.cumulative_lost),
        (76, 4),
        "(3 << 8) / 10"
    );

    // Interval 4: nothing new was expected.
    let b = s.report_block(later);
    assert_eq!(
        (b.fraction_lost, b.cumulative_lost, b.ext_highest_seq),
        (0, 4, 129)
    );

    // Everything in an interval lost but its last packet (fraction stays in a u8).
    feed(&mut s, t0, &[1129]);
    assert_eq!(
        s.report_block(later).fraction_lost,
        255,
        "(999 << 8) / 1000"
    );
}

#[test]
fn extended_highest_sequence_counts_the_16_bit_wrap() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(SSRC, 8000);
    // 65530..=65545 crosses seq 65535 -> 0 (cycle 1); 65536 (seq 0 of cycle 1) is lost.
    let seqs: Vec<u64> = (65_530..=65_545).filter(|&x| x != 65_536).collect();
    feed(&mut s, t0, &seqs);
    feed(&mut s, t0, &[65_535]); // a duplicate across the wrap
    let b = s.report_block(t0);
    assert_eq!(b.ext_highest_seq, 0x0001_0009, "cycles 1, seq 9");
    assert_eq!(b.cumulative_lost, 1);
    assert_eq!(s.highest_ext_seq(), Some(65_545));
}

#[test]
fn jitter_matches_the_a8_recurrence_on_known_transit_times() {
    // The case libwebrtc's and str0m's tests use: 8 kHz, packets 160 samples apart arriving
    // 50 ms (400 samples) apart, so |D| = 240 each: 16J = 240, then 240 + 240 - 15 = 465.
    let t0 = Instant::now();
    for first_ts in [1u32, u32::MAX - 79] {
        let mut s = ReceiveStats::new(SSRC, 8000);
        for i in 0..3u32 {
            let at = t0 + Duration::from_millis(50 * u64::from(i));
            s.on_packet(u64::from(i), first_ts.wrapping_add(160 * i), at, false);
        }
        assert_eq!(
            s.report_block(t0).jitter,
            465 / 16,
            "first timestamp {first_ts}"
        );
    }
}

#[test]
fn jitter_converges_to_the_transit_variation() {
    // 90 kHz video, 25 frames/s (3600 ticks, 40 ms), three packets per frame; every odd
    // frame arrives 5 ms (450 ticks) late, so |D| = 450 on every frame. The later packets of
    // a frame (same timestamp, 1 ms apart) must not count.
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(SSRC, 90_000);
    let mut seq = 0u64;
    let mut jitter_at = Vec::new();
    for frame in 0..=200u64 {
        let late = if frame % 2 == 1 { 5 } else { 0 };
        for p in 0..3 {
            let at = t0 + Duration::from_millis(40 * frame + late + p);
            s.on_packet(seq, (3600 * frame) as u32, at, false);
            seq += 1;
        }
        if frame == 10 || frame == 200 {
            jitter_at.push(s.report_block(t0).jitter);
        }
    }
    // 16J by A.8's integer recurrence S += 450 - ((S + 8) >> 4): 3424 after 10 frame
    // transitions, and it settles at 7192 (J = 449: the integer form truncates 450).
    assert_eq!(jitter_at, [3424 / 16, 449]);
}

#[test]
fn a_steady_stream_has_no_jitter_and_retransmissions_change_nothing() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(SSRC, 8000);
    let lost = [5u64, 17, 30, 31, 32];
    let originals: Vec<u64> = (0..50).filter(|x| !lost.contains(x)).collect();
    feed(&mut s, t0, &originals);
    let before = s.report_block(t0 + Duration::from_secs(2));
    assert_eq!(
        (before.cumulative_lost, before.fraction_lost, before.jitter),
        (5, 25, 0)
    );

    // The repairs arrive (as RTX) much later, and some originals arrive twice.
    let mut s2 = s.clone();
    for (i, &seq) in lost.iter().enumerate() {
        let at = t0 + Duration::from_millis(1500 + i as u64 * 7);
        s2.on_packet(seq, (seq * 160) as u32, at, true);
    }
    feed(&mut s2, t0, &[10, 11, 49]);
    assert_eq!(s2.packets_received(), s.packets_received());
    let mut after = s2.report_block(t0 + Duration::from_secs(2));
    after.fraction_lost = before.fraction_lost; // the interval restarted; compared below
    assert_eq!(
        after, before,
        "loss and jitter as if no repair and no duplicate came"
    );
}

#[test]
fn the_first_packet_starts_the_stream_without_probation() {
    // Documented rule: SRTP authentication stands in for A.1's probation.
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(SSRC, 8000);
    assert_eq!(s.highest_ext_seq(), None);
    assert_eq!(s.report_block(t0).ext_highest_seq, 0);
    feed(&mut s, t0, &[4242]);
    let b = s.report_block(t0);
    assert_eq!(
        (s.packets_received(), b.ext_highest_seq, b.cumulative_lost),
        (1, 4242, 0)
    );

    // A start reordered on the wire (101 before 100) is no loss.
    let mut s = ReceiveStats::new(SSRC, 8000);
    feed(&mut s, t0, &[101, 100, 102]);
    let b = s.report_block(t0);
    assert_eq!(
        (s.packets_received(), b.cumulative_lost, b.fraction_lost),
        (3, 0, 0)
    );
}

#[test]
fn a_far_jump_counts_only_once_the_next_packet_confirms_it() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(SSRC, 8000);
    feed(&mut s, t0, &(1000..=1010).collect::<Vec<_>>());
    // A stray packet 5000 ahead, not followed: ignored (A.1 MAX_DROPOUT is 3000).
    feed(&mut s, t0, &[6010, 1011]);
    let b = s.report_block(t0);
    assert_eq!(
        (b.ext_highest_seq, b.cumulative_lost, s.packets_received()),
        (1011, 0, 12)
    );

    // A restart at 60000: the packet after confirms it and the counts begin there (A.1 does
    // not count the first packet of the new run).
    feed(&mut s, t0, &[60_000, 60_001, 60_003]);
    let b = s.report_block(t0);
    assert_eq!(
        (b.ext_highest_seq, b.cumulative_lost, s.packets_received()),
        (60_003, 1, 2)
    );

    // And the same far behind (beyond the 1024-packet duplicate window).
    feed(&mut s, t0, &[50, 51, 52]);
    let b = s.report_block(t0);
    assert_eq!(
        (b.ext_highest_seq, b.cumulative_lost, s.packets_received()),
        (52, 0, 2)
    );
}

#[test]
fn lsr_and_dlsr_follow_the_last_sender_report() {
    // RFC 3550 Fig. 2: SR at NTP 0xb44db705:20000000, our report 5.250 s after it arrived.
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(SSRC, 90_000);
    feed(&mut s, t0, &[1, 2, 3]);
    let b = s.report_block(t0);
    assert_eq!((b.last_sr, b.delay_since_last_sr), (0, 0), "no SR yet");
    assert_eq!(s.last_sender_report(), None);

    let arrival = t0 + Duration::from_secs(1);
    s.on_sender_report(0xb44d_b705_2000_0000, 123_456, arrival);
    let sr = s.last_sender_report().expect("remembered");
    assert_eq!(
        (sr.ntp, sr.rtp_ts, sr.arrival),
        (0xb44d_b705_2000_0000, 123_456, arrival)
    );
    let b = s.report_block(arrival + Duration::from_millis(5250));
    assert_eq!(b.last_sr, 0xb705_2000);
    assert_eq!(b.delay_since_last_sr, 0x0005_4000, "5.25 s in 1/65536 s");
    // A report "before" the SR arrived (a caller's clock mix-up) says 0, not garbage.
    assert_eq!(s.report_block(t0).delay_since_last_sr, 0);
    // DLSR saturates rather than wrapping after 18 h.
    let b = s.report_block(arrival + Duration::from_secs(70_000));
    assert_eq!(b.delay_since_last_sr, u32::MAX);
}

#[test]
fn cumulative_loss_clamps_to_24_bits() {
    let t0 = Instant::now();
    let mut s = ReceiveStats::new(SSRC, 8000);
    // Jumps of 3000 (the most A.1 believes at once) lose 2999 each: past 2^23 - 1 after 2798.
    let mut seq = 0u64;
    for _ in 0..3000 {
        s.on_packet(seq, 0, t0, false);
        seq += 3000;
    }
    assert_eq!(s.report_block(t0).cumulative_lost, 0x7f_ffff);
}

#[test]
fn absurd_numbers_and_times_do_not_panic() {
    let t0 = Instant::now();
    for clock_rate in [0, 1, u32::MAX] {
        let mut s = ReceiveStats::new(SSRC, clock_rate);
        let later = t0 + Duration::from_secs(100_000);
        s.on_packet(u64::MAX - 1, u32::MAX, later, false);
        s.on_packet(u64::MAX, 0, t0, false); // arrival before the first one's
        s.on_packet(0, 7, later, false);
        s.on_packet(1, 7, later, false);
        s.on_packet(u64::MAX, 1, later, true);
        s.on_sender_report(u64::MAX, u32::MAX, later);
        let b = s.report_block(t0);
        assert_eq!(b.ssrc, SSRC);
        assert!(b.cumulative_lost >= -0x80_0000 && b.cumulative_lost <= 0x7f_ffff);
    }
}
