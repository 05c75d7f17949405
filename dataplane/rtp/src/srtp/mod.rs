//! SRTP and SRTCP for one transport (RFC 3711, RFC 7714), keyed from what a str0m peer's
//! DTLS exported (RFC 5764), and [`tap`], which captures that export.
//!
//! Owns: the split of the keying material, the session-key derivation, sealing (the hot path:
//! once per subscriber per forwarded packet) and opening (once per received packet) with
//! the rollover-counter estimate and per-SSRC replay windows.
//!
//! Must never: allocate or copy beyond what the cipher needs on seal/open, derive keys per
//! packet, panic or grow without bound on a peer's bytes, reuse an SRTCP index (a reused
//! index under one key and SSRC is a reused AES-GCM nonce), or change receive state for a
//! packet whose tag did not verify.
//!
//! The cipher primitives are aws-lc's (through aws-lc-rs, the library str0m's default
//! provider wraps), used directly with keys made once per session: the provider's cipher
//! traits cost a copy per packet (AES-GCM seals and opens in place after copying) or a key
//! setup per packet (its AES-CM cipher expands the AES key and its HMAC the pads on every
//! call). Key derivation (AES-ECB, once per session) still goes through the provider.

mod cipher;
mod keys;
mod open;
mod replay;
mod seal;
mod srtcp;
pub mod tap;
#[cfg(test)]
mod tests;

pub use open::{OpenedRtp, SrtpOpener};
pub use replay::{MAX_STREAMS, REPLAY_WINDOW};
pub use seal::SrtpSealer;

use str0m::config::CryptoProvider;
use str0m::crypto::dtls::SrtpProfile;

/// Bytes `out` must hold beyond the sealed length for [`SrtpSealer`], and beyond the
/// received packet's length for [`SrtpOpener`]: some providers' AES-CTR (OpenSSL's, and
/// older aws-lc wrappers) write up to one block past the input.
pub const SEAL_SLACK: usize = 16;

/// SRTP_AES128_CM_HMAC_SHA1_80's truncated HMAC-SHA1 tag.
const CM_TAG_LEN: usize = 10;
/// AES-GCM's tag (RFC 7714 §7).
const GCM_TAG_LEN: usize = 16;
/// The E flag and 31-bit index that trail every SRTCP packet.
const SRTCP_INDEX_LEN: usize = 4;
/// The fixed RTP header, and the part of an RTCP packet that stays in the clear
/// (header word and sender SSRC).
const RTP_FIXED_HEADER: usize = 12;
const RTCP_CLEAR_PREFIX: usize = 8;

/// The SRTP protection profiles str0m's DTLS (dimpl) negotiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// SRTP_AES128_CM_HMAC_SHA1_80: AES-128 counter mode and an 80-bit HMAC-SHA1 tag.
    Aes128CmSha1_80,
    /// SRTP_AEAD_AES_128_GCM (RFC 7714).
    AeadAes128Gcm,
    /// SRTP_AEAD_AES_256_GCM (RFC 7714).
    AeadAes256Gcm,
}

impl Profile {
    pub const ALL: [Profile; 3] = [
        Profile::Aes128CmSha1_80,
        Profile::AeadAes128Gcm,
        Profile::AeadAes256Gcm,
    ];

    /// The profile DTLS negotiated; `None` for one a later dimpl may add.
    pub fn from_dtls(p: SrtpProfile) -> Option<Profile> {
        match p {
            SrtpProfile::AES128_CM_SHA1_80 => Some(Profile::Aes128CmSha1_80),
            SrtpProfile::AEAD_AES_128_GCM => Some(Profile::AeadAes128Gcm),
            SrtpProfile::AEAD_AES_256_GCM => Some(Profile::AeadAes256Gcm),
            _ => None,
        }
    }

