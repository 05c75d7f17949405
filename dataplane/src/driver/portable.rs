//! The portable backend: recvmmsg / sendmmsg on a non-blocking socket, poll(2) to wait.
//!
//! Owns its receive slots (one buffer, name and iovec per slot, wired once) and one send
//! batch that is flushed with sendmmsg at the end of the loop turn (or early when full).
//! Must never block except inside `poll` with the deadline as its timeout.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::send::{SendBatch, MAX_DATAGRAM};
use super::sockaddr::{self, RawName, NAME_LEN};
use super::{DriverConfig, DriverStats};

/// recvmmsg rounds per loop turn before the shard gets to its other inputs; poll is
/// level-triggered, so what is left is picked up on the next turn.
const RECV_ROUNDS: usize = 8;

pub(crate) struct PortableDriver {
    socket: UdpSocket,
    wake_fd: RawFd,
    /// A descriptor the shard watches for readability besides the socket (see
    /// `Driver::watch`), and whether the last wait saw it readable.
    watch_fd: Option<RawFd>,
    watch_ready: bool,
    gso: bool,
    pub(crate) stats: DriverStats,
    rx_bufs: Vec<u8>,
    rx_names: Vec<RawName>,
    rx_iovecs: Vec<libc::iovec>,
    rx_msgs: Vec<libc::mmsghdr>,
    batch: SendBatch,
    tx_msgs: Vec<libc::mmsghdr>,
}

