//! [`TxQueue`]: the datagrams a shard core wants sent, in order, in one reusable byte arena.
//!
//! The forwarding path writes each sealed copy straight into the arena (`push_with`), so a
//! forwarded packet costs no allocation; the shard hands the queue to its I/O driver once
//! per turn (`drain`), which copies each datagram into its send batch. The arena keeps its
//! high-water size between turns. Must never interpret the bytes or reorder datagrams.
//! Each datagram names its [`Remote`]: the address and the transport (UDP, or an ICE-TCP
//! connection the shard frames it onto) it goes out on.

use std::net::SocketAddr;

pub use str0m::net::Protocol;

/// Where a datagram goes: a remote transport address and the protocol of the candidate pair
/// it belongs to (`Udp`, or `Tcp` for an ICE-TCP connection accepted by the shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Remote {
    pub proto: Protocol,
    pub addr: SocketAddr,
}

impl Remote {
    pub fn udp(addr: SocketAddr) -> Self {
        Remote {
            proto: Protocol::Udp,
            addr,
        }
    }
}

/// Largest datagram `push_with` reserves room for: a full Ethernet MTU plus SRTP slack.
pub const MAX_TX_DATAGRAM: usize = 1600;

#[derive(Debug, Default)]
pub struct TxQueue {
    /// Bytes of every queued datagram, back to back from 0 to `used`; beyond `used` is
    /// scratch kept from earlier turns.
    arena: Vec<u8>,
    used: usize,
    items: Vec<(Remote, u32, u32)>,
}

impl TxQueue {
    /// Queue a copy of `data` for `destination`.
    pub fn push(&mut self, destination: Remote, data: &[u8]) {
        self.push_with(destination, data.len(), |buf| {
            buf.copy_from_slice(data);
            data.len()
        });
    }

    /// Reserve `max` bytes, let `fill` write a datagram into a prefix of them and return its
    /// length; 0 queues nothing. Returns the length.
    pub fn push_with(
        &mut self,
        destination: Remote,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> usize {
        let start = self.used;
        if self.arena.len() < start + max {
            self.arena.resize(start + max, 0);
        }
        let n = fill(&mut self.arena[start..start + max]).min(max);
        if n > 0 {
            self.items.push((destination, start as u32, n as u32));
            self.used = start + n;
        }
        n
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Hand every queued datagram to `send`, in order, and empty the queue.
    pub fn drain(&mut self, mut send: impl FnMut(Remote, &[u8])) {
        for (destination, start, len) in self.items.drain(..) {
            let (start, len) = (start as usize, len as usize);
            send(destination, &self.arena[start..start + len]);
        }
        self.used = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_come_out_in_order_and_the_arena_is_reused() {
        let a = Remote::udp("10.0.0.1:1".parse().unwrap());
        let b = Remote {
            proto: Protocol::Tcp,
            addr: "10.0.0.2:2".parse().unwrap(),
        };
        let mut q = TxQueue::default();
        q.push(a, b"one");
        assert_eq!(
            q.push_with(b, 100, |buf| {
                buf[..3].copy_from_slice(b"two");
                3
            }),
            3
        );
        assert_eq!(
            q.push_with(b, 100, |_| 0),
            0,
            "nothing written, nothing queued"
        );
        let mut out = Vec::new();
        q.drain(|d, bytes| out.push((d, bytes.to_vec())));
        assert_eq!(out, vec![(a, b"one".to_vec()), (b, b"two".to_vec())]);
        assert!(q.is_empty());
        let cap = q.arena.len();
        q.push(a, b"three");
        let mut again = Vec::new();
        q.drain(|_, bytes| again.push(bytes.to_vec()));
        assert_eq!(again, vec![b"three".to_vec()]);
        assert_eq!(q.arena.len(), cap, "no growth once warm");
    }
}
