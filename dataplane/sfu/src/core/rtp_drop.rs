//! Why an RTP datagram produced no packet. str0m 0.25 drops such packets inside
//! `Session::handle_rtp` with only a `trace!` line — no event, no error, no counter — so the
//! core works the reason out afterwards from what it can see: the RTP header (cleartext in
//! SRTP), str0m's receive streams (`DirectApi::stream_rx*`) and the core's own window of
//! sequence numbers str0m delivered per SSRC (`SeqWindow`).
//!
//! Runs only on the drop path, except `SeqWindow::insert`, one map update per delivered
//! packet. Must never decide anything about a packet str0m delivered.

use crate::Map;

use str0m::rtp::Ssrc;

use super::ShardCore;
use crate::ids::PeerId;
use crate::peer::Peer;
use crate::stats::DropReason;

/// The cleartext RTP header fields the classification needs (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RtpHead {
    pub ssrc: u32,
    pub seq: u16,
    pub padding: bool,
}

/// Parse the fixed header, and check that the CSRC list and the extension header fit: what
/// str0m's `RtpHeader::parse` needs before it can look at the stream. `None`: undecodable.
pub(crate) fn parse_rtp_head(buf: &[u8]) -> Option<RtpHead> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let csrcs = (buf[0] & 0x0f) as usize;
    let mut len = 12 + 4 * csrcs;
    if buf[0] & 0x10 != 0 {
        let ext = buf.get(len + 2..len + 4)?;
        len += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
    }
    if len > buf.len() {
        return None;
    }
    Some(RtpHead {
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        padding: buf[0] & 0x20 != 0,
    })
}

/// The last 128 sequence numbers str0m delivered on one SSRC (bit i: `top - i`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeqWindow {
    top: u16,
    bits: u128,
}

impl SeqWindow {
    fn new(seq: u16) -> Self {
        SeqWindow { top: seq, bits: 1 }
    }

    pub(crate) fn insert(&mut self, seq: u16) {
        let ahead = seq.wrapping_sub(self.top) as i16;
        if ahead > 0 {
            let n = ahead as u32;
            self.bits = if n >= 128 { 0 } else { self.bits << n };
            self.bits |= 1;
            self.top = seq;
        } else {
            let back = -(ahead as i32) as u32;
            if back < 128 {
                self.bits |= 1 << back;
            }
        }
    }

    pub(crate) fn contains(&self, seq: u16) -> bool {
        let back = self.top.wrapping_sub(seq) as i16;
        back >= 0 && (back as u32) < 128 && self.bits & (1u128 << back) != 0
    }
}

/// Record a delivered packet in its SSRC's window.
pub(crate) fn note_delivered(seen: &mut Map<Ssrc, SeqWindow>, ssrc: Ssrc, seq: u16) {
    seen.entry(ssrc)
        .and_modify(|w| w.insert(seq))
        .or_insert_with(|| SeqWindow::new(seq));
}

/// Which of our receive streams an SSRC belongs to: `Some(false)` main, `Some(true)` RTX.
fn stream_of(p: &mut Peer, ssrc: Ssrc) -> Option<bool> {
    let mut api = p.rtc.direct_api();
    if api.stream_rx(&ssrc).is_some() {
        return Some(false);
    }
    // RTX SSRCs are not keyed in str0m's public API: ask each published (mid, rid).
    for m in p.published.iter() {
        let rids: smallvec::SmallVec<[Option<str0m::media::Rid>; 3]> = if m.rids.is_empty() {
            smallvec::smallvec![None]
        } else {
            m.rids.iter().map(|r| Some(*r)).collect()
        };
        for rid in rids {
            if api
                .stream_rx_by_mid(m.mid, rid)
                .is_some_and(|s| s.rtx() == Some(ssrc))
            {
                return Some(true);
            }
        }
    }
    None
}

impl ShardCore {
    /// The reason an RTP datagram that str0m took without delivering a packet was dropped;
    /// `None` when that is normal (RTX padding, BWE probes on SSRC 0).
    pub(crate) fn rtp_drop_reason(&mut self, id: PeerId, buf: &[u8]) -> Option<DropReason> {
        let Some(head) = parse_rtp_head(buf) else {
            return Some(DropReason::RtpUndecodable);
        };
        if head.ssrc == 0 {
            return None; // libwebrtc's padding probes: str0m only registers them for TWCC
        }
        let ssrc = Ssrc::from(head.ssrc);
        self.with_peer(id, |p| match stream_of(p, ssrc) {
            None => Some(DropReason::RtpUnknownSsrc),
            Some(true) if head.padding => None,
            Some(true) => Some(DropReason::SrtpAuthFailed),
            Some(false) if p.rx_seen.get(&ssrc).is_some_and(|w| w.contains(head.seq)) => {
                Some(DropReason::SrtpReplay)
            }
            Some(false) => Some(DropReason::SrtpAuthFailed),
        })
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_remembers_recent_seqs_across_wrap() {
        let mut w = SeqWindow::new(65_530);
        for s in [65_531u16, 65_535, 0, 3] {
            w.insert(s);
        }
        w.insert(65_533); // late
        for s in [65_530u16, 65_531, 65_533, 65_535, 0, 3] {
            assert!(w.contains(s), "{s}");
        }
        for s in [65_532u16, 65_534, 1, 2, 4, 1000] {
            assert!(!w.contains(s), "{s}");
        }
        w.insert(3 + 200); // a jump forgets the old ones
        assert!(!w.contains(3) && w.contains(203));
    }

    #[test]
    fn header_checks_what_str0m_needs() {
        let mut h = [0u8; 16];
        h[0] = 0x80;
        h[2..4].copy_from_slice(&7u16.to_be_bytes());
        h[8..12].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        let head = parse_rtp_head(&h).expect("plain header");
        assert_eq!((head.ssrc, head.seq, head.padding), (0xdead_beef, 7, false));
        h[0] = 0x8f; // 15 CSRCs do not fit in 16 bytes
        assert_eq!(parse_rtp_head(&h), None);
        h[0] = 0x90; // extension header claims 0x0101 words
        h[12..16].copy_from_slice(&[0xbe, 0xde, 0x01, 0x01]);
        assert_eq!(parse_rtp_head(&h), None);
        h[14..16].copy_from_slice(&[0, 0]);
        assert!(parse_rtp_head(&h).is_some());
        h[0] = 0x40; // version 1
        assert_eq!(parse_rtp_head(&h), None);
    }
}
