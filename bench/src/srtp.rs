//! SRTP with str0m's own crypto, for the floor and the micro-benches.
//!
//! Sealing is str0m's `TestSrtp` (its real `SrtpContext::protect_rtp`), so the floor pays for
//! exactly the code the server runs per destination. str0m exports no way to open an SRTP
//! packet outside an `Rtc`, so [`SrtpReceiver`] restates RFC 3711 key derivation and str0m's
//! `unprotect_rtp` over the same provider primitives (the same cipher objects and HMAC); a
//! test checks that it opens what `TestSrtp` seals and rejects a forged tag.
//! Must never carry real keys: the keying material here is a fixed pattern, for measuring.

use str0m::_internal_test_exports::TestSrtp;
use str0m::crypto::dtls::{KeyingMaterial, SrtpProfile};
use str0m::crypto::{
    AeadAes128Gcm, AeadAes128GcmCipher, AeadAes256Gcm, AeadAes256GcmCipher, Aes128CmSha1_80,
    Aes128CmSha1_80Cipher, CryptoProvider, Sha1HmacProvider,
};
use str0m::rtp::{ExtensionMap, RtpHeader};

/// RFC 3711 key-derivation labels for the RTP direction.
const LABEL_RTP_AES: u8 = 0;
const LABEL_RTP_AUTH: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;
/// Bytes of the RTP header [`SrtpSender`] writes: 12 fixed + an empty extension block.
pub const HEADER_LEN: usize = 16;
/// aws-lc-rs wants AES-CTR output buffers one block minus one longer than the input.
const CTR_PADDING: usize = 15;

/// The SRTP protection profiles measured: the three str0m 0.25 (dimpl) implements. str0m
/// peers (the server and the harness's clients) offer all three and choose AEAD_AES_256_GCM
/// (docs/PERFORMANCE.md, "Which SRTP profile"); what a browser gets depends on its offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Profile {
    /// `SRTP_AES128_CM_SHA1_80`: AES-CTR plus a truncated HMAC-SHA1 tag.
    Aes128CmSha1_80,
    /// `SRTP_AEAD_AES_128_GCM`: AES-GCM with a 16-byte tag.
    AeadAes128Gcm,
    /// `SRTP_AEAD_AES_256_GCM`: AES-256-GCM with a 16-byte tag (RFC 7714).
    AeadAes256Gcm,
}

impl Profile {
    pub const ALL: [Profile; 3] = [
        Profile::Aes128CmSha1_80,
        Profile::AeadAes128Gcm,
        Profile::AeadAes256Gcm,
    ];

    pub fn srtp_profile(self) -> SrtpProfile {
        match self {
            Profile::Aes128CmSha1_80 => SrtpProfile::AES128_CM_SHA1_80,
            Profile::AeadAes128Gcm => SrtpProfile::AEAD_AES_128_GCM,
            Profile::AeadAes256Gcm => SrtpProfile::AEAD_AES_256_GCM,
        }
    }

    /// The profile of a DTLS-negotiated `SrtpProfile` (None for one str0m does not know).
    pub fn of_srtp_profile(p: SrtpProfile) -> Option<Profile> {
        Profile::ALL.into_iter().find(|x| x.srtp_profile() == p)
    }

    /// The profile named as str0m logs it (`SRTP_AEAD_AES_256_GCM`, the `Display` of
    /// `SrtpProfile`) or as [`Profile::name`] spells it.
    pub fn from_log_name(text: &str) -> Option<Profile> {
        let t = text.trim();
        let t = t.strip_prefix("SRTP_").unwrap_or(t);
        Profile::ALL.into_iter().find(|p| {
            p.name() == t || p.srtp_profile().to_string().trim_start_matches("SRTP_") == t
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::Aes128CmSha1_80 => "AES_128_CM_SHA1_80",
            Profile::AeadAes128Gcm => "AEAD_AES_128_GCM",
            Profile::AeadAes256Gcm => "AEAD_AES_256_GCM",
        }
    }

    /// The short form the CLI takes (`cm`, `gcm`, `gcm256`).
    pub fn short(self) -> &'static str {
        match self {
            Profile::Aes128CmSha1_80 => "cm",
            Profile::AeadAes128Gcm => "gcm",
            Profile::AeadAes256Gcm => "gcm256",
        }
    }

