//! The rollover counter across 16-bit sequence wraps: the sender passes the ROC it keeps, the
//! opener estimates it (RFC 3711 §3.3.1) in order, under reordering across the wrap, and over
//! several wraps; a packet from before the wrap arriving after it lands at the old ROC.

use shardcast_rtp::srtp::{DtlsKeys, Profile, SrtpError, SrtpSession, SEAL_SLACK};

fn sessions(profile: Profile) -> (SrtpSession, SrtpSession) {
    let provider = str0m::crypto::from_feature_flags();
    let material: Vec<u8> = (0..profile.keying_material_len())
        .map(|i| (i as u8).wrapping_mul(91))
        .collect();
    let keys = |dtls_client| DtlsKeys {
        profile,
        material: material.clone(),
        dtls_client,
    };
    (
        SrtpSession::new(&provider, &keys(true)).unwrap(),
        SrtpSession::new(&provider, &keys(false)).unwrap(),
    )
}

const SSRC: u32 = 0xfeed_0001;

/// Seals packet index `index` (ROC = index >> 16) with a payload naming it.
fn seal(s: &mut SrtpSession, index: u64) -> Vec<u8> {
    let mut header = [0x80, 111, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    header[2..4].copy_from_slice(&(index as u16).to_be_bytes());
    header[8..12].copy_from_slice(&SSRC.to_be_bytes());
    let payload = index.to_be_bytes();
    let mut out = [0u8; 128];
    let n = s
        .sealer
        .seal_rtp(&header, &payload, (index >> 16) as u32, &mut out)
        .unwrap();
    out[..n].to_vec()
}

/// Opens and checks the payload: the index the opener placed it at is the one sealed.
fn open(s: &mut SrtpSession, packet: &[u8]) -> Result<u64, SrtpError> {
    let mut out = [0u8; 128 + SEAL_SLACK];
    let o = s.opener.open_rtp(packet, &mut out)?;
    let sealed_at = u64::from_be_bytes(out[o.header_len..o.len].try_into().unwrap());
    assert_eq!(o.ext_seq, sealed_at);
    assert_eq!(o.ext_seq as u16, o.seq);
    Ok(o.ext_seq)
}

#[test]
fn in_order_across_the_wrap() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = sessions(profile);
        for index in 65_500..65_536 + 40 {
            let p = seal(&mut tx, index);
            assert_eq!(open(&mut rx, &p), Ok(index), "{profile:?}");
        }
    }
}

#[test]
fn reordered_across_the_wrap() {
    const WRAP: u64 = 1 << 16;
    for profile in Profile::ALL {
        let (mut tx, mut rx) = sessions(profile);
        assert_eq!(open(&mut rx, &seal(&mut tx, WRAP - 10)), Ok(WRAP - 10));
        let order = [
            WRAP - 8,
            WRAP + 1, // after the wrap before the packets just before it
            WRAP - 2,
            WRAP,
            WRAP - 1,
            WRAP + 3,
            WRAP - 9, // late from long before
            WRAP + 2,
            WRAP - 7,
        ];
        for index in order {
            assert_eq!(
                open(&mut rx, &seal(&mut tx, index)),
                Ok(index),
                "{profile:?}"
            );
        }
        // All of them are now replays, on both sides of the wrap.
        for index in [WRAP - 1, WRAP + 1] {
            assert_eq!(
                open(&mut rx, &seal(&mut tx, index)),
                Err(SrtpError::Replayed)
            );
        }
    }
}

#[test]
fn several_wraps_with_gaps() {
    let (mut tx, mut rx) = sessions(Profile::Aes128CmSha1_80);
    // Steps below half the sequence space: the estimate follows through four wraps.
    let mut index = 0u64;
    while index < 4 << 16 {
        assert_eq!(open(&mut rx, &seal(&mut tx, index)), Ok(index));
        index += 7_919;
    }
}

#[test]
fn a_stream_must_start_at_roc_zero() {
    // The opener assumes ROC 0 for a new SSRC (DTLS-SRTP signals no other): a sender that
    // starts at ROC 1 is not authenticated, rather than silently misplaced.
    for profile in Profile::ALL {
        let (mut tx, mut rx) = sessions(profile);
        let p = seal(&mut tx, (1 << 16) + 5);
        assert_eq!(open(&mut rx, &p), Err(SrtpError::AuthFailed), "{profile:?}");
        // Nothing was recorded: the stream can still start properly.
        assert_eq!(open(&mut rx, &seal(&mut tx, 6)), Ok(6));
    }
}
