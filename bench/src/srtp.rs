//! SRTP for the floor, its load generator and sinks, and the micro-bench: Shardcast's own
//! (`shardcast_rtp::srtp`), the code the server seals and opens with.
//!
//! Every session is built as the server builds a transport's: [`DtlsKeys`] through
//! `SrtpSession::new` with the server's crypto provider (`tap::tapping_provider()`, whose
//! SRTP primitives are the installed default's, or str0m's feature-flag default). Only the
//! keying material differs: a fixed pattern instead of what a DTLS handshake exports.
//! Owns the bench's profile names (CLI and JSON), the pattern and which end seals with
//! which half of it. Must never carry real keys: this is for measuring, and every session
//! of one profile has the same keys.

use shardcast_rtp::srtp::{self, DtlsKeys, SrtpSession};
use str0m::config::CryptoProvider;
use str0m::crypto::dtls::SrtpProfile;

/// The SRTP protection profiles measured: the three str0m 0.25 (dimpl) implements. str0m
/// peers (the server and the harness's clients) offer all three and choose AEAD_AES_256_GCM
/// (docs/PERFORMANCE.md, "Which SRTP profile"); what a browser gets depends on its offer.
/// The bench's own type, not `shardcast_rtp::srtp::Profile`: its variant names are the
/// JSON reports' (`"profile": "AeadAes256Gcm"`).
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

    /// The same profile in Shardcast's SRTP.
    pub fn rtp(self) -> srtp::Profile {
        match self {
            Profile::Aes128CmSha1_80 => srtp::Profile::Aes128CmSha1_80,
            Profile::AeadAes128Gcm => srtp::Profile::AeadAes128Gcm,
            Profile::AeadAes256Gcm => srtp::Profile::AeadAes256Gcm,
        }
    }

    /// The profile as str0m's DTLS names it.
    pub fn srtp_profile(self) -> SrtpProfile {
        self.rtp().to_dtls()
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

    /// Bytes SRTP adds to an RTP packet (the tag).
    pub fn overhead(self) -> usize {
        self.rtp().rtp_overhead()
    }

    /// A fixed keying-material pattern of the right length, as DTLS would export it
    /// (RFC 5764 §4.2: client key ‖ server key ‖ client salt ‖ server salt), for `end`.
    pub fn keys(self, end: End) -> DtlsKeys {
        let len = self.rtp().keying_material_len();
        DtlsKeys {
            profile: self.rtp(),
            material: (0..len).map(|i| (i as u8).wrapping_mul(7) ^ 0x5a).collect(),
            dtls_client: end == End::Peer,
        }
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

/// The two ends of every SRTP flow in the bench. The forwarder (the floor, in the server's
/// place) is the DTLS server and a peer (the load generator or a sink, in a client's place)
/// the DTLS client, so what a peer seals the forwarder opens and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Forwarder,
    Peer,
}

/// The crypto providers measured, by name. str0m 0.25 can use only aws-lc-rs here: its
/// `rust-crypto` feature wants str0m-rust-crypto 0.7 and its `openssl` feature
/// str0m-openssl 0.7; neither is published (crates.io has 0.6), see docs/PERFORMANCE.md.
/// The provider is the server's (`tap::tapping_provider()`).
pub fn providers() -> Vec<(&'static str, &'static CryptoProvider)> {
    vec![("aws-lc-rs", srtp::tap::tapping_provider().as_ref())]
}

/// One transport's SRTP for `end`, keyed as [`Profile::keys`], with the server's provider.
pub fn session(profile: Profile, end: End) -> SrtpSession {
    session_with(srtp::tap::tapping_provider(), profile, end)
}

/// As [`session`], with `provider`.
pub fn session_with(provider: &CryptoProvider, profile: Profile, end: End) -> SrtpSession {
    SrtpSession::new(provider, &profile.keys(end))
        .expect("the pattern is the profile's keying-material length")
}

#[cfg(test)]
mod tests {
    use super::*;
    use shardcast_rtp::rtp::{write_header, ExtIds, HeaderFields, OutExtensions};
    use shardcast_rtp::srtp::SEAL_SLACK;

    fn header(seq: u16) -> [u8; 12] {
        let mut out = [0u8; 12];
        let fields = HeaderFields {
            marker: false,
            payload_type: 96,
            seq,
            timestamp: 90_000,
            ssrc: 0x1234_5678,
        };
        let n = write_header(
            &mut out,
            &fields,
            &OutExtensions::default(),
            &ExtIds::default(),
        )
        .unwrap();
        assert_eq!(n, 12);
        out
    }

    #[test]
    fn a_peer_opens_what_the_forwarder_seals_and_back_for_every_profile() {
        let payload: Vec<u8> = (0..1200u32).map(|i| (i % 251) as u8).collect();
        for profile in Profile::ALL {
            let mut forwarder = session(profile, End::Forwarder);
            let mut peer = session(profile, End::Peer);
            let mut sealed = vec![0u8; 12 + payload.len() + profile.overhead() + SEAL_SLACK];
            let mut plain = vec![0u8; sealed.len() + SEAL_SLACK];
            // Across a sequence-number wrap, so the rollover counter takes part.
            for index in [1u64, 30_000, 60_000, 65_535, 65_536 + 3] {
                let (seq, roc) = (index as u16, (index >> 16) as u32);
                for (tx, rx) in [
                    (&mut forwarder.sealer, &mut peer.opener),
                    (&mut peer.sealer, &mut forwarder.opener),
                ] {
                    let n = tx
                        .seal_rtp(&header(seq), &payload, roc, &mut sealed)
                        .unwrap();
                    assert_eq!(n, 12 + payload.len() + profile.overhead());
                    assert_ne!(&sealed[12..12 + 1200], &payload[..], "payload encrypted");
                    let opened = rx.open_rtp(&sealed[..n], &mut plain).unwrap();
                    assert_eq!(opened.ext_seq, index, "{profile:?}");
                    assert_eq!(&plain[opened.header_len..opened.len], &payload[..]);
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
            assert_eq!(
                p.keys(End::Peer).material.len(),
                p.rtp().keying_material_len()
            );
        }
        assert_eq!(
            Profile::from_log_name("SRTP_AEAD_AES_256_GCM"),
            Some(Profile::AeadAes256Gcm)
        );
        assert_eq!(Profile::from_log_name("SRTP_NULL"), None);
        assert!("gcm512".parse::<Profile>().is_err());
        // The report's spelling of a profile is the variant name (docs, tests read it).
        assert_eq!(
            serde_json::to_value(Profile::AeadAes256Gcm).unwrap(),
            "AeadAes256Gcm"
        );
    }

    #[test]
    fn another_profile_or_the_same_end_does_not_open() {
        let mut sealed = [0u8; 12 + 100 + 16 + SEAL_SLACK];
        let mut plain = [0u8; 12 + 100 + 16 + 2 * SEAL_SLACK];
        let mut tx = session(Profile::AeadAes256Gcm, End::Forwarder);
        let n = tx
            .sealer
            .seal_rtp(&header(9), &[7; 100], 0, &mut sealed)
            .unwrap();
        let mut wrong = session(Profile::AeadAes128Gcm, End::Peer);
        assert!(wrong.opener.open_rtp(&sealed[..n], &mut plain).is_err());
        // The forwarder's own opener expects the peer's half of the material.
        assert!(tx.opener.open_rtp(&sealed[..n], &mut plain).is_err());
    }

    #[test]
    fn rejects_forged_and_truncated_packets() {
        for profile in Profile::ALL {
            let mut tx = session(profile, End::Peer);
            let mut rx = session(profile, End::Forwarder);
            let mut sealed = [0u8; 64];
            let mut plain = [0u8; 64 + SEAL_SLACK];
            let n = tx
                .sealer
                .seal_rtp(&header(7), &[1, 2, 3, 4], 0, &mut sealed)
                .unwrap();
            let mut forged = sealed;
            forged[n - 1] ^= 1;
            assert!(rx.opener.open_rtp(&forged[..n], &mut plain).is_err());
            assert!(rx.opener.open_rtp(&sealed[..18], &mut plain).is_err());
            assert!(rx.opener.open_rtp(&sealed[..3], &mut plain).is_err());
            assert!(rx.opener.open_rtp(&sealed[..n], &mut plain).is_ok());
        }
    }
}