/// Reads an integer socket option.
pub(crate) fn getsockopt_u32(
    socket: &socket2::SockRef<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<u32> {
    let mut value: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals of the sizes we pass; the fd is open for the
    // borrow's lifetime.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            &mut value as *mut u32 as *mut libc::c_void,
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the eventfd counter (non-blocking); true when it had been written.
pub(crate) fn drain_eventfd(fd: RawFd) -> bool {
    let mut value: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live u64; the eventfd is non-blocking, so an
    // unwritten counter returns EAGAIN instead of blocking.
    let n = unsafe { libc::read(fd, &mut value as *mut u64 as *mut libc::c_void, 8) };
    n == 8
}

impl PortableDriver {
    pub(crate) fn new(
        socket: UdpSocket,
        wake_fd: RawFd,
        config: &DriverConfig,
        gso: bool,
    ) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let slots = config.recv_buffers.clamp(1, 1024) as usize;
        let mut d = PortableDriver {
            socket,
            wake_fd,
            watch_fd: None,
            watch_ready: false,
            gso,
            stats: DriverStats::default(),
            rx_bufs: vec![0u8; slots * MAX_DATAGRAM],
            rx_names: vec![RawName::default(); slots],
            rx_iovecs: Vec::with_capacity(slots),
            rx_msgs: Vec::with_capacity(slots),
            batch: SendBatch::new(config.send_batch.max(1)),
            tx_msgs: Vec::with_capacity(config.send_batch.max(1)),
        };
        // Wire the slots once: the vectors never grow again, so the pointers stay valid.
        for i in 0..slots {
            let buf = &mut d.rx_bufs[i * MAX_DATAGRAM..(i + 1) * MAX_DATAGRAM];
            d.rx_iovecs.push(libc::iovec {
                iov_base: buf.as_mut_ptr() as *mut libc::c_void,
                iov_len: MAX_DATAGRAM,
            });
        }
        for i in 0..slots {
            d.rx_msgs.push(libc::mmsghdr {
                msg_hdr: libc::msghdr {
                    msg_name: d.rx_names[i].0.as_mut_ptr() as *mut libc::c_void,
                    msg_namelen: NAME_LEN as u32,
                    msg_iov: &mut d.rx_iovecs[i] as *mut libc::iovec,
                    msg_iovlen: 1,
                    msg_control: std::ptr::null_mut(),
                    msg_controllen: 0,
                    msg_flags: 0,
                },
                msg_len: 0,
            });
        }
        Ok(d)
    }

    pub(crate) fn watch(&mut self, fd: RawFd) {
        self.watch_fd = Some(fd);
    }

    pub(crate) fn take_watch_ready(&mut self) -> bool {
        std::mem::take(&mut self.watch_ready)
    }

    pub(crate) fn recv(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &[u8])) -> bool {
        let woken = drain_eventfd(self.wake_fd);
        if woken {
            self.stats.wakeups += 1;
        }
        let slots = self.rx_msgs.len();
        for _ in 0..RECV_ROUNDS {
            for m in self.rx_msgs.iter_mut() {
                m.msg_hdr.msg_namelen = NAME_LEN as u32;
                m.msg_hdr.msg_flags = 0;
                m.msg_len = 0;
            }
            // SAFETY: every mmsghdr points at buffers owned by `self` that live as long as
            // the call; `slots` is the array's length.
            let n = unsafe {
                libc::recvmmsg(
                    self.socket.as_raw_fd(),
                    self.rx_msgs.as_mut_ptr(),
                    slots as u32,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => {
                        self.stats.rx_errors += 1;
                        break;
                    }
                }
            }
            let n = n as usize;
            for i in 0..n {
                let m = &self.rx_msgs[i];
                let len = m.msg_len as usize;
                if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    self.stats.rx_truncated += 1;
                    continue;
                }
                let name_len = (m.msg_hdr.msg_namelen as usize).min(NAME_LEN);
                let Some(source) = sockaddr::decode(&self.rx_names[i].0[..name_len]) else {
                    self.stats.rx_errors += 1;
                    continue;
                };
                self.stats.rx_datagrams += 1;
                self.stats.rx_bytes += len as u64;
                on_datagram(
                    source,
                    &self.rx_bufs[i * MAX_DATAGRAM..i * MAX_DATAGRAM + len],
                );
            }
            if n < slots {
                break;
            }
        }
        woken
    }

    pub(crate) fn send(&mut self, destination: SocketAddr, payload: &[u8]) {
        if payload.len() > MAX_DATAGRAM {
            self.stats.tx_dropped += 1;
            return;
        }
        if self.batch.is_full() {
            self.flush();
        }
        self.batch.push(destination, payload);
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        self.batch.build(self.gso);
        self.tx_msgs.clear();
        for h in &self.batch.msghdrs {
            self.tx_msgs.push(libc::mmsghdr {
                msg_hdr: *h,
                msg_len: 0,
            });
        }
        let mut next = 0;
        while next < self.tx_msgs.len() {
            let rest = &mut self.tx_msgs[next..];
            // SAFETY: the mmsghdrs point into the built batch, which is neither grown nor
            // reset until this function returns; `rest.len()` is the slice's length.
            let n = unsafe {
                libc::sendmmsg(
                    self.socket.as_raw_fd(),
                    rest.as_mut_ptr(),
                    rest.len() as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if n > 0 {
                for m in &self.batch.messages[next..next + n as usize] {
                    self.stats.tx_datagrams += m.datagrams as u64;
                    self.stats.tx_bytes += m.bytes as u64;
                    if m.datagrams > 1 {
                        self.stats.tx_gso_messages += 1;
                    }
                }
                next += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    // Socket buffer full: UDP would drop too; count and move on.
                    for m in &self.batch.messages[next..] {
                        self.stats.tx_dropped += m.datagrams as u64;
                    }
                    break;
                }
                Some(libc::EIO) | Some(libc::EINVAL) if self.batch.messages[next].datagrams > 1 => {
                    // The route's device cannot segment: stop using GSO on this socket.
                    tracing::warn!(error = %e, "UDP GSO send failed; disabling GSO");
                    self.gso = false;
                    self.stats.tx_dropped += self.batch.messages[next].datagrams as u64;
                    self.stats.tx_errors += 1;
                    next += 1;
                }
                _ => {
                    tracing::trace!(error = %e, "send failed");
                    self.stats.tx_dropped += self.batch.messages[next].datagrams as u64;
                    self.stats.tx_errors += 1;
                    next += 1;
                }
            }
        }
        self.tx_msgs.clear();
        self.batch.reset();
    }

    pub(crate) fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.flush();
        let ms: libc::c_int = match timeout {
            None => -1,
            Some(d) if d.is_zero() => {
                // No wait this turn: let the owner look at the watched descriptor anyway
                // (a non-blocking check), so it is not starved by busy turns.
                self.watch_ready |= self.watch_fd.is_some();
                return Ok(());
            }
            // Round up so a sub-millisecond deadline does not spin on poll(0).
            Some(d) => d.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
        };
        let mut fds = [
            libc::pollfd {
                fd: self.socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                // poll(2) ignores a negative descriptor.
                fd: self.watch_fd.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of three pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 3, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if fds[2].revents != 0 {
            self.watch_ready = true;
        }
        Ok(())
    }
}
