//! RTCP writers: what we write, str0m's parser (an independent implementation) reads back
//! to the same values; exact bytes where a known example exists; and our own parser agrees.

use std::time::{Duration, SystemTime};

use shardcast_rtp::report::ReportBlock;
use shardcast_rtp::rtcp::{
    parse_compound, write_bye, write_fir, write_nack, write_pli, write_remb, write_rr,
    write_sdes_cname, write_sr, RtcpError, RtcpPacket, SenderInfo,
};
use str0m::rtp::rtcp::{Rtcp, SdesType};

fn str0m_parse(packet: &[u8]) -> Rtcp {
    Rtcp::try_from(packet).expect("str0m parses our packet")
}

fn only(packet: &[u8]) -> RtcpPacket<'_> {
    let mut it = parse_compound(packet);
    let p = it.next().expect("one packet").expect("parses");
    assert!(it.next().is_none());
    p
}

fn blocks() -> [ReportBlock; 2] {
    [
        ReportBlock {
            ssrc: 0xAABB_CCDD,
            fraction_lost: 25,
            cumulative_lost: 1_000,
            ext_highest_seq: 0x0001_FFFF,
            jitter: 345,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 65_536,
        },
        ReportBlock {
            ssrc: 7,
            fraction_lost: 0,
            // Negative with duplicates: 24-bit two's complement on the wire.
            cumulative_lost: -3,
            ext_highest_seq: 5,
            jitter: 0,
            last_sr: 0,
            delay_since_last_sr: 0,
        },
    ]
}

fn assert_same_blocks(theirs: impl Iterator<Item = str0m::rtp::rtcp::ReceptionReport>) {
    let theirs: Vec<_> = theirs.collect();
    assert_eq!(theirs.len(), 2);
    for (t, o) in theirs.iter().zip(blocks()) {
        assert_eq!(*t.ssrc, o.ssrc);
        assert_eq!(t.fraction_lost, o.fraction_lost);
        assert_eq!(t.packets_lost, (o.cumulative_lost as u32) & 0xFF_FFFF);
        assert_eq!(t.max_seq, o.ext_highest_seq);
        assert_eq!(t.jitter, o.jitter);
        assert_eq!(t.last_sr_time, o.last_sr);
        assert_eq!(t.last_sr_delay, o.delay_since_last_sr);
    }
}

#[test]
fn sender_report() {
    // 2024-01-01T00:00:00.5Z in NTP: seconds since 1900, half a second of fraction.
    let unix = 1_704_067_200u64;
    let info = SenderInfo {
        ssrc: 0x1122_3344,
        ntp: (unix + 2_208_988_800) << 32 | 0x8000_0000,
        rtp_ts: 0xFEDC_BA98,
        packet_count: 1_000,
        octet_count: 1_200_000,
    };
    let mut buf = [0u8; 100];
    let len = write_sr(&mut buf, &info, &blocks()).unwrap();
    assert_eq!(len, 28 + 48);
    assert_eq!(buf[..4], [0x82, 200, 0, 18]);

    let Rtcp::SenderReport(sr) = str0m_parse(&buf[..len]) else {
        panic!("not an SR");
    };
    assert_eq!(*sr.sender_info.ssrc, info.ssrc);
    let expected = SystemTime::UNIX_EPOCH + Duration::from_millis(unix * 1000 + 500);
    let got = sr.sender_info.ntp_time;
    let off = got
        .duration_since(expected)
        .unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_micros(1), "{got:?}");
    assert_eq!(sr.sender_info.rtp_time.numer(), u64::from(info.rtp_ts));
    assert_eq!(sr.sender_info.sender_packet_count, 1_000);
    assert_eq!(sr.sender_info.sender_octet_count, 1_200_000);
    assert_same_blocks(sr.reports.into_iter());

    let RtcpPacket::SenderReport {
        ssrc,
        ntp,
        rtp_ts,
        packet_count,
        octet_count,
        reports,
    } = only(&buf[..len])
    else {
        panic!("not an SR");
    };
    assert_eq!(
        (ssrc, ntp, rtp_ts, packet_count, octet_count),
        (
            info.ssrc,
            info.ntp,
            info.rtp_ts,
            info.packet_count,
            info.octet_count
        )
    );
    assert_eq!(reports.collect::<Vec<_>>(), blocks());
}

#[test]
fn receiver_report() {
    let mut buf = [0u8; 64];
    let len = write_rr(&mut buf, 0x0102_0304, &blocks()).unwrap();
    assert_eq!(len, 8 + 48);
    let Rtcp::ReceiverReport(rr) = str0m_parse(&buf[..len]) else {
        panic!("not an RR");
    };
    assert_eq!(*rr.sender_ssrc, 0x0102_0304);
    assert_same_blocks(rr.reports.into_iter());
    let RtcpPacket::ReceiverReport { ssrc, reports } = only(&buf[..len]) else {
        panic!("not an RR");
    };
    assert_eq!(ssrc, 0x0102_0304);
    assert_eq!(reports.collect::<Vec<_>>(), blocks());

    // The empty RR that opens a compound from a silent receiver.
    assert_eq!(write_rr(&mut buf, 9, &[]), Ok(8));
    assert_eq!(buf[..8], [0x80, 201, 0, 1, 0, 0, 0, 9]);
}

