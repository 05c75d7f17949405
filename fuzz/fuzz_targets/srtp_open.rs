//! SRTP and SRTCP from a peer, opened with a fixed key: a sequence of records (see
//! `shardcast_fuzz::records`), the first input byte choosing the profile. Garbage must be
//! refused with an error, never a panic; what the peer sealed itself must open to exactly
//! the bytes it sealed (the round trip reaches the ROC estimate and the replay windows,
//! which a forged tag never would).
//!
//! Record tags (low two bits): 0 open as SRTP, 1 open as SRTCP, 2 seal as RTP (the header
//! is what `RtpHeader::parse` finds, the ROC the tag's upper bits) then open, 3 seal as
//! compound RTCP then open.
#![no_main]

use std::cell::RefCell;

use shardcast_fuzz::records;
use shardcast_rtp::rtp::RtpHeader;
use shardcast_rtp::srtp::{DtlsKeys, Profile, SrtpError, SrtpSession, SEAL_SLACK};

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
        SrtpSession::new(&provider, &keys(true)).expect("peer keys"),
        SrtpSession::new(&provider, &keys(false)).expect("our keys"),
    )
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let profile = Profile::ALL[usize::from(first) % Profile::ALL.len()];
    let (mut peer, mut us) = sessions(profile);
    BUFFERS.with(|b| {
        let (sealed, plain) = &mut *b.borrow_mut();
        feed(&mut peer, &mut us, data, sealed, plain);
    });
});

/// Output buffers for the largest record (64 KiB) plus the tag and slack, made once.
const BUF: usize = 70_000;

thread_local! {
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = RefCell::new((vec![0; BUF], vec![0; BUF]));
}

fn feed(
    peer: &mut SrtpSession,
    us: &mut SrtpSession,
    data: &[u8],
    sealed: &mut [u8],
    plain: &mut [u8],
) {
    for (tag, bytes) in records(data) {
        match tag & 3 {
            0 => {
                if let Ok(o) = us.opener.open_rtp(bytes, plain) {
                    assert!(o.header_len <= o.len && o.len <= bytes.len());
                }
            }
            1 => {
                if let Ok(n) = us.opener.open_rtcp(bytes, plain) {
                    assert!(n <= bytes.len());
                }
            }
            2 => {
                let Ok(h) = RtpHeader::parse(bytes) else {
                    continue;
                };
                let (header, payload) = bytes.split_at(h.header_len);
                let roc = u32::from(tag >> 2);
                let Ok(n) = peer.sealer.seal_rtp(header, payload, roc, sealed) else {
                    continue;
                };
                assert!(n + SEAL_SLACK <= sealed.len());
                if let Ok(o) = us.opener.open_rtp(&sealed[..n], plain) {
                    assert_eq!(&plain[..o.len], bytes, "opened what was sealed");
                    assert_eq!(o.seq, h.seq);
                    assert_eq!(o.ssrc, h.ssrc);
                }
            }
            _ => {
                let Ok(n) = peer.sealer.seal_rtcp(bytes, sealed) else {
                    continue;
                };
                // Every seal takes a fresh SRTCP index: only the cap on tracked senders may
                // refuse it.
                match us.opener.open_rtcp(&sealed[..n], plain) {
                    Ok(n) => assert_eq!(&plain[..n], bytes, "opened what was sealed"),
                    Err(SrtpError::TooManyStreams) => {}
                    Err(e) => panic!("a freshly sealed SRTCP packet did not open: {e}"),
                }
            }
        }
    }
}
