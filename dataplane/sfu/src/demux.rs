//! Demux: which peer does a datagram belong to?
//!
//! Owns the 5-tuple table (source and its protocol, destination) → peer and the ICE ufrag table. A datagram
//! from a known 5-tuple goes straight to its peer. From an unknown source only a STUN
//! binding request whose USERNAME starts with one of our peers' local ufrags is accepted;
//! the 5-tuple is learned when that peer's str0m accepts it. Everything else is classified
//! and counted by the caller. Must never allocate on the known-5-tuple path or panic on any
//! input.

use crate::Map;
use std::net::SocketAddr;

use str0m::ice::StunMessage;

use crate::ids::PeerId;
use crate::stats::DropReason;
use crate::tx_queue::Remote;

/// Protocol of a datagram by its first byte (RFC 7983).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Stun,
    Dtls,
    /// RTP or RTCP (SRTP / SRTCP).
    Rtp,
}

/// Classify a datagram, or say why it is not one of ours.
pub fn classify(buf: &[u8], max_datagram: usize) -> Result<Protocol, DropReason> {
    if buf.len() > max_datagram {
        return Err(DropReason::Oversize);
    }
    let Some(&first) = buf.first() else {
        return Err(DropReason::Garbage);
    };
    let (proto, min_len) = match first {
        0..=3 => (Protocol::Stun, 20),
        20..=63 => (Protocol::Dtls, 13),
        128..=191 => (Protocol::Rtp, 12),
        _ => return Err(DropReason::Garbage),
    };
    if buf.len() < min_len {
        return Err(DropReason::Truncated);
    }
    Ok(proto)
}

/// True if this RTP-range datagram is RTCP (payload type 192..=223 per RFC 5761).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && (192..=223).contains(&buf[1])
}

/// The local ufrag (first part of USERNAME) of a STUN binding request, if any.
pub fn stun_local_ufrag(buf: &[u8]) -> Option<&str> {
    let msg = StunMessage::parse(buf).ok()?;
    if !msg.is_binding_request() {
        return None;
    }
    let username = msg.username()?;
    Some(username.split(':').next().unwrap_or(username))
}

/// The two lookup tables plus, per peer, the 5-tuples learned for it (to free on close).
#[derive(Debug, Default)]
pub struct Demux {
    by_tuple: Map<(Remote, SocketAddr), PeerId>,
    by_ufrag: Map<String, PeerId>,
    tuples_of: Map<PeerId, Vec<(Remote, SocketAddr)>>,
    ufrag_of: Map<PeerId, String>,
}

impl Demux {
    pub fn add_peer(&mut self, peer: PeerId, local_ufrag: String) {
        self.by_ufrag.insert(local_ufrag.clone(), peer);
        self.ufrag_of.insert(peer, local_ufrag);
        self.tuples_of.insert(peer, Vec::new());
    }

    /// The peer's local ufrag changed (an ICE restart): STUN with the new one finds it, the
    /// old one no longer does. Learned 5-tuples stay.
    pub fn set_ufrag(&mut self, peer: PeerId, local_ufrag: String) {
        if let Some(old) = self.ufrag_of.insert(peer, local_ufrag.clone()) {
            self.by_ufrag.remove(&old);
        }
        self.by_ufrag.insert(local_ufrag, peer);
    }

    /// Remove a peer and every entry that points at it.
    pub fn remove_peer(&mut self, peer: PeerId) {
        if let Some(ufrag) = self.ufrag_of.remove(&peer) {
            self.by_ufrag.remove(&ufrag);
        }
        for t in self.tuples_of.remove(&peer).unwrap_or_default() {
            self.by_tuple.remove(&t);
        }
    }

    pub fn by_tuple(&self, source: Remote, destination: SocketAddr) -> Option<PeerId> {
        self.by_tuple.get(&(source, destination)).copied()
    }

    pub fn by_ufrag(&self, ufrag: &str) -> Option<PeerId> {
        self.by_ufrag.get(ufrag).copied()
    }

    /// Remember that this 5-tuple belongs to `peer` (after its str0m accepted a STUN request
    /// from it). A tuple moving to another peer is taken away from the old one.
    pub fn learn(&mut self, source: Remote, destination: SocketAddr, peer: PeerId) {
        let key = (source, destination);
        if let Some(old) = self.by_tuple.insert(key, peer) {
            if old == peer {
                return;
            }
            if let Some(list) = self.tuples_of.get_mut(&old) {
                list.retain(|t| *t != key);
            }
        }
        if let Some(list) = self.tuples_of.get_mut(&peer) {
            list.push(key);
        }
    }

    /// Number of entries in both tables (a gauge for leak checks).
    pub fn len(&self) -> usize {
        self.by_tuple.len() + self.by_ufrag.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn udp(port: u16) -> Remote {
        Remote::udp(addr(port))
    }

    #[test]
    fn classifies_by_first_byte_and_length() {
        assert_eq!(classify(&[], 1500), Err(DropReason::Garbage));
        assert_eq!(classify(&[0xff; 40], 1500), Err(DropReason::Garbage));
        assert_eq!(classify(&[70; 40], 1500), Err(DropReason::Garbage));
        assert_eq!(classify(&[0x80; 5], 1500), Err(DropReason::Truncated));
        assert_eq!(classify(&[0x00; 19], 1500), Err(DropReason::Truncated));
        assert_eq!(classify(&[22; 12], 1500), Err(DropReason::Truncated));
        assert_eq!(classify(&[0x80; 1501], 1500), Err(DropReason::Oversize));
        assert_eq!(classify(&[0x80; 12], 1500), Ok(Protocol::Rtp));
        assert_eq!(classify(&[0x00; 20], 1500), Ok(Protocol::Stun));
        assert_eq!(classify(&[22; 13], 1500), Ok(Protocol::Dtls));
    }

    #[test]
    fn stun_garbage_has_no_ufrag() {
        assert_eq!(stun_local_ufrag(&[0u8; 20]), None);
        assert_eq!(stun_local_ufrag(&[1u8; 64]), None);
    }

    #[test]
    fn learn_and_remove_frees_every_entry() {
        let mut d = Demux::default();
        let a = PeerId(1);
        let b = PeerId(2);
        d.add_peer(a, "ua".into());
        d.add_peer(b, "ub".into());
        d.learn(udp(1), addr(9), a);
        d.learn(udp(2), addr(9), a);
        d.learn(udp(3), addr(9), b);
        assert_eq!(d.by_tuple(udp(1), addr(9)), Some(a));
        assert_eq!(d.by_ufrag("ub"), Some(b));
        // A tuple moving to another peer is no longer freed with the old one.
        d.learn(udp(2), addr(9), b);
        d.remove_peer(a);
        assert_eq!(d.by_tuple(udp(1), addr(9)), None);
        assert_eq!(d.by_tuple(udp(2), addr(9)), Some(b));
        assert_eq!(d.by_ufrag("ua"), None);
        // The same address over TCP is another 5-tuple.
        let tcp = Remote {
            proto: crate::tx_queue::Protocol::Tcp,
            addr: addr(3),
        };
        assert_eq!(d.by_tuple(tcp, addr(9)), None);
        d.learn(tcp, addr(9), b);
        assert_eq!(d.by_tuple(tcp, addr(9)), Some(b));
        assert_eq!(d.by_tuple(udp(3), addr(9)), Some(b));
        d.remove_peer(b);
        assert!(d.is_empty());
    }
}