#[test]
fn sdes_cname() {
    for cname in ["a", "ab", "abc", "abcd", "shardcast-node-7/4f3a9c2e"] {
        let mut buf = [0u8; 300];
        let len = write_sdes_cname(&mut buf, 42, cname.as_bytes()).unwrap();
        assert_eq!(len % 4, 0);
        // A null octet always ends the item list.
        assert_eq!(buf[len - 1], 0);
        let Rtcp::SourceDescription(d) = str0m_parse(&buf[..len]) else {
            panic!("not SDES");
        };
        let chunk = d.reports.iter().next().unwrap();
        assert_eq!(*chunk.ssrc, 42);
        let values: Vec<_> = chunk.values.iter().cloned().collect();
        assert_eq!(values, [(SdesType::CNAME, cname.to_string())]);
        let RtcpPacket::Sdes(items) = only(&buf[..len]) else {
            panic!("not SDES");
        };
        let items: Vec<_> = items.map(|i| (i.ssrc, i.kind, i.value)).collect();
        assert_eq!(items, [(42, 1, cname.as_bytes())]);
    }
    let mut buf = [0u8; 300];
    assert_eq!(
        write_sdes_cname(&mut buf, 1, b""),
        Err(RtcpError::BadSdesValue { len: 0 })
    );
    assert_eq!(
        write_sdes_cname(&mut buf, 1, &[b'x'; 256]),
        Err(RtcpError::BadSdesValue { len: 256 })
    );
}

#[test]
fn bye() {
    let mut buf = [0u8; 200];
    let len = write_bye(&mut buf, &[1, 2, 0xFFFF_FFFF]).unwrap();
    assert_eq!(
        buf[..len],
        [0x83, 203, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0xFF, 0xFF, 0xFF, 0xFF]
    );
    let Rtcp::Goodbye(g) = str0m_parse(&buf[..len]) else {
        panic!("not BYE");
    };
    let theirs: Vec<u32> = g.reports.iter().map(|s| **s).collect();
    assert_eq!(theirs, [1, 2, 0xFFFF_FFFF]);
    let RtcpPacket::Bye { ssrcs } = only(&buf[..len]) else {
        panic!("not BYE");
    };
    assert_eq!(ssrcs.collect::<Vec<_>>(), [1, 2, 0xFFFF_FFFF]);
    assert_eq!(
        write_bye(&mut buf, &[0; 32]),
        Err(RtcpError::TooMany { count: 32, max: 31 })
    );
}

#[test]
fn nack_packs_pid_and_blp_as_str0m_reads_them() {
    // Sorted, across the 16-bit wrap, with runs longer than one BLP.
    let lost: Vec<u16> = [65_530u16, 65_531, 65_535, 0, 3, 10, 40, 41, 42, 56, 57, 300]
        .into_iter()
        .collect();
    let mut buf = [0u8; 100];
    let len = write_nack(&mut buf, 11, 22, &lost).unwrap();
    let Rtcp::Nack(n) = str0m_parse(&buf[..len]) else {
        panic!("not NACK");
    };
    assert_eq!((*n.sender_ssrc, *n.ssrc), (11, 22));
    let entries: Vec<(u16, u16)> = n.reports.iter().map(|e| (e.pid, e.blp)).collect();
    // 65530 covers up to 65530 + 16 = 10; 40 covers up to 56; 57 alone; 300 alone.
    assert_eq!(
        entries,
        [
            (65_530, 1 << 0 | 1 << 4 | 1 << 5 | 1 << 8 | 1 << 15),
            (40, 1 << 0 | 1 << 1 | 1 << 15),
            (57, 0),
            (300, 0)
        ]
    );
    let RtcpPacket::Nack {
        sender_ssrc,
        media_ssrc,
        lost: ours,
    } = only(&buf[..len])
    else {
        panic!("not NACK");
    };
    assert_eq!((sender_ssrc, media_ssrc), (11, 22));
    assert_eq!(ours.collect::<Vec<_>>(), lost);

    assert_eq!(write_nack(&mut buf, 1, 2, &[]), Err(RtcpError::EmptyNack));
    assert_eq!(
        write_nack(&mut buf[..15], 1, 2, &[1]),
        Err(RtcpError::BufferTooSmall { need: 16, have: 15 })
    );
}

