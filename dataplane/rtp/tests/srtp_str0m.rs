//! Cross-check with str0m's real `SrtpContext` (through `TestSrtp`, which seals as the DTLS
//! client of the given material) for all three profiles: what it seals our opener opens,
//! byte-exact, and our sealer on the same side produces the very same bytes. Headers vary
//! (CSRCs, header extensions of several lengths) and the sequence crosses a 16-bit wrap.

use shardcast_rtp::srtp::{DtlsKeys, Profile, SrtpSession, SEAL_SLACK};
use str0m::_internal_test_exports::TestSrtp;
use str0m::config::KeyingMaterial;
use str0m::media::Mid;
use str0m::rtp::{ExtensionMap, ExtensionValues, RtpHeader, Ssrc};

const SSRC: u32 = 0x1234_5678;

fn material(profile: Profile) -> Vec<u8> {
    (0..profile.keying_material_len())
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(7))
        .collect()
}

fn header(i: usize, index: u64) -> RtpHeader {
    let csrc_count = i % 3;
    let mut csrc = [0u32; 15];
    for (k, c) in csrc.iter_mut().take(csrc_count).enumerate() {
        *c = 0xc500 + k as u32;
    }
    let ext_vals = ExtensionValues {
        mid: i.is_multiple_of(2).then(|| Mid::from("v0")),
        audio_level: (i % 4 == 1).then_some(-30),
        transport_cc: Some(i as u16),
        ..Default::default()
    };
    RtpHeader {
        has_extension: true,
        csrc_count,
        csrc,
        marker: i.is_multiple_of(5),
        payload_type: 96.into(),
        sequence_number: index as u16,
        timestamp: 90_000 + i as u32 * 3000,
        ssrc: Ssrc::from(SSRC),
        ext_vals,
        ..Default::default()
    }
}

fn payload(i: usize) -> Vec<u8> {
    let len = [1, 15, 16, 17, 160, 1200][i % 6];
    (0..len).map(|b| (b as u8) ^ (i as u8)).collect()
}

#[test]
fn str0m_seals_we_open_and_we_seal_the_same_bytes() {
    let provider = str0m::crypto::from_feature_flags();
    let exts = ExtensionMap::standard();
    for profile in Profile::ALL {
        let mat = material(profile);
        let mut theirs = TestSrtp::new(&provider, profile.to_dtls(), &KeyingMaterial::new(&mat));
        let keys = |dtls_client| DtlsKeys {
            profile,
            material: mat.clone(),
            dtls_client,
        };
        // TestSrtp seals as the DTLS client: the server opens, a client seals alike.
        let mut server = SrtpSession::new(&provider, &keys(false)).unwrap();
        let mut client = SrtpSession::new(&provider, &keys(true)).unwrap();
        let mut out = vec![0u8; 1500 + SEAL_SLACK];
        let mut header_shapes = std::collections::BTreeSet::new();

        for (i, index) in (65_530u64..65_548).enumerate() {
            let packet = theirs.protect(header(i, index), index, &payload(i), &exts);
            let parsed = RtpHeader::_parse(&packet, &exts).expect("str0m parses its header");
            let hlen = parsed.header_len;
            header_shapes.insert((packet[0] & 0x0f, hlen));
            assert_eq!(
                packet.len(),
                hlen + payload(i).len() + profile.rtp_overhead()
            );

            let o = server.opener.open_rtp(&packet, &mut out).unwrap();
            assert_eq!(
                o.ext_seq, index,
                "{profile:?}: ROC estimated across the wrap"
            );
            assert_eq!((o.ssrc, o.seq, o.header_len), (SSRC, index as u16, hlen));
            assert_eq!(out[..hlen], packet[..hlen], "header as received");
            assert_eq!(out[hlen..o.len], payload(i), "{profile:?} payload {i}");

            let roc = (index >> 16) as u32;
            let n = client
                .sealer
                .seal_rtp(&packet[..hlen], &payload(i), roc, &mut out)
                .unwrap();
            assert_eq!(
                out[..n],
                packet[..],
                "{profile:?}: our seal is str0m's, packet {i}"
            );
        }
        // The headers did vary: CSRC counts 0..=2 and several extension lengths.
        let csrc_counts: std::collections::BTreeSet<_> =
            header_shapes.iter().map(|(cc, _)| *cc).collect();
        assert_eq!(csrc_counts.len(), 3, "{header_shapes:?}");
        assert!(header_shapes.len() >= 5, "{header_shapes:?}");
    }
}
