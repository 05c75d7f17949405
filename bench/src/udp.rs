//! Batched UDP over recvmmsg/sendmmsg: the floor's I/O and the harness's sinks.
//!
//! Owns buffers and message headers for one socket; IPv4 only (all bench traffic is on
//! loopback). The only `unsafe` of the crate besides /proc accounting lives here.
//! Must never send to anything but the addresses it is handed (loopback in practice).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Largest datagram kept; bigger ones are truncated (and flagged by the kernel).
pub const MAX_DATAGRAM: usize = 2048;

/// Binds a UDP socket on `addr` with larger kernel buffers (bursts of fan-out would overflow
/// the defaults and be counted as loss that is not the forwarder's).
pub fn bind(addr: SocketAddr, read_timeout: Option<Duration>) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    // Best effort: rmem_max / wmem_max cap these silently.
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    socket.bind(&addr.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(read_timeout)?;
    Ok(socket)
}

fn to_sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    sa
}

fn from_sockaddr(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        u32::from_be(sa.sin_addr.s_addr).into(),
        u16::from_be(sa.sin_port),
    )
}

/// Receive side: `capacity` buffers filled by one recvmmsg.
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    addrs: Vec<libc::sockaddr_in>,
    lens: Vec<usize>,
    count: usize,
}

impl RecvBatch {
    pub fn new(capacity: usize) -> Self {
        RecvBatch {
            bufs: vec![[0; MAX_DATAGRAM]; capacity],
            // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
            addrs: vec![unsafe { zeroed() }; capacity],
            lens: vec![0; capacity],
            count: 0,
        }
    }

    /// Blocks until at least one datagram arrives (or the socket's read timeout passes, which
    /// returns 0), then takes whatever else is already queued, up to capacity.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let n = self.bufs.len();
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: MAX_DATAGRAM,
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; n];
        for i in 0..n {
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_in).cast();
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        }
        // SAFETY: every mmsghdr points at an iovec and a sockaddr_in owned by `self` or this
        // frame, all alive and exclusively borrowed for the duration of the call; n matches.
        let rc = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            self.count = 0;
            return match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(0),
                io::ErrorKind::Interrupted => Ok(0),
                _ => Err(err),
            };
        }
        self.count = rc as usize;
        for (len, msg) in self.lens.iter_mut().zip(&msgs[..self.count]) {
            *len = (msg.msg_len as usize).min(MAX_DATAGRAM);
        }
        Ok(self.count)
    }

    /// The datagrams of the last `recv`, with their sources.
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddrV4, &[u8])> {
        (0..self.count).map(|i| (from_sockaddr(&self.addrs[i]), &self.bufs[i][..self.lens[i]]))
    }
}

/// Send side: datagrams queued into one contiguous buffer, flushed with sendmmsg.
pub struct SendBatch {
    /// Queued datagrams back to back in `data[..used]`; beyond is room kept from earlier
    /// batches (so writing into it costs no zeroing).
    data: Vec<u8>,
    used: usize,
    entries: Vec<(usize, usize, libc::sockaddr_in)>,
    max: usize,
}

