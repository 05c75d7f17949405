//! The per-profile ciphers (the provider's cipher objects, made once per session) and the
//! SRTP transforms over them: IVs, what is encrypted, what is authenticated, where the tag
//! goes (RFC 3711 §3.1, §4.1-4.2; RFC 7714 §8). The SRTCP transforms are in `srtcp.rs`.
//!
//! Owns no state across packets (the sealer keeps the SRTCP index, the opener the replay
//! windows). Callers have checked the header and the lengths; every slice taken here is
//! still bounds-checked and fails with `OutputTooSmall`/`TooShort` instead of panicking.
//! Must never: allocate, or hand the provider a buffer it may assert on (GCM wants at
//! least 12 bytes of AAD and, to open, at least the tag).

use str0m::config::CryptoProvider;
use str0m::crypto::Sha1HmacProvider;
use str0m::crypto::{AeadAes128GcmCipher, AeadAes256GcmCipher, Aes128CmSha1_80Cipher};

use super::{Profile, SrtpError, CM_TAG_LEN, GCM_TAG_LEN, SEAL_SLACK};

/// The E flag of the SRTCP index word: the payload is encrypted.
pub(super) const SRTCP_E_FLAG: u32 = 0x8000_0000;

/// One direction's keys for one of RTP or RTCP, ready to use.
pub(super) enum Cipher {
    Cm {
        aes: Box<dyn Aes128CmSha1_80Cipher>,
        auth_key: [u8; 20],
        salt: [u8; 14],
        hmac: &'static dyn Sha1HmacProvider,
    },
    Gcm {
        aead: Aead,
        salt: [u8; 12],
    },
}

/// The two AES-GCM key sizes: the provider has a trait per size with the same methods.
pub(super) enum Aead {
    A128(Box<dyn AeadAes128GcmCipher>),
    A256(Box<dyn AeadAes256GcmCipher>),
}

impl Aead {
    pub(super) fn encrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        out: &mut [u8],
    ) -> bool {
        let r = match self {
            Aead::A128(c) => c.encrypt(iv, aad, input, out),
            Aead::A256(c) => c.encrypt(iv, aad, input, out),
        };
        if let Err(e) = &r {
            tracing::debug!(target: "srtp", "AES-GCM seal failed: {e}");
        }
        r.is_ok()
    }

    /// `input` is ciphertext ‖ tag (at least the tag: the provider asserts it).
    pub(super) fn decrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        out: &mut [u8],
    ) -> bool {
        // The provider concatenates (allocates) when given several AAD slices: pass one.
        let r = match self {
            Aead::A128(c) => c.decrypt(iv, &[aad], input, out),
            Aead::A256(c) => c.decrypt(iv, &[aad], input, out),
        };
        r.is_ok()
    }
}

impl Cipher {
    /// `enc_key`, `auth_key` (empty for GCM) and `salt` are session keys, of the
    /// profile's lengths (the caller derived them so).
    pub(super) fn new(
        provider: &CryptoProvider,
        profile: Profile,
        enc_key: &[u8],
        auth_key: &[u8],
        salt: &[u8],
        encrypt: bool,
    ) -> Cipher {
        let srtp = provider.srtp_provider;
        match profile {
            Profile::Aes128CmSha1_80 => Cipher::Cm {
                aes: srtp
                    .aes_128_cm_sha1_80()
                    .create_cipher(array(enc_key), encrypt),
                auth_key: array(auth_key),
                salt: array(salt),
                hmac: provider.sha1_hmac_provider,
            },
            Profile::AeadAes128Gcm => Cipher::Gcm {
                aead: Aead::A128(
                    srtp.aead_aes_128_gcm()
                        .create_cipher(array(enc_key), encrypt),
                ),
                salt: array(salt),
            },
            Profile::AeadAes256Gcm => Cipher::Gcm {
                aead: Aead::A256(
                    srtp.aead_aes_256_gcm()
                        .create_cipher(array(enc_key), encrypt),
                ),
                salt: array(salt),
            },
        }
    }

    /// header ‖ E(payload) ‖ tag into `out`. `header` is at least the fixed 12 bytes.
    pub(super) fn seal_rtp(
        &mut self,
        header: &[u8],
        payload: &[u8],
        ssrc: u32,
        roc: u32,
        seq: u16,
        out: &mut [u8],
    ) -> Result<usize, SrtpError> {
        let hlen = header.len();
        let end = hlen + payload.len();
        span(out, 0, hlen)?.copy_from_slice(header);
        match self {
            Cipher::Cm {
                aes,
                auth_key,
                salt,
                hmac,
            } => {
                let iv = cm_iv(salt, ssrc, u64::from(roc) << 16 | u64::from(seq));
                aes.encrypt(&iv, payload, span(out, hlen, payload.len() + SEAL_SLACK)?)
                    .map_err(|e| crypto_failed("encrypt SRTP", e))?;
                let mac = hmac.sha1_hmac(&auth_key[..], &[span(out, 0, end)?, &roc.to_be_bytes()]);
                span(out, end, CM_TAG_LEN)?.copy_from_slice(&mac[..CM_TAG_LEN]);
                Ok(end + CM_TAG_LEN)
            }
            Cipher::Gcm { aead, salt } => {
                let iv = gcm_rtp_iv(salt, ssrc, roc, seq);
                let body = span(out, hlen, payload.len() + GCM_TAG_LEN)?;
                if !aead.encrypt(&iv, header, payload, body) {
                    return Err(SrtpError::Crypto("seal SRTP"));
                }
                Ok(end + GCM_TAG_LEN)
            }
        }
    }

