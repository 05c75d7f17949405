//! Shards: one pinned thread per core, each owning its socket driver, its logic (the SFU core
//! in production, small echo logics in tests) and its queues.
//!
//! The loop of one shard, each turn:
//! completions → datagrams to the logic → ICE-TCP frames (only when its epoll instance is
//! ready, see `crate::tcp`) → cross-shard messages → commands → timeout → drain the logic's
//! output (sends queued on the driver or framed onto TCP connections, cross-shard messages
//! pushed with `try_send`) → TCP writes → one submit-and-wait until the next deadline or a
//! wake-up.
//! Shards share nothing on the packet path: bounded crossbeam queues carry typed messages and
//! an eventfd wakes the receiver. A full queue drops and counts; a shard never blocks on
//! another. Counters are plain fields, copied about once a second into a snapshot that the
//! node API reads (`try_lock` on the shard side, so a slow reader costs a skipped flush,
//! never a stalled shard).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use shardcast_sfu::ids::ShardId;

use crate::driver::{self, Driver, DriverConfig, DriverStats, IoBackend, Waker};
use crate::tcp::{TcpConfig, TcpPort, TcpStats};
use str0m::net::Protocol;

/// What runs inside a shard. Sans-IO: it is handed time, datagrams, messages and commands,
/// and writes its output into an `Outbox`.
pub trait ShardLogic: 'static {
    /// A node-API request for this shard (replies travel inside it).
    type Command: Send + 'static;
    /// What one shard hands another (a decrypted media packet, a keyframe request).
    type Message: Send + 'static;
    /// The logic's own counters, copied into the shard snapshot.
    type Stats: Clone + Default + Send + 'static;

    fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        payload: &[u8],
    );
    /// One RFC 4571 frame from the ICE-TCP connection `source` to our listener `destination`.
    /// Returns whether the logic now knows that connection (its peer's ICE agent accepted a
    /// check from it); a connection whose first frame it does not know is closed. The default
    /// takes no TCP.
    fn handle_tcp_frame(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        payload: &[u8],
    ) -> bool {
        let _ = (now, source, destination, payload);
        false
    }
    /// The shard listens for ICE-TCP at `addr` (called once, before any input).
    fn set_tcp_addr(&mut self, addr: SocketAddr) {
        let _ = addr;
    }
    fn handle_shard_message(&mut self, now: Instant, from: ShardId, message: Self::Message);
    fn handle_command(&mut self, now: Instant, command: Self::Command);
    fn handle_timeout(&mut self, now: Instant);
    /// Writes all pending output into `out`; returns the next deadline, if any.
    fn drain_output(
        &mut self,
        now: Instant,
        out: &mut Outbox<'_, Self::Message>,
    ) -> Option<Instant>;
    fn stats(&self) -> Self::Stats;
}

/// Shard-level counters (the driver and the logic keep their own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCounters {
    pub turns: u64,
    /// Turns in which the logic's deadline had passed (its timers ran), with or without input.
    pub timeout_turns: u64,
    pub commands: u64,
    pub cross_shard_sent: u64,
    pub cross_shard_received: u64,
    /// Messages dropped because the receiving shard's queue was full.
    pub cross_shard_dropped: u64,
    /// Messages for a shard that does not exist.
    pub cross_shard_misrouted: u64,
    /// Panics caught at the shard level (the logic catches per-peer panics itself).
    pub panics: u64,
    pub driver_errors: u64,
    /// CPU time the shard thread used since it started, in microseconds.
    #[serde(default)]
    pub cpu_us: u64,
}

/// What a shard last published about itself.
#[derive(Debug, Clone)]
pub struct ShardSnapshot<S> {
    pub shard: ShardId,
    pub backend: IoBackend,
    pub local_addr: SocketAddr,
    /// The ICE-TCP listening address (None: ICE-TCP off).
    pub tcp_addr: Option<SocketAddr>,
    pub driver: DriverStats,
    /// ICE-TCP counters (all zero when it is off).
    pub tcp: TcpStats,
    pub counters: ShardCounters,
    pub logic: S,
    /// When the snapshot was taken (None before the first flush).
    pub at: Option<Instant>,
    /// The shard thread's CPU time over wall time between its last two flushes (about a
    /// second), 0.0 ..= 1.0: how busy the shard is, measured, whatever its peers carry.
    pub cpu: f32,
}

