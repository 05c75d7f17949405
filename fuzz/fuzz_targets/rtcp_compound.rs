//! A decrypted compound RTCP packet from a peer: SR, RR, SDES, BYE, generic NACK, PLI, FIR,
//! REMB, transport-cc and anything else, each list walked to its end as the core does.
//! Garbage must end the iteration with an error, never a panic or an endless list.
#![no_main]

use shardcast_rtp::rtcp::{parse_compound, RtcpPacket};

libfuzzer_sys::fuzz_target!(|compound: &[u8]| {
    // Every item is at least one byte of the input: more items than bytes would be a loop.
    let mut items = 0usize;
    let mut count = |n: usize| {
        items += n;
        assert!(
            items <= 8 * compound.len() + 64,
            "more items than the bytes allow"
        );
    };
    for packet in parse_compound(compound) {
        let Ok(packet) = packet else {
            break;
        };
        match packet {
            RtcpPacket::SenderReport { reports, .. }
            | RtcpPacket::ReceiverReport { reports, .. } => count(reports.count()),
            RtcpPacket::Sdes(items) => count(items.count()),
            RtcpPacket::Bye { ssrcs } | RtcpPacket::Remb { ssrcs, .. } => count(ssrcs.count()),
            // Each PID/BLP pair names at most 17 sequence numbers.
            RtcpPacket::Nack { lost, .. } => {
                let fci = lost.fci_count();
                let n = lost.count();
                assert!(n <= 17 * fci);
                count(fci);
            }
            RtcpPacket::Fir { entries, .. } => count(entries.count()),
            RtcpPacket::TransportCc(fb) => {
                let _ = fb.reference_time_us();
                let received = fb.received_count();
                let packets = fb.packets();
                let mut seen = 0usize;
                let mut got = 0usize;
                for p in packets {
                    seen += 1;
                    got += usize::from(p.arrival_us.is_some());
                }
                assert!(seen <= usize::from(fb.status_count));
                assert!(got <= received);
            }
            RtcpPacket::Pli { .. } | RtcpPacket::Other { .. } => count(1),
        }
    }
});
