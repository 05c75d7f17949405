//! The floor on the server's own I/O driver (`shardcast_dataplane::driver::Driver`), so the
//! floor sends "with the same io backend as the server": io_uring or portable, chosen the
//! same way, and with the server's send arena: each sealed copy goes straight into a
//! `TxQueue` that is drained into the driver once per turn, as a shard does. Only the loop
//! lives here; the per-packet work is `floor::Forwarder`.

use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shardcast_dataplane::driver::{Driver, DriverConfig, IoBackend, Waker};
use shardcast_sfu::tx_queue::TxQueue;

use crate::floor::{FloorConfig, FloorCounters, Forwarder};

/// Runs the floor on `socket` with the dataplane driver until `stop` is set. Returns the
/// backend actually used (`Auto` resolved).
pub fn serve(
    socket: UdpSocket,
    backend: IoBackend,
    config: &FloorConfig,
    stop: &AtomicBool,
    counters: &FloorCounters,
) -> io::Result<IoBackend> {
    let backend = shardcast_dataplane::driver::resolve_backend(backend)?;
    socket.set_nonblocking(true)?;
    // Nobody wakes the floor: the eventfd only satisfies the driver's contract.
    let waker = Waker::new()?;
    let mut driver = Driver::open(socket, waker.as_raw_fd(), backend, &DriverConfig::default())?;
    let mut forwarder = Forwarder::new(config);
    // Sealed copies of one turn: the driver is borrowed while it hands datagrams in.
    let mut tx = TxQueue::default();
    let mut received = 0u64;
    let mut bad = 0u64;
    while !stop.load(Ordering::Relaxed) {
        driver.submit_and_wait(Some(Duration::from_millis(100)))?;
        let now = Instant::now();
        driver.recv(&mut |_, datagram| {
            received += 1;
            bad += u64::from(!forwarder.forward(now, datagram, &mut tx));
        });
        // The floor only speaks UDP.
        tx.drain(|to, sealed| driver.send(to.addr, sealed));
        counters.received.store(received, Ordering::Relaxed);
        counters.dropped_bad.store(bad, Ordering::Relaxed);
        publish_sends(&driver, counters);
    }
    // Hand over what is still queued.
    driver.submit_and_wait(Some(Duration::ZERO))?;
    publish_sends(&driver, counters);
    Ok(backend)
}

/// What the driver has sent and dropped so far, for the floor's report.
fn publish_sends(driver: &Driver, counters: &FloorCounters) {
    let stats = driver.stats();
    counters
        .forwarded
        .store(stats.tx_datagrams, Ordering::Relaxed);
    counters
        .dropped_send
        .store(stats.tx_dropped, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::testkit::check_forwarding;
    use crate::srtp::Profile;

    fn with(backend: IoBackend, profile: Profile) {
        check_forwarding(
            profile,
            Box::new(move |socket, config, stop, counters| {
                std::thread::spawn(move || {
                    let used = serve(socket, backend, &config, &stop, &counters)?;
                    assert_eq!(used, backend);
                    Ok(())
                })
            }),
        );
    }

    #[test]
    fn forwards_on_the_portable_driver() {
        with(IoBackend::Portable, Profile::AeadAes128Gcm);
    }

    #[test]
    fn forwards_on_the_io_uring_driver() {
        // The profile str0m peers negotiate (the server's own).
        with(IoBackend::IoUring, Profile::AeadAes256Gcm);
    }
}
