//! One batch of outgoing datagrams, grouped for UDP GSO and laid out as kernel `msghdr`s.
//!
//! Owns the send arena (every queued datagram is copied in once, back to back) and the
//! name / iovec / cmsg / msghdr arrays that point into it. Both drivers submit a built batch:
//! the portable one with `sendmmsg`, the io_uring one as one `SendMsg` SQE per message.
//! Must never grow after `build()` while the kernel may still read it: the msghdrs hold raw
//! pointers into these vectors, so a built batch is only reset once every send completed.

use std::net::SocketAddr;

use super::sockaddr::{self, RawName};

/// Largest datagram the drivers send or receive whole (larger sends are dropped and counted).
pub const MAX_DATAGRAM: usize = 2048;
/// Most segments the kernel accepts in one GSO send (`UDP_MAX_SEGMENTS`).
const GSO_MAX_SEGMENTS: usize = 64;
/// Most payload bytes in one GSO send (a UDP datagram's limit).
const GSO_MAX_BYTES: usize = 65_000;

pub(crate) const SOL_UDP: libc::c_int = 17;
pub(crate) const UDP_SEGMENT: libc::c_int = 103;

/// Control message carrying `UDP_SEGMENT` (the GSO segment size), laid out like
/// `CMSG_SPACE(sizeof(u16))`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub(crate) struct GsoCmsg {
    hdr: libc::cmsghdr,
    segment: u16,
    _pad: [u8; 6],
}

impl GsoCmsg {
    fn new(segment: u16) -> Self {
        GsoCmsg {
            hdr: libc::cmsghdr {
                // CMSG_LEN(2): header plus the u16 payload.
                cmsg_len: std::mem::size_of::<libc::cmsghdr>() + 2,
                cmsg_level: SOL_UDP,
                cmsg_type: UDP_SEGMENT,
            },
            segment,
            _pad: [0; 6],
        }
    }
}

#[derive(Clone, Copy)]
struct Queued {
    destination: SocketAddr,
    offset: u32,
    len: u16,
}

/// One kernel message: a single datagram, or several equal-sized ones sent with GSO.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Message {
    pub(crate) datagrams: u32,
    pub(crate) bytes: u32,
}

pub(crate) struct SendBatch {
    arena: Vec<u8>,
    queued: Vec<Queued>,
    max_datagrams: usize,
    pub(crate) messages: Vec<Message>,
    names: Vec<RawName>,
    iovecs: Vec<libc::iovec>,
    cmsgs: Vec<GsoCmsg>,
    pub(crate) msghdrs: Vec<libc::msghdr>,
    /// Sends of this batch the kernel has not completed yet (io_uring only).
    pub(crate) in_flight: usize,
}

