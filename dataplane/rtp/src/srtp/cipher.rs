//! The per-profile ciphers (aws-lc keys, made once per session) and the
//! SRTP transforms over them: IVs, what is encrypted, what is authenticated, where the tag
//! goes (RFC 3711 §3.1, §4.1-4.2; RFC 7714 §8). The SRTCP transforms are in `srtcp.rs`.
//!
//! Owns no state across packets (the sealer keeps the SRTCP index, the opener the replay
//! windows). Callers have checked the header and the lengths; every slice taken here is
//! still bounds-checked and fails with `OutputTooSmall`/`TooShort` instead of panicking.
//! Must never: allocate, copy a payload except where counter mode needs it in place, or
//! set up a key per packet.

use aws_lc_rs::aead::{Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
use aws_lc_rs::cipher::{EncryptingKey, EncryptionContext, UnboundCipherKey, AES_128};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;

use super::{Profile, SrtpError, CM_TAG_LEN, GCM_TAG_LEN};

/// The E flag of the SRTCP index word: the payload is encrypted.
pub(super) const SRTCP_E_FLAG: u32 = 0x8000_0000;

/// One direction's keys for one of RTP or RTCP, ready to use.
// The AES-CM variant holds aws-lc's HMAC state (≈ 1.7 KB); a cipher exists once per session
// and direction, and boxing it would add a pointer chase to every packet.
#[allow(clippy::large_enum_variant)]
pub(super) enum Cipher {
    Cm { aes: Ctr, mac: Mac, salt: [u8; 14] },
    Gcm { aead: Aead, salt: [u8; 12] },
}

/// An AES-GCM key (128 or 256 bits), used straight from aws-lc (the library str0m's
/// provider wraps) rather than through the provider's cipher trait: that trait's `encrypt`
/// copies the plaintext into the output and seals it in place, and its `decrypt` does the
/// same with the ciphertext — one extra copy of every forwarded payload. aws-lc's scatter
/// seal and gather open read the input where it is and write the output once.
pub(super) struct Aead {
    /// `None` only if aws-lc refused the key (a wrong length, which the caller's fixed-size
    /// arrays rule out): then nothing seals or opens, as with `array`'s zero key — no panic.
    key: Option<LessSafeKey>,
}

impl Aead {
    fn new(algorithm: &'static Algorithm, key: &[u8]) -> Aead {
        let key = UnboundKey::new(algorithm, key).ok().map(LessSafeKey::new);
        debug_assert!(key.is_some(), "AES-GCM key rejected");
        Aead { key }
    }

    /// E(`input`) ‖ tag into `out[..input.len() + 16]`, `aad` authenticated.
    pub(super) fn encrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        out: &mut [u8],
    ) -> bool {
        let (Some(key), Some(out)) = (&self.key, out.get_mut(..input.len() + GCM_TAG_LEN)) else {
            return false;
        };
        let nonce = Nonce::assume_unique_for_key(*iv);
        let r = key.seal_in_place_scatter(nonce, Aad::from(aad), &mut [], input, out);
        if r.is_err() {
            tracing::debug!(target: "srtp", "AES-GCM seal failed");
        }
        r.is_ok()
    }

    /// `input` is ciphertext ‖ tag; the plaintext goes to `out[..input.len() - 16]`. Nothing
    /// is trusted unless this returns true (`out` may hold garbage otherwise).
    pub(super) fn decrypt(
        &mut self,
        iv: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        out: &mut [u8],
    ) -> bool {
        let Some(split) = input.len().checked_sub(GCM_TAG_LEN) else {
            return false;
        };
        let (ciphertext, tag) = input.split_at(split);
        let (Some(key), Some(out)) = (&self.key, out.get_mut(..split)) else {
            return false;
        };
        let nonce = Nonce::assume_unique_for_key(*iv);
        key.open_separate_gather(nonce, Aad::from(aad), ciphertext, tag, out)
            .is_ok()
    }
}

/// AES-128 in counter mode (RFC 3711 §4.1.1), its key schedule made once per session (the
/// provider's cipher makes it again for every packet). Counter mode encrypts and decrypts
/// alike.
pub(super) struct Ctr {
    /// `None` only for a key aws-lc refused, which the fixed-size key rules out: then
    /// nothing seals or opens.
    key: Option<EncryptingKey>,
}

