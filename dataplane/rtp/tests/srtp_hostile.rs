//! What a peer (or anyone on the path) can send the opener: forged tags, replays, ancient
//! packets, truncations, lying CSRC counts and extension lengths, SRTCP with a tampered index,
//! more SSRCs than the cap, and plain garbage. Each is refused with its error, never a panic,
//! and a refused packet changes nothing (the genuine stream still opens as before).

use shardcast_rtp::srtp::{DtlsKeys, Profile, SrtpError, SrtpSession};
use shardcast_rtp::srtp::{MAX_STREAMS, REPLAY_WINDOW, SEAL_SLACK};

/// The sealing side (DTLS client) and the opening side (server) of one transport.
fn sessions(profile: Profile) -> (SrtpSession, SrtpSession) {
    let provider = str0m::crypto::from_feature_flags();
    let material: Vec<u8> = (0..profile.keying_material_len())
        .map(|i| i as u8 ^ 0xa5)
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

fn rtp(s: &mut SrtpSession, ssrc: u32, seq: u16, roc: u32) -> Vec<u8> {
    let mut header = [0x80, 96, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
    header[2..4].copy_from_slice(&seq.to_be_bytes());
    header[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let payload = [seq as u8; 100];
    let mut out = [0u8; 256];
    let n = s.sealer.seal_rtp(&header, &payload, roc, &mut out).unwrap();
    out[..n].to_vec()
}

/// A receiver report from `ssrc` (no report blocks).
fn rtcp(s: &mut SrtpSession, ssrc: u32) -> Vec<u8> {
    let mut rr = vec![0x80, 201, 0, 1];
    rr.extend_from_slice(&ssrc.to_be_bytes());
    let mut out = [0u8; 128];
    let n = s.sealer.seal_rtcp(&rr, &mut out).unwrap();
    out[..n].to_vec()
}

fn open(s: &mut SrtpSession, packet: &[u8]) -> Result<u64, SrtpError> {
    let mut out = [0u8; 2048 + SEAL_SLACK];
    s.opener.open_rtp(packet, &mut out).map(|o| o.ext_seq)
}

fn open_rtcp(s: &mut SrtpSession, packet: &[u8]) -> Result<usize, SrtpError> {
    let mut out = [0u8; 2048 + SEAL_SLACK];
    s.opener.open_rtcp(packet, &mut out)
}

#[test]
fn a_forged_packet_is_refused_and_changes_nothing() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = sessions(profile);
        assert_eq!(open(&mut rx, &rtp(&mut tx, 7, 10, 0)), Ok(10));

        // Every bit of the tag matters.
        let genuine = rtp(&mut tx, 7, 11, 0);
        for bit in 0..8 * profile.rtp_overhead() {
            let mut forged = genuine.clone();
            let at = forged.len() - profile.rtp_overhead() + bit / 8;
            forged[at] ^= 1 << (bit % 8);
            assert_eq!(
                open(&mut rx, &forged),
                Err(SrtpError::AuthFailed),
                "{profile:?}"
            );
        }
        // A forgery far ahead (recorded, seq 30000 would leave 11 behind the window) and
        // forgeries from new SSRCs (which would take table slots).
        let mut ahead = rtp(&mut tx, 7, 30_000, 0);
        let last = ahead.len() - 1;
        ahead[last] ^= 0x80;
        assert_eq!(open(&mut rx, &ahead), Err(SrtpError::AuthFailed));
        for ssrc in 1000..1000 + 2 * MAX_STREAMS as u32 {
            let mut other = rtp(&mut tx, ssrc, 1, 0);
            other[12] ^= 1;
            assert_eq!(open(&mut rx, &other), Err(SrtpError::AuthFailed));
        }

        // The genuine packet still opens at the index it always had, and the table still
        // has room for MAX_STREAMS - 1 more streams.
        assert_eq!(open(&mut rx, &genuine), Ok(11), "{profile:?}");
        for ssrc in 0..MAX_STREAMS as u32 - 1 {
            assert_eq!(open(&mut rx, &rtp(&mut tx, 5000 + ssrc, 1, 0)), Ok(1));
        }
    }
}

#[test]
fn replays_and_packets_older_than_the_window_are_refused() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = sessions(profile);
        let first = rtp(&mut tx, 9, 2000, 0);
        assert_eq!(open(&mut rx, &first), Ok(2000));
        assert_eq!(open(&mut rx, &first), Err(SrtpError::Replayed));

        let oldest = 2000 - REPLAY_WINDOW as u16 + 1;
        let too_old = rtp(&mut tx, 9, oldest - 1, 0);
        assert_eq!(
            open(&mut rx, &too_old),
            Err(SrtpError::TooOld),
            "{profile:?}"
        );
        // Late but inside the window: accepted once.
        let late = rtp(&mut tx, 9, oldest, 0);
        assert_eq!(open(&mut rx, &late), Ok(u64::from(oldest)));
        assert_eq!(open(&mut rx, &late), Err(SrtpError::Replayed));

        // SRTCP: one window per sender SSRC on the SRTCP index.
        let a = rtcp(&mut tx, 0xaaaa);
        let b = rtcp(&mut tx, 0xbbbb);
        assert!(open_rtcp(&mut rx, &b).is_ok());
        assert!(
            open_rtcp(&mut rx, &a).is_ok(),
            "an older index from another sender"
        );
        assert_eq!(open_rtcp(&mut rx, &a), Err(SrtpError::Replayed));
        for _ in 0..REPLAY_WINDOW {
            rtcp(&mut tx, 0xaaaa);
        }
        let newest = rtcp(&mut tx, 0xaaaa);
        assert!(open_rtcp(&mut rx, &newest).is_ok());
        let mut old_b = b.clone();
        // Same sender as `a` now, index far behind: too old (checked before the tag).
        old_b[4..8].copy_from_slice(&0xaaaau32.to_be_bytes());
        assert_eq!(open_rtcp(&mut rx, &old_b), Err(SrtpError::TooOld));
    }
}