    pub fn to_dtls(self) -> SrtpProfile {
        match self {
            Profile::Aes128CmSha1_80 => SrtpProfile::AES128_CM_SHA1_80,
            Profile::AeadAes128Gcm => SrtpProfile::AEAD_AES_128_GCM,
            Profile::AeadAes256Gcm => SrtpProfile::AEAD_AES_256_GCM,
        }
    }

    /// Bytes a sealed RTP packet adds (the tag; no MKI).
    pub fn rtp_overhead(self) -> usize {
        self.tag_len()
    }

    /// Bytes a sealed compound RTCP packet adds (E flag and SRTCP index, and the tag).
    pub fn rtcp_overhead(self) -> usize {
        SRTCP_INDEX_LEN + self.tag_len()
    }

    /// Master key and master salt lengths (RFC 5764 §4.1.2, RFC 7714 §12).
    pub fn master_lens(self) -> (usize, usize) {
        match self {
            Profile::Aes128CmSha1_80 => (16, 14),
            Profile::AeadAes128Gcm => (16, 12),
            Profile::AeadAes256Gcm => (32, 12),
        }
    }

    /// Bytes of keying material DTLS exports for this profile: both sides' key and salt.
    pub fn keying_material_len(self) -> usize {
        let (key, salt) = self.master_lens();
        2 * (key + salt)
    }

    fn tag_len(self) -> usize {
        match self {
            Profile::Aes128CmSha1_80 => CM_TAG_LEN,
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => GCM_TAG_LEN,
        }
    }
}

/// What a str0m peer's DTLS produced (captured by [`tap`]).
#[derive(Clone, PartialEq, Eq)]
pub struct DtlsKeys {
    pub profile: Profile,
    /// RFC 5764 §4.2 layout: client key ‖ server key ‖ client salt ‖ server salt.
    pub material: Vec<u8>,
    /// Whether our side was the DTLS client: it decides which half we write with.
    pub dtls_client: bool,
}

impl std::fmt::Debug for DtlsKeys {
    // Key material stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsKeys")
            .field("profile", &self.profile)
            .field("material", &format_args!("[{} bytes]", self.material.len()))
            .field("dtls_client", &self.dtls_client)
            .finish()
    }
}

/// Both directions of one transport, derived once from [`DtlsKeys`].
pub struct SrtpSession {
    pub sealer: SrtpSealer,
    pub opener: SrtpOpener,
}

impl SrtpSession {
    /// Splits the keying material (RFC 5764 §4.2: we write with the client half when we were
    /// the DTLS client) and derives the SRTP and SRTCP session keys of each direction
    /// (RFC 3711 §4.3; RFC 7714 §11 and RFC 6188 for the AEAD and 256-bit profiles).
    pub fn new(provider: &CryptoProvider, keys: &DtlsKeys) -> Result<Self, SrtpError> {
        let (ours, theirs) = keys::split(keys)?;
        let profile = keys.profile;
        let tx = keys::derive_session(provider, profile, &ours);
        let rx = keys::derive_session(provider, profile, &theirs);
        Ok(SrtpSession {
            sealer: SrtpSealer::new(profile, tx),
            opener: SrtpOpener::new(profile, rx),
        })
    }
}

/// Why a packet was not sealed or opened. Every variant caused by received bytes is cheap
/// (no allocation) so a caller can count it per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    #[error("packet too short for its header and tag")]
    TooShort,
    #[error("malformed RTP or RTCP header")]
    BadHeader,
    #[error("authentication tag did not verify")]
    AuthFailed,
    #[error("packet already received (replay)")]
    Replayed,
    #[error("packet older than the replay window")]
    TooOld,
    #[error("new SSRC refused: {} streams already tracked", MAX_STREAMS)]
    TooManyStreams,
    #[error("output buffer too small")]
    OutputTooSmall,
    #[error("SRTCP index exhausted: 2^31 packets sealed under this key")]
    IndexExhausted,
    #[error("keying material is {got} bytes, the profile needs {expected}")]
    BadKeyingMaterial { expected: usize, got: usize },
    #[error("crypto provider failed to {0}")]
    Crypto(&'static str),
}
