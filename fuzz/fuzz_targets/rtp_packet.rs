//! An opened (decrypted) RTP packet from a publisher: the header, its CSRCs, the RFC 8285
//! extension block read with every extension we handle negotiated, and the RTX original
//! sequence number. Must be refused with an error, never a panic, and every range the parser
//! hands out must lie inside the packet.
#![no_main]

use shardcast_rtp::rtp::{read_extensions, read_rtx_original_seq, ExtIds, RtpHeader};

/// One-byte-form ids 1..=10 (what a browser typically negotiates), so every element of a
/// one-byte block and the same ids of a two-byte block are interpreted.
const IDS: ExtIds = ExtIds {
    mid: Some(1),
    rid: Some(2),
    repaired_rid: Some(3),
    abs_send_time: Some(4),
    transport_cc: Some(5),
    audio_level: Some(6),
    video_orientation: Some(7),
    abs_capture_time: Some(8),
    playout_delay: Some(9),
    dependency_descriptor: Some(10),
};

libfuzzer_sys::fuzz_target!(|packet: &[u8]| {
    let Ok(header) = RtpHeader::parse(packet) else {
        return;
    };
    assert!(header.header_len + header.padding_len <= packet.len());
    let payload = header.payload(packet);
    assert_eq!(payload, &packet[header.payload_range(packet.len())]);
    for i in 0..=usize::from(header.csrc_count) {
        let _ = header.csrc(packet, i);
    }
    if let Ok(ext) = read_extensions(packet, &header, &IDS) {
        for v in [
            ext.mid,
            ext.rid,
            ext.repaired_rid,
            ext.dependency_descriptor,
        ]
        .into_iter()
        .flatten()
        {
            assert!(!v.is_empty() && v.len() <= 256);
        }
    }
    let _ = read_rtx_original_seq(payload);
});