    /// Verifies `packet` (header of `hlen` bytes, ciphertext, tag) and writes header ‖
    /// plaintext into `out`; returns that length. Nothing is decrypted unless the tag
    /// verified (AES-CM: the HMAC is checked first; AES-GCM verifies as it opens).
    pub(super) fn open_rtp(
        &mut self,
        packet: &[u8],
        hlen: usize,
        ssrc: u32,
        roc: u32,
        seq: u16,
        out: &mut [u8],
    ) -> Result<usize, SrtpError> {
        let header = packet.get(..hlen).ok_or(SrtpError::TooShort)?;
        match self {
            Cipher::Cm {
                aes,
                auth_key,
                salt,
                hmac,
            } => {
                let tag_at = packet
                    .len()
                    .checked_sub(CM_TAG_LEN)
                    .filter(|&t| t >= hlen)
                    .ok_or(SrtpError::TooShort)?;
                let (authed, tag) = packet.split_at(tag_at);
                let mac = hmac.sha1_hmac(&auth_key[..], &[authed, &roc.to_be_bytes()]);
                if !tags_equal(&mac[..CM_TAG_LEN], tag) {
                    return Err(SrtpError::AuthFailed);
                }
                span(out, 0, hlen)?.copy_from_slice(header);
                let iv = cm_iv(salt, ssrc, u64::from(roc) << 16 | u64::from(seq));
                let ciphertext = &authed[hlen..];
                let plain = span(out, hlen, ciphertext.len() + SEAL_SLACK)?;
                aes.decrypt(&iv, ciphertext, plain)
                    .map_err(|e| crypto_failed("decrypt SRTP", e))?;
                Ok(tag_at)
            }
            Cipher::Gcm { aead, salt } => {
                let body = &packet[hlen..];
                let plain_len = body
                    .len()
                    .checked_sub(GCM_TAG_LEN)
                    .ok_or(SrtpError::TooShort)?;
                span(out, 0, hlen)?.copy_from_slice(header);
                let iv = gcm_rtp_iv(salt, ssrc, roc, seq);
                if !aead.decrypt(&iv, header, body, span(out, hlen, plain_len)?) {
                    return Err(SrtpError::AuthFailed);
                }
                Ok(hlen + plain_len)
            }
        }
    }
}

/// AES-CM IV (RFC 3711 §4.1.1): (salt · 2^16) ⊕ (SSRC · 2^64) ⊕ (index · 2^16), the index
/// being the 48-bit packet index for SRTP and the 31-bit SRTCP index for SRTCP.
pub(super) fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    // The low 48 bits of the index land in bytes 8..14.
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= s;
    }
    iv
}

/// AES-GCM SRTP IV (RFC 7714 §8.1): 00 00 ‖ SSRC ‖ ROC ‖ SEQ, ⊕ the session salt.
fn gcm_rtp_iv(salt: &[u8; 12], ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&roc.to_be_bytes());
    iv[10..12].copy_from_slice(&seq.to_be_bytes());
    xor_salt(iv, salt)
}

pub(super) fn xor_salt(mut iv: [u8; 12], salt: &[u8; 12]) -> [u8; 12] {
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

/// Compares tags without an early exit, so timing says nothing about how much matched.
pub(super) fn tags_equal(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y));
    a.len() == b.len() && std::hint::black_box(diff) == 0
}

/// `out[at..at + len]`, or `OutputTooSmall`.
pub(super) fn span(out: &mut [u8], at: usize, len: usize) -> Result<&mut [u8], SrtpError> {
    at.checked_add(len)
        .and_then(|end| out.get_mut(at..end))
        .ok_or(SrtpError::OutputTooSmall)
}

/// Where the last `len` bytes of `buf` start, or `TooShort`.
pub(super) fn tail(buf: &[u8], len: usize) -> Result<usize, SrtpError> {
    buf.len().checked_sub(len).ok_or(SrtpError::TooShort)
}

pub(super) fn be32(buf: &[u8], at: usize) -> Result<u32, SrtpError> {
    buf.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(SrtpError::TooShort)
}

pub(super) fn crypto_failed(what: &'static str, e: str0m::crypto::CryptoError) -> SrtpError {
    tracing::debug!(target: "srtp", "{what} failed: {e}");
    SrtpError::Crypto(what)
}

/// A fixed-size copy of a key the caller sized for the profile (zeros if it did not: a
/// wrong-length key is a bug upstream, and yields a session that never verifies rather
/// than a panic).
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    if bytes.len() == N {
        a.copy_from_slice(bytes);
    } else {
        debug_assert!(false, "key of {} bytes where {N} expected", bytes.len());
    }
    a
}
