//! Opening: the SRTP and SRTCP a peer sends us on one transport, once per received packet.
//!
//! Owns the receive state: per RTP SSRC the highest index (hence the rollover counter) and
//! a replay window, per SRTCP sender SSRC the same over the SRTCP index; both tables capped
//! at [`MAX_STREAMS`](super::MAX_STREAMS).
//! Must never: allocate per packet, read past the packet on a lying CSRC count or extension
//! length, or change any state for a packet whose tag did not verify (a forged packet
//! cannot advance a ROC, fill a window or take a table slot).

use super::cipher::{be32, Cipher};
use super::keys::Direction;
use super::replay::{estimate_index, Streams};
use super::SRTCP_INDEX_LEN;
use super::{Profile, SrtpError, RTCP_CLEAR_PREFIX, RTP_FIXED_HEADER, SEAL_SLACK};

/// What [`SrtpOpener::open_rtp`] found; the plaintext packet is `out[..len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenedRtp {
    pub ssrc: u32,
    pub seq: u16,
    /// roc << 16 | seq: the packet index the ROC estimate placed it at.
    pub ext_seq: u64,
    pub header_len: usize,
    /// Header + payload (padding included).
    pub len: usize,
}

/// Opens what the peer sends on one transport.
pub struct SrtpOpener {
    profile: Profile,
    rtp: Cipher,
    rtcp: Cipher,
    rtp_streams: Streams,
    rtcp_senders: Streams,
}

impl SrtpOpener {
    pub(super) fn new(profile: Profile, keys: Direction) -> SrtpOpener {
        SrtpOpener {
            profile,
            rtp: keys.rtp,
            rtcp: keys.rtcp,
            rtp_streams: Streams::default(),
            rtcp_senders: Streams::default(),
        }
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Authenticate and decrypt one SRTP packet: writes the plaintext packet (header as
    /// received, then the decrypted payload, without the tag) into `out`, which must hold
    /// `packet.len()` + [`SEAL_SLACK`]. Estimates the ROC per SSRC (RFC 3711 §3.3.1),
    /// rejects replays per SSRC within [`REPLAY_WINDOW`](super::REPLAY_WINDOW) packets and
    /// anything older; updates that state only once the tag verified. Allocates nothing
    /// itself; str0m-aws-lc-rs's AES-GCM formats an error string for every tag that fails,
    /// and its AES-CM cipher allocates its key per call (AES-CM forgeries are refused by the
    /// HMAC first, without it).
    pub fn open_rtp(&mut self, packet: &[u8], out: &mut [u8]) -> Result<OpenedRtp, SrtpError> {
        let header_len = rtp_header_len(packet)?;
        if packet.len() < header_len + self.profile.rtp_overhead() {
            return Err(SrtpError::TooShort);
        }
        if out.len() < packet.len() + SEAL_SLACK {
            return Err(SrtpError::OutputTooSmall);
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = be32(packet, 8)?;

        let (slot, window) = self.rtp_streams.lookup(ssrc)?;
        let ext_seq = estimate_index(window.map(|w| w.highest()), seq)?;
        if let Some(w) = window {
            w.check(ext_seq)?;
        }
        let roc = (ext_seq >> 16) as u32;
        let len = self.rtp.open_rtp(packet, header_len, ssrc, roc, seq, out)?;
        self.rtp_streams.accept(slot, ssrc, ext_seq);
        Ok(OpenedRtp {
            ssrc,
            seq,
            ext_seq,
            header_len,
            len,
        })
    }

    /// Authenticate and decrypt one SRTCP packet (or only authenticate it when its E flag is
    /// clear) into `out`, which must hold `packet.len()` + [`SEAL_SLACK`]; returns the
    /// length of the plain compound packet. Replays are rejected per sender SSRC (bytes
    /// 4..8) on the SRTCP index, with the same window as RTP.
    pub fn open_rtcp(&mut self, packet: &[u8], out: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.profile.tag_len();
        if packet.len() < RTCP_CLEAR_PREFIX + SRTCP_INDEX_LEN + tag_len {
            return Err(SrtpError::TooShort);
        }
        if packet[0] >> 6 != 2 {
            return Err(SrtpError::BadHeader);
        }
        if out.len() < packet.len() + SEAL_SLACK {
            return Err(SrtpError::OutputTooSmall);
        }
        // AES-CM: … ‖ E+index ‖ tag. AES-GCM: … ‖ tag ‖ E+index (RFC 7714 §9).
        let index_at = match self.profile {
            Profile::Aes128CmSha1_80 => packet.len() - SRTCP_INDEX_LEN - tag_len,
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => packet.len() - SRTCP_INDEX_LEN,
        };
        let e_index = be32(packet, index_at)?;
        let ssrc = be32(packet, 4)?;
        let index = u64::from(e_index & 0x7fff_ffff);

        let slot = self.rtcp_senders.check(ssrc, index)?;
        let len = self.rtcp.open_rtcp(packet, e_index, out)?;
        self.rtcp_senders.accept(slot, ssrc, index);
        Ok(len)
    }

    /// Frees the receive state of an SSRC whose stream ended (RTP and SRTCP alike), making
    /// room under the cap. Its old packets are no longer recognised as replays: forget only
    /// streams the caller would drop anyway.
    pub fn forget_ssrc(&mut self, ssrc: u32) {
        self.rtp_streams.forget(ssrc);
        self.rtcp_senders.forget(ssrc);
    }
}

/// The length of the RTP header at the start of `packet`: fixed part, CSRCs and the header
/// extension (RFC 3550 §5.1, §5.3.1). `TooShort` below the fixed 12 bytes, `BadHeader` for
/// another version or a CSRC list or extension running past the end.
pub(super) fn rtp_header_len(packet: &[u8]) -> Result<usize, SrtpError> {
    let first = *packet.first().ok_or(SrtpError::TooShort)?;
    if packet.len() < RTP_FIXED_HEADER {
        return Err(SrtpError::TooShort);
    }
    if first >> 6 != 2 {
        return Err(SrtpError::BadHeader);
    }
    let csrcs = usize::from(first & 0x0f);
    let mut len = RTP_FIXED_HEADER + 4 * csrcs;
    if first & 0x10 != 0 {
        let words = packet
            .get(len + 2..len + 4)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or(SrtpError::BadHeader)?;
        len += 4 + 4 * words;
    }
    if len > packet.len() {
        return Err(SrtpError::BadHeader);
    }
    Ok(len)
}