/// Start-up parameters of a set of shards.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Number of shards; `0` = one per available CPU.
    pub shards: usize,
    /// Address every shard socket binds to. Must be the address peers reach (it becomes the
    /// ICE host candidate), so not the unspecified address.
    pub bind_ip: IpAddr,
    /// Shard i binds `base_port + i`; `0` lets the kernel pick a port per shard.
    pub base_port: u16,
    pub backend: IoBackend,
    /// CPUs to pin shard i to (`cpus[i % len]`); empty = the i-th CPU of the machine.
    pub cpus: Vec<usize>,
    /// Whether to pin at all (tests on a shared machine may not want to).
    pub pin: bool,
    pub driver: DriverConfig,
    /// ICE-TCP: a listener per shard on `bind_ip` (None: UDP only).
    pub tcp: Option<TcpConfig>,
    pub command_queue: usize,
    pub cross_shard_queue: usize,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            shards: 0,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 0,
            backend: IoBackend::Auto,
            cpus: Vec::new(),
            pin: true,
            driver: DriverConfig::default(),
            tcp: Some(TcpConfig::default()),
            command_queue: 1024,
            cross_shard_queue: 4096,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shard configuration: {0}")]
    Config(String),
    #[error("shard {shard}: binding {addr}: {source}")]
    Bind {
        shard: u16,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("io backend {backend}: {source}")]
    Backend {
        backend: IoBackend,
        source: std::io::Error,
    },
    #[error("shard {shard} failed to start: {message}")]
    Start { shard: u16, message: String },
}

/// Why a command did not reach its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("shard command queue is full")]
    Full,
    #[error("shard is not running")]
    Stopped,
    #[error("no such shard")]
    NoSuchShard,
}

struct PeerLink<M> {
    sender: Sender<M>,
    waker: Arc<Waker>,
}

/// Where a logic writes its output during `drain_output`.
pub struct Outbox<'a, M> {
    shard: ShardId,
    driver: &'a mut Driver,
    peers: &'a [Option<PeerLink<M>>],
    tcp: Option<&'a mut TcpPort>,
    counters: &'a mut ShardCounters,
}

impl<M> Outbox<'_, M> {
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Queues a datagram on this shard's socket (sent at the end of the turn).
    pub fn transmit(&mut self, destination: SocketAddr, payload: &[u8]) {
        self.driver.send(destination, payload);
    }

    /// Queues a datagram for a candidate pair of protocol `proto`: UDP on the shard's socket,
    /// TCP framed onto the ICE-TCP connection from `destination` (dropped and counted when
    /// there is none, or its send queue is full).
    pub fn transmit_over(&mut self, proto: Protocol, destination: SocketAddr, payload: &[u8]) {
        match proto {
            Protocol::Udp => self.driver.send(destination, payload),
            _ => match self.tcp.as_deref_mut() {
                Some(tcp) => tcp.send(destination, payload),
                None => tracing::trace!(%destination, "tcp datagram without ice-tcp: dropped"),
            },
        }
    }

    /// Hands `message` to another shard; drops and counts it when that shard's queue is full.
    /// Returns whether it was queued.
    pub fn to_shard(&mut self, shard: ShardId, message: M) -> bool {
        let Some(Some(peer)) = self.peers.get(shard.0 as usize) else {
            self.counters.cross_shard_misrouted += 1;
            return false;
        };
        match peer.sender.try_send(message) {
            Ok(()) => {
                self.counters.cross_shard_sent += 1;
                peer.waker.wake();
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.cross_shard_dropped += 1;
                false
            }
        }
    }
}

/// The node's handle on one running shard.
pub struct ShardHandle<L: ShardLogic> {
    pub id: ShardId,
    pub local_addr: SocketAddr,
    /// The ICE-TCP listening address (None: ICE-TCP off).
    pub tcp_addr: Option<SocketAddr>,
    commands: Sender<L::Command>,
    waker: Arc<Waker>,
    snapshot: Arc<Mutex<ShardSnapshot<L::Stats>>>,
}

