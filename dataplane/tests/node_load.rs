//! A media node's load is measured, not counted: `cpu` is the shard threads' CPU time over
//! wall time in their last second, and `utilization` (what placement orders nodes by and
//! calls full at 0.95) is at least that, however few peers the node has. Here a shard with
//! no peer at all is kept busy by a flood of datagrams from nobody (each read, counted and
//! dropped), as a node is by traffic its peer count does not show.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shardcast_dataplane::node::{MediaNodeApi, NodeLoad};
use shardcast_dataplane::shard::ShardConfig;
use shardcast_dataplane::{MediaNode, MediaNodeConfig};

fn load(node: &MediaNode) -> NodeLoad {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(node.load()).unwrap()
}

#[test]
fn a_busy_shard_without_peers_reports_its_cpu_as_load() {
    let node = MediaNode::start(MediaNodeConfig {
        shards: ShardConfig {
            shards: 1,
            pin: false,
            ..ShardConfig::default()
        },
        max_peers_per_shard: 100,
        ..MediaNodeConfig::default()
    })
    .expect("media node starts");
    // Two snapshots (one a second) so the share covers a whole idle second.
    std::thread::sleep(Duration::from_millis(2300));
    let idle = load(&node);
    println!(
        "idle: cpu {:.3}, utilization {:.3}",
        idle.cpu, idle.utilization
    );
    assert_eq!(idle.peers, 0);
    assert!(idle.cpu < 0.05, "an idle shard is not busy: {idle:?}");
    assert_eq!(
        idle.utilization, idle.cpu,
        "no peers: the measured share is the load"
    );
    let cpu_before = node.shard_snapshots()[0].counters.cpu_us;

    let target = node.shard_addrs()[0];
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            let junk = [0x80u8; 200];
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if sock.send_to(&junk, target).is_ok() {
                    sent += 1;
                }
            }
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(2300));
    let busy = load(&node);
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    println!(
        "flooded with {sent} datagrams: cpu {:.3}, utilization {:.3}",
        busy.cpu, busy.utilization
    );
    assert_eq!(busy.peers, 0);
    assert!(
        busy.cpu > 0.05 && busy.cpu > 4.0 * idle.cpu,
        "the flooded shard's CPU shows: idle {idle:?}, busy {busy:?}"
    );
    assert!(busy.utilization >= busy.cpu);
    assert!(node.shard_snapshots()[0].counters.cpu_us > cpu_before);
}
