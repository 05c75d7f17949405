//! PacketHistory: eviction by count, age and bytes; lookups across wraps; and a reused ring
//! slot never answering for a packet it no longer holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcast_rtp::recv::{Insert, PacketHistory};

const AGE: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn capacity_rounds_up_and_evicts_the_oldest() {
    let t0 = Instant::now();
    let mut h = PacketHistory::new(5, AGE, usize::MAX);
    assert_eq!(h.capacity(), 8);
    for seq in 100..108u64 {
        assert_eq!(h.insert(seq, t0, 10, seq), Insert::Stored);
    }
    assert_eq!((h.len(), h.bytes()), (8, 80));
    assert_eq!(h.insert(108, t0, 10, 108), Insert::Stored);
    assert_eq!(h.get(100), None, "the ninth pushed the first out");
    assert_eq!(h.get(101), Some(&101));
    assert_eq!(h.get(108), Some(&108));
    assert_eq!((h.len(), h.bytes()), (8, 80));
    // A gap counts against the span, not the count: 120 leaves only 113..=120 possible.
    assert_eq!(h.insert(120, t0, 10, 120), Insert::Stored);
    assert_eq!((h.len(), h.get(108), h.get(120)), (1, None, Some(&120)));
}

#[test]
fn evict_drops_packets_older_than_max_age() {
    let t0 = Instant::now();
    let mut h = PacketHistory::new(16, ms(100), usize::MAX);
    for (i, seq) in (0..4u64).enumerate() {
        h.insert(seq, t0 + ms(10 * i as u64), 100, seq);
    }
    h.evict(t0 + ms(99));
    assert_eq!(h.len(), 4);
    h.evict(t0 + ms(110));
    assert_eq!(
        (h.get(0), h.get(1), h.get(2)),
        (None, None, Some(&2)),
        "exactly max_age goes"
    );
    assert_eq!((h.len(), h.bytes()), (2, 200));
    h.evict(t0 + ms(1000));
    assert!(h.is_empty());
    assert_eq!(h.bytes(), 0);
    // Emptied, it still takes what follows.
    assert_eq!(h.insert(4, t0 + ms(1000), 100, 4), Insert::Stored);
    assert_eq!(h.get(4), Some(&4));
}

#[test]
fn the_byte_limit_evicts_the_oldest_first() {
    let t0 = Instant::now();
    let mut h = PacketHistory::new(64, AGE, 3000);
    assert_eq!(h.insert(1, t0, 1200, "a"), Insert::Stored);
    assert_eq!(h.insert(2, t0, 1200, "b"), Insert::Stored);
    assert_eq!(h.insert(3, t0, 1200, "c"), Insert::Stored);
    assert_eq!(
        (h.get(1), h.get(2), h.get(3)),
        (None, Some(&"b"), Some(&"c"))
    );
    assert_eq!(h.bytes(), 2400);
    assert_eq!(h.insert(4, t0, 3001, "too big"), Insert::TooLarge);
    assert_eq!(h.insert(5, t0, 3000, "all of it"), Insert::Stored);
    assert_eq!(
        (h.len(), h.bytes(), h.get(5)),
        (1, 3000, Some(&"all of it"))
    );
    // A late packet whose place the byte limit has to clear: nothing older than it remains
    // to evict but itself, so it is refused rather than evicting newer ones.
    assert_eq!(h.insert(4, t0, 100, "late"), Insert::Stale);
    assert_eq!(h.get(5), Some(&"all of it"));
}

#[test]
fn lookups_work_across_the_16_bit_and_ring_wraps() {
    let t0 = Instant::now();
    let mut h = PacketHistory::new(4, AGE, usize::MAX);
    for seq in 65_530..=65_541u64 {
        h.insert(seq, t0, 1, seq);
    }
    for seq in 65_538..=65_541u64 {
        assert_eq!(h.get(seq), Some(&seq));
    }
    assert_eq!(h.get(65_537), None);
    // The same 16-bit number one cycle earlier is another packet.
    assert_eq!(h.get(65_541 - 65_536), None);
}

