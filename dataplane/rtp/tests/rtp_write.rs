//! The RTP header writer's exact bytes and errors: no X bit without extensions, the
//! one-byte block layout, padding-only probe packets, and what cannot be written.

use shardcast_rtp::rtp::{
    read_extensions, write_header, write_padding_packet, ExtIds, HeaderFields, OutExtensions,
    RtpError, RtpHeader,
};

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

fn fields(seq: u16) -> HeaderFields {
    HeaderFields {
        marker: true,
        payload_type: 96,
        seq,
        timestamp: 0xDEAD_BEEF,
        ssrc: 0x1234_5678,
    }
}

#[test]
fn no_extensions_means_no_x_bit() {
    let mut buf = [0u8; 12];
    let len = write_header(&mut buf, &fields(7), &OutExtensions::default(), &all_ids()).unwrap();
    assert_eq!(len, 12);
    assert_eq!(
        buf,
        [
            0x80,
            0x80 | 96,
            0,
            7,
            0xDE,
            0xAD,
            0xBE,
            0xEF,
            0x12,
            0x34,
            0x56,
            0x78
        ]
    );
    // A value without a negotiated id is not written either.
    let ext = OutExtensions {
        transport_cc: Some(1),
        ..OutExtensions::default()
    };
    assert_eq!(
        write_header(&mut buf, &fields(7), &ext, &ExtIds::default()),
        Ok(12)
    );
}

#[test]
fn one_byte_block_bytes() {
    let ids = ExtIds {
        transport_cc: Some(3),
        mid: Some(4),
        ..ExtIds::default()
    };
    let ext = OutExtensions {
        transport_cc: Some(0x0102),
        mid: Some(b"m"),
        ..OutExtensions::default()
    };
    let mut buf = [0xFFu8; 32];
    let len = write_header(&mut buf, &fields(7), &ext, &ids).unwrap();
    // mid (id 4, 1 byte), then transport-cc (id 3, 2 bytes), one zero byte of padding.
    assert_eq!(
        buf[..len],
        [
            0x90, 0xE0, 0, 7, 0xDE, 0xAD, 0xBE, 0xEF, 0x12, 0x34, 0x56, 0x78, 0xBE, 0xDE, 0, 2,
            0x40, b'm', 0x31, 0x01, 0x02, 0, 0, 0
        ]
    );
}

#[test]
fn padding_only_packet() {
    let ids = ExtIds {
        transport_cc: Some(3),
        ..ExtIds::default()
    };
    let ext = OutExtensions {
        transport_cc: Some(77),
        ..OutExtensions::default()
    };
    let mut buf = [0xAAu8; 300];
    let len = write_padding_packet(&mut buf, &fields(9), &ext, &ids, 200).unwrap();
    assert_eq!(len, 20 + 200);
    let packet = &buf[..len];
    assert_eq!(packet[0] & 0x20, 0x20);
    assert!(packet[20..len - 1].iter().all(|&b| b == 0));
    assert_eq!(packet[len - 1], 200);
    let h = RtpHeader::parse(packet).unwrap();
    assert_eq!(h.padding_len, 200);
    assert_eq!(h.payload(packet), []);
    assert_eq!(
        read_extensions(packet, &h, &ids).unwrap().transport_cc,
        Some(77)
    );

    assert_eq!(
        write_padding_packet(&mut buf, &fields(9), &ext, &ids, 0),
        Err(RtpError::ZeroPadding)
    );
    assert_eq!(
        write_padding_packet(&mut buf[..100], &fields(9), &ext, &ids, 255),
        Err(RtpError::BufferTooSmall {
            need: 275,
            have: 100
        })
    );
}

#[test]
fn writer_errors() {
    let mut buf = [0u8; 64];
    let bad_pt = HeaderFields {
        payload_type: 128,
        ..fields(1)
    };
    let none = OutExtensions::default();
    assert_eq!(
        write_header(&mut buf, &bad_pt, &none, &ExtIds::default()),
        Err(RtpError::BadPayloadType(128))
    );
    assert_eq!(
        write_header(&mut buf[..11], &fields(1), &none, &ExtIds::default()),
        Err(RtpError::BufferTooSmall { need: 12, have: 11 })
    );
    let ext = OutExtensions {
        mid: Some(b"0"),
        ..OutExtensions::default()
    };
    let zero_id = ExtIds {
        mid: Some(0),
        ..ExtIds::default()
    };
    assert_eq!(
        write_header(&mut buf, &fields(1), &ext, &zero_id),
        Err(RtpError::BadExtId)
    );
    let long = [b'x'; 256];
    let ext = OutExtensions {
        mid: Some(&long),
        ..OutExtensions::default()
    };
    assert_eq!(
        write_header(&mut buf, &fields(1), &ext, &all_ids()),
        Err(RtpError::ExtValueTooLong { len: 256 })
    );
    let ext = OutExtensions {
        mid: Some(b"abc"),
        ..OutExtensions::default()
    };
    // 12 + 4 + 4: the block does not fit 19 bytes.
    assert_eq!(
        write_header(&mut buf[..19], &fields(1), &ext, &all_ids()),
        Err(RtpError::BufferTooSmall { need: 20, have: 19 })
    );
}
