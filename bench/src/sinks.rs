//! Sinks for the floor measurement: M UDP sockets (one per destination, so each is its own
//! 5-tuple) read by one thread with poll + recvmmsg. Every packet is counted; one in
//! `sample_every` per sink is opened (each sink is a peer with its own `SrtpOpener`, keyed
//! as the floor's destination) and its probe read back for latency and a content check. Results go into per-second slots so a window can be cut out later.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use hdrhistogram::Histogram;
use shardcast_rtp::srtp::{SrtpOpener, SEAL_SLACK};

use crate::probe;
use crate::srtp::{self, End, Profile};
use crate::udp::{self, RecvBatch, MAX_DATAGRAM};

/// What the sinks saw in one second since the epoch.
#[derive(Debug, Clone)]
pub struct Slot {
    pub packets: u64,
    pub bytes: u64,
    /// One-way latency of sampled packets, µs.
    pub latency_us: Histogram<u64>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            packets: 0,
            bytes: 0,
            latency_us: new_histogram(),
        }
    }
}

/// A latency histogram in µs, 1 µs to 60 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

/// Totals over the whole run, plus the per-second slots.
#[derive(Debug, Clone)]
pub struct SinkReport {
    pub slots: Vec<Slot>,
    /// Sampled packets whose SRTP did not open or whose probe was missing.
    pub corrupt: u64,
}

/// Live totals, readable while the sinks run (to cut a measurement window exactly).
#[derive(Debug, Default)]
pub struct Totals {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
}

/// Running sinks; `stop` them to get the report.
pub struct Sinks {
    addrs: Vec<SocketAddrV4>,
    totals: Arc<Totals>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<SinkReport>>,
}

struct Sink {
    socket: UdpSocket,
    /// Estimates each packet's rollover counter itself (from the sampled ones).
    srtp: SrtpOpener,
    seen: u64,
}

impl Sinks {
    /// Binds `count` loopback sockets and starts the reader thread (pinned to `cpu` if given).
    pub fn start(
        count: usize,
        profile: Profile,
        epoch: Instant,
        sample_every: u64,
        cpu: Option<usize>,
    ) -> std::io::Result<Sinks> {
        let mut sinks = Vec::with_capacity(count);
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let socket = udp::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None)?;
            socket.set_nonblocking(true)?;
            match socket.local_addr()? {
                SocketAddr::V4(a) => addrs.push(a),
                SocketAddr::V6(_) => unreachable!("bound to IPv4"),
            }
            sinks.push(Sink {
                socket,
                srtp: srtp::session(profile, End::Peer).opener,
                seen: 0,
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let totals = Arc::new(Totals::default());
        let thread = {
            let stop = stop.clone();
            let totals = totals.clone();
            // The opener estimates each sampled packet's rollover counter from the last one
            // it opened: that needs fewer than 2^15 sequence numbers between samples.
            let sample_every = sample_every.clamp(1, 1 << 14);
            std::thread::Builder::new()
                .name("sinks".into())
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        crate::pin::pin_current_thread(cpu);
                    }
                    read_loop(sinks, epoch, sample_every, &stop, &totals)
                })?
        };
        Ok(Sinks {
            addrs,
            totals,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addrs(&self) -> &[SocketAddrV4] {
        &self.addrs
    }

    /// (packets, bytes) received so far.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.totals.packets.load(Ordering::Relaxed),
            self.totals.bytes.load(Ordering::Relaxed),
        )
    }

    pub fn stop(mut self) -> SinkReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or(SinkReport {
                slots: Vec::new(),
                corrupt: 0,
            })
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_loop(
    mut sinks: Vec<Sink>,
    epoch: Instant,
    sample_every: u64,
    stop: &AtomicBool,
    totals: &Totals,
) -> SinkReport {
    let mut plain = vec![0u8; MAX_DATAGRAM + SEAL_SLACK];
    let mut report = SinkReport {
        slots: Vec::new(),
        corrupt: 0,
    };
    let mut fds: Vec<libc::pollfd> = sinks
        .iter()
        .map(|s| libc::pollfd {
            fd: s.socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut batch = RecvBatch::new(64);
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `fds` is a live, exclusively borrowed array of `fds.len()` pollfds.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if ready <= 0 {
            continue;
        }
        for (i, pfd) in fds.iter_mut().enumerate() {
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            pfd.revents = 0;
            let sink = &mut sinks[i];
            // Drain what is queued now; poll again for the rest.
            while let Ok(n) = batch.recv(&sink.socket) {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                let second = now.saturating_duration_since(epoch).as_secs() as usize;
                while report.slots.len() <= second {
                    report.slots.push(Slot::new());
                }
                let slot = &mut report.slots[second];
                let bytes: usize = batch.iter().map(|(_, d)| d.len()).sum();
                totals.packets.fetch_add(n as u64, Ordering::Relaxed);
                totals.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                for (_, datagram) in batch.iter() {
                    slot.packets += 1;
                    slot.bytes += datagram.len() as u64;
                    sink.seen += 1;
                    if !sink.seen.is_multiple_of(sample_every) {
                        continue;
                    }
                    let opened = sink
                        .srtp
                        .open_rtp(datagram, &mut plain)
                        .ok()
                        .and_then(|o| probe::read_probe(&plain[o.header_len..o.len]));
                    match opened {
                        Some((sent, _)) => {
                            let us = probe::latency(epoch, now, sent).as_micros() as u64;
                            let _ = slot.latency_us.record(us.max(1));
                        }
                        None => report.corrupt += 1,
                    }
                }
                if n < 64 {
                    break;
                }
            }
        }
    }
    report
}
