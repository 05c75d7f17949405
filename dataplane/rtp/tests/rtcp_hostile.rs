//! Hostile RTCP: truncation, lying lengths and counts, zero-length packets in a compound,
//! a transport-cc with status count 65 535 in 20 bytes, NACKs with thousands of FCIs, and
//! random bytes. Each is an error that ends the compound, or a bounded valid parse.

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
fn zero_length_packets_in_a_compound() {
    // Header-only packets (length field 0): an APP and an unknown type are fine, then an
    // RR, then a header-only RR (no SSRC: truncated) ends the compound.
    let mut c = vec![0x80, 204, 0, 0, 0x80, 210, 0, 0];
    c.extend(packet(0, 201, &[0, 0, 0, 1]));
    c.extend([0x80, 201, 0, 0]);
    c.extend(packet(0, 201, &[0, 0, 0, 2]));
    let got = all(&c);
    assert_eq!(got.len(), 4);
    assert!(matches!(
        got[0],
        Ok(RtcpPacket::Other {
            packet_type: 204,
            ..
        })
    ));
    assert!(matches!(
        got[1],
        Ok(RtcpPacket::Other {
            packet_type: 210,
            ..
        })
    ));
    assert!(matches!(
        got[2],
        Ok(RtcpPacket::ReceiverReport { ssrc: 1, .. })
    ));
    assert_eq!(
        got[3].as_ref().err(),
        Some(&RtcpError::Truncated { packet_type: 201 })
    );
    // Each header-only SR, PLI, FIR, NACK, REMB and transport-cc is an error too.
    for (count, packet_type) in [(0, 200), (1, 206), (4, 206), (1, 205), (15, 205)] {
        let p = [0x80 | count, packet_type, 0, 0];
        assert!(
            matches!(all(&p)[..], [Err(RtcpError::Truncated { .. })]),
            "{packet_type}/{count}"
        );
    }
}

#[test]
fn lengths_and_versions_that_lie() {
    assert_eq!(all(&[0x80, 201, 0]), [Err(RtcpError::TooShort { len: 3 })]);
    assert_eq!(
        all(&[0x40, 201, 0, 1, 0, 0, 0, 0]),
        [Err(RtcpError::BadVersion(1))]
    );
    // Length 0xFFFF (256 KiB) in an 8-byte buffer.
    assert_eq!(
        all(&[0x80, 201, 0xFF, 0xFF, 0, 0, 0, 1]),
        [Err(RtcpError::LengthPastEnd {
            claimed: 262_144,
            available: 8
        })]
    );
    // A valid packet, then garbage: one Ok, one Err, then nothing more.
    let mut c = packet(0, 201, &[0, 0, 0, 1]);
    c.extend([0xFF; 20]);
    let got = all(&c);
    assert_eq!(got.len(), 2);
    assert!(got[0].is_ok() && got[1].is_err());
}

#[test]
fn counts_that_lie() {
    // RR claiming 31 report blocks with room for none.
    let p = packet(31, 201, &[0, 0, 0, 1]);
    assert_eq!(
        all(&p),
        [Err(RtcpError::CountPastEnd {
            packet_type: 201,
            count: 31
        })]
    );
    // SR with its sender info cut short.
    let p = packet(0, 200, &[0; 20]);
    assert_eq!(all(&p), [Err(RtcpError::Truncated { packet_type: 200 })]);
    // BYE claiming 31 sources, with 2.
    let p = packet(31, 203, &[0; 8]);
    assert_eq!(
        all(&p),
        [Err(RtcpError::CountPastEnd {
            packet_type: 203,
            count: 31
        })]
    );
    // REMB claiming 255 SSRCs, with none.
    let p = packet(
        15,
        206,
        &[0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 255, 0, 0, 1],
    );
    assert_eq!(
        all(&p),
        [Err(RtcpError::CountPastEnd {
            packet_type: 206,
            count: 255
        })]
    );
}

#[test]
fn remb_with_an_absurd_exponent_saturates() {
    let p = packet(
        15,
        206,
        &[
            0, 0, 0, 1, 0, 0, 0, 0, b'R', b'E', b'M', b'B', 0, 0xFF, 0xFF, 0xFF,
        ],
    );
    let Ok(RtcpPacket::Remb { bitrate_bps, .. }) = &all(&p)[0] else {
        panic!();
    };
    assert_eq!(*bitrate_bps, u64::MAX);
}

fn twcc_body(status_count: u16, rest: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 1, 0, 0, 0, 2, 0, 10];
    b.extend_from_slice(&status_count.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(rest);
    while b.len() % 4 != 0 {
        b.push(0);
    }
    b
}