#[test]
fn pli_and_fir() {
    let mut buf = [0u8; 64];
    let len = write_pli(&mut buf, 5, 6).unwrap();
    assert_eq!(buf[..len], [0x81, 206, 0, 2, 0, 0, 0, 5, 0, 0, 0, 6]);
    let Rtcp::Pli(p) = str0m_parse(&buf[..len]) else {
        panic!("not PLI");
    };
    assert_eq!((*p.sender_ssrc, *p.ssrc), (5, 6));
    assert!(matches!(
        only(&buf[..len]),
        RtcpPacket::Pli {
            sender_ssrc: 5,
            media_ssrc: 6
        }
    ));

    let len = write_fir(&mut buf, 5, &[(100, 1), (200, 255)]).unwrap();
    assert_eq!(len, 28);
    let Rtcp::Fir(f) = str0m_parse(&buf[..len]) else {
        panic!("not FIR");
    };
    assert_eq!(*f.sender_ssrc, 5);
    let theirs: Vec<(u32, u8)> = f.reports.iter().map(|e| (*e.ssrc, e.seq_no)).collect();
    assert_eq!(theirs, [(100, 1), (200, 255)]);
    let RtcpPacket::Fir {
        sender_ssrc,
        entries,
    } = only(&buf[..len])
    else {
        panic!("not FIR");
    };
    assert_eq!(sender_ssrc, 5);
    assert_eq!(entries.collect::<Vec<_>>(), [(100, 1), (200, 255)]);
}

#[test]
fn remb_matches_a_chrome_capture() {
    // REMB Chrome sent while receiving a 6 Mbit/s stream (str0m's test vector):
    // mantissa 139 487, exponent 6 = 8 927 168 bit/s, for SSRC 1 215 622 422.
    let chrome = [
        143, 206, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 82, 69, 77, 66, 1, 26, 32, 223, 72, 116, 237, 22,
    ];
    let mut buf = [0u8; 64];
    let len = write_remb(&mut buf, 1, 8_927_168, &[1_215_622_422]).unwrap();
    assert_eq!(buf[..len], chrome);
    let Rtcp::Remb(r) = str0m_parse(&buf[..len]) else {
        panic!("not REMB");
    };
    assert_eq!(r.bitrate, 8_927_168.0);
    let RtcpPacket::Remb {
        sender_ssrc,
        bitrate_bps,
        ssrcs,
    } = only(&chrome)
    else {
        panic!("not REMB");
    };
    assert_eq!((sender_ssrc, bitrate_bps), (1, 8_927_168));
    assert_eq!(ssrcs.collect::<Vec<_>>(), [1_215_622_422]);

    // Rounded down to what 18 bits of mantissa hold, as str0m also reads it.
    let len = write_remb(&mut buf, 1, 1_000_000_007, &[]).unwrap();
    let Rtcp::Remb(r) = str0m_parse(&buf[..len]) else {
        panic!("not REMB");
    };
    let RtcpPacket::Remb { bitrate_bps, .. } = only(&buf[..len]) else {
        panic!("not REMB");
    };
    assert!(bitrate_bps <= 1_000_000_007 && bitrate_bps > 1_000_000_007 - (1 << 12));
    assert_eq!(r.bitrate as u64, bitrate_bps);
}

#[test]
fn too_small_buffers_and_counts() {
    let mut buf = [0u8; 60];
    let info = SenderInfo::default();
    assert_eq!(
        write_sr(&mut buf, &info, &blocks()),
        Err(RtcpError::BufferTooSmall { need: 76, have: 60 })
    );
    let many = [ReportBlock::default(); 32];
    let mut big = [0u8; 1000];
    assert_eq!(
        write_rr(&mut big, 1, &many),
        Err(RtcpError::TooMany { count: 32, max: 31 })
    );
    assert_eq!(write_rr(&mut big, 1, &many[..31]), Ok(8 + 31 * 24));
    assert_eq!(
        write_pli(&mut buf[..11], 1, 2),
        Err(RtcpError::BufferTooSmall { need: 12, have: 11 })
    );
    // Cumulative loss beyond 24 bits is clamped, not wrapped into a small number.
    let clamp = ReportBlock {
        cumulative_lost: 10_000_000,
        ..ReportBlock::default()
    };
    let len = write_rr(&mut big, 1, &[clamp]).unwrap();
    let RtcpPacket::ReceiverReport { mut reports, .. } = only(&big[..len]) else {
        panic!("not an RR");
    };
    assert_eq!(reports.next().unwrap().cumulative_lost, 0x7F_FFFF);
}

#[test]
fn a_compound_written_back_to_back() {
    let mut buf = [0u8; 300];
    let mut at = write_rr(&mut buf, 1, &blocks()).unwrap();
    at += write_sdes_cname(&mut buf[at..], 1, b"cname").unwrap();
    at += write_nack(&mut buf[at..], 1, 2, &[5, 6, 7]).unwrap();
    at += write_pli(&mut buf[at..], 1, 2).unwrap();
    at += write_remb(&mut buf[at..], 1, 500_000, &[2]).unwrap();
    at += write_bye(&mut buf[at..], &[1]).unwrap();
    let kinds: Vec<&str> = parse_compound(&buf[..at])
        .map(|p| match p.unwrap() {
            RtcpPacket::ReceiverReport { .. } => "rr",
            RtcpPacket::Sdes(_) => "sdes",
            RtcpPacket::Nack { .. } => "nack",
            RtcpPacket::Pli { .. } => "pli",
            RtcpPacket::Remb { .. } => "remb",
            RtcpPacket::Bye { .. } => "bye",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["rr", "sdes", "nack", "pli", "remb", "bye"]);
}
