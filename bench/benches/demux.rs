//! Demux lookup: the shard's first step per datagram, a (source, destination) → peer map.
//! The table has the shape of shardcast-sfu's `Demux::by_tuple` (std `HashMap` keyed by the
//! (source, destination) `SocketAddr` pair; the protocol is always UDP); N peers, hits and misses.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// Peer i's public address: spread over many hosts and ports, as NATed clients are.
fn tuple(i: usize) -> SocketAddr {
    let host = Ipv4Addr::from(0x5000_0000u32 + (i as u32 / 4) * 13);
    SocketAddr::from((host, 20_000 + (i % 4) as u16 * 1_000 + (i % 997) as u16))
}

struct Table(HashMap<(SocketAddr, SocketAddr), u32>);

impl Table {
    fn lookup(&self, source: SocketAddr, destination: SocketAddr) -> Option<u32> {
        self.0.get(&(source, destination)).copied()
    }
}

fn build(peers: usize, local: SocketAddr) -> Table {
    let map: HashMap<_, _> = (0..peers).map(|i| ((tuple(i), local), i as u32)).collect();
    assert_eq!(map.len(), peers, "tuples are distinct");
    Table(map)
}

fn demux(c: &mut Criterion<common::ThreadCpuTime>) {
    let local = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 40_000));
    let mut group = c.benchmark_group("demux");
    for peers in [10usize, 1_000, 100_000] {
        let table = build(peers, local);
        let mut i = 0usize;
        group.bench_function(BenchmarkId::new("hit", peers), |b| {
            b.iter(|| {
                i = (i + 7919) % peers;
                table.lookup(tuple(i), local).expect("known peer")
            })
        });
        group.bench_function(BenchmarkId::new("miss", peers), |b| {
            b.iter(|| table.lookup(tuple(peers + 1), local))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = demux
}
criterion_main!(benches);