impl Ctr {
    fn new(key: &[u8; 16]) -> Ctr {
        let key = UnboundCipherKey::new(&AES_128, key)
            .and_then(EncryptingKey::ctr)
            .ok();
        debug_assert!(key.is_some(), "AES-128 key rejected");
        Ctr { key }
    }

    /// `input` through the key stream at `iv` into `out[..input.len()]` (copied, then
    /// transformed in place: aws-lc's counter mode has no separate output).
    pub(super) fn apply(
        &self,
        what: &'static str,
        iv: &[u8; 16],
        input: &[u8],
        out: &mut [u8],
    ) -> Result<(), SrtpError> {
        let key = self.key.as_ref().ok_or(SrtpError::Crypto(what))?;
        let out = span(out, 0, input.len())?;
        out.copy_from_slice(input);
        let context = EncryptionContext::Iv128(FixedLength::from(*iv));
        key.less_safe_encrypt(out, context)
            .map(|_| ())
            .map_err(|_| SrtpError::Crypto(what))
    }
}

/// HMAC-SHA1 with the session's authentication key, its pads computed once per session.
pub(super) struct Mac {
    key: hmac::Key,
}

impl Mac {
    fn new(auth_key: &[u8; 20]) -> Mac {
        Mac {
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_key),
        }
    }

    /// The full 20-byte HMAC of the concatenated `parts`.
    pub(super) fn sign(&self, parts: &[&[u8]]) -> [u8; 20] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in parts {
            ctx.update(part);
        }
        let mut mac = [0u8; 20];
        mac.copy_from_slice(&ctx.sign().as_ref()[..20]);
        mac
    }
}

impl Cipher {
    /// `enc_key`, `auth_key` (empty for GCM) and `salt` are session keys, of the
    /// profile's lengths (the caller derived them so).
    pub(super) fn new(profile: Profile, enc_key: &[u8], auth_key: &[u8], salt: &[u8]) -> Cipher {
        match profile {
            Profile::Aes128CmSha1_80 => Cipher::Cm {
                aes: Ctr::new(&array(enc_key)),
                mac: Mac::new(&array(auth_key)),
                salt: array(salt),
            },
            Profile::AeadAes128Gcm => Cipher::gcm(&AES_128_GCM, &array::<16>(enc_key), salt),
            Profile::AeadAes256Gcm => Cipher::gcm(&AES_256_GCM, &array::<32>(enc_key), salt),
        }
    }

    fn gcm(algorithm: &'static Algorithm, key: &[u8], salt: &[u8]) -> Cipher {
        Cipher::Gcm {
            aead: Aead::new(algorithm, key),
            salt: array(salt),
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
            Cipher::Cm { aes, mac, salt } => {
                let iv = cm_iv(salt, ssrc, u64::from(roc) << 16 | u64::from(seq));
                aes.apply(
                    "encrypt SRTP",
                    &iv,
                    payload,
                    span(out, hlen, payload.len())?,
                )?;
                let mac = mac.sign(&[span(out, 0, end)?, &roc.to_be_bytes()]);
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
            Cipher::Cm { aes, mac, salt } => {
                let tag_at = packet
                    .len()
                    .checked_sub(CM_TAG_LEN)
                    .filter(|&t| t >= hlen)
                    .ok_or(SrtpError::TooShort)?;
                let (authed, tag) = packet.split_at(tag_at);
                let mac = mac.sign(&[authed, &roc.to_be_bytes()]);
                if !tags_equal(&mac[..CM_TAG_LEN], tag) {
                    return Err(SrtpError::AuthFailed);
                }
                span(out, 0, hlen)?.copy_from_slice(header);
                let iv = cm_iv(salt, ssrc, u64::from(roc) << 16 | u64::from(seq));
                let ciphertext = &authed[hlen..];
                let plain = span(out, hlen, ciphertext.len())?;
                aes.apply("decrypt SRTP", &iv, ciphertext, plain)?;
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
