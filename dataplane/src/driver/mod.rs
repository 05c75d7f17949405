//! The I/O driver of one shard: its UDP socket, receive buffers and send batches, and the
//! readiness of one more descriptor the shard watches (its ICE-TCP epoll, see `crate::tcp`).
//!
//! Two backends behind one `Driver`: io_uring (multishot RecvMsg on a provided-buffer ring,
//! SendMsg SQEs, one submit per loop turn) and portable (recvmmsg / sendmmsg / poll). Both
//! also watch the shard's eventfd so a cross-shard message or a command wakes the wait.
//! This module is the only place in the crate with `unsafe`; every block says why it holds.
//! It must never interpret a datagram: bytes in, bytes out, counters.

mod portable;
mod send;
mod sockaddr;
mod uring;
mod wake;

pub use wake::Waker;

use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::RawFd;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use socket2::{Domain, Protocol, Socket, Type};

pub use send::MAX_DATAGRAM;

/// Which kernel interface a shard uses for its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoBackend {
    /// io_uring; starting fails when the kernel refuses it.
    IoUring,
    /// recvmmsg / sendmmsg / poll: works wherever Linux UDP works.
    Portable,
    /// io_uring when it can be set up, else portable with one warning.
    #[default]
    Auto,
}

impl fmt::Display for IoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoBackend::IoUring => "io_uring",
            IoBackend::Portable => "portable",
            IoBackend::Auto => "auto",
        })
    }
}

impl FromStr for IoBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "io_uring" | "io-uring" | "iouring" => Ok(IoBackend::IoUring),
            "portable" => Ok(IoBackend::Portable),
            "auto" => Ok(IoBackend::Auto),
            other => Err(format!(
                "unknown io backend {other:?} (expected io_uring, portable or auto)"
            )),
        }
    }
}

/// Buffer sizes of one driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Receive buffers in the provided-buffer ring (io_uring; power of two) or per
    /// recvmmsg call (portable).
    pub recv_buffers: u16,
    /// Datagrams one send batch holds before it is handed to the kernel.
    pub send_batch: usize,
    /// SO_RCVBUF / SO_SNDBUF asked of the kernel (it may clamp to net.core.*mem_max).
    pub socket_buffer_bytes: usize,
    /// Use UDP GSO for runs of same-destination, same-size datagrams when the kernel has it.
    pub gso: bool,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            recv_buffers: 512,
            send_batch: 256,
            socket_buffer_bytes: 8 << 20,
            gso: true,
        }
    }
}

/// Plain counters of one driver (read by the shard, flushed into its snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverStats {
    pub rx_datagrams: u64,
    pub rx_bytes: u64,
    /// Datagrams larger than a receive buffer: dropped.
    pub rx_truncated: u64,
    pub rx_errors: u64,
    /// io_uring: times the multishot receive ended (ENOBUFS or otherwise) and was re-armed.
    pub rx_rearms: u64,
    /// io_uring: completions that reported the buffer ring empty.
    pub rx_no_buffers: u64,
    pub tx_datagrams: u64,
    pub tx_bytes: u64,
    /// Kernel messages that carried more than one datagram (GSO).
    pub tx_gso_messages: u64,
    /// Datagrams dropped on send: too large, batch pool exhausted, socket buffer full, error.
    pub tx_dropped: u64,
    pub tx_errors: u64,
    /// Submits beyond the one per loop turn: a full submission queue, or a full send batch
    /// handed to the kernel before the turn ends.
    pub extra_submits: u64,
    /// Times the eventfd woke the driver.
    pub wakeups: u64,
}

enum Inner {
    Uring(Box<uring::UringDriver>),
    Portable(Box<portable::PortableDriver>),
}

/// A shard's socket and the machinery to move its datagrams.
pub struct Driver {
    inner: Inner,
    local_addr: SocketAddr,
}

/// Creates the shard's UDP socket: bound, non-blocking, with large kernel buffers.
pub fn bind_socket(addr: SocketAddr, buffer_bytes: usize) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    // Ask big; the kernel clamps to net.core.{r,w}mem_max (tuning/ raises those).
    let _ = socket.set_recv_buffer_size(buffer_bytes);
    let _ = socket.set_send_buffer_size(buffer_bytes);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Whether the kernel accepts `UDP_SEGMENT` on this socket.
