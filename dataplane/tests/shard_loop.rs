//! The shard loop and both io drivers over real loopback sockets, with the echo test logic.
//! Every test runs once per backend.

mod common;

use std::time::Duration;

use common::*;
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::shard::ShardSet;
use shardcast_sfu::ids::ShardId;

const BACKENDS: [IoBackend; 2] = [IoBackend::IoUring, IoBackend::Portable];

fn start(backend: IoBackend, shards: usize) -> ShardSet<Echo> {
    ShardSet::start(&config(backend, shards), |id, _| Echo::new(id)).expect("shards start")
}

#[test]
fn datagrams_round_trip_on_every_shard() {
    for backend in BACKENDS {
        let set = start(backend, 2);
        assert_eq!(set.backend(), backend);
        let c = client();
        for shard in set.shards() {
            for i in 0..50u8 {
                c.send_to(&[ECHO, i, 7, 7], shard.local_addr).unwrap();
            }
            let got = recv_n(&c, 50);
            assert_eq!(got.len(), 50, "{backend}: echoes from {}", shard.id);
            assert!(got.iter().all(|(from, _)| *from == shard.local_addr));
            let mut seq: Vec<u8> = got.iter().map(|(_, p)| p[1]).collect();
            seq.sort_unstable();
            assert_eq!(seq, (0..50).collect::<Vec<_>>());
            let snap = wait_snapshot(shard, |s| s.driver.tx_datagrams >= 50);
            assert_eq!(snap.driver.rx_datagrams, 50, "{backend}");
            assert_eq!(snap.driver.tx_datagrams, 50, "{backend}");
            assert_eq!(snap.backend, backend);
        }
    }
}

#[test]
fn bursts_to_one_destination_use_gso_and_arrive_whole() {
    for backend in BACKENDS {
        let set = start(backend, 1);
        let shard = &set.shards()[0];
        let c = client();
        // 40 datagrams of 1200 bytes, then one of 1000: runs of equal size to one peer.
        c.send_to(&[BURST, 40, 0x04, 0xb0], shard.local_addr)
            .unwrap();
        let got = recv_n(&c, 40);
        assert_eq!(got.len(), 40, "{backend}");
        assert!(got.iter().all(|(_, p)| p.len() == 1200));
        let snap = wait_snapshot(shard, |s| s.driver.tx_datagrams >= 40);
        assert_eq!(snap.driver.tx_datagrams, 40, "{backend}");
        assert!(
            snap.driver.tx_gso_messages >= 1,
            "{backend}: expected GSO sends, got {:?}",
            snap.driver
        );
        assert!(snap.driver.tx_gso_messages < 40);
    }
}

#[test]
fn a_dry_buffer_ring_is_rearmed_and_nothing_is_lost() {
    for backend in BACKENDS {
        let mut cfg = config(backend, 1);
        cfg.driver.recv_buffers = 4;
        let set = ShardSet::start(&cfg, |id, _| Echo::new(id)).unwrap();
        let shard = &set.shards()[0];
        let c = client();
        // Keep the shard busy while a flood queues up in its socket.
        shard
            .send(Command::Sleep(Duration::from_millis(300)))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..100u8 {
            c.send_to(&[ECHO, i], shard.local_addr).unwrap();
        }
        let got = recv_n(&c, 100);
        assert_eq!(got.len(), 100, "{backend}");
        if backend == IoBackend::IoUring {
            let snap = wait_snapshot(shard, |s| s.driver.rx_datagrams >= 100);
            assert!(snap.driver.rx_no_buffers >= 1, "{:?}", snap.driver);
            assert!(snap.driver.rx_rearms >= 1, "{:?}", snap.driver);
        }
    }
}

#[test]
fn commands_wake_an_idle_shard_through_its_eventfd() {
    for backend in BACKENDS {
        let set = start(backend, 2);
        for shard in set.shards() {
            for _ in 0..3 {
                let (tx, rx) = std::sync::mpsc::channel();
                shard.send(Command::Ping(tx)).unwrap();
                assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(shard.id));
                std::thread::sleep(Duration::from_millis(20));
            }
            let snap = wait_snapshot(shard, |s| s.counters.commands >= 3);
            assert_eq!(snap.counters.commands, 3, "{backend}");
            // The echo logic has no timers: its turns are all woken by input.
            assert_eq!(snap.counters.timeout_turns, 0, "{backend}");
            assert!(snap.driver.wakeups >= 1, "{backend}: {:?}", snap.driver);
        }
        // An idle shard sleeps in its wait (an armed eventfd read must not spin the loop).
        let idle = &set.shards()[0];
        let before = wait_snapshot(idle, |_| true).counters.turns;
        std::thread::sleep(Duration::from_millis(2500));
        let after = wait_snapshot(idle, |s| s.counters.turns > before)
            .counters
            .turns;
        assert!(
            after - before < 50,
            "{backend}: {} turns while idle",
            after - before
        );
    }
}

#[test]
fn a_full_cross_shard_queue_drops_and_counts_without_blocking() {
    for backend in BACKENDS {
        let mut cfg = config(backend, 2);
        cfg.cross_shard_queue = 8;
        let set = ShardSet::start(&cfg, |id, _| Echo::new(id)).unwrap();
        let (s0, s1) = (&set.shards()[0], &set.shards()[1]);
        let c = client();
        s1.send(Command::Sleep(Duration::from_millis(500))).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..100u8 {
            c.send_to(&[FORWARD, 1, i], s0.local_addr).unwrap();
        }
        // Shard 0 is not blocked by its full peer queue: it still answers.
        c.send_to(&[ECHO, 0xee], s0.local_addr).unwrap();
        let first = recv_n(&c, 1);
        assert_eq!(first.len(), 1, "{backend}");
        assert_eq!(first[0].0, s0.local_addr);
        let snap0 = wait_snapshot(s0, |s| s.driver.rx_datagrams >= 101);
        let sent = snap0.counters.cross_shard_sent;
        assert!(snap0.counters.cross_shard_dropped > 0, "{backend}");
        assert_eq!(sent + snap0.counters.cross_shard_dropped, 100, "{backend}");
        // Whatever was queued is delivered once shard 1 wakes, from shard 1's socket.
        let got = recv_n(&c, sent as usize);
        assert_eq!(got.len() as u64, sent, "{backend}");
        assert!(got.iter().all(|(from, _)| *from == s1.local_addr));
        let snap1 = wait_snapshot(s1, |s| s.logic.forwarded_in >= sent);
        assert_eq!(snap1.logic.forwarded_in, sent);
    }
}

#[test]
fn a_panic_in_the_logic_is_counted_and_the_shard_goes_on() {
    for backend in BACKENDS {
        let set = start(backend, 1);
        let shard = &set.shards()[0];
        let c = client();
        c.send_to(&[PANIC], shard.local_addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        c.send_to(&[ECHO, 1], shard.local_addr).unwrap();
        assert_eq!(recv_n(&c, 1).len(), 1, "{backend}");
        let snap = wait_snapshot(shard, |s| s.counters.panics >= 1);
        assert_eq!(snap.counters.panics, 1, "{backend}");
        assert_eq!(snap.shard, ShardId(0));
    }
}

#[test]
fn auto_resolves_to_a_working_backend() {
    let set = start(IoBackend::Auto, 1);
    assert_ne!(set.backend(), IoBackend::Auto);
    let c = client();
    c.send_to(&[ECHO], set.shards()[0].local_addr).unwrap();
    assert_eq!(recv_n(&c, 1).len(), 1);
}
