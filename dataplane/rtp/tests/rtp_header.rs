//! The RTP header and its extensions, checked against known bytes and against str0m's own
//! header parser and writer (an independent implementation).

use std::time::Duration;

use shardcast_rtp::rtp::{
    read_extensions, write_header, AudioLevel, ExtIds, Extensions, HeaderFields, OutExtensions,
    RtpHeader,
};
use str0m::_internal_test_exports::TestSrtp;
use str0m::crypto::dtls::{KeyingMaterial, SrtpProfile};
use str0m::media::{Mid, Rid};
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues, RtpHeader as Str0mHeader};

/// str0m's test vector `hb1` (a header Chrome wrote): one-byte form, with padding.
const ONE_BYTE: [u8; 48] = [
    176, 111, 183, 152, 0, 0, 39, 16, 46, 87, 21, 249, 0xBE, 0xDE, 0, 4, 16, 170, 34, 254, 32, 106,
    49, 0, 0, 66, 120, 89, 106, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12,
];

/// The same values in the two-byte form (str0m's `hb1` of its two-byte test).
const TWO_BYTE: [u8; 52] = [
    176, 111, 183, 152, 0, 0, 39, 16, 46, 87, 21, 249, 0x10, 0x01, 0, 5, 1, 1, 170, 2, 3, 254, 32,
    106, 3, 2, 0, 0, 4, 3, 120, 89, 106, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12,
];

fn standard_ids() -> ExtIds {
    ExtIds::from_str0m(&ExtensionMap::standard())
}

#[test]
fn known_one_and_two_byte_headers() {
    for (packet, header_len, profile) in [(&ONE_BYTE[..], 32, 0xBEDE), (&TWO_BYTE[..], 36, 0x1001)]
    {
        let h = RtpHeader::parse(packet).unwrap();
        assert!(!h.marker);
        assert_eq!(h.payload_type, 111);
        assert_eq!(h.seq, 47_000);
        assert_eq!(h.timestamp, 10_000);
        assert_eq!(h.ssrc, 0x2E57_15F9);
        assert_eq!(h.csrc_count, 0);
        assert_eq!(h.header_len, header_len);
        // P bit set, last byte 12: the payload is the 4 bytes 1, 2, 3, 4.
        assert_eq!(h.padding_len, 12);
        assert_eq!(h.payload(packet), [1, 2, 3, 4]);
        assert_eq!(h.ext.as_ref().map(|e| e.0), Some(profile));
        let ext = read_extensions(packet, &h, &standard_ids()).unwrap();
        assert_eq!(
            ext,
            Extensions {
                audio_level: Some(AudioLevel {
                    voice: true,
                    level: 42
                }),
                abs_send_time: Some(0xFE206A),
                transport_cc: Some(0),
                mid: Some(b"xYj"),
                ..Extensions::default()
            }
        );
    }
}