#[test]
fn truncated_and_lying_headers_are_refused() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = sessions(profile);
        let genuine = rtp(&mut tx, 3, 100, 0);
        for len in 0..genuine.len() {
            let r = open(&mut rx, &genuine[..len]);
            assert!(
                matches!(
                    r,
                    Err(SrtpError::TooShort | SrtpError::AuthFailed | SrtpError::BadHeader)
                ),
                "{profile:?} truncated to {len}: {r:?}"
            );
        }
        assert_eq!(open(&mut rx, &genuine[..11]), Err(SrtpError::TooShort));
        // Header only, no room for the tag.
        assert_eq!(open(&mut rx, &genuine[..12]), Err(SrtpError::TooShort));

        // An extension claiming 0xffff words (256 KiB) in a small packet.
        let mut huge_ext = genuine.clone();
        huge_ext[0] |= 0x10;
        huge_ext[12..16].copy_from_slice(&[0xbe, 0xde, 0xff, 0xff]);
        assert_eq!(open(&mut rx, &huge_ext), Err(SrtpError::BadHeader));
        // Fifteen CSRCs (60 bytes) claimed by a packet too short for them.
        let mut csrcs = genuine[..60].to_vec();
        csrcs[0] |= 0x0f;
        assert_eq!(open(&mut rx, &csrcs), Err(SrtpError::BadHeader));
        // Fifteen CSRCs then an extension header cut off after its first two bytes.
        let mut cut = vec![0x9f, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3];
        cut.extend_from_slice(&[0; 60]);
        cut.extend_from_slice(&[0xbe, 0xde]);
        assert_eq!(open(&mut rx, &cut), Err(SrtpError::BadHeader));
        // Not RTP version 2.
        let mut v1 = genuine.clone();
        v1[0] = 0x40;
        assert_eq!(open(&mut rx, &v1), Err(SrtpError::BadHeader));

        // After all that, the genuine packet opens.
        assert_eq!(open(&mut rx, &genuine), Ok(100));
    }
}

#[test]
fn srtcp_truncated_tampered_and_garbled() {
    for profile in Profile::ALL {
        let (mut tx, mut rx) = sessions(profile);
        let genuine = rtcp(&mut tx, 0x77);
        for len in 0..genuine.len() {
            assert!(
                open_rtcp(&mut rx, &genuine[..len]).is_err(),
                "{profile:?} {len}"
            );
        }
        let min = 8 + profile.rtcp_overhead();
        assert_eq!(
            open_rtcp(&mut rx, &genuine[..min - 1]),
            Err(SrtpError::TooShort)
        );

        // The E flag and the index are authenticated: flipping either fails the tag.
        let index_at = match profile {
            Profile::Aes128CmSha1_80 => genuine.len() - profile.rtcp_overhead(),
            _ => genuine.len() - 4,
        };
        for flip in [0x80u8, 0x01] {
            let mut t = genuine.clone();
            t[index_at + if flip == 0x80 { 0 } else { 3 }] ^= flip;
            assert_eq!(
                open_rtcp(&mut rx, &t),
                Err(SrtpError::AuthFailed),
                "{flip:#x}"
            );
        }
        let mut bad_version = genuine.clone();
        bad_version[0] &= 0x3f;
        assert_eq!(open_rtcp(&mut rx, &bad_version), Err(SrtpError::BadHeader));

        assert_eq!(open_rtcp(&mut rx, &genuine), Ok(8));
    }
}

#[test]
fn the_sixty_fifth_ssrc_is_refused_until_one_is_forgotten() {
    let (mut tx, mut rx) = sessions(Profile::AeadAes128Gcm);
    for ssrc in 0..MAX_STREAMS as u32 {
        assert_eq!(open(&mut rx, &rtp(&mut tx, ssrc, 1, 0)), Ok(1));
    }
    let newcomer = rtp(&mut tx, 9999, 1, 0);
    assert_eq!(open(&mut rx, &newcomer), Err(SrtpError::TooManyStreams));
    // Known streams carry on.
    assert_eq!(open(&mut rx, &rtp(&mut tx, 5, 2, 0)), Ok(2));
    rx.opener.forget_ssrc(5);
    assert_eq!(open(&mut rx, &newcomer), Ok(1));
    assert_eq!(
        open(&mut rx, &rtp(&mut tx, 6, 3, 0)),
        Ok(3),
        "others unaffected"
    );
    // SRTCP senders have their own capped table.
    for ssrc in 0..MAX_STREAMS as u32 {
        assert!(open_rtcp(&mut rx, &rtcp(&mut tx, ssrc)).is_ok());
    }
    assert_eq!(
        open_rtcp(&mut rx, &rtcp(&mut tx, 9999)),
        Err(SrtpError::TooManyStreams)
    );
}

#[test]
fn garbage_never_panics() {
    let (_, mut rx) = sessions(Profile::Aes128CmSha1_80);
    let (_, mut rx_gcm) = sessions(Profile::AeadAes256Gcm);
    // A small deterministic generator: no dependency, same bytes every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 1600) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(b) = bytes.first_mut() {
            // Mostly version 2, so parsing goes past the first check.
            *b = (*b & 0x3f) | 0x80;
        }
        for rx in [&mut rx, &mut rx_gcm] {
            assert!(open(rx, &bytes).is_err());
            assert!(open_rtcp(rx, &bytes).is_err());
        }
    }
}