#[test]
fn a_reused_slot_never_answers_for_another_number() {
    let t0 = Instant::now();
    let mut h = PacketHistory::new(4, AGE, usize::MAX);
    assert_eq!(h.insert(10, t0, 1, 'x'), Insert::Stored);
    assert_eq!(h.get(14), None, "same slot, different number");
    assert_eq!(h.get(6), None);
    assert_eq!(h.insert(14, t0, 1, 'y'), Insert::Stored);
    assert_eq!((h.get(10), h.get(14)), (None, Some(&'y')));
    // A late 10 would take 14's slot: refused, 14 kept.
    assert_eq!(h.insert(10, t0, 1, 'z'), Insert::Stale);
    assert_eq!((h.get(10), h.get(14)), (None, Some(&'y')));
    // A late packet inside the span is fine, and a second copy keeps the first.
    assert_eq!(h.insert(12, t0, 1, 'w'), Insert::Stored);
    assert_eq!(h.insert(12, t0, 1, 'v'), Insert::Duplicate);
    assert_eq!((h.get(12), h.len(), h.bytes()), (Some(&'w'), 2, 2));
}

#[test]
fn one_shared_payload_per_packet() {
    let t0 = Instant::now();
    let mut h: PacketHistory<Arc<[u8]>> = PacketHistory::new(8, AGE, usize::MAX);
    let payload: Arc<[u8]> = Arc::from(vec![7u8; 1200]);
    h.insert(1, t0, payload.len(), payload.clone());
    assert_eq!(Arc::strong_count(&payload), 2);
    let answer = h.get(1).cloned().expect("stored");
    assert!(Arc::ptr_eq(&answer, &payload));
    drop(answer);
    h.evict(t0 + AGE);
    assert_eq!(
        Arc::strong_count(&payload),
        1,
        "eviction releases the history's copy"
    );
}

#[test]
fn absurd_numbers_and_sizes_do_not_panic() {
    let t0 = Instant::now();
    let mut h = PacketHistory::new(0, AGE, 0);
    assert_eq!(h.capacity(), 1);
    assert_eq!(h.insert(1, t0, 1, ()), Insert::TooLarge);
    assert_eq!(h.insert(1, t0, 0, ()), Insert::Stored);

    let mut h = PacketHistory::new(1024, AGE, usize::MAX);
    assert_eq!(h.insert(u64::MAX - 1, t0, 1, 1), Insert::Stored);
    assert_eq!(h.insert(u64::MAX, t0, usize::MAX - 1, 2), Insert::Stored);
    assert_eq!(h.insert(0, t0, 1, 3), Insert::Stale);

    assert_eq!(h.get(u64::MAX), Some(&2));
    h.evict(t0 + AGE);
    assert!(h.is_empty());
    assert_eq!(h.bytes(), 0);

    // Byte totals near usize::MAX neither overflow nor let a late packet push newer ones out.
    let mut h = PacketHistory::new(1024, AGE, usize::MAX);
    h.insert(10, t0, 1, 10);
    h.insert(12, t0, usize::MAX - 1, 12);
    assert_eq!(h.insert(11, t0, usize::MAX, 11), Insert::Stale);
    assert_eq!(
        (h.get(10), h.get(12), h.bytes()),
        (None, Some(&12), usize::MAX - 1)
    );

    let mut h = PacketHistory::new(1024, AGE, usize::MAX);
    h.insert(5, t0, 1, 5);
    h.insert(5 + (1 << 40), t0, 1, 6); // a jump far past the ring: one pass over it
    assert_eq!((h.len(), h.get(5)), (1, None));
    h.evict(t0 + ms(10)); // before t0 + max_age: nothing goes
    assert_eq!(h.len(), 1);
}
