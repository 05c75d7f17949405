//! ICE-TCP (RFC 6544 passive candidates, RFC 4571 framing) for one shard: its listener, its
//! connections, their receive and send buffers, limits and counters.
//!
//! A shard that has a `TcpPort` offers its listening address as a passive TCP host candidate.
//! The port lives on the shard thread, beside the UDP driver: one mio `Poll` (an epoll
//! instance) holds the listener and every connection, and the driver watches that one
//! descriptor (`Driver::watch`), so a UDP-only turn costs one flag test. Frames read here go
//! to the same core input as UDP datagrams (with `Protocol::Tcp`); what the core sends to a
//! TCP remote is framed into that connection's bounded send queue and written at the end of
//! the turn.
//!
//! Bounds (all counted in `TcpStats`): connections per shard; a frame longer than
//! `max_frame` (or empty) closes its connection; a connection whose first frame the logic
//! does not accept as a STUN check it authenticates, or that sends none within
//! `handshake_timeout`, is closed; so is one silent for `idle_timeout` (half-open peers) and
//! one whose send queue has not moved for `stall_timeout`. A full send queue drops whole
//! frames; the kernel's send buffer below it is capped (`send_buffer_bytes`) so that a client
//! that stops reading shows up in that queue, not in megabytes the kernel holds. Reads and
//! accepts per turn are budgeted, so a busy connection cannot hold the shard. Must never
//! block and never grow a buffer past its limit.

mod framing;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use foldhash::HashMap;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};

pub use framing::{Deframer, FrameError};

/// Limits of a shard's ICE-TCP port.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Shard i listens on `base_port + i`; 0 lets the kernel pick a port per shard.
    pub base_port: u16,
    /// Open connections per shard; more are accepted and closed at once (counted).
    pub max_connections: usize,
    /// Longest frame accepted; a longer one (or a zero length) closes the connection.
    pub max_frame: usize,
    /// Bytes queued per connection toward the client; a frame that does not fit is dropped.
    pub send_queue_bytes: usize,
    /// SO_SNDBUF of every accepted connection (the kernel reserves twice this, for its own
    /// bookkeeping, and stops autotuning it). Without it Linux grows a connection's send
    /// buffer up to `net.ipv4.tcp_wmem` (4 MiB by default): a client that stops reading
    /// would swallow seconds of media into a buffer nothing counts, `send_queue_bytes`
    /// would never fill and the stall clock (which starts when the kernel refuses bytes)
    /// would not run. Small, so overflow is counted and the stall seen in our own queue; a
    /// media frame that waited more than about a second is useless anyway.
    pub send_buffer_bytes: usize,
    /// A connection must have sent a STUN check its peer accepts this soon after accept.
    pub handshake_timeout: Duration,
    /// A connection that has received nothing this long is closed.
    pub idle_timeout: Duration,
    /// A connection whose queued bytes have not moved for this long is closed.
    pub stall_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            base_port: 0,
            max_connections: 256,
            max_frame: 1500,
            send_queue_bytes: 256 * 1024,
            send_buffer_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of one shard's ICE-TCP port (plain fields; the shard flushes them with its
/// snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpStats {
    /// Connections open now (a gauge).
    pub connections: u64,
    pub accepted: u64,
    /// Connections accepted over `max_connections` and closed at once.
    pub rejected_full: u64,
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Frames dropped because the connection's send queue was full.
    pub send_dropped: u64,
    /// Frames the core addressed to a TCP remote with no open connection.
    pub no_connection: u64,
    /// Closed: the first frame was not a check the peer accepts.
    pub closed_unverified: u64,
    /// Closed: no accepted check within `handshake_timeout`.
    pub closed_handshake_timeout: u64,
    /// Closed: nothing received for `idle_timeout`.
    pub closed_idle: u64,
    /// Closed: the send queue did not move for `stall_timeout`.
    pub closed_stalled: u64,
    /// Closed: a zero-length or over-long frame.
    pub closed_bad_frame: u64,
    /// Closed by the client (end of stream or reset).
    pub closed_by_peer: u64,
    /// Accept, read or write errors other than the above.
    pub errors: u64,
}

// mio keeps `Token(usize::MAX)` for itself.
const LISTENER: Token = Token(usize::MAX - 1);
/// Accepts per turn, and reads per connection per turn (each up to one buffer).
const ACCEPT_BUDGET: usize = 64;
const READ_BUDGET: usize = 8;
/// How often the timeouts are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// The longest the shard waits without looking at the epoll instance itself (io_uring
/// turns that do not wait may not see its readiness).
const FORCED_POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    Unverified,
    HandshakeTimeout,
    Idle,
    Stalled,
    BadFrame,
    ByPeer,
    Error,
}