fn gso_supported(socket: &UdpSocket) -> bool {
    let s = socket2::SockRef::from(socket);
    // A getsockopt probe, as quinn-udp does: kernels without GSO answer ENOPROTOOPT.
    portable::getsockopt_u32(&s, send::SOL_UDP, send::UDP_SEGMENT).is_ok()
}

impl Driver {
    /// Opens a driver on `socket` with `backend` (`Auto` must be resolved by the caller with
    /// `probe_io_uring`), watching `wake_fd` for wake-ups.
    pub fn open(
        socket: UdpSocket,
        wake_fd: RawFd,
        backend: IoBackend,
        config: &DriverConfig,
    ) -> std::io::Result<Driver> {
        let local_addr = socket.local_addr()?;
        let gso = config.gso && gso_supported(&socket);
        let inner = match backend {
            IoBackend::Portable => Inner::Portable(Box::new(portable::PortableDriver::new(
                socket, wake_fd, config, gso,
            )?)),
            IoBackend::IoUring | IoBackend::Auto => Inner::Uring(Box::new(
                uring::UringDriver::new(socket, wake_fd, config, gso)?,
            )),
        };
        Ok(Driver { inner, local_addr })
    }

    pub fn backend(&self) -> IoBackend {
        match self.inner {
            Inner::Uring(_) => IoBackend::IoUring,
            Inner::Portable(_) => IoBackend::Portable,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Hands every datagram received since the last call to `on_datagram(source, payload)`.
    /// Returns whether the eventfd fired.
    pub fn recv(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &[u8])) -> bool {
        match &mut self.inner {
            Inner::Uring(d) => d.recv(on_datagram),
            Inner::Portable(d) => d.recv(on_datagram),
        }
    }

    /// Queues one datagram (copied into the send arena). Oversize or unqueueable datagrams
    /// are dropped and counted.
    pub fn send(&mut self, destination: SocketAddr, payload: &[u8]) {
        match &mut self.inner {
            Inner::Uring(d) => d.send(destination, payload),
            Inner::Portable(d) => d.send(destination, payload),
        }
    }

    /// Hands queued sends to the kernel and waits until a datagram or a wake-up arrives, or
    /// `timeout` passes (`None`: no limit; zero: do not wait). One submit on io_uring.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> std::io::Result<()> {
        match &mut self.inner {
            Inner::Uring(d) => d.submit_and_wait(timeout),
            Inner::Portable(d) => d.submit_and_wait(timeout),
        }
    }

    /// Also wake the wait when `fd` becomes readable (the shard's ICE-TCP epoll instance);
    /// `take_watch_ready` says whether it did. The driver never reads from it.
    pub fn watch(&mut self, fd: RawFd) {
        match &mut self.inner {
            Inner::Uring(d) => d.watch(fd),
            Inner::Portable(d) => d.watch(fd),
        }
    }

    /// Whether the watched descriptor was seen readable since the last call (may be a
    /// spurious yes; never a missed one while it stays readable).
    pub fn take_watch_ready(&mut self) -> bool {
        match &mut self.inner {
            Inner::Uring(d) => d.take_watch_ready(),
            Inner::Portable(d) => d.take_watch_ready(),
        }
    }

    pub fn stats(&self) -> DriverStats {
        match &self.inner {
            Inner::Uring(d) => d.stats,
            Inner::Portable(d) => d.stats,
        }
    }
}

/// Tries to set up a ring with everything the io_uring driver needs (ring, provided-buffer
/// ring, multishot receive opcode). `Err` says why not, for the one fallback warning.
pub fn probe_io_uring() -> std::io::Result<()> {
    uring::probe()
}

/// Resolves `Auto` once for the whole node, logging ONE warning when falling back.
pub fn resolve_backend(requested: IoBackend) -> std::io::Result<IoBackend> {
    match requested {
        IoBackend::Portable => Ok(IoBackend::Portable),
        IoBackend::IoUring => {
            probe_io_uring()?;
            Ok(IoBackend::IoUring)
        }
        IoBackend::Auto => match probe_io_uring() {
            Ok(()) => Ok(IoBackend::IoUring),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring unavailable; using the portable driver");
                Ok(IoBackend::Portable)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse_and_print() {
        for b in [IoBackend::IoUring, IoBackend::Portable, IoBackend::Auto] {
            assert_eq!(b.to_string().parse::<IoBackend>(), Ok(b));
        }
        assert!("epoll".parse::<IoBackend>().is_err());
    }
}
