//! One loop turn that sends a whole fan-out at once — what a shard does with congestion
//! control off, where a frame to every subscriber leaves in the turn it arrived — must not
//! lose datagrams in the driver: every send is queued, handed to the kernel by the turn's
//! submit, and completed. Real sockets on loopback, both backends.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use shardcast_dataplane::driver::{
    bind_socket, probe_io_uring, Driver, DriverConfig, IoBackend, Waker,
};

/// 6 packets to each of 3 000 subscribers: more than the driver's 32 send batches of 256
/// hold, so the io_uring driver must reap send completions in the middle of the turn.
const BURST: u64 = 18_000;

fn burst_through(backend: IoBackend) {
    let config = DriverConfig::default();
    let socket = bind_socket("127.0.0.1:0".parse().unwrap(), config.socket_buffer_bytes).unwrap();
    let waker = Waker::new().unwrap();
    let mut driver = Driver::open(socket, waker.as_raw_fd(), backend, &config).unwrap();
    // A sink that only needs to exist: what it drops on a full receive buffer is the
    // kernel's business, not the driver's.
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to: SocketAddr = sink.local_addr().unwrap();

    // Datagrams that arrive before the burst and are not read yet: their completions sit
    // in the queue the burst reaps sends from, and must still be delivered, in order.
    for i in 0..10u8 {
        sink.send_to(&[i; 32], driver.local_addr()).unwrap();
    }
    driver
        .submit_and_wait(Some(Duration::from_millis(50)))
        .unwrap();

    // One turn: every send queued before the submit, as the shard loop does.
    let payload = [0x80u8; 200];
    for _ in 0..BURST {
        driver.send(to, &payload);
    }
    if backend == IoBackend::IoUring {
        // Full batches went to the kernel during the turn, not all at its end.
        let early = driver.stats().extra_submits;
        assert!(early >= BURST / 256 - 1, "{early} submits during the turn");
    }
    driver.submit_and_wait(Some(Duration::ZERO)).unwrap();
    // Later turns reap the completions and read what arrived.
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while (driver.stats().tx_datagrams + driver.stats().tx_dropped < BURST || received.len() < 10)
        && Instant::now() < deadline
    {
        driver.recv(&mut |from, payload| {
            if from == to {
                received.push(payload[0]);
            }
        });
        driver
            .submit_and_wait(Some(Duration::from_millis(10)))
            .unwrap();
    }
    assert_eq!(
        received,
        (0..10).collect::<Vec<u8>>(),
        "{backend}: read before and after"
    );
    let stats = driver.stats();
    assert_eq!(stats.tx_dropped, 0, "{backend}: {stats:?}");
    assert_eq!(stats.tx_errors, 0, "{backend}: {stats:?}");
    assert_eq!(stats.tx_datagrams, BURST, "{backend}: {stats:?}");
}

#[test]
fn io_uring_sends_a_turn_of_18000_datagrams_without_dropping() {
    if let Err(e) = probe_io_uring() {
        // The portable test below still runs; CI's kernel has io_uring, so this is loud.
        panic!("io_uring unavailable on this machine: {e}");
    }
    burst_through(IoBackend::IoUring);
}

#[test]
fn portable_sends_a_turn_of_18000_datagrams_without_dropping() {
    burst_through(IoBackend::Portable);
}