    /// Bytes SRTP adds to an RTP packet.
    pub fn overhead(self) -> usize {
        match self {
            Profile::Aes128CmSha1_80 => Aes128CmSha1_80::HMAC_TAG_LEN,
            Profile::AeadAes128Gcm => AeadAes128Gcm::TAG_LEN,
            Profile::AeadAes256Gcm => AeadAes256Gcm::TAG_LEN,
        }
    }

    /// A fixed keying-material pattern of the right length (what DTLS would export).
    pub fn keying_material(self) -> KeyingMaterial {
        let len = self.srtp_profile().keying_material_len();
        let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ 0x5a).collect();
        KeyingMaterial::new(&bytes)
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cm" | "aes_128_cm_sha1_80" | "aes128_cm_sha1_80" => Ok(Profile::Aes128CmSha1_80),
            "gcm" | "gcm128" | "aead_aes_128_gcm" => Ok(Profile::AeadAes128Gcm),
            "gcm256" | "aead_aes_256_gcm" => Ok(Profile::AeadAes256Gcm),
            other => Err(format!(
                "unknown SRTP profile {other:?} (cm | gcm | gcm256)"
            )),
        }
    }
}

/// The crypto providers str0m 0.25 can use that resolve here. Its `rust-crypto` feature wants
/// str0m-rust-crypto 0.7 and its `openssl` feature str0m-openssl 0.7; neither is published
/// (crates.io has 0.6), so aws-lc-rs is the only one measured (see docs/PERFORMANCE.md).
pub fn providers() -> Vec<(&'static str, CryptoProvider)> {
    vec![("aws-lc-rs", str0m::crypto::from_feature_flags())]
}

/// Seals RTP packets exactly as str0m does for one outgoing stream.
pub struct SrtpSender {
    inner: TestSrtp,
    exts: ExtensionMap,
}

impl SrtpSender {
    pub fn new(crypto: &CryptoProvider, profile: Profile) -> Self {
        let mat = profile.keying_material();
        SrtpSender {
            inner: TestSrtp::new(crypto, profile.srtp_profile(), &mat),
            exts: ExtensionMap::empty(),
        }
    }

    /// Writes `header` with an empty extension block (str0m always writes the block, so the
    /// X bit must say so: the header is [`HEADER_LEN`] bytes), appends `payload`, encrypts
    /// and tags it. `srtp_index` is the extended sequence number (ROC << 16 | seq).
    pub fn protect(&mut self, mut header: RtpHeader, srtp_index: u64, payload: &[u8]) -> Vec<u8> {
        header.has_extension = true;
        self.inner.protect(header, srtp_index, payload, &self.exts)
    }
}

enum Opener {
    Cm {
        hmac_key: [u8; 20],
        salt: [u8; 14],
        cipher: Box<dyn Aes128CmSha1_80Cipher>,
        hmac: &'static dyn Sha1HmacProvider,
    },
    Gcm {
        salt: [u8; 12],
        cipher: Box<dyn AeadAes128GcmCipher>,
    },
    Gcm256 {
        salt: [u8; 12],
        cipher: Box<dyn AeadAes256GcmCipher>,
    },
}

/// Opens packets sealed by an [`SrtpSender`] built from the same profile.
pub struct SrtpReceiver {
    opener: Opener,
    scratch: Vec<u8>,
}

