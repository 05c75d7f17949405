//! Parsing compound RTCP: hand-assembled packets per RFC 3550 / 4585 / 5104 layouts (the
//! writers' cross-checks against str0m are in rtcp_write.rs, hostile input in
//! rtcp_hostile.rs).

use shardcast_rtp::rtcp::{parse_compound, RtcpError, RtcpPacket};

fn all(buf: &[u8]) -> Vec<Result<RtcpPacket<'_>, RtcpError>> {
    parse_compound(buf).collect()
}

/// A packet with the common header filled in from the body length.
fn packet(count: u8, packet_type: u8, body: &[u8]) -> Vec<u8> {
    assert_eq!(body.len() % 4, 0);
    let words = (body.len() / 4) as u16;
    let mut p = vec![0x80 | count, packet_type];
    p.extend_from_slice(&words.to_be_bytes());
    p.extend_from_slice(body);
    p
}

#[test]
fn sender_report_fields_and_blocks() {
    let mut body = vec![];
    body.extend_from_slice(&0x1111_1111u32.to_be_bytes()); // SSRC
    body.extend_from_slice(&0xE000_0001_8000_0000u64.to_be_bytes()); // NTP
    body.extend_from_slice(&48_000u32.to_be_bytes()); // RTP ts
    body.extend_from_slice(&10u32.to_be_bytes()); // packets
    body.extend_from_slice(&1_000u32.to_be_bytes()); // octets
                                                     // One block: fraction 64/256, cumulative -1 (0xFFFFFF), cycles 1 seq 5.
    body.extend_from_slice(&[0, 0, 0, 9, 64, 0xFF, 0xFF, 0xFF, 0, 1, 0, 5]);
    body.extend_from_slice(&[0, 0, 0, 20, 0xAB, 0xCD, 0xEF, 0x01, 0, 1, 0, 0]);
    // A profile-specific extension after the blocks is allowed and ignored.
    body.extend_from_slice(&[1, 2, 3, 4]);
    let p = packet(1, 200, &body);
    let parsed = all(&p);
    let Ok(RtcpPacket::SenderReport {
        ssrc,
        ntp,
        rtp_ts,
        packet_count,
        octet_count,
        reports,
    }) = &parsed[0]
    else {
        panic!("{parsed:?}");
    };
    assert_eq!(
        (*ssrc, *ntp, *rtp_ts, *packet_count, *octet_count),
        (0x1111_1111, 0xE000_0001_8000_0000, 48_000, 10, 1_000)
    );
    let blocks: Vec<_> = reports.clone().collect();
    assert_eq!(blocks.len(), 1);
    let b = blocks[0];
    assert_eq!((b.ssrc, b.fraction_lost, b.cumulative_lost), (9, 64, -1));
    assert_eq!((b.ext_highest_seq, b.jitter), (0x0001_0005, 20));
    assert_eq!(
        (b.last_sr, b.delay_since_last_sr),
        (0xABCD_EF01, 0x0001_0000)
    );
}

#[test]
fn sdes_with_several_chunks_and_items() {
    let body = [
        0, 0, 0, 1, // chunk 1: SSRC 1
        1, 3, b'a', b'b', b'c', // CNAME "abc"
        6, 2, b'x', b'y', // TOOL "xy"
        0, 0, 0, // end of items, pad to 32 bits (13 + 3 = 16)
        0, 0, 0, 2, // chunk 2: SSRC 2
        1, 1, b'z', 0, // CNAME "z", end
    ];
    let p = packet(2, 202, &body);
    let Ok(RtcpPacket::Sdes(items)) = &all(&p)[0] else {
        panic!();
    };
    let items: Vec<_> = items.clone().map(|i| (i.ssrc, i.kind, i.value)).collect();
    assert_eq!(
        items,
        [(1, 1, &b"abc"[..]), (1, 6, &b"xy"[..]), (2, 1, &b"z"[..])]
    );
    // An item claiming more bytes than there are.
    let bad = [0, 0, 0, 1, 1, 200, b'a', 0];
    assert_eq!(
        all(&packet(1, 202, &bad))[0].as_ref().err(),
        Some(&RtcpError::SdesPastEnd)
    );
    // A count of 3 chunks with bytes for 1.
    let p = packet(3, 202, &[0, 0, 0, 1, 0, 0, 0, 0]);
    assert_eq!(all(&p)[0].as_ref().err(), Some(&RtcpError::SdesPastEnd));
}

#[test]
fn feedback_types_and_others() {
    // PLI, FIR, NACK, an unknown RTPFB fmt (TMMBR), XR, APP, an unknown PSFB fmt 15.
    let mut c = packet(1, 206, &[0, 0, 0, 1, 0, 0, 0, 2]);
    c.extend(packet(
        4,
        206,
        &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7, 9, 0, 0, 0],
    ));
    c.extend(packet(
        1,
        205,
        &[0, 0, 0, 1, 0, 0, 0, 2, 0, 100, 0b1000_0000, 0b0000_0001],
    ));
    c.extend(packet(3, 205, &[0, 0, 0, 1, 0, 0, 0, 2, 1, 2, 3, 4]));
    c.extend(packet(0, 207, &[0, 0, 0, 1]));
    c.extend(packet(5, 204, &[0, 0, 0, 1, b'n', b'a', b'm', b'e']));
    c.extend(packet(
        15,
        206,
        &[0, 0, 0, 1, 0, 0, 0, 0, b'A', b'B', b'C', b'D'],
    ));
    let got = all(&c);
    assert_eq!(got.len(), 7);
    assert!(matches!(
        got[0],
        Ok(RtcpPacket::Pli {
            sender_ssrc: 1,
            media_ssrc: 2
        })
    ));
    let Ok(RtcpPacket::Fir { entries, .. }) = &got[1] else {
        panic!();
    };
    assert_eq!(entries.clone().collect::<Vec<_>>(), [(7, 9)]);
    let Ok(RtcpPacket::Nack { lost, .. }) = &got[2] else {
        panic!();
    };
    // PID 100; BLP bits 0 and 15: 101 and 116.
    assert_eq!(lost.clone().collect::<Vec<_>>(), [100, 101, 116]);
    assert!(matches!(
        got[3],
        Ok(RtcpPacket::Other {
            packet_type: 205,
            fmt: 3
        })
    ));
    assert!(matches!(
        got[4],
        Ok(RtcpPacket::Other {
            packet_type: 207,
            fmt: 0
        })
    ));
    assert!(matches!(
        got[5],
        Ok(RtcpPacket::Other {
            packet_type: 204,
            fmt: 5
        })
    ));
    assert!(matches!(
        got[6],
        Ok(RtcpPacket::Other {
            packet_type: 206,
            fmt: 15
        })
    ));
}

#[test]
fn padding_on_the_last_packet() {
    // An RR with 4 bytes of padding (P bit, count in the last byte).
    let mut p = packet(0, 201, &[0, 0, 0, 9, 0, 0, 0, 4]);
    p[0] |= 0x20;
    let got = all(&p);
    assert!(matches!(
        got[..],
        [Ok(RtcpPacket::ReceiverReport { ssrc: 9, .. })]
    ));
    // Padding count 0, and padding longer than the body.
    p[11] = 0;
    assert_eq!(
        all(&p)[0].as_ref().err(),
        Some(&RtcpError::BadPadding { pad: 0, body: 8 })
    );
    p[11] = 9;
    assert_eq!(
        all(&p)[0].as_ref().err(),
        Some(&RtcpError::BadPadding { pad: 9, body: 8 })
    );
}
