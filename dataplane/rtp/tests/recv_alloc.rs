//! No allocation per packet: after creation, feeding packets, polling, reporting and
//! storing/looking up/evicting history never touch the allocator. A counting global
//! allocator (this test binary only) counts allocations made by the current thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use shardcast_rtp::recv::ntp::{self, NtpClock};
use shardcast_rtp::recv::{NackGenerator, PacketHistory, ReceiveStats};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller's contract is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn the_per_packet_paths_do_not_allocate() {
    let t0 = Instant::now();
    let clock = NtpClock::new(t0, Duration::from_secs(1_700_000_000));
    let mut stats = ReceiveStats::new(1, 90_000);
    let mut nack = NackGenerator::new();
    let mut history: PacketHistory<[u8; 16]> =
        PacketHistory::new(512, Duration::from_secs(1), 600_000);
    let mut out = [0u16; 32];

    let probe = allocations();
    let counted: Vec<u8> = Vec::with_capacity(8);
    assert_eq!(allocations() - probe, 1, "the counter counts");
    drop(counted);

    let before = allocations();
    let mut seq = 60_000u64;
    for i in 0..20_000u64 {
        let now = t0 + Duration::from_millis(i);
        // Loss, reordering, duplicates, a long burst and a jump of thousands along the way.
        seq += match i {
            5_000 => 700,
            12_000 => 30_000,
            _ if i % 97 == 0 => 3,
            _ => 1,
        };
        let order: &[u64] = if i % 53 == 0 {
            &[seq, seq - 1, seq - 1]
        } else {
            &[seq]
        };
        for &s in order {
            stats.on_packet(s, (s * 30) as u32, now, i % 89 == 0);
            nack.on_packet(s, i % 300 == 0, now);
            history.insert(s, now, 1200, [s as u8; 16]);
        }
        nack.poll(now, Duration::from_millis(40), &mut out);
        let _ = nack.next_due();
        let _ = history.get(seq - 100);
        if i % 1000 == 0 {
            let _ = nack.take_keyframe_needed();
            stats.on_sender_report(clock.ntp(now), 0, now);
            let block = stats.report_block(now);
            let _ = ntp::rtt(clock.ntp(now), block.last_sr, block.delay_since_last_sr);
            history.evict(now);
        }
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations on the per-packet paths"
    );
    // The jump of 30 000 restarted the counts (RFC 3550 A.1); 8000 packets followed it.
    assert!(stats.packets_received() > 7_000);
}