#[test]
fn csrcs_are_skipped_and_readable() {
    // str0m's CSRC test vector: 3 CSRCs, one-byte audio level (id 3) 0xAA.
    let packet = [
        147, 33, 183, 152, 0, 0, 39, 16, 0, 0, 0, 44, 0, 0, 0, 100, 0x12, 0x34, 0x56, 0x78, 0xFF,
        0xFF, 0xFF, 0xFF, 0xBE, 0xDE, 0, 1, 48, 170, 0, 0,
    ];
    let h = RtpHeader::parse(&packet).unwrap();
    assert_eq!(h.csrc_count, 3);
    assert_eq!(h.csrc(&packet, 0), Some(100));
    assert_eq!(h.csrc(&packet, 1), Some(0x1234_5678));
    assert_eq!(h.csrc(&packet, 2), Some(0xFFFF_FFFF));
    assert_eq!(h.csrc(&packet, 3), None);
    assert_eq!(h.header_len, 32);
    assert_eq!(h.ext, Some((0xBEDE, 28..32)));
    let ids = ExtIds {
        audio_level: Some(3),
        ..ExtIds::default()
    };
    let ext = read_extensions(&packet, &h, &ids).unwrap();
    assert_eq!(
        ext.audio_level,
        Some(AudioLevel {
            voice: true,
            level: 42
        })
    );
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

fn str0m_map(ids: &ExtIds) -> ExtensionMap {
    let mut map = ExtensionMap::empty();
    let pairs = [
        (ids.mid, Extension::RtpMid),
        (ids.rid, Extension::RtpStreamId),
        (ids.repaired_rid, Extension::RepairedRtpStreamId),
        (ids.abs_send_time, Extension::AbsoluteSendTime),
        (ids.transport_cc, Extension::TransportSequenceNumber),
        (ids.audio_level, Extension::AudioLevel),
        (ids.video_orientation, Extension::VideoOrientation),
        (ids.abs_capture_time, Extension::AbsoluteCaptureTime),
        (ids.playout_delay, Extension::PlayoutDelay),
    ];
    for (id, ext) in pairs {
        if let Some(id) = id {
            map.set(id, ext);
        }
    }
    map
}

fn fields(seq: u16) -> HeaderFields {
    HeaderFields {
        marker: true,
        payload_type: 96,
        seq,
        timestamp: 0xDEAD_BEEF,
        ssrc: 0x1234_5678,
    }
}

const DD: [u8; 20] = [
    0x80, 0x01, 0x02, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
];

/// What we write, str0m parses to the same values, in both extension forms.
#[test]
fn str0m_parses_what_we_write() {
    // Two-byte form forced by a 20-byte dependency descriptor (str0m skips its id), and
    // by an id above 14.
    let mut two_byte_by_id = all_ids();
    two_byte_by_id.transport_cc = Some(15);
    let cases = [
        (all_ids(), None, 0xBEDE),
        (all_ids(), Some(&DD[..]), 0x1000),
        (two_byte_by_id, None, 0x1000),
    ];
    for (ids, dd, profile) in cases {
        let playout = [0x01, 0x00, 0xC8]; // min 16 (160 ms), max 200 (2 s)
        let capture = [1, 2, 3, 4, 5, 6, 7, 8];
        let ext = OutExtensions {
            mid: Some(b"video0"),
            rid: Some(b"hi"),
            repaired_rid: Some(b"lo"),
            transport_cc: Some(0xBEEF),
            abs_send_time: Some(0x12_3456),
            audio_level: Some(AudioLevel {
                voice: false,
                level: 99,
            }),
            video_orientation: Some(3),
            dependency_descriptor: dd,
            abs_capture_time: Some(&capture),
            playout_delay: Some(&playout),
        };
        let mut buf = [0u8; 200];
        let len = write_header(&mut buf, &fields(4242), &ext, &ids).unwrap();
        let packet = &buf[..len];
        assert_eq!(len % 4, 0);

        let theirs = Str0mHeader::_parse(packet, &str0m_map(&ids)).expect("str0m parses it");
        assert!(theirs.marker);
        assert_eq!(*theirs.payload_type, 96);
        assert_eq!(theirs.sequence_number, 4242);
        assert_eq!(theirs.timestamp, 0xDEAD_BEEF);
        assert_eq!(*theirs.ssrc, 0x1234_5678);
        assert_eq!(theirs.header_len, len);
        let v = &theirs.ext_vals;
        assert_eq!(v.mid, Some(Mid::from("video0")));
        assert_eq!(v.rid, Some(Rid::from("hi")));
        assert_eq!(v.rid_repair, Some(Rid::from("lo")));
        assert_eq!(v.transport_cc, Some(0xBEEF));
        assert_eq!(v.audio_level, Some(-99));
        assert_eq!(v.voice_activity, Some(false));
        assert_eq!(v.video_orientation.map(|o| o as u8), Some(3));
        assert_eq!(v.play_delay_min.map(|t| t.numer()), Some(16));
        assert_eq!(v.play_delay_max.map(|t| t.numer()), Some(200));
        assert!(v.abs_capture_time.is_some());
        assert!(v.abs_send_time.is_some());

        // And we read back what we wrote, including what str0m cannot.
        let ours = RtpHeader::parse(packet).unwrap();
        assert_eq!(ours.ext.as_ref().unwrap().0, profile);
        assert_eq!(read_extensions(packet, &ours, &ids).unwrap(), ext);
    }
}

#[test]
fn abs_send_time_differences_agree_with_str0m() {
    // str0m turns abs-send-time into an Instant on an internal base: compare differences.
    let ids = all_ids();
    let map = str0m_map(&ids);
    let parse = |t: u32| {
        let ext = OutExtensions {
            abs_send_time: Some(t),
            ..OutExtensions::default()
        };
        let mut buf = [0u8; 64];
        let len = write_header(&mut buf, &fields(1), &ext, &ids).unwrap();
        Str0mHeader::_parse(&buf[..len], &map)
            .unwrap()
            .ext_vals
            .abs_send_time
            .unwrap()
    };
    let a = shardcast_rtp::rtp::abs_send_time(Duration::from_millis(1_000));
    let b = shardcast_rtp::rtp::abs_send_time(Duration::from_millis(1_250));
    let diff = parse(b) - parse(a);
    assert!(
        diff.abs_diff(Duration::from_millis(250)) < Duration::from_micros(10),
        "{diff:?}"
    );
}

fn test_srtp() -> TestSrtp {
    let profile = SrtpProfile::AES128_CM_SHA1_80;
    let mat: Vec<u8> = (0..profile.keying_material_len())
        .map(|i| i as u8)
        .collect();
    TestSrtp::new(
        &str0m::crypto::from_feature_flags(),
        profile,
        &KeyingMaterial::new(&mat),
    )
}

/// What str0m writes (its header writer, through its SRTP sealer, which leaves the header
/// in the clear with AES-CM), we parse to the values it was given.
#[test]
fn we_parse_what_str0m_writes() {
    let mut srtp = test_srtp();
    for (ids, exts) in [
        (standard_ids(), ExtensionMap::standard()),
        // Id 15 makes str0m write the two-byte form.
        (
            ExtIds {
                transport_cc: Some(15),
                mid: Some(2),
                audio_level: Some(16),
                ..ExtIds::default()
            },
            {
                let mut m = ExtensionMap::empty();
                m.set(15, Extension::TransportSequenceNumber);
                m.set(2, Extension::RtpMid);
                m.set(16, Extension::AudioLevel);
                m
            },
        ),
    ] {
        for seq in [0u16, 1, 65_535] {
            let header = Str0mHeader {
                marker: seq == 1,
                payload_type: 111.into(),
                sequence_number: seq,
                timestamp: 90_000u32.wrapping_mul(u32::from(seq)),
                ssrc: 0xCAFE_F00D.into(),
                ext_vals: ExtensionValues {
                    mid: Some(Mid::from("a1")),
                    transport_cc: Some(seq ^ 0x5555),
                    audio_level: Some(-30),
                    voice_activity: Some(true),
                    rid: Some(Rid::from("q")),
                    ..Default::default()
                },
                ..Default::default()
            };
            let packet = srtp.protect(header, u64::from(seq), &[9; 40], &exts);
            let h = RtpHeader::parse(&packet).unwrap();
            assert_eq!(h.marker, seq == 1);
            assert_eq!(h.payload_type, 111);
            assert_eq!(h.seq, seq);
            assert_eq!(h.timestamp, 90_000u32.wrapping_mul(u32::from(seq)));
            assert_eq!(h.ssrc, 0xCAFE_F00D);
            // 40 bytes of (encrypted) payload and a 10-byte tag follow the header.
            assert_eq!(packet.len() - h.header_len, 50);
            let e = read_extensions(&packet, &h, &ids).unwrap();
            assert_eq!(e.mid, Some(&b"a1"[..]));
            assert_eq!(e.transport_cc, Some(seq ^ 0x5555));
            assert_eq!(
                e.audio_level,
                Some(AudioLevel {
                    voice: true,
                    level: 30
                })
            );
            assert_eq!(e.rid, ids.rid.map(|_| &b"q"[..]));
        }
    }
}

#[test]
fn reading_skips_unknown_ids_wrong_sizes_and_stops_at_id_15() {
    // One-byte block: padding byte, unknown id 9, transport-cc (id 5) of the wrong size
    // (1 byte: ignored), mid, id 15 (stop), then a mid that must not be read.
    let block = [
        0x00, 0x90, 0xAA, 0x50, 0x01, 0x12, b'a', b'b', b'c', 0xF0, 0x12, b'z', b'z', b'z',
    ];
    let mut packet = vec![0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xBE, 0xDE, 0, 4];
    packet.extend_from_slice(&block);
    packet.extend_from_slice(&[0, 0]);
    let h = RtpHeader::parse(&packet).unwrap();
    let ids = ExtIds {
        mid: Some(1),
        transport_cc: Some(5),
        ..ExtIds::default()
    };
    let e = read_extensions(&packet, &h, &ids).unwrap();
    assert_eq!(e.mid, Some(&b"abc"[..]));
    assert_eq!(e.transport_cc, None);

    // Another profile (RFC 3550 header extension of some application): nothing known.
    packet[12] = 0x12;
    let h = RtpHeader::parse(&packet).unwrap();
    assert_eq!(
        read_extensions(&packet, &h, &ids).unwrap(),
        Extensions::default()
    );
}