impl SrtpReceiver {
    pub fn new(crypto: &CryptoProvider, profile: Profile) -> Self {
        let mat = profile.keying_material();
        let srtp = crypto.srtp_provider;
        // TestSrtp takes the "left" master key and salt: the first of each pair.
        let opener = match profile {
            Profile::Aes128CmSha1_80 => {
                let (key, salt) = master(&mat, 16, 14);
                let mut aes = [0u8; 16];
                let mut hmac_key = [0u8; 20];
                let mut session_salt = [0u8; 14];
                derive(crypto, &key, &salt, LABEL_RTP_AES, &mut aes);
                derive(crypto, &key, &salt, LABEL_RTP_AUTH, &mut hmac_key);
                derive(crypto, &key, &salt, LABEL_RTP_SALT, &mut session_salt);
                Opener::Cm {
                    hmac_key,
                    salt: session_salt,
                    cipher: srtp.aes_128_cm_sha1_80().create_cipher(aes, false),
                    hmac: crypto.sha1_hmac_provider,
                }
            }
            Profile::AeadAes128Gcm => {
                let (key, salt) = master(&mat, 16, 12);
                let mut aes = [0u8; 16];
                let mut session_salt = [0u8; 12];
                derive(crypto, &key, &salt, LABEL_RTP_AES, &mut aes);
                derive(crypto, &key, &salt, LABEL_RTP_SALT, &mut session_salt);
                Opener::Gcm {
                    salt: session_salt,
                    cipher: srtp.aead_aes_128_gcm().create_cipher(aes, false),
                }
            }
            Profile::AeadAes256Gcm => {
                let (key, salt) = master(&mat, 32, 12);
                let mut aes = [0u8; 32];
                let mut session_salt = [0u8; 12];
                derive(crypto, &key, &salt, LABEL_RTP_AES, &mut aes);
                derive(crypto, &key, &salt, LABEL_RTP_SALT, &mut session_salt);
                Opener::Gcm256 {
                    salt: session_salt,
                    cipher: srtp.aead_aes_256_gcm().create_cipher(aes, false),
                }
            }
        };
        SrtpReceiver {
            opener,
            scratch: Vec::with_capacity(2048),
        }
    }

    /// Verifies and decrypts one SRTP packet; returns the RTP payload, or `None` when the
    /// packet is too short or its tag does not verify.
    pub fn unprotect(
        &mut self,
        packet: &[u8],
        header_len: usize,
        ssrc: u32,
        srtp_index: u64,
    ) -> Option<&[u8]> {
        match &mut self.opener {
            Opener::Cm {
                hmac_key,
                salt,
                cipher,
                hmac,
            } => {
                let tag_start = packet.len().checked_sub(Aes128CmSha1_80::HMAC_TAG_LEN)?;
                if tag_start < header_len {
                    return None;
                }
                let sha1_hmac = |k: &[u8], p: &[&[u8]]| hmac.sha1_hmac(k, p);
                let authentic = Aes128CmSha1_80::rtp_verify(
                    sha1_hmac,
                    hmac_key,
                    &packet[..tag_start],
                    srtp_index,
                    &packet[tag_start..],
                );
                if !authentic {
                    return None;
                }
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, srtp_index);
                let input = &packet[header_len..tag_start];
                self.scratch.resize(input.len() + CTR_PADDING, 0);
                cipher.decrypt(&iv, input, &mut self.scratch).ok()?;
                Some(&self.scratch[..input.len()])
            }
            Opener::Gcm { salt, cipher } => {
                let body = packet.len().checked_sub(header_len)?;
                let out_len = body.checked_sub(AeadAes128Gcm::TAG_LEN)?;
                let roc = (srtp_index >> 16) as u32;
                let iv = AeadAes128Gcm::rtp_iv(*salt, ssrc, roc, srtp_index as u16);
                let (aad, input) = packet.split_at(header_len);
                self.scratch.resize(out_len, 0);
                cipher.decrypt(&iv, &[aad], input, &mut self.scratch).ok()?;
                Some(&self.scratch[..out_len])
            }
            Opener::Gcm256 { salt, cipher } => {
                let body = packet.len().checked_sub(header_len)?;
                let out_len = body.checked_sub(AeadAes256Gcm::TAG_LEN)?;
                let roc = (srtp_index >> 16) as u32;
                let iv = AeadAes256Gcm::rtp_iv(*salt, ssrc, roc, srtp_index as u16);
                let (aad, input) = packet.split_at(header_len);
                self.scratch.resize(out_len, 0);
                cipher.decrypt(&iv, &[aad], input, &mut self.scratch).ok()?;
                Some(&self.scratch[..out_len])
            }
        }
    }
}

/// The left master key and salt from DTLS keying material [key_l, key_r, salt_l, salt_r].
fn master(mat: &[u8], key_len: usize, salt_len: usize) -> (Vec<u8>, Vec<u8>) {
    let key = mat[..key_len].to_vec();
    let salt = mat[2 * key_len..2 * key_len + salt_len].to_vec();
    (key, salt)
}