impl SendBatch {
    pub(crate) fn new(max_datagrams: usize) -> Self {
        SendBatch {
            arena: Vec::with_capacity(max_datagrams * MAX_DATAGRAM),
            queued: Vec::with_capacity(max_datagrams),
            max_datagrams,
            messages: Vec::with_capacity(max_datagrams),
            names: Vec::with_capacity(max_datagrams),
            iovecs: Vec::with_capacity(max_datagrams),
            cmsgs: Vec::with_capacity(max_datagrams),
            msghdrs: Vec::with_capacity(max_datagrams),
            in_flight: 0,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.queued.len() >= self.max_datagrams
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Copies one datagram in. The caller checked `is_full()` and the size.
    pub(crate) fn push(&mut self, destination: SocketAddr, payload: &[u8]) {
        debug_assert!(!self.is_full() && payload.len() <= MAX_DATAGRAM);
        let offset = self.arena.len() as u32;
        self.arena.extend_from_slice(payload);
        self.queued.push(Queued {
            destination,
            offset,
            len: payload.len() as u16,
        });
    }

    /// Groups the queued datagrams into kernel messages and fills the msghdrs.
    /// Consecutive datagrams to one destination with one size (the last may be shorter)
    /// become one GSO message when `gso` is on.
    pub(crate) fn build(&mut self, gso: bool) {
        self.messages.clear();
        self.names.clear();
        self.iovecs.clear();
        self.cmsgs.clear();
        self.msghdrs.clear();
        // Pass 1: groups, names, cmsgs, iovecs (the vectors reach their final length here,
        // so pass 2 can take stable pointers into them).
        let mut i = 0;
        while i < self.queued.len() {
            let first = self.queued[i];
            let segment = first.len as usize;
            let mut count = 1;
            let mut bytes = segment;
            if gso {
                while i + count < self.queued.len() && count < GSO_MAX_SEGMENTS {
                    let next = self.queued[i + count];
                    let prev_full = self.queued[i + count - 1].len as usize == segment;
                    if next.destination != first.destination
                        || next.len as usize > segment
                        || !prev_full
                        || bytes + next.len as usize > GSO_MAX_BYTES
                        || segment == 0
                    {
                        break;
                    }
                    bytes += next.len as usize;
                    count += 1;
                }
            }
            let mut name = RawName::default();
            sockaddr::encode(first.destination, &mut name);
            self.names.push(name);
            self.iovecs.push(libc::iovec {
                // Pointer into the arena, which does not grow until `reset`.
                iov_base: self.arena[first.offset as usize..].as_ptr() as *mut libc::c_void,
                iov_len: bytes,
            });
            self.cmsgs.push(GsoCmsg::new(segment as u16));
            self.messages.push(Message {
                datagrams: count as u32,
                bytes: bytes as u32,
            });
            i += count;
        }
        // Pass 2: msghdrs pointing into the now fixed arrays.
        for (k, m) in self.messages.iter().enumerate() {
            let family_len = match self.queued_dest_is_v4(k) {
                true => 16,
                false => 28,
            };
            let control = m.datagrams > 1;
            self.msghdrs.push(libc::msghdr {
                msg_name: self.names[k].0.as_mut_ptr() as *mut libc::c_void,
                msg_namelen: family_len,
                msg_iov: &mut self.iovecs[k] as *mut libc::iovec,
                msg_iovlen: 1,
                msg_control: if control {
                    &mut self.cmsgs[k] as *mut GsoCmsg as *mut libc::c_void
                } else {
                    std::ptr::null_mut()
                },
                msg_controllen: if control {
                    std::mem::size_of::<GsoCmsg>()
                } else {
                    0
                },
                msg_flags: 0,
            });
        }
    }

    fn queued_dest_is_v4(&self, message: usize) -> bool {
        // The name's family field tells; avoids keeping a second per-message array.
        u16::from_ne_bytes([self.names[message].0[0], self.names[message].0[1]])
            == libc::AF_INET as u16
    }

    /// Forgets everything; only valid once the kernel is done with the built msghdrs.
    pub(crate) fn reset(&mut self) {
        debug_assert_eq!(self.in_flight, 0);
        self.arena.clear();
        self.queued.clear();
        self.messages.clear();
        self.names.clear();
        self.iovecs.clear();
        self.cmsgs.clear();
        self.msghdrs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn shape(batch: &SendBatch) -> Vec<(u32, u32)> {
        batch
            .messages
            .iter()
            .map(|m| (m.datagrams, m.bytes))
            .collect()
    }

    #[test]
    fn groups_same_destination_same_size_with_shorter_tail() {
        let mut b = SendBatch::new(16);
        for _ in 0..3 {
            b.push(addr(1), &[1; 1200]);
        }
        b.push(addr(1), &[1; 300]); // shorter tail joins the group
        b.push(addr(1), &[1; 1200]); // after a short tail: a new group
        b.push(addr(2), &[2; 1200]); // other destination
        b.build(true);
        assert_eq!(shape(&b), vec![(4, 3900), (1, 1200), (1, 1200)]);
        assert!(!b.msghdrs[0].msg_control.is_null());
        assert!(b.msghdrs[1].msg_control.is_null());
    }

    #[test]
    fn without_gso_every_datagram_is_its_own_message() {
        let mut b = SendBatch::new(16);
        for _ in 0..3 {
            b.push(addr(1), &[1; 100]);
        }
        b.build(false);
        assert_eq!(shape(&b), vec![(1, 100); 3]);
    }

    #[test]
    fn larger_packet_breaks_a_group() {
        let mut b = SendBatch::new(16);
        b.push(addr(1), &[1; 100]);
        b.push(addr(1), &[1; 200]);
        b.build(true);
        assert_eq!(shape(&b), vec![(1, 100), (1, 200)]);
    }
}
