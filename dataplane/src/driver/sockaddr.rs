//! Conversions between `SocketAddr` and the kernel's `sockaddr_in` / `sockaddr_in6` bytes.
//!
//! Plain byte code (no `unsafe`): the drivers hand the kernel a 28-byte name buffer, big
//! enough for both families, and read the source address of received datagrams back from it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Size of a `sockaddr_in6`, the larger of the two families we use.
pub(crate) const NAME_LEN: usize = 28;

/// A kernel socket address buffer, aligned like `sockaddr_in6` wants.
#[repr(C, align(4))]
#[derive(Clone, Copy)]
pub(crate) struct RawName(pub(crate) [u8; NAME_LEN]);

impl Default for RawName {
    fn default() -> Self {
        RawName([0; NAME_LEN])
    }
}

/// Writes `addr` into `out`; returns the length to give the kernel.
pub(crate) fn encode(addr: SocketAddr, out: &mut RawName) -> u32 {
    let b = &mut out.0;
    *b = [0; NAME_LEN];
    match addr {
        SocketAddr::V4(a) => {
            b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[4..8].copy_from_slice(&a.ip().octets());
            16
        }
        SocketAddr::V6(a) => {
            b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&a.port().to_be_bytes());
            b[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
            b[8..24].copy_from_slice(&a.ip().octets());
            b[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            28
        }
    }
}

/// Reads a kernel socket address; `None` for a family we do not speak or a short buffer.
pub(crate) fn decode(b: &[u8]) -> Option<SocketAddr> {
    if b.len() < 2 {
        return None;
    }
    let family = u16::from_ne_bytes([b[0], b[1]]) as i32;
    match family {
        libc::AF_INET if b.len() >= 8 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if b.len() >= 28 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&b[8..24]);
            let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_families() {
        for addr in [
            "127.0.0.1:5004".parse::<SocketAddr>().unwrap(),
            "[::1]:40000".parse().unwrap(),
            "[fe80::1%3]:9".parse().unwrap(),
        ] {
            let mut raw = RawName::default();
            let len = encode(addr, &mut raw) as usize;
            assert_eq!(decode(&raw.0[..len]), Some(addr));
        }
    }

    #[test]
    fn rejects_unknown_family_and_short_names() {
        assert_eq!(decode(&[0u8; 28]), None);
        assert_eq!(decode(&[2u8]), None);
    }
}