impl SendBatch {
    /// `max` datagrams per sendmmsg call (the kernel caps it at UIO_MAXIOV = 1024).
    pub fn new(max: usize) -> Self {
        SendBatch {
            data: Vec::with_capacity(max * 1300),
            used: 0,
            entries: Vec::with_capacity(max),
            max: max.clamp(1, 1024),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.entries.len() >= self.max
    }

    pub fn push(&mut self, datagram: &[u8], to: SocketAddrV4) {
        self.push_with(to, datagram.len(), |buf| {
            buf.copy_from_slice(datagram);
            datagram.len()
        });
    }

    /// Reserves `max` bytes for a datagram to `to`, lets `fill` write it into a prefix of
    /// them and return its length (as the server's `TxQueue::push_with`: a sealer writes
    /// straight into the batch); 0 queues nothing. Returns the length.
    pub fn push_with(
        &mut self,
        to: SocketAddrV4,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> usize {
        let start = self.used;
        if self.data.len() < start + max {
            self.data.resize(start + max, 0);
        }
        let n = fill(&mut self.data[start..start + max]).min(max);
        if n > 0 {
            self.entries.push((start, n, to_sockaddr(to)));
            self.used = start + n;
        }
        n
    }

    /// Sends everything queued; returns how many datagrams the kernel took. Datagrams it
    /// refused (a full socket buffer) are dropped and counted by the caller as the difference.
    pub fn flush(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut sent = 0;
        let mut iovs: Vec<libc::iovec> = Vec::with_capacity(self.entries.len());
        for &(start, len, _) in &self.entries {
            iovs.push(libc::iovec {
                iov_base: self.data[start..].as_ptr() as *mut libc::c_void,
                iov_len: len,
            });
        }
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { zeroed() }; self.entries.len()];
        for (i, entry) in self.entries.iter_mut().enumerate() {
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = (&mut entry.2 as *mut libc::sockaddr_in).cast();
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        }
        let mut result = Ok(());
        while sent < msgs.len() {
            let rest = &mut msgs[sent..];
            // SAFETY: each mmsghdr points at an iovec (into `self.data`) and a sockaddr_in
            // (in `self.entries`) that stay alive and unmoved until this function returns.
            let rc = unsafe {
                libc::sendmmsg(socket.as_raw_fd(), rest.as_mut_ptr(), rest.len() as u32, 0)
            };
            if rc <= 0 {
                let err = io::Error::last_os_error();
                match err.kind() {
                    io::ErrorKind::Interrupted => continue,
                    // Loopback: a full receive buffer at the sink shows as ENOBUFS/EAGAIN.
                    io::ErrorKind::WouldBlock => {}
                    _ if err.raw_os_error() == Some(libc::ENOBUFS) => {}
                    // A sink that went away; skip that datagram, keep the rest.
                    _ if err.raw_os_error() == Some(libc::ECONNREFUSED) => {
                        sent += 1;
                        continue;
                    }
                    _ => result = Err(err),
                }
                break;
            }
            sent += rc as usize;
        }
        self.used = 0;
        self.entries.clear();
        result.map(|()| sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn local() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    fn v4(socket: &UdpSocket) -> SocketAddrV4 {
        match socket.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to IPv4"),
        }
    }

    #[test]
    fn batch_round_trip_keeps_order_sizes_and_sources() {
        let a = bind(local(), Some(Duration::from_secs(2))).unwrap();
        let b = bind(local(), Some(Duration::from_secs(2))).unwrap();
        let mut out = SendBatch::new(64);
        for i in 0..40u8 {
            out.push(&vec![i; 100 + i as usize], v4(&b));
        }
        // A writer that writes nothing queues nothing.
        assert_eq!(out.push_with(v4(&b), 100, |_| 0), 0);
        assert_eq!(out.len(), 40);
        assert!(!out.is_full());
        assert_eq!(out.flush(&a).unwrap(), 40);
        assert!(out.is_empty());

        let mut batch = RecvBatch::new(16);
        let mut seen = Vec::new();
        while seen.len() < 40 {
            let n = batch.recv(&b).unwrap();
            assert!(n > 0, "datagrams arrive before the timeout");
            for (from, data) in batch.iter() {
                assert_eq!(from, v4(&a));
                seen.push((data[0], data.len()));
            }
        }
        let expected: Vec<_> = (0..40u8).map(|i| (i, 100 + i as usize)).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn recv_times_out_with_zero() {
        let a = bind(local(), Some(Duration::from_millis(20))).unwrap();
        let mut batch = RecvBatch::new(4);
        assert_eq!(batch.recv(&a).unwrap(), 0);
        assert_eq!(batch.iter().count(), 0);
    }
}
