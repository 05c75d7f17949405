//! Known answers through the public API, from master keys (so the RFC 3711 key derivation,
//! the RFC 5764 split and the packet transforms are all on the path):
//! - libsrtp's `srtp_validate` (AES_CM_128_HMAC_SHA1_80, RFC 3711 B.3's master key) and
//!   `srtp_validate_gcm` (AEAD_AES_128_GCM) reference packets, an implementation
//!   independent of str0m's;
//! - str0m's own SRTCP vector for AES_CM_128_HMAC_SHA1_80 from DTLS-shaped material.

use shardcast_rtp::srtp::{DtlsKeys, Profile, SrtpError, SrtpSession};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A session whose both directions use one master key and salt, as libsrtp's tests do.
fn symmetric(profile: Profile, key: &str, salt: &str) -> SrtpSession {
    let (key, salt) = (hex(key), hex(salt));
    let material = [&key[..], &key, &salt, &salt].concat();
    let keys = DtlsKeys {
        profile,
        material,
        dtls_client: true,
    };
    SrtpSession::new(&str0m::crypto::from_feature_flags(), &keys).unwrap()
}

/// SSRC 0xcafebabe, seq 0x1234, sixteen 0xab bytes of payload.
const RTP_PLAIN: &str = "800f1234decafbadcafebabe abababababababababababababababab";
/// An SR header from 0xcafebabe and sixteen 0xab bytes.
const RTCP_PLAIN: &str = "81c8000bcafebabe abababababababababababababababab";

struct Case {
    profile: Profile,
    key: &'static str,
    salt: &'static str,
    rtp_sealed: &'static str,
    /// Sealed with SRTCP index 1 (libsrtp's first).
    rtcp_sealed: &'static str,
}

const LIBSRTP: [Case; 2] = [
    Case {
        profile: Profile::Aes128CmSha1_80,
        key: "e1f97a0d3e018be0d64fa32c06de4139",
        salt: "0ec675ad498afeebb6960b3aabe6",
        rtp_sealed:
            "800f1234decafbadcafebabe 4e55dc4ce79978d88ca4d215949d2402 b78d6acc99ea179b8dbb",
        rtcp_sealed:
            "81c8000bcafebabe 7128035be487b9bdbef89041f977a5a8 80000001 993e08cd54d6c1230798",
    },
    Case {
        profile: Profile::AeadAes128Gcm,
        key: "000102030405060708090a0b0c0d0e0f",
        salt: "a0a1a2a3a4a5a6a7a8a9aaab",
        rtp_sealed: "800f1234decafbadcafebabe c5002ede04cfdd2eb91159e0880aa06e
                     d2976826f796b201df3131a127e8a392",
        rtcp_sealed: "81c8000bcafebabe c98b8b5df0392a55852b6c21ac8e7025
                      c52c6fbea2b3b446ea31123ba88ce61e 80000001",
    },
];

#[test]
fn libsrtp_reference_packets_seal_and_open() {
    for c in &LIBSRTP {
        let mut s = symmetric(c.profile, c.key, c.salt);
        let plain = hex(RTP_PLAIN);
        let mut out = [0u8; 128];
        let n = s
            .sealer
            .seal_rtp(&plain[..12], &plain[12..], 0, &mut out)
            .unwrap();
        assert_eq!(out[..n], hex(c.rtp_sealed), "{:?} SRTP seal", c.profile);

        let opened = s.opener.open_rtp(&hex(c.rtp_sealed), &mut out).unwrap();
        assert_eq!(out[..opened.len], plain, "{:?} SRTP open", c.profile);
        assert_eq!((opened.ssrc, opened.ext_seq), (0xcafe_babe, 0x1234));

        // libsrtp's first SRTCP index is 1: spend index 0 first.
        let rtcp = hex(RTCP_PLAIN);
        s.sealer.seal_rtcp(&rtcp, &mut out).unwrap();
        let n = s.sealer.seal_rtcp(&rtcp, &mut out).unwrap();
        assert_eq!(out[..n], hex(c.rtcp_sealed), "{:?} SRTCP seal", c.profile);

        let n = s.opener.open_rtcp(&hex(c.rtcp_sealed), &mut out).unwrap();
        assert_eq!(out[..n], rtcp, "{:?} SRTCP open", c.profile);

        // The wrong key opens nothing.
        let mut other = symmetric(c.profile, c.key, &c.salt.replace('a', "b"));
        assert_eq!(
            other.opener.open_rtp(&hex(c.rtp_sealed), &mut out),
            Err(SrtpError::AuthFailed)
        );
    }
}

/// DTLS keying material from str0m's srtp.rs tests and the SRTCP packet its client-side
/// context sealed with index 1.
const STR0M_MATERIAL: &str = "2CB02346B42276A672CFD143AEC2D5EE DDDE55F0AD7BCAC22666F1C6386173ED
    6EB25CB7D26A61A1EE2C210ADAE7 60AAA2FD67B672C41AED105F9D36";
const STR0M_SRTCP: &str = "80C80006 3CD7CC13 B7C831DCB776CD8DC26FDA1D9BFC8EE6589A1A8A49289CAE
    B264200C37D2D0A4AFAC6385FFC60DEC7D06D4873DD3A8CC 80000001 B7BB526521D1E73C0FC0";
const STR0M_RTCP: &str = "80c80006 3cd7cc13 e2ee35c8 604e618c 26f32734 00000043 00001407
    81ca0006 3cd7cc13 0110386e 46753268 5766724d 44724766 346f0000";

#[test]
fn str0m_srtcp_vector_from_dtls_material() {
    let provider = str0m::crypto::from_feature_flags();
    let keys = |dtls_client| DtlsKeys {
        profile: Profile::Aes128CmSha1_80,
        material: hex(STR0M_MATERIAL),
        dtls_client,
    };
    // The DTLS client sealed it; the server opens it.
    let mut server = SrtpSession::new(&provider, &keys(false)).unwrap();
    let mut out = [0u8; 128];
    let n = server
        .opener
        .open_rtcp(&hex(STR0M_SRTCP), &mut out)
        .unwrap();
    let plain = hex(STR0M_RTCP);
    assert_eq!(out[..n], plain);

    let mut client = SrtpSession::new(&provider, &keys(true)).unwrap();
    client.sealer.seal_rtcp(&plain, &mut out).unwrap();
    let n = client.sealer.seal_rtcp(&plain, &mut out).unwrap();
    assert_eq!(out[..n], hex(STR0M_SRTCP));
    // The client's own opener (the server's key) does not take its own packets.
    assert_eq!(
        client.opener.open_rtcp(&hex(STR0M_SRTCP), &mut out),
        Err(SrtpError::AuthFailed)
    );
}