struct Conn {
    stream: TcpStream,
    remote: SocketAddr,
    accepted: Instant,
    last_rx: Instant,
    /// The logic accepted a frame from it (a STUN check its peer authenticated).
    verified: bool,
    rx: Deframer,
    /// Framed bytes to write, from `tx_start`.
    tx: Vec<u8>,
    tx_start: usize,
    /// When the queue last moved, or when the kernel last refused more (the stall clock).
    tx_progress: Instant,
    /// The kernel took everything offered last time (false after WouldBlock until writable).
    writable: bool,
    /// Reads left unfinished because of the budget (edge-triggered: nothing reminds us).
    backlog: bool,
    queued_dirty: bool,
}

impl Conn {
    fn queued(&self) -> usize {
        self.tx.len() - self.tx_start
    }
}

/// A shard's ICE-TCP listener and connections.
pub struct TcpPort {
    config: TcpConfig,
    poll: Poll,
    events: Events,
    listener: mio::net::TcpListener,
    local_addr: SocketAddr,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    by_remote: HashMap<SocketAddr, usize>,
    /// Connections with bytes to write this turn.
    dirty: Vec<usize>,
    /// Connections (and the listener, as `usize::MAX`) with work left over from the budget.
    backlog: Vec<usize>,
    listener_backlog: bool,
    /// This turn's (connection, readable, writable), reused.
    ready: Vec<(usize, bool, bool)>,
    next_sweep: Instant,
    next_forced_poll: Instant,
    pub(crate) stats: TcpStats,
}