#[test]
fn transport_cc_that_lies() {
    // Status count 65 535 in a 20-byte packet: no chunks at all.
    let p = packet(15, 205, &twcc_body(65_535, &[]));
    assert_eq!(p.len(), 20);
    assert_eq!(
        all(&p),
        [Err(RtcpError::TwccChunksPastEnd {
            status_count: 65_535
        })]
    );
    // Chunks for 14 of 15 statuses.
    let p = packet(15, 205, &twcc_body(15, &[0x80, 0x00, 0, 0]));
    assert_eq!(
        all(&p),
        [Err(RtcpError::TwccChunksPastEnd { status_count: 15 })]
    );
    // A run of 100 small deltas with 2 bytes of deltas.
    let p = packet(15, 205, &twcc_body(100, &[0x20, 100, 1, 2]));
    assert_eq!(all(&p), [Err(RtcpError::TwccDeltasPastEnd)]);
    // A two-bit vector with a large delta cut in half: one byte of it, then one byte of
    // padding (P bit) which is not part of the deltas.
    let mut p = packet(15, 205, &twcc_body(1, &[0xE0, 0x00, 0x7F, 1]));
    p[0] |= 0x20;
    assert_eq!(all(&p), [Err(RtcpError::TwccDeltasPastEnd)]);
    // Without the P bit that last byte completes the delta.
    p[0] &= !0x20;
    assert!(all(&p)[0].is_ok());
    // The reserved symbol, in a run and in a two-bit vector.
    let p = packet(15, 205, &twcc_body(3, &[0x60, 0x03]));
    assert_eq!(all(&p), [Err(RtcpError::TwccReservedSymbol)]);
    let p = packet(15, 205, &twcc_body(2, &[0xF0, 0x00]));
    assert_eq!(all(&p), [Err(RtcpError::TwccReservedSymbol)]);
    // 65 535 statuses honestly in 9 run chunks of "not received" (8 × 8 191 + 7): valid,
    // and walking it yields exactly 65 535 packets (bounded by the count).
    let mut chunks = vec![];
    for _ in 0..8 {
        chunks.extend_from_slice(&0x1FFFu16.to_be_bytes());
    }
    let p = packet(15, 205, &twcc_body(65_535, &chunks));
    assert_eq!(
        all(&p),
        [Err(RtcpError::TwccChunksPastEnd {
            status_count: 65_535
        })]
    );
    chunks.extend_from_slice(&7u16.to_be_bytes());
    let p = packet(15, 205, &twcc_body(65_535, &chunks));
    let Ok(RtcpPacket::TransportCc(fb)) = &all(&p)[0] else {
        panic!();
    };
    assert_eq!(fb.packets().count(), 65_535);
    assert_eq!(fb.received_count(), 0);
    // Thousands of empty runs before the real chunk: bounded by the bytes, still valid.
    let mut chunks = vec![0u8; 2_000];
    chunks.extend_from_slice(&[0x20, 0x01, 5]);
    let p = packet(15, 205, &twcc_body(1, &chunks));
    let Ok(RtcpPacket::TransportCc(fb)) = &all(&p)[0] else {
        panic!();
    };
    assert_eq!(fb.packets().collect::<Vec<_>>().len(), 1);
    assert_eq!(fb.packets().next().unwrap().arrival_us, Some(1_250));
}

#[test]
fn a_nack_with_many_fcis() {
    // 10 000 FCI entries, each PID with all 16 BLP bits: 170 000 sequence numbers, in
    // order, from one 40 KB packet (bounded by the bytes: 17 per 4 bytes).
    let mut body = vec![0, 0, 0, 1, 0, 0, 0, 2];
    for i in 0..10_000u32 {
        body.extend_from_slice(&((i * 17) as u16).to_be_bytes());
        body.extend_from_slice(&[0xFF, 0xFF]);
    }
    let p = packet(1, 205, &body);
    let Ok(RtcpPacket::Nack { lost, .. }) = &all(&p)[0] else {
        panic!();
    };
    assert_eq!(lost.fci_count(), 10_000);
    let mut expected = 0u16;
    let mut n = 0;
    for seq in lost.clone() {
        assert_eq!(seq, expected);
        expected = expected.wrapping_add(1);
        n += 1;
    }
    assert_eq!(n, 170_000);
    // An FCI cut in half is not read.
    let p = packet(1, 205, &[0, 0, 0, 1, 0, 0, 0, 2, 0, 7, 0, 0, 0, 9, 0, 0]);
    let Ok(RtcpPacket::Nack { lost, .. }) = &all(&p)[0] else {
        panic!();
    };
    assert_eq!(lost.clone().collect::<Vec<_>>(), [7, 9]);
}

#[test]
fn every_truncation_and_random_bytes_never_panic() {
    let mut c = packet(1, 201, &[0; 28]);
    c.extend(packet(
        1,
        202,
        &[0, 0, 0, 1, 1, 3, b'a', b'b', b'c', 0, 0, 0],
    ));
    c.extend(packet(15, 205, &twcc_body(3, &[0x20, 0x03, 1, 2, 3])));
    for len in 0..c.len() {
        // Every prefix: a few packets, then at most one error, and every list walkable.
        for p in parse_compound(&c[..len]).flatten() {
            walk(&p);
        }
    }
    let mut x = 0x1234_5678u32;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut buf = vec![0u8; 256];
    for _ in 0..100_000 {
        let len = (next() % 256) as usize;
        for b in buf.iter_mut().take(len) {
            *b = next() as u8;
        }
        // Mostly a plausible header, so the bodies get exercised.
        if len >= 4 && next() % 4 != 0 {
            buf[0] = 0x80 | (buf[0] & 0x3F);
            buf[1] = 200 + (next() % 8) as u8;
            let words = ((len / 4) as u16).saturating_sub(1);
            buf[2..4].copy_from_slice(&words.to_be_bytes());
        }
        for p in parse_compound(&buf[..len]).flatten() {
            walk(&p);
        }
    }
}

fn walk(p: &RtcpPacket<'_>) {
    match p {
        RtcpPacket::SenderReport { reports, .. } | RtcpPacket::ReceiverReport { reports, .. } => {
            assert!(reports.clone().count() <= 31)
        }
        RtcpPacket::Sdes(items) => assert!(items.clone().count() <= 128),
        RtcpPacket::Bye { ssrcs } | RtcpPacket::Remb { ssrcs, .. } => {
            assert!(ssrcs.clone().count() <= 255)
        }
        RtcpPacket::Nack { lost, .. } => assert!(lost.clone().count() <= 17 * 64),
        RtcpPacket::Fir { entries, .. } => assert!(entries.clone().count() <= 32),
        RtcpPacket::TransportCc(fb) => {
            assert_eq!(fb.packets().count(), usize::from(fb.status_count))
        }
        RtcpPacket::Pli { .. } | RtcpPacket::Other { .. } => {}
    }
}
