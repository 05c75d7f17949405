//! What one shard's user space costs per forwarded copy in a webinar: one simulcast publisher
//! (audio + three VP8 layers), N subscribers (default 200) on one `ShardCore`, real str0m
//! clients with DTLS-SRTP and transport-cc on the simulated network of the sfu tests, in
//! virtual time. Counted: the thread's CPU time inside the core's calls (`handle_datagram` for media
//! and the subscribers' RTCP, `handle_timeout`, `poll_output`), which includes opening each
//! publisher packet once, route, layer filter, rewrite, header and seal of every copy into the
//! shard's send queue, NACK/RTX, reports and the estimators. Not counted: the clients, the
//! simulated network and the drain of the send queue (the I/O driver's work in the server).
//!
//! Unlike the load harness (`shardcast-bench run`), no kernel and no harness share the
//! measurement, and CPU time is immune to other processes taking the core, so two builds
//! compare within a few percent on a busy machine; the kernel's share of the server's cost is
//! in docs/PERFORMANCE.md. Reading the clock costs a system call: its cost, measured at
//! start, is taken off each timed call (both figures are printed).
//!
//! Run: `cargo bench -p shardcast-sfu --bench fanout [-- SUBSCRIBERS [ROUNDS]]`.
//! Prints ns per forwarded copy for each 2 s round and the median.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::World;

/// This thread's CPU time.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What one timed call adds by reading the clock (the median of many back-to-back reads).
fn clock_overhead() -> Duration {
    let mut d: Vec<Duration> = (0..20_001)
        .map(|_| {
            let a = thread_cpu();
            thread_cpu().saturating_sub(a)
        })
        .collect();
    d.sort();
    d[d.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; numbers are ours.
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let subscribers = args.first().copied().unwrap_or(200);
    let rounds = args.get(1).copied().unwrap_or(7);

    let mut w = World::new(7);
    let publisher = w.add_publisher(
        "presenter",
        &[(Some("q"), 150), (Some("h"), 500), (Some("f"), 1500)],
    );
    for i in 0..subscribers {
        w.add_subscriber(&format!("viewer-{i}"));
    }
    assert!(
        w.run_until(Duration::from_secs(60), |w| w.all_connected()),
        "ICE/DTLS must connect"
    );
    for s in 1..=subscribers {
        w.subscribe_all(s, publisher);
    }
    // Estimates climb and every viewer settles on a layer.
    w.run_for(Duration::from_secs(10));
    let video = w.video_track(publisher);
    let mut layers = [0usize; 4];
    for m in &w.members[1..] {
        let l = w.core.forwarded_layer(m.peer, video).map_or(3, usize::from);
        layers[l.min(3)] += 1;
    }
    println!(
        "fanout: {subscribers} viewers; forwarded layer q/h/f/none = {}/{}/{}/{}",
        layers[0], layers[1], layers[2], layers[3]
    );

    let overhead = clock_overhead();
    println!("clock read: {} ns per timed call", overhead.as_nanos());
    w.core_clock = Some(thread_cpu);
    let mut per_copy = Vec::new();
    for round in 0..rounds {
        let before = w.core.stats().rtp_forwarded;
        w.core_busy = Duration::ZERO;
        w.core_timed = 0;
        w.run_for(Duration::from_secs(2));
        let copies = w.core.stats().rtp_forwarded - before;
        let raw = w.core_busy.as_nanos() as f64;
        let net = raw - (w.core_timed as f64 * overhead.as_nanos() as f64);
        let ns = net / copies.max(1) as f64;
        println!(
            "round {round}: {copies} copies, {} timed calls, {:.0} ns per copy ({:.0} before the clock's cost)",
            w.core_timed,
            ns,
            raw / copies.max(1) as f64
        );
        per_copy.push(ns);
    }
    per_copy.sort_by(f64::total_cmp);
    println!(
        "fanout/{subscribers}: median {:.0} ns per forwarded copy (min {:.0}, max {:.0})",
        per_copy[per_copy.len() / 2],
        per_copy[0],
        per_copy[per_copy.len() - 1]
    );
}
