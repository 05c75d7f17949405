//! Hostile RTP input: truncated packets, CSRC counts, extension blocks and elements and
//! padding counts that point past the end, headers applied to the wrong packet, and random
//! bytes. Every case is an error (or a valid parse whose ranges stay inside the packet),
//! never a panic.

use shardcast_rtp::rtp::{read_extensions, ExtIds, RtpError, RtpHeader};
use str0m::rtp::ExtensionMap;

/// A header Chrome wrote (str0m's test vector `hb1`): one-byte form, with padding.
const ONE_BYTE: [u8; 48] = [
    176, 111, 183, 152, 0, 0, 39, 16, 46, 87, 21, 249, 0xBE, 0xDE, 0, 4, 16, 170, 34, 254, 32, 106,
    49, 0, 0, 66, 120, 89, 106, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12,
];

/// The same values in the two-byte form.
const TWO_BYTE: [u8; 52] = [
    176, 111, 183, 152, 0, 0, 39, 16, 46, 87, 21, 249, 0x10, 0x01, 0, 5, 1, 1, 170, 2, 3, 254, 32,
    106, 3, 2, 0, 0, 4, 3, 120, 89, 106, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12,
];

fn standard_ids() -> ExtIds {
    ExtIds::from_str0m(&ExtensionMap::standard())
}

fn all_ids() -> ExtIds {
    ExtIds {
        mid: Some(1),
        rid: Some(2),
        repaired_rid: Some(3),
        abs_send_time: Some(4),
        transport_cc: Some(5),
        audio_level: Some(6),
        video_orientation: Some(7),
        abs_capture_time: Some(8),
        playout_delay: Some(9),
        dependency_descriptor: Some(12),
    }
}

#[test]
fn every_truncation_of_a_valid_packet_is_an_error_not_a_panic() {
    for (packet, header_len) in [(&ONE_BYTE[..], 32), (&TWO_BYTE[..], 36)] {
        for len in 0..packet.len() {
            let cut = &packet[..len];
            match RtpHeader::parse(cut) {
                // Cut inside the payload/padding: the padding count (a payload byte now)
                // may still parse; every range it gives stays within the slice.
                Ok(h) => {
                    assert!(h.header_len + h.padding_len <= len);
                    let _ = read_extensions(cut, &h, &standard_ids()).unwrap();
                }
                Err(_) if len < header_len => {}
                Err(e) => assert!(matches!(e, RtpError::BadPadding { .. }), "{len}: {e}"),
            }
        }
    }
}

#[test]
fn lying_lengths() {
    // Too short, wrong version.
    assert_eq!(
        RtpHeader::parse(&[0x80; 11]),
        Err(RtpError::TooShort { len: 11 })
    );
    assert_eq!(RtpHeader::parse(&[0x40; 12]), Err(RtpError::BadVersion(1)));
    // 15 CSRCs claimed in a 12-byte packet.
    let mut p = [0u8; 12];
    p[0] = 0x8F;
    assert_eq!(RtpHeader::parse(&p), Err(RtpError::CsrcPastEnd));
    // An extension block claiming 64 KB (0xFFFF words).
    let p = [
        0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0xFF, 0xFF, 0x10, 1, 0, 0,
    ];
    assert_eq!(RtpHeader::parse(&p), Err(RtpError::ExtensionPastEnd));
    // X bit set, block header cut off.
    assert_eq!(
        RtpHeader::parse(&[0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE]),
        Err(RtpError::ExtensionPastEnd)
    );
    // Padding count 0, and padding longer than the payload.
    let mut p = [0u8; 16];
    p[0] = 0xA0;
    assert_eq!(
        RtpHeader::parse(&p),
        Err(RtpError::BadPadding { pad: 0, payload: 4 })
    );
    p[15] = 5;
    assert_eq!(
        RtpHeader::parse(&p),
        Err(RtpError::BadPadding { pad: 5, payload: 4 })
    );
    p[15] = 4;
    assert_eq!(RtpHeader::parse(&p).unwrap().payload(&p), []);
}

#[test]
fn extension_elements_running_past_their_block() {
    // One-byte element claiming 16 bytes in a 4-byte block.
    let p = [
        0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0, 1, 0x1F, 1, 2, 3,
    ];
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(
        read_extensions(&p, &h, &all_ids()),
        Err(RtpError::ExtElementPastEnd)
    );
    // Two-byte element claiming 255 bytes.
    let p = [
        0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x00, 0, 1, 1, 255, 2, 3,
    ];
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(
        read_extensions(&p, &h, &all_ids()),
        Err(RtpError::ExtElementPastEnd)
    );
    // Two-byte element whose length byte is cut off.
    let p = [
        0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x00, 0, 1, 0, 0, 0, 7,
    ];
    let h = RtpHeader::parse(&p).unwrap();
    assert_eq!(
        read_extensions(&p, &h, &all_ids()),
        Err(RtpError::ExtElementPastEnd)
    );
    // A header from another packet (ranges beyond this one): an error, not a panic.
    let long = RtpHeader::parse(&ONE_BYTE).unwrap();
    assert_eq!(
        read_extensions(&p[..14], &long, &all_ids()),
        Err(RtpError::ExtensionPastEnd)
    );
    assert_eq!(long.payload(&p[..14]), []);
}

#[test]
fn random_bytes_never_panic() {
    let mut x = 0x9E37_79B9u32;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut buf = [0u8; 96];
    for _ in 0..200_000 {
        let len = (next() % 96) as usize;
        for b in buf.iter_mut().take(len) {
            *b = next() as u8;
        }
        // Mostly version 2 with the X bit, to get past the first checks.
        if len > 0 && next() % 4 != 0 {
            buf[0] = 0x90 | (buf[0] & 0x2F);
        }
        if let Ok(h) = RtpHeader::parse(&buf[..len]) {
            assert!(h.header_len + h.padding_len <= len);
            let _ = read_extensions(&buf[..len], &h, &all_ids());
        }
    }
}
