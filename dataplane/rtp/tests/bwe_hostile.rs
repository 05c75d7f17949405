//! Hostile transport-cc feedback and receiver reports: duplicate and absurd sequence
//! numbers, results for packets never sent, arrival times going backwards or jumping hours,
//! 65 000 results at once, lying report blocks. Nothing panics, nothing allocates once the
//! estimator exists (a counting allocator checks it), and the estimate stays within
//! [min, max] and comes back to the link's capacity when the lies stop.

mod bwe_sim;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use bwe_sim::{Feedback, Sim};
use shardcast_rtp::bwe::{BweConfig, PacketResult, ProbeClusterId, SendSideBwe};
use shardcast_rtp::report::ReportBlock;

/// Counts this thread's allocations (tests run on several threads).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// xorshift64*: deterministic noise without a dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const LIMITS: BweConfig = BweConfig {
    initial_bps: 1_000_000,
    min_bps: 100_000,
    max_bps: 8_000_000,
};

fn within_limits(bwe: &SendSideBwe) -> bool {
    bwe.estimate()
        .is_none_or(|e| (LIMITS.min_bps..=LIMITS.max_bps).contains(&e))
}

fn hostile_batch(noise: &mut Noise, base_seq: u64, into: &mut Vec<PacketResult>) {
    into.clear();
    let kind = noise.below(6);
    for i in 0..65_000u64 {
        let arrival = match noise.below(5) {
            0 => None,
            1 => Some(Duration::MAX),
            2 => Some(Duration::from_secs(4_000 + noise.below(7_200))),
            3 => Some(Duration::from_nanos(noise.next())),
            _ => Some(Duration::from_micros(noise.below(1_000_000))),
        };
        let transport_seq = match kind {
            // Absurd and never-sent sequence numbers.
            0 => noise.next(),
            1 => base_seq + 1 + noise.below(100_000),
            // The same recent packet over and over.
            2 => base_seq.saturating_sub(5),
            // Real recent packets, arrivals running backwards.
            3 => {
                let seq = base_seq.saturating_sub(i % 2_000);
                into.push(PacketResult {
                    transport_seq: seq,
                    arrival: Some(Duration::from_secs(10_000) - Duration::from_millis(i)),
                });
                continue;
            }
            // Real recent packets, arrivals hours ahead.
            4 => {
                let seq = base_seq.saturating_sub(i % 2_000);
                into.push(PacketResult {
                    transport_seq: seq,
                    arrival: Some(Duration::from_secs(3_600 * (1 + i % 5))),
                });
                continue;
            }
            _ => base_seq.saturating_sub(noise.below(10_000)),
        };
        into.push(PacketResult {
            transport_seq,
            arrival,
        });
    }
}

#[test]
fn lies_in_feedback_do_not_break_the_estimate() {
    let mut sim = Sim::new(LIMITS, Feedback::TransportCc, 2_500_000, 4_000_000);
    sim.run_until(10.0);
    let mut noise = Noise(0x5eed_cafe_f00d_0001);
    let mut batch = Vec::with_capacity(65_000);
    for _ in 0..40 {
        hostile_batch(&mut noise, sim.sent_packets.saturating_sub(1), &mut batch);
        let now = sim.now;
        let before = allocations();
        sim.bwe.on_transport_feedback(now, &batch);
        assert_eq!(allocations(), before, "feedback handling allocated");
        assert!(within_limits(&sim.bwe), "{:?}", sim.bwe.estimate());
        sim.run_until(sim.secs() + 0.25);
        assert!(within_limits(&sim.bwe), "{:?}", sim.bwe.estimate());
    }
    let stats = sim.bwe.stats();
    assert!(
        stats.feedback_unknown > 0 && stats.feedback_duplicate > 0,
        "{stats:?}"
    );
    // The lies stop: genuine feedback brings the estimate back near the capacity.
    let calm = sim.secs();
    sim.run_until(calm + 20.0);
    let mean = sim
        .window(calm + 10.0, calm + 20.0)
        .filter_map(|s| s.estimate)
        .sum::<u64>() as f64
        / sim.window(calm + 10.0, calm + 20.0).count() as f64;
    assert!(
        (0.7 * 2.5e6..=1.05 * 2.5e6).contains(&mean),
        "mean {mean}\n{}",
        sim.dump()
    );
}

