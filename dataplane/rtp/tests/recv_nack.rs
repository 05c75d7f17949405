//! NackGenerator: when it asks, asks again, stops, gives up, and gives up on NACK altogether.

use std::time::{Duration, Instant};

use shardcast_rtp::recv::nack::{MAX_MISSING, MAX_RETRIES};
use shardcast_rtp::recv::{Arrival, NackGenerator};

const RTT: Duration = Duration::from_millis(50);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What `poll` asks for at `now`.
fn poll(g: &mut NackGenerator, now: Instant, rtt: Duration) -> Vec<u16> {
    let mut out = [0u16; 64];
    let n = g.poll(now, rtt, &mut out);
    out[..n].to_vec()
}

#[test]
fn a_gap_is_nacked_at_once_and_again_each_rtt_until_it_arrives() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    assert_eq!(g.next_due(), None);
    assert_eq!(g.on_packet(10, false, t0), Arrival::InOrder);
    assert_eq!(g.on_packet(13, false, t0), Arrival::InOrder);
    assert_eq!(
        g.next_due(),
        Some(t0),
        "no reordering seen yet: due at once"
    );
    assert_eq!(poll(&mut g, t0, RTT), [11, 12]);
    assert_eq!(poll(&mut g, t0, RTT), [] as [u16; 0], "asked already");
    assert_eq!(g.next_due(), Some(t0 + RTT));
    assert_eq!(poll(&mut g, t0 + RTT - ms(1), RTT), [] as [u16; 0]);
    assert_eq!(poll(&mut g, t0 + RTT, RTT), [11, 12]);

    assert_eq!(
        g.on_packet(12, false, t0 + ms(60)),
        Arrival::Late { nacked: true }
    );
    assert_eq!(
        poll(&mut g, t0 + 2 * RTT, RTT),
        [11],
        "12 arrived: no more asking for it"
    );
    assert_eq!(g.on_packet(12, false, t0 + ms(70)), Arrival::Duplicate);
    assert_eq!(
        g.on_packet(11, false, t0 + ms(110)),
        Arrival::Late { nacked: true }
    );
    assert_eq!(g.next_due(), None);
    assert_eq!(g.missing_len(), 0);
}

#[test]
fn the_resend_interval_follows_the_rtt_with_a_floor() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    g.on_packet(1, false, t0);
    g.on_packet(3, false, t0);
    assert_eq!(poll(&mut g, t0, ms(1)), [2]);
    assert_eq!(
        poll(&mut g, t0 + ms(19), ms(1)),
        [] as [u16; 0],
        "20 ms floor"
    );
    assert_eq!(poll(&mut g, t0 + ms(20), ms(1)), [2]);
    assert_eq!(poll(&mut g, t0 + ms(20) + ms(299), ms(300)), [] as [u16; 0]);
    assert_eq!(
        g.next_due(),
        Some(t0 + ms(320)),
        "next_due uses the RTT poll was given"
    );
    assert_eq!(poll(&mut g, t0 + ms(320), ms(300)), [2]);
}

#[test]
fn gives_up_after_max_retries() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    g.on_packet(1, false, t0);
    g.on_packet(3, false, t0);
    let mut asked = 0;
    for step in 0..50u64 {
        asked += poll(&mut g, t0 + ms(20 * step), ms(20)).len();
    }
    assert_eq!(asked, usize::from(MAX_RETRIES));
    assert_eq!(g.next_due(), None);
    // It still knows 2 was asked for, until it ages out.
    assert_eq!(
        g.on_packet(2, false, t0 + ms(990)),
        Arrival::Late { nacked: true }
    );
}

#[test]
fn gives_up_after_a_second() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    g.on_packet(1, false, t0);
    g.on_packet(3, false, t0);
    let asked: Vec<u64> = (0..=10u64)
        .filter(|step| !poll(&mut g, t0 + ms(200 * step), ms(200)).is_empty())
        .collect();
    assert_eq!(asked, [0, 1, 2, 3, 4], "at 0, 200, .., 800 ms; not at 1 s");
    assert_eq!(g.missing_len(), 0);
    assert_eq!(g.next_due(), None);
    assert_eq!(
        g.on_packet(2, false, t0 + ms(2100)),
        Arrival::Late { nacked: false }
    );
}

#[test]
fn gives_up_once_too_far_behind() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    g.on_packet(10, false, t0);
    g.on_packet(12, false, t0);
    assert_eq!(g.missing_len(), 1);
    for seq in 13..=11 + 3000 {
        g.on_packet(seq, false, t0);
    }
    assert_eq!(g.missing_len(), 1, "3000 behind is still worth asking");
    g.on_packet(11 + 3001, false, t0);
    assert_eq!(g.missing_len(), 0);
    assert_eq!(poll(&mut g, t0, RTT), [] as [u16; 0]);
}

#[test]
fn without_reordering_seen_a_gap_is_nacked_before_a_late_packet_can_fill_it() {
    // Documented: like mediasoup (and libwebrtc while its histogram is empty), no wait.
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    g.on_packet(1, false, t0);
    g.on_packet(3, false, t0);
    assert_eq!(poll(&mut g, t0, RTT), [2]);
    assert_eq!(
        g.on_packet(2, false, t0 + ms(1)),
        Arrival::Late { nacked: true }
    );
}