impl<L: ShardLogic> ShardHandle<L> {
    /// Queues a command and wakes the shard. Never blocks.
    pub fn send(&self, command: L::Command) -> Result<(), CommandError> {
        match self.commands.try_send(command) {
            Ok(()) => {
                self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(CommandError::Full),
            Err(TrySendError::Disconnected(_)) => Err(CommandError::Stopped),
        }
    }

    /// The shard's last published counters (at most about a second old).
    pub fn snapshot(&self) -> ShardSnapshot<L::Stats> {
        match self.snapshot.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A running set of shards; dropping it stops and joins them.
pub struct ShardSet<L: ShardLogic> {
    shards: Vec<ShardHandle<L>>,
    backend: IoBackend,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Resolves the shard count: `0` means one per CPU.
pub fn shard_count(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

impl<L: ShardLogic> ShardSet<L> {
    /// Binds every shard's socket, resolves the io backend once, and starts the threads.
    /// `make_logic(shard, local_addr)` runs on the shard's own thread.
    pub fn start<F>(config: &ShardConfig, make_logic: F) -> Result<Self, ShardError>
    where
        F: Fn(ShardId, SocketAddr) -> L + Send + Sync + 'static,
    {
        let n = shard_count(config.shards);
        if n > u16::MAX as usize {
            return Err(ShardError::Config(format!("too many shards: {n}")));
        }
        if config.bind_ip.is_unspecified() {
            return Err(ShardError::Config(
                "bind_ip must be a concrete address: it is the ICE host candidate".into(),
            ));
        }
        let backend =
            driver::resolve_backend(config.backend).map_err(|source| ShardError::Backend {
                backend: config.backend,
                source,
            })?;
        let mut sockets = Vec::with_capacity(n);
        for i in 0..n {
            let port = if config.base_port == 0 {
                0
            } else {
                config.base_port.checked_add(i as u16).ok_or_else(|| {
                    ShardError::Config(format!("base_port {} + {i} overflows", config.base_port))
                })?
            };
            let addr = SocketAddr::new(config.bind_ip, port);
            let socket =
                driver::bind_socket(addr, config.driver.socket_buffer_bytes).map_err(|source| {
                    ShardError::Bind {
                        shard: i as u16,
                        addr,
                        source,
                    }
                })?;
            let listener = match &config.tcp {
                None => None,
                Some(tcp) => {
                    let port = if tcp.base_port == 0 {
                        0
                    } else {
                        tcp.base_port.checked_add(i as u16).ok_or_else(|| {
                            ShardError::Config(format!(
                                "tcp base_port {} + {i} overflows",
                                tcp.base_port
                            ))
                        })?
                    };
                    let addr = SocketAddr::new(config.bind_ip, port);
                    let l = crate::tcp::bind_listener(addr).map_err(|source| ShardError::Bind {
                        shard: i as u16,
                        addr,
                        source,
                    })?;
                    Some(l)
                }
            };
            sockets.push((socket, listener));
        }
        let wakers: Vec<Arc<Waker>> = (0..n)
            .map(|_| Waker::new().map(Arc::new))
            .collect::<Result<_, _>>()
            .map_err(|source| ShardError::Backend { backend, source })?;
        // One bounded queue per ordered pair of shards: senders[from][to], receivers[to].
        let mut outgoing: Vec<Vec<Option<PeerLink<L::Message>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut incoming: Vec<Vec<(ShardId, Receiver<L::Message>)>> =
            (0..n).map(|_| Vec::new()).collect();
        for (from, links) in outgoing.iter_mut().enumerate() {
            for (to, slot) in links.iter_mut().enumerate() {
                if from == to {
                    continue;
                }
                let (tx, rx) = bounded(config.cross_shard_queue.max(1));
                *slot = Some(PeerLink {
                    sender: tx,
                    waker: wakers[to].clone(),
                });
                incoming[to].push((ShardId(from as u16), rx));
            }
        }
        let machine_cpus = core_affinity::get_core_ids().unwrap_or_default();
        let make_logic = Arc::new(make_logic);
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut shards = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (i, (((socket, listener), peers), incoming)) in
            sockets.into_iter().zip(outgoing).zip(incoming).enumerate()
        {
            let id = ShardId(i as u16);
            let local_addr = socket.local_addr().map_err(|source| ShardError::Bind {
                shard: i as u16,
                addr: SocketAddr::new(config.bind_ip, 0),
                source,
            })?;
            let tcp_addr = match &listener {
                Some(l) => Some(l.local_addr().map_err(|source| ShardError::Bind {
                    shard: i as u16,
                    addr: SocketAddr::new(config.bind_ip, 0),
                    source,
                })?),
                None => None,
            };
            let (cmd_tx, cmd_rx) = bounded(config.command_queue.max(1));
            let snapshot = Arc::new(Mutex::new(ShardSnapshot {
                shard: id,
                backend,
                local_addr,
                tcp_addr,
                driver: DriverStats::default(),
                tcp: TcpStats::default(),
                counters: ShardCounters::default(),
                logic: L::Stats::default(),
                at: None,
                cpu: 0.0,
            }));
            let cpu = if !config.pin {
                None
            } else if config.cpus.is_empty() {
                machine_cpus.get(i % machine_cpus.len().max(1)).copied()
            } else {
                let id = config.cpus[i % config.cpus.len()];
                Some(core_affinity::CoreId { id })
            };
            let ctx = ShardThread {
                id,
                socket: Some(socket),
                tcp: listener.map(|l| (l, config.tcp.clone().unwrap_or_default())),
                backend,
                driver_config: config.driver.clone(),
                waker: wakers[i].clone(),
                peers,
                incoming,
                commands: cmd_rx,
                snapshot: snapshot.clone(),
                stop: stop.clone(),
                cpu,
            };
            let make = make_logic.clone();
            let ready = ready_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || ctx.run(&*make, ready))
                .map_err(|e| ShardError::Start {
                    shard: i as u16,
                    message: e.to_string(),
                })?;
            threads.push(thread);
            shards.push(ShardHandle {
                id,
                local_addr,
                tcp_addr,
                commands: cmd_tx,
                waker: wakers[i].clone(),
                snapshot,
            });
        }
        drop(ready_tx);
        let set = ShardSet {
            shards,
            backend,
            stop,
            threads,
        };
        for _ in 0..n {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((shard, Err(message))) => return Err(ShardError::Start { shard, message }),
                Err(_) => {
                    return Err(ShardError::Start {
                        shard: 0,
                        message: "shard thread exited during start-up".into(),
                    })
                }
            }
        }
        Ok(set)
    }

    pub fn shards(&self) -> &[ShardHandle<L>] {
        &self.shards
    }

    pub fn get(&self, shard: ShardId) -> Option<&ShardHandle<L>> {
        self.shards.get(shard.0 as usize)
    }

    /// The backend actually in use (`Auto` resolved).
    pub fn backend(&self) -> IoBackend {
        self.backend
    }
}

impl<L: ShardLogic> Drop for ShardSet<L> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for s in &self.shards {
            s.waker.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct ShardThread<L: ShardLogic> {
    id: ShardId,
    socket: Option<std::net::UdpSocket>,
    tcp: Option<(std::net::TcpListener, TcpConfig)>,
    backend: IoBackend,
    driver_config: DriverConfig,
    waker: Arc<Waker>,
    peers: Vec<Option<PeerLink<L::Message>>>,
    incoming: Vec<(ShardId, Receiver<L::Message>)>,
    commands: Receiver<L::Command>,
    snapshot: Arc<Mutex<ShardSnapshot<L::Stats>>>,
    stop: Arc<AtomicBool>,
    /// The CPU to pin to (core_affinity calls it a `CoreId`); None: not pinned.
    cpu: Option<core_affinity::CoreId>,
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`; zero if unavailable).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Inputs drained per turn from each queue, so one busy source cannot starve the socket.
const QUEUE_BUDGET: usize = 1024;

impl<L: ShardLogic> ShardThread<L> {
    fn run<F>(mut self, make_logic: &F, ready: mpsc::Sender<(u16, Result<(), String>)>)
    where
        F: Fn(ShardId, SocketAddr) -> L,
    {
        let _span = tracing::info_span!("shard", id = self.id.0).entered();
        if let Some(cpu) = self.cpu {
            if !core_affinity::set_for_current(cpu) {
                tracing::warn!(cpu = cpu.id, "could not pin shard thread");
            }
        }
        let socket = self.socket.take().expect("socket is set at spawn");
        let mut driver = match Driver::open(
            socket,
            std::os::fd::AsRawFd::as_raw_fd(&*self.waker),
            self.backend,
            &self.driver_config,
        ) {
            Ok(d) => d,
            Err(e) => {
                let _ = ready.send((self.id.0, Err(e.to_string())));
                return;
            }
        };
        let local_addr = driver.local_addr();
        let mut tcp = match self.tcp.take() {
            None => None,
            Some((listener, config)) => match TcpPort::new(listener, config, Instant::now()) {
                Ok(port) => {
                    driver.watch(std::os::fd::AsRawFd::as_raw_fd(&port));
                    Some(port)
                }
                Err(e) => {
                    let _ = ready.send((self.id.0, Err(format!("ice-tcp: {e}"))));
                    return;
                }
            },
        };
        let mut logic = make_logic(self.id, local_addr);
        let tcp_addr = tcp.as_ref().map(TcpPort::local_addr);
        if let Some(addr) = tcp_addr {
            logic.set_tcp_addr(addr);
        }
        let _ = ready.send((self.id.0, Ok(())));
        drop(ready);

        let mut counters = ShardCounters::default();
        let mut deadline: Option<Instant> = None;
        let mut last_flush = Instant::now();
        let mut last_cpu = thread_cpu_time();
        while !self.stop.load(Ordering::Relaxed) {
            counters.turns += 1;
            let now = Instant::now();
            let turn = catch_unwind(AssertUnwindSafe(|| {
                driver.recv(&mut |source, payload| {
                    logic.handle_datagram(now, source, local_addr, payload);
                });
                // A UDP-only turn stops at the flag test (and the 10 ms look, see tcp).
                if let (Some(port), Some(addr)) = (tcp.as_mut(), tcp_addr) {
                    if driver.take_watch_ready() || port.wants_poll(now) {
                        port.poll(now, &mut |source, frame| {
                            logic.handle_tcp_frame(now, source, addr, frame)
                        });
                    }
                    if port.deadline().is_some_and(|d| d <= now) {
                        port.sweep(now);
                    }
                }
                // The wait consumed the eventfd; clear before draining (see driver::Waker).
                self.waker.clear();
                for (from, rx) in &self.incoming {
                    for message in rx.try_iter().take(QUEUE_BUDGET) {
                        counters.cross_shard_received += 1;
                        logic.handle_shard_message(now, *from, message);
                    }
                }
                for command in self.commands.try_iter().take(QUEUE_BUDGET) {
                    counters.commands += 1;
                    logic.handle_command(now, command);
                }
                if deadline.is_some_and(|d| d <= now) {
                    counters.timeout_turns += 1;
                    logic.handle_timeout(now);
                }
                let mut out = Outbox {
                    shard: self.id,
                    driver: &mut driver,
                    peers: &self.peers,
                    tcp: tcp.as_mut(),
                    counters: &mut counters,
                };
                let next = logic.drain_output(now, &mut out);
                if let Some(port) = tcp.as_mut() {
                    port.flush(now);
                }
                next
            }));
            match turn {
                Ok(next) => deadline = next,
                Err(_) => {
                    counters.panics += 1;
                    tracing::error!("shard logic panicked; continuing with the next turn");
                    deadline = Some(Instant::now());
                }
            }
            let after = Instant::now();
            if after.duration_since(last_flush) >= STATS_INTERVAL {
                if let Ok(mut s) = self.snapshot.try_lock() {
                    let cpu = thread_cpu_time();
                    let wall = after.duration_since(last_flush).as_secs_f64();
                    s.cpu = (cpu.saturating_sub(last_cpu).as_secs_f64() / wall).min(1.0) as f32;
                    counters.cpu_us = cpu.as_micros() as u64;
                    last_cpu = cpu;
                    s.driver = driver.stats();
                    s.tcp = tcp.as_ref().map(TcpPort::stats).unwrap_or_default();
                    s.counters = counters;
                    s.logic = logic.stats();
                    s.at = Some(after);
                    last_flush = after;
                }
            }
            let stats_due = last_flush + STATS_INTERVAL;
            let mut wake_at = deadline.map_or(stats_due, |d| d.min(stats_due));
            if let Some(d) = tcp.as_ref().and_then(TcpPort::deadline) {
                wake_at = wake_at.min(d);
            }
            let more_queued = !self.commands.is_empty()
                || self.incoming.iter().any(|(_, rx)| !rx.is_empty())
                || tcp.as_ref().is_some_and(TcpPort::has_backlog);
            let timeout = if more_queued {
                Duration::ZERO
            } else {
                wake_at.saturating_duration_since(after)
            };
            if let Err(e) = driver.submit_and_wait(Some(timeout)) {
                counters.driver_errors += 1;
                tracing::warn!(error = %e, "driver wait failed");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        // Final flush so a stopped shard's counters are complete.
        if let Ok(mut s) = self.snapshot.lock() {
            s.driver = driver.stats();
            s.tcp = tcp.as_ref().map(TcpPort::stats).unwrap_or_default();
            s.counters = counters;
            s.logic = logic.stats();
            s.at = Some(Instant::now());
        }
    }
}