/// Random calls in random order with random values, `now` included (it may go backwards).
#[test]
fn random_calls_keep_the_invariants() {
    let mut noise = Noise(0x0dd_ba11);
    let start = Instant::now() + Duration::from_secs(3_600);
    let mut bwe = SendSideBwe::new(LIMITS);
    let mut now = start;
    let mut results = Vec::with_capacity(4_096);
    for _ in 0..200_000 {
        now = match noise.below(100) {
            0 => start - Duration::from_secs(noise.below(3_600)),
            1 => now + Duration::from_secs(noise.below(100_000)),
            _ => now + Duration::from_micros(noise.below(20_000)),
        };
        match noise.below(8) {
            0..=3 => {
                let probe = (noise.below(4) == 0).then(|| ProbeClusterId(noise.below(8) as u32));
                bwe.on_packet_sent(
                    now,
                    noise.below(10_000),
                    noise.below(70_000) as usize,
                    probe,
                );
            }
            4 => {
                results.clear();
                for _ in 0..noise.below(4_096) {
                    let arrival = (noise.below(4) != 0)
                        .then(|| Duration::from_micros(noise.next() >> noise.below(64)));
                    results.push(PacketResult {
                        transport_seq: noise.below(12_000),
                        arrival,
                    });
                }
                bwe.on_transport_feedback(now, &results);
            }
            5 => {
                let block = ReportBlock {
                    ssrc: noise.below(64) as u32,
                    fraction_lost: noise.below(256) as u8,
                    cumulative_lost: noise.next() as i32,
                    ext_highest_seq: noise.next() as u32,
                    ..ReportBlock::default()
                };
                let rtt = (noise.below(2) == 0).then(|| Duration::from_nanos(noise.next()));
                bwe.on_receiver_report(now, &[block; 3], rtt);
            }
            6 => match noise.below(3) {
                0 => bwe.on_remb(now, noise.next() >> noise.below(64)),
                1 => bwe.set_desired(now, noise.next() >> noise.below(64)),
                _ => bwe.set_transport_cc(noise.below(2) == 0),
            },
            _ => {
                if let Some(probe) = bwe.poll_probe(now) {
                    assert!(probe.target_bps <= LIMITS.max_bps, "{probe:?}");
                    assert!(probe.packets >= 5 && probe.bytes > 0, "{probe:?}");
                }
                let _ = bwe.poll_timeout();
            }
        }
        assert!(within_limits(&bwe), "{:?}", bwe.estimate());
    }
}

/// Sending and feedback never allocate once the estimator exists, whatever arrives.
#[test]
fn sending_and_feedback_do_not_allocate() {
    let start = Instant::now();
    let mut bwe = SendSideBwe::new(LIMITS);
    bwe.set_desired(start, 4_000_000);
    let results: Vec<PacketResult> = (0..65_000u64)
        .map(|s| PacketResult {
            transport_seq: s % 9_000,
            arrival: Some(Duration::from_micros(s * 400)),
        })
        .collect();
    let blocks = [ReportBlock {
        ssrc: 1,
        ext_highest_seq: 100,
        ..ReportBlock::default()
    }; 40];
    let before = allocations();
    for s in 0..20_000u64 {
        let now = start + Duration::from_micros(s * 400);
        bwe.on_packet_sent(now, s, 1200, None);
        if s % 250 == 0 {
            bwe.on_transport_feedback(now, &results);
            bwe.on_receiver_report(now, &blocks, Some(Duration::from_millis(50)));
            bwe.on_remb(now, 3_000_000);
            if let Some(p) = bwe.poll_probe(now) {
                bwe.on_packet_sent(now, s, p.bytes / p.packets, Some(p.id));
            }
        }
    }
    assert_eq!(allocations(), before);
}