/// Binds a shard's listener (non-blocking, with a backlog for a burst of connects).
pub fn bind_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl TcpPort {
    pub fn new(listener: TcpListener, config: TcpConfig, now: Instant) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let poll = Poll::new()?;
        let mut listener = mio::net::TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(TcpPort {
            config,
            poll,
            events: Events::with_capacity(256),
            listener,
            local_addr,
            conns: Vec::new(),
            free: Vec::new(),
            by_remote: HashMap::default(),
            dirty: Vec::new(),
            backlog: Vec::new(),
            listener_backlog: false,
            ready: Vec::new(),
            next_sweep: now + SWEEP_INTERVAL,
            next_forced_poll: now,
            stats: TcpStats::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> TcpStats {
        self.stats
    }

    /// Whether the shard must look at the port this turn although the driver did not report
    /// it readable: budget left work behind, or the periodic look is due.
    pub fn wants_poll(&self, now: Instant) -> bool {
        self.listener_backlog || !self.backlog.is_empty() || now >= self.next_forced_poll
    }

    /// Work is left over: the shard should not sleep.
    pub fn has_backlog(&self) -> bool {
        self.listener_backlog || !self.backlog.is_empty()
    }

    /// When the shard must come back for the timeouts (None: nothing to time out).
    pub fn deadline(&self) -> Option<Instant> {
        if self.by_remote.is_empty() {
            None
        } else {
            Some(self.next_sweep)
        }
    }

    /// Accepts, reads and hands every complete frame to `on_frame(source, frame, verified)`,
    /// which returns whether the logic now knows that connection (see `TcpPort` docs).
    pub fn poll(&mut self, now: Instant, on_frame: &mut dyn FnMut(SocketAddr, &[u8]) -> bool) {
        self.next_forced_poll = now + FORCED_POLL;
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        if let Err(e) = self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
            if e.kind() != io::ErrorKind::Interrupted {
                self.stats.errors += 1;
                tracing::warn!(error = %e, "ice-tcp poll failed");
            }
        }
        let mut accept = std::mem::take(&mut self.listener_backlog);
        for ev in self.events.iter() {
            if ev.token() == LISTENER {
                accept = true;
            } else {
                let closed = ev.is_read_closed() || ev.is_error();
                ready.push((ev.token().0, ev.is_readable() || closed, ev.is_writable()));
            }
        }
        for i in std::mem::take(&mut self.backlog) {
            ready.push((i, true, false));
        }
        if accept {
            self.accept(now);
        }
        for &(i, readable, writable) in &ready {
            if writable {
                if let Some(Some(c)) = self.conns.get_mut(i) {
                    c.writable = true;
                    if c.queued() > 0 && !c.queued_dirty {
                        c.queued_dirty = true;
                        self.dirty.push(i);
                    }
                }
            }
            if readable {
                self.read(now, i, on_frame);
            }
        }
        self.ready = ready;
    }

    fn accept(&mut self, now: Instant) {
        for _ in 0..ACCEPT_BUDGET {
            let (mut stream, remote) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: counted; the pending connection stays queued.
                    self.stats.errors += 1;
                    tracing::debug!(error = %e, "ice-tcp accept failed");
                    return;
                }
            };
            self.stats.accepted += 1;
            if self.by_remote.len() >= self.config.max_connections {
                self.stats.rejected_full += 1;
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            if let Err(e) =
                socket2::SockRef::from(&stream).set_send_buffer_size(self.config.send_buffer_bytes)
            {
                // Not fatal: the connection still works, with the kernel's autotuned buffer.
                self.stats.errors += 1;
                tracing::debug!(error = %e, "ice-tcp SO_SNDBUF failed");
            }
            let index = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut stream, Token(index), interest)
            {
                self.stats.errors += 1;
                tracing::debug!(error = %e, "ice-tcp register failed");
                self.free.push(index);
                continue;
            }
            // The stream may already hold bytes: edge-triggered, so look at it this turn.
            self.backlog.push(index);
            self.conns[index] = Some(Conn {
                stream,
                remote,
                accepted: now,
                last_rx: now,
                verified: false,
                rx: Deframer::new(self.config.max_frame),
                tx: Vec::new(),
                tx_start: 0,
                tx_progress: now,
                writable: true,
                backlog: true,
                queued_dirty: false,
            });
            if let Some(old) = self.by_remote.insert(remote, index) {
                // The kernel does not hand out one 4-tuple twice while it is open.
                self.close(old, Close::Error);
                self.by_remote.insert(remote, index);
            }
            self.stats.connections = self.by_remote.len() as u64;
        }
        self.listener_backlog = true;
    }

    fn read(
        &mut self,
        now: Instant,
        index: usize,
        on_frame: &mut dyn FnMut(SocketAddr, &[u8]) -> bool,
    ) {
        let Some(Some(c)) = self.conns.get_mut(index) else {
            return;
        };
        c.backlog = false;
        let mut outcome = None;
        let mut exhausted = true;
        'reads: for _ in 0..READ_BUDGET {
            match c.stream.read(c.rx.spare()) {
                Ok(0) => {
                    outcome = Some(Close::ByPeer);
                    exhausted = false;
                    break;
                }
                Ok(n) => {
                    c.rx.filled(n);
                    c.last_rx = now;
                    loop {
                        match c.rx.next_frame() {
                            Ok(None) => break,
                            Ok(Some(frame)) => {
                                self.stats.frames_in += 1;
                                self.stats.bytes_in += frame.len() as u64;
                                let known = on_frame(c.remote, frame);
                                if !c.verified {
                                    if !known {
                                        outcome = Some(Close::Unverified);
                                        exhausted = false;
                                        break 'reads;
                                    }
                                    c.verified = true;
                                }
                            }
                            Err(e) => {
                                tracing::debug!(remote = %c.remote, "ice-tcp: {e}");
                                outcome = Some(Close::BadFrame);
                                exhausted = false;
                                break 'reads;
                            }
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    exhausted = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    outcome = Some(match e.kind() {
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                            Close::ByPeer
                        }
                        _ => Close::Error,
                    });
                    exhausted = false;
                    break;
                }
            }
        }
        if let Some(reason) = outcome {
            self.close(index, reason);
        } else if exhausted {
            c.backlog = true;
            self.backlog.push(index);
        }
    }

    /// Whether `remote` is an open ICE-TCP connection of this shard.
    pub fn has(&self, remote: SocketAddr) -> bool {
        self.by_remote.contains_key(&remote)
    }

    /// Frames `payload` onto the connection from `remote` (written at `flush`). Drops and
    /// counts it when there is no such connection or its send queue is full.
    pub fn send(&mut self, remote: SocketAddr, payload: &[u8]) {
        let Some(&index) = self.by_remote.get(&remote) else {
            self.stats.no_connection += 1;
            return;
        };
        let Some(Some(c)) = self.conns.get_mut(index) else {
            self.stats.no_connection += 1;
            return;
        };
        if payload.len() > u16::MAX as usize
            || c.queued() + framing::framed_len(payload.len()) > self.config.send_queue_bytes
        {
            self.stats.send_dropped += 1;
            return;
        }
        framing::encode(&mut c.tx, payload);
        self.stats.frames_out += 1;
        self.stats.bytes_out += payload.len() as u64;
        if !c.queued_dirty {
            c.queued_dirty = true;
            self.dirty.push(index);
        }
    }

    /// Writes what the turn queued, as far as each socket takes it.
    pub fn flush(&mut self, now: Instant) {
        for index in std::mem::take(&mut self.dirty) {
            let Some(Some(c)) = self.conns.get_mut(index) else {
                continue;
            };
            c.queued_dirty = false;
            if !c.writable {
                continue;
            }
            let mut failed = None;
            while c.queued() > 0 {
                match c.stream.write(&c.tx[c.tx_start..]) {
                    Ok(0) => {
                        failed = Some(Close::ByPeer);
                        break;
                    }
                    Ok(n) => {
                        c.tx_start += n;
                        c.tx_progress = now;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Once per writable period (`flush` skips it until the next
                        // writable event): the stall clock starts here at the latest.
                        c.writable = false;
                        c.tx_progress = now;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        failed = Some(match e.kind() {
                            io::ErrorKind::BrokenPipe
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::ConnectionAborted => Close::ByPeer,
                            _ => Close::Error,
                        });
                        break;
                    }
                }
            }
            if let Some(reason) = failed {
                self.close(index, reason);
                continue;
            }
            if c.queued() == 0 {
                c.tx.clear();
                c.tx_start = 0;
            } else if c.tx_start > self.config.send_queue_bytes / 2 {
                // Keep the buffer from creeping: move the unsent tail to the front.
                c.tx.drain(..c.tx_start);
                c.tx_start = 0;
            }
        }
    }

    /// Closes connections past their deadlines (call when `deadline()` has passed).
    pub fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        let cfg = &self.config;
        let mut expired = Vec::new();
        for (i, slot) in self.conns.iter().enumerate() {
            let Some(c) = slot else { continue };
            let reason = if !c.verified && now.duration_since(c.accepted) >= cfg.handshake_timeout {
                Some(Close::HandshakeTimeout)
            } else if now.duration_since(c.last_rx) >= cfg.idle_timeout {
                Some(Close::Idle)
            } else if !c.writable
                && c.queued() > 0
                && now.duration_since(c.tx_progress) >= cfg.stall_timeout
            {
                Some(Close::Stalled)
            } else {
                None
            };
            if let Some(r) = reason {
                expired.push((i, r));
            }
        }
        for (i, r) in expired {
            self.close(i, r);
        }
    }

    fn close(&mut self, index: usize, reason: Close) {
        let Some(slot) = self.conns.get_mut(index) else {
            return;
        };
        let Some(mut c) = slot.take() else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        if self.by_remote.get(&c.remote) == Some(&index) {
            self.by_remote.remove(&c.remote);
        }
        self.free.push(index);
        let s = &mut self.stats;
        match reason {
            Close::Unverified => s.closed_unverified += 1,
            Close::HandshakeTimeout => s.closed_handshake_timeout += 1,
            Close::Idle => s.closed_idle += 1,
            Close::Stalled => s.closed_stalled += 1,
            Close::BadFrame => s.closed_bad_frame += 1,
            Close::ByPeer => s.closed_by_peer += 1,
            Close::Error => s.errors += 1,
        }
        s.connections = self.by_remote.len() as u64;
        tracing::debug!(remote = %c.remote, ?reason, "ice-tcp connection closed");
    }
}

impl AsRawFd for TcpPort {
    /// The epoll instance holding the listener and the connections (the driver watches it).
    fn as_raw_fd(&self) -> RawFd {
        self.poll.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cap is what the kernel applies: twice the request (its bookkeeping share), and
    /// fixed, where an uncapped loopback connection autotunes to megabytes under load.
    #[test]
    fn accepted_connections_get_the_capped_send_buffer() {
        let config = TcpConfig::default();
        let requested = config.send_buffer_bytes;
        let now = Instant::now();
        let listener = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut port = TcpPort::new(listener, config, now).unwrap();
        let _client = std::net::TcpStream::connect(port.local_addr()).unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        while port.stats().connections == 0 && Instant::now() < end {
            port.poll(Instant::now(), &mut |_, _| true);
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(port.stats().connections, 1, "{:?}", port.stats());
        assert_eq!(port.stats().errors, 0, "{:?}", port.stats());
        let conn = port.conns.iter().flatten().next().unwrap();
        let effective = socket2::SockRef::from(&conn.stream)
            .send_buffer_size()
            .unwrap();
        assert_eq!(
            effective,
            2 * requested,
            "SO_SNDBUF as the kernel reports it"
        );
    }
}
