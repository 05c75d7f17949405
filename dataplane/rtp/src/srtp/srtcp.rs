//! The SRTCP transforms (RFC 3711 §3.4, RFC 7714 §9): what stays clear (the first header
//! word and the sender SSRC), where the E flag and index go relative to the tag, and the
//! AES-GCM IV and AAD over the index.
//!
//! Same rules as [`super::cipher`]: no state, no allocation, every slice checked.

use super::cipher::{be32, cm_iv, span, tags_equal, tail, xor_salt};
use super::cipher::{Cipher, SRTCP_E_FLAG};
use super::{SrtpError, CM_TAG_LEN, GCM_TAG_LEN, RTCP_CLEAR_PREFIX, SRTCP_INDEX_LEN};

impl Cipher {
    /// header ‖ SSRC ‖ E(rest) ‖ then the E flag and index and the tag in the profile's
    /// order. `compound` is at least the 8-byte clear prefix; `index` fits in 31 bits.
    pub(super) fn seal_rtcp(
        &mut self,
        compound: &[u8],
        index: u32,
        out: &mut [u8],
    ) -> Result<usize, SrtpError> {
        let n = compound.len();
        let (clear, rest) = compound
            .split_at_checked(RTCP_CLEAR_PREFIX)
            .ok_or(SrtpError::TooShort)?;
        let ssrc = be32(clear, 4)?;
        let e_index = (SRTCP_E_FLAG | index).to_be_bytes();
        span(out, 0, RTCP_CLEAR_PREFIX)?.copy_from_slice(clear);
        match self {
            Cipher::Cm { aes, mac, salt } => {
                let iv = cm_iv(salt, ssrc, u64::from(index));
                let body = span(out, RTCP_CLEAR_PREFIX, rest.len())?;
                aes.apply("encrypt SRTCP", &iv, rest, body)?;
                span(out, n, SRTCP_INDEX_LEN)?.copy_from_slice(&e_index);
                let authed = n + SRTCP_INDEX_LEN;
                let mac = mac.sign(&[span(out, 0, authed)?]);
                span(out, authed, CM_TAG_LEN)?.copy_from_slice(&mac[..CM_TAG_LEN]);
                Ok(authed + CM_TAG_LEN)
            }
            Cipher::Gcm { aead, salt } => {
                let iv = gcm_rtcp_iv(salt, ssrc, index);
                let aad = gcm_rtcp_aad(clear, e_index)?;
                let body = span(out, RTCP_CLEAR_PREFIX, rest.len() + GCM_TAG_LEN)?;
                if !aead.encrypt(&iv, &aad, rest, body) {
                    return Err(SrtpError::Crypto("seal SRTCP"));
                }
                let at = n + GCM_TAG_LEN;
                span(out, at, SRTCP_INDEX_LEN)?.copy_from_slice(&e_index);
                Ok(at + SRTCP_INDEX_LEN)
            }
        }
    }

    /// Verifies an SRTCP packet whose E flag and index word (`e_index`, read by the
    /// caller from where the profile puts it) and writes the plain compound packet into
    /// `out`; returns its length. `packet` is at least clear prefix ‖ index ‖ tag.
    pub(super) fn open_rtcp(
        &mut self,
        packet: &[u8],
        e_index: u32,
        out: &mut [u8],
    ) -> Result<usize, SrtpError> {
        let ssrc = be32(packet, 4)?;
        let index = e_index & !SRTCP_E_FLAG;
        let encrypted = e_index & SRTCP_E_FLAG != 0;
        match self {
            Cipher::Cm { aes, mac, salt } => {
                let tag_at = tail(packet, CM_TAG_LEN)?;
                let (authed, tag) = packet.split_at(tag_at);
                let mac = mac.sign(&[authed]);
                if !tags_equal(&mac[..CM_TAG_LEN], tag) {
                    return Err(SrtpError::AuthFailed);
                }
                let end = tail(authed, SRTCP_INDEX_LEN)?;
                let compound = &authed[..end];
                if !encrypted {
                    span(out, 0, end)?.copy_from_slice(compound);
                    return Ok(end);
                }
                let (clear, ciphertext) = compound
                    .split_at_checked(RTCP_CLEAR_PREFIX)
                    .ok_or(SrtpError::TooShort)?;
                span(out, 0, RTCP_CLEAR_PREFIX)?.copy_from_slice(clear);
                let iv = cm_iv(salt, ssrc, u64::from(index));
                let plain = span(out, RTCP_CLEAR_PREFIX, ciphertext.len())?;
                aes.apply("decrypt SRTCP", &iv, ciphertext, plain)?;
                Ok(end)
            }
            Cipher::Gcm { aead, salt } => {
                let iv = gcm_rtcp_iv(salt, ssrc, index);
                let tagged_end = tail(packet, SRTCP_INDEX_LEN)?;
                let tagged = &packet[..tagged_end];
                let e_index_bytes = e_index.to_be_bytes();
                if encrypted {
                    let (clear, body) = tagged
                        .split_at_checked(RTCP_CLEAR_PREFIX)
                        .ok_or(SrtpError::TooShort)?;
                    let plain_len = body
                        .len()
                        .checked_sub(GCM_TAG_LEN)
                        .ok_or(SrtpError::TooShort)?;
                    let aad = gcm_rtcp_aad(clear, e_index_bytes)?;
                    span(out, 0, RTCP_CLEAR_PREFIX)?.copy_from_slice(clear);
                    let plain = span(out, RTCP_CLEAR_PREFIX, plain_len)?;
                    if !aead.decrypt(&iv, &aad, body, plain) {
                        return Err(SrtpError::AuthFailed);
                    }
                    Ok(RTCP_CLEAR_PREFIX + plain_len)
                } else {
                    // Authenticated only (RFC 7714 §9.2): the AAD is the whole compound packet
                    // followed by the index word, the plaintext empty. Laid out contiguously
                    // in `out` so the provider gets a single AAD slice and does not allocate.
                    let end = tail(tagged, GCM_TAG_LEN)?;
                    let (compound, tag) = tagged.split_at(end);
                    span(out, 0, end)?.copy_from_slice(compound);
                    span(out, end, SRTCP_INDEX_LEN)?.copy_from_slice(&e_index_bytes);
                    let aad = span(out, 0, end + SRTCP_INDEX_LEN)?;
                    if !aead.decrypt(&iv, aad, tag, &mut []) {
                        return Err(SrtpError::AuthFailed);
                    }
                    Ok(end)
                }
            }
        }
    }
}

/// AES-GCM SRTCP IV (RFC 7714 §9.1): 00 00 ‖ SSRC ‖ 00 00 ‖ 0 ‖ 31-bit index, ⊕ salt.
fn gcm_rtcp_iv(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&(index & !SRTCP_E_FLAG).to_be_bytes());
    xor_salt(iv, salt)
}

/// AES-GCM SRTCP AAD for an encrypted packet (RFC 7714 §9.3): the clear 8 bytes and the
/// E flag ‖ index word.
fn gcm_rtcp_aad(clear: &[u8], e_index: [u8; 4]) -> Result<[u8; 12], SrtpError> {
    let mut aad = [0u8; 12];
    aad.get_mut(..RTCP_CLEAR_PREFIX)
        .zip(clear.get(..RTCP_CLEAR_PREFIX))
        .ok_or(SrtpError::TooShort)
        .map(|(a, c)| a.copy_from_slice(c))?;
    aad[RTCP_CLEAR_PREFIX..].copy_from_slice(&e_index);
    Ok(aad)
}
