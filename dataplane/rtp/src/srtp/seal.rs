//! Sealing: our outgoing SRTP and SRTCP on one transport. The hot path of the media node
//! (once per subscriber per forwarded packet).
//!
//! Owns the SRTCP index (one 31-bit counter for every SSRC we send RTCP from). The SRTP
//! rollover counter is the caller's: it owns the outgoing sequence space.
//! Must never: allocate, copy more than header and payload into `out`, reuse or wrap the
//! SRTCP index (with AES-GCM a reused index under one SSRC is a reused nonce).

use super::cipher::{be32, Cipher};
use super::keys::Direction;
use super::open::rtp_header_len;
use super::{Profile, SrtpError, RTCP_CLEAR_PREFIX, SEAL_SLACK};

/// The largest SRTCP index (RFC 3711 §3.4: 31 bits).
const MAX_SRTCP_INDEX: u32 = 0x7fff_ffff;

/// Seals what we send on one transport.
pub struct SrtpSealer {
    profile: Profile,
    rtp: Cipher,
    rtcp: Cipher,
    /// The index the next SRTCP packet gets; past `MAX_SRTCP_INDEX` sealing RTCP fails.
    next_srtcp_index: u64,
}

impl SrtpSealer {
    pub(super) fn new(profile: Profile, keys: Direction) -> SrtpSealer {
        SrtpSealer {
            profile,
            rtp: keys.rtp,
            rtcp: keys.rtcp,
            next_srtcp_index: 0,
        }
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Seal one RTP packet: `header` is the complete plaintext header (with its SSRC and
    /// sequence number, CSRCs, extensions) and stays in the clear; `payload` (padding
    /// included) is encrypted; `roc` is the rollover counter of that SSRC for this sequence
    /// number. Writes header ‖ ciphertext ‖ tag into `out`, which must hold that plus
    /// [`SEAL_SLACK`]; returns the sealed length. Allocates nothing itself (the AEAD
    /// profiles allocate nothing at all; str0m-aws-lc-rs's AES-CM cipher builds its AES key,
    /// one allocation, on every call, as it does for str0m's own SRTP).
    ///
    /// One (SSRC, ROC, sequence number) must never be sealed with two different payloads:
    /// with AES-GCM it would reuse a nonce. Sealing the same packet again (a resend of the
    /// identical bytes) is harmless.
    pub fn seal_rtp(
        &mut self,
        header: &[u8],
        payload: &[u8],
        roc: u32,
        out: &mut [u8],
    ) -> Result<usize, SrtpError> {
        // A header whose CSRC count or extension length disagrees with its slice would make
        // the receiver authenticate a different split (and fail): catch it here.
        if rtp_header_len(header)? != header.len() {
            return Err(SrtpError::BadHeader);
        }
        let sealed = header.len() + payload.len() + self.profile.rtp_overhead();
        if out.len() < sealed + SEAL_SLACK {
            return Err(SrtpError::OutputTooSmall);
        }
        let seq = u16::from_be_bytes([header[2], header[3]]);
        let ssrc = be32(header, 8)?;
        self.rtp.seal_rtp(header, payload, ssrc, roc, seq, out)
    }

    /// Seal one compound RTCP packet (its first packet's sender SSRC at bytes 4..8 stays in
    /// the clear with the first header word). Writes it with E flag, SRTCP index and tag
    /// into `out`, which must hold that plus [`SEAL_SLACK`]; returns the sealed length.
    /// Fails with `IndexExhausted` after 2^31 packets: rekey (a new DTLS handshake) first.
    pub fn seal_rtcp(&mut self, compound: &[u8], out: &mut [u8]) -> Result<usize, SrtpError> {
        if compound.len() < RTCP_CLEAR_PREFIX {
            return Err(SrtpError::TooShort);
        }
        if compound[0] >> 6 != 2 {
            return Err(SrtpError::BadHeader);
        }
        let sealed = compound.len() + self.profile.rtcp_overhead();
        if out.len() < sealed + SEAL_SLACK {
            return Err(SrtpError::OutputTooSmall);
        }
        let index = u32::try_from(self.next_srtcp_index)
            .ok()
            .filter(|&i| i <= MAX_SRTCP_INDEX)
            .ok_or(SrtpError::IndexExhausted)?;
        // Spent before sealing, so even a failed attempt never offers the index twice.
        self.next_srtcp_index += 1;
        self.rtcp.seal_rtcp(compound, index, out)
    }

    /// How many SRTCP indices remain before `IndexExhausted`.
    pub fn srtcp_indices_left(&self) -> u64 {
        (u64::from(MAX_SRTCP_INDEX) + 1).saturating_sub(self.next_srtcp_index)
    }

    #[cfg(test)]
    pub(super) fn set_next_srtcp_index(&mut self, index: u64) {
        self.next_srtcp_index = index;
    }
}