#[test]
fn learned_reordering_fills_in_before_the_first_nack_is_due() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    let mut nacked = Vec::new();
    let mut now = t0;
    let arrive = |g: &mut NackGenerator, seq: u64, now: Instant, nacked: &mut Vec<u16>| {
        let arrival = g.on_packet(seq, false, now);
        nacked.extend(poll(g, now, RTT)); // the caller polls after every packet
        arrival
    };
    // 20 rounds of "a b+2 b+1": every third pair swapped on the wire, 1 ms apart.
    for round in 0..20u64 {
        let b = 3 * round;
        for seq in [b, b + 2, b + 1] {
            arrive(&mut g, seq, now, &mut nacked);
            now += ms(1);
        }
    }
    assert_eq!(
        nacked,
        [1],
        "only the first swap, before any reordering was seen"
    );
    assert_eq!(g.missing_len(), 0);

    // A real loss (61) is still asked for once two newer packets came (the learned wait) ...
    arrive(&mut g, 60, now, &mut nacked);
    arrive(&mut g, 62, now, &mut nacked);
    assert_eq!(nacked, [1]);
    assert_eq!(
        g.next_due(),
        Some(now + ms(20)),
        "... or after the 20 ms hold"
    );
    arrive(&mut g, 63, now + ms(1), &mut nacked);
    assert_eq!(nacked, [1, 61]);

    // ... and after the hold when no newer packet comes.
    arrive(&mut g, 65, now + ms(2), &mut nacked);
    assert_eq!(nacked, [1, 61]);
    assert_eq!(poll(&mut g, now + ms(21), RTT), [] as [u16; 0]);
    assert_eq!(poll(&mut g, now + ms(22), RTT), [64]);
}

#[test]
fn a_jump_of_thousands_asks_for_a_keyframe_instead() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    g.on_packet(100, false, t0);
    assert!(!g.take_keyframe_needed());
    assert_eq!(g.on_packet(30_100, false, t0), Arrival::InOrder);
    assert_eq!(g.missing_len(), 0, "nothing enumerated");
    assert!(g.take_keyframe_needed());
    assert!(!g.take_keyframe_needed(), "once per event");
    assert_eq!(poll(&mut g, t0, RTT), [] as [u16; 0]);
    // And the stream goes on from there.
    g.on_packet(30_102, false, t0);
    assert_eq!(poll(&mut g, t0, RTT), [30_101]);
}

#[test]
fn an_overflowing_list_drops_what_precedes_a_keyframe_first() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    g.on_packet(0, false, t0);
    g.on_packet(401, false, t0); // 1..=400 missing
    g.on_packet(402, true, t0); // a keyframe starts
    g.on_packet(403, true, t0);
    g.on_packet(604, false, t0); // 404..=603 missing: 600 > MAX_MISSING
    assert_eq!(
        g.missing_len(),
        200,
        "1..=400 predate the keyframe and were dropped"
    );
    assert!(!g.take_keyframe_needed());
    let mut out = [0u16; MAX_MISSING];
    let n = g.poll(t0, RTT, &mut out);
    assert_eq!(out[..n].first(), Some(&404));

    // Without a keyframe to cut at, the list is cleared and a keyframe asked for.
    let mut g = NackGenerator::new();
    g.on_packet(0, false, t0);
    g.on_packet(401, false, t0);
    g.on_packet(602, false, t0);
    assert_eq!(g.missing_len(), 0);
    assert!(g.take_keyframe_needed());
}

#[test]
fn sequence_numbers_wrap_but_order_is_kept() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    g.on_packet(65_533, false, t0);
    g.on_packet(65_534, false, t0);
    g.on_packet(65_537, false, t0); // 65535 and 65536 (seq 0 of the next cycle) missing
    assert_eq!(poll(&mut g, t0, RTT), [65_535, 0]);
    assert_eq!(
        g.on_packet(65_536, false, t0),
        Arrival::Late { nacked: true }
    );
    assert_eq!(poll(&mut g, t0 + RTT, RTT), [65_535]);
}

#[test]
fn a_small_output_buffer_leaves_the_rest_due() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    g.on_packet(0, false, t0);
    g.on_packet(6, false, t0);
    let mut out = [0u16; 2];
    assert_eq!(g.poll(t0, RTT, &mut out), 2);
    assert_eq!(out, [1, 2]);
    assert_eq!(g.next_due(), Some(t0), "3..=5 still due");
    assert_eq!(g.poll(t0, RTT, &mut out), 2);
    assert_eq!(out, [3, 4]);
    assert_eq!(g.poll(t0, RTT, &mut out), 1);
    assert_eq!(out[0], 5);
    assert_eq!(g.poll(t0, RTT, &mut []), 0);
}

#[test]
fn old_and_repeated_packets_are_classified() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    for seq in 5000..5010 {
        g.on_packet(seq, false, t0);
    }
    assert_eq!(g.on_packet(5009, false, t0), Arrival::Duplicate);
    assert_eq!(g.on_packet(5003, false, t0), Arrival::Duplicate);
    assert_eq!(
        g.on_packet(4990, false, t0),
        Arrival::Late { nacked: false },
        "before the first"
    );
    assert_eq!(g.on_packet(5009 - 1024, false, t0), Arrival::TooOld);
    assert_eq!(g.missing_len(), 0);
}

#[test]
fn hostile_numbers_and_durations_do_not_panic() {
    let t0 = Instant::now();
    let mut g = NackGenerator::new();
    g.on_packet(u64::MAX - 3, false, t0);
    g.on_packet(u64::MAX, true, t0);
    assert_eq!(
        poll(&mut g, t0, Duration::MAX),
        [u16::MAX - 2, u16::MAX - 1]
    );
    assert_eq!(
        poll(&mut g, t0 + ms(500), Duration::MAX),
        [] as [u16; 0],
        "never resent"
    );
    assert_eq!(g.on_packet(0, false, t0), Arrival::TooOld);
    assert_eq!(
        g.on_packet(1, false, t0),
        Arrival::InOrder,
        "A.1 restart far behind"
    );
    g.on_packet(1 << 47, false, t0);
    assert!(g.take_keyframe_needed());
    assert!(g.missing_len() <= MAX_MISSING);
}