/// RFC 3711 §4.3 key derivation: AES-CM of (salt XOR label) with a block counter; AES-256
/// for 32-byte master keys (RFC 7714 §12, as str0m's `SrtpKey::derive`).
fn derive(crypto: &CryptoProvider, key: &[u8], salt: &[u8], label: u8, out: &mut [u8]) {
    let mut input = [0u8; 16];
    input[..salt.len()].copy_from_slice(salt);
    input[7] ^= label;
    let mut block = [0u8; 32];
    for (round, chunk) in out.chunks_mut(16).enumerate() {
        input[14..].copy_from_slice(&(round as u16).to_be_bytes());
        if key.len() == 32 {
            crypto
                .srtp_provider
                .srtp_aes_256_ecb_round(key, &input, &mut block);
        } else {
            crypto
                .srtp_provider
                .srtp_aes_128_ecb_round(key, &input, &mut block);
        }
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::rtp::Ssrc;

    fn header(seq: u16) -> RtpHeader {
        RtpHeader {
            has_extension: false,
            sequence_number: seq,
            timestamp: 90_000,
            ssrc: Ssrc::from(0x1234_5678),
            payload_type: 96.into(),
            ..Default::default()
        }
    }

    #[test]
    fn opens_what_str0m_seals_for_every_profile() {
        for (_, crypto) in providers() {
            for profile in Profile::ALL {
                let mut tx = SrtpSender::new(&crypto, profile);
                let mut rx = SrtpReceiver::new(&crypto, profile);
                let payload: Vec<u8> = (0..1200u32).map(|i| (i % 251) as u8).collect();
                // Cross a sequence-number wrap so the rollover counter takes part.
                for index in [1u64, 65_535, 65_536 + 3] {
                    let packet = tx.protect(header(index as u16), index, &payload);
                    assert_eq!(
                        packet.len(),
                        HEADER_LEN + payload.len() + profile.overhead()
                    );
                    let parsed = RtpHeader::_parse(&packet, &ExtensionMap::empty()).unwrap();
                    assert_eq!(parsed.header_len, HEADER_LEN);
                    assert_eq!(parsed.sequence_number, index as u16);
                    let body = &packet[HEADER_LEN..HEADER_LEN + 1200];
                    assert_ne!(body, &payload[..], "payload was encrypted");
                    let opened = rx.unprotect(&packet, HEADER_LEN, 0x1234_5678, index);
                    assert_eq!(opened, Some(&payload[..]), "{profile:?} index {index}");
                }
            }
        }
    }

    #[test]
    fn profiles_parse_from_the_cli_and_from_str0m_log_names() {
        for p in Profile::ALL {
            assert_eq!(p.short().parse::<Profile>(), Ok(p));
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
            assert_eq!(
                Profile::from_log_name(&p.srtp_profile().to_string()),
                Some(p)
            );
            assert_eq!(Profile::of_srtp_profile(p.srtp_profile()), Some(p));
        }
        assert_eq!(
            Profile::from_log_name("SRTP_AEAD_AES_256_GCM"),
            Some(Profile::AeadAes256Gcm)
        );
        assert_eq!(Profile::from_log_name("SRTP_NULL"), None);
        assert!("gcm512".parse::<Profile>().is_err());
        // 256-bit keys: the opener of one profile does not open another's packets.
        let crypto = str0m::crypto::from_feature_flags();
        let mut tx = SrtpSender::new(&crypto, Profile::AeadAes256Gcm);
        let packet = tx.protect(header(9), 9, &[7; 100]);
        let mut wrong = SrtpReceiver::new(&crypto, Profile::AeadAes128Gcm);
        assert_eq!(wrong.unprotect(&packet, HEADER_LEN, 0x1234_5678, 9), None);
    }

    #[test]
    fn rejects_forged_and_truncated_packets() {
        let crypto = str0m::crypto::from_feature_flags();
        for profile in Profile::ALL {
            let mut tx = SrtpSender::new(&crypto, profile);
            let mut rx = SrtpReceiver::new(&crypto, profile);
            let mut packet = tx.protect(header(7), 7, &[1, 2, 3, 4]);
            let last = packet.len() - 1;
            packet[last] ^= 1;
            assert_eq!(rx.unprotect(&packet, HEADER_LEN, 0x1234_5678, 7), None);
            assert_eq!(
                rx.unprotect(&packet[..18], HEADER_LEN, 0x1234_5678, 7),
                None
            );
            assert_eq!(rx.unprotect(&packet[..3], HEADER_LEN, 0x1234_5678, 7), None);
        }
    }
}
