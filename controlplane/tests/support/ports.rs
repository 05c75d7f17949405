//! Free loopback ports for the processes a test starts (etcd, `shardcast serve`).

use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago, drawn at random from 20000–32767:
/// below the kernel's ephemeral range (32768–60999 on Debian). A port from `bind(0)` lies in
/// that range, where any outgoing connection or a parallel test's `bind(0)` may take it
/// before the process meant for it binds it — CI saw an etcd exit at start-up that way.
/// (`tests/lib.rs` draws its ports the same way.)
pub fn free_tcp_port() -> u16 {
    const FIRST: u16 = 20_000;
    const COUNT: u64 = 12_768;
    // RandomState is seeded afresh per call: parallel test processes draw different ports.
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (0..2_000u64)
        .map(|i| FIRST + (start.wrapping_add(i * 7_919) % COUNT) as u16)
        .find(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        .expect("a free loopback TCP port in 20000-32767")
}
