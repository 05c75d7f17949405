//! The hot paths allocate nothing: RTP header parse/extension read/write, RTCP parse and
//! write, and the transport-cc recorder after creation (also when a peer's seqs jump by
//! 30 000 or restart). Measured with a counting global allocator; counts are per thread,
//! so tests running in parallel do not disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use shardcast_rtp::report::ReportBlock;
use shardcast_rtp::rtcp::{self, parse_compound, RtcpPacket, TwccRecorder};
use shardcast_rtp::rtp::{
    read_extensions, write_header, write_padding_packet, ExtIds, HeaderFields, OutExtensions,
    RtpHeader,
};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: allocations can happen while a thread's locals are torn down.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call forwards to the system allocator with the caller's arguments
// unchanged; counting touches only a thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

#[test]
fn the_counter_counts() {
    assert!(allocations(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}

#[test]
fn rtp_header_paths() {
    let ids = ExtIds {
        mid: Some(1),
        rid: Some(2),
        transport_cc: Some(3),
        abs_send_time: Some(4),
        audio_level: Some(5),
        dependency_descriptor: Some(20),
        ..ExtIds::default()
    };
    let dd = [7u8; 20];
    let mut buf = [0u8; 1500];
    let n = allocations(|| {
        for seq in 0..10_000u16 {
            let fields = HeaderFields {
                marker: seq % 30 == 0,
                payload_type: 96,
                seq,
                timestamp: u32::from(seq) * 3000,
                ssrc: 1,
            };
            let ext = OutExtensions {
                mid: Some(b"0"),
                rid: Some(b"h"),
                transport_cc: Some(seq),
                abs_send_time: Some(u32::from(seq)),
                dependency_descriptor: (seq % 2 == 0).then_some(&dd[..]),
                ..OutExtensions::default()
            };
            let len = write_header(&mut buf, &fields, &ext, &ids).unwrap();
            let h = RtpHeader::parse(&buf[..len + 100]).unwrap();
            let read = read_extensions(&buf, &h, &ids).unwrap();
            assert_eq!(read.transport_cc, Some(seq));
            write_padding_packet(&mut buf, &fields, &ext, &ids, 200).unwrap();
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn rtcp_parse_and_write() {
    let mut buf = [0u8; 1500];
    let block = ReportBlock {
        ssrc: 5,
        ..ReportBlock::default()
    };
    let lost: Vec<u16> = (0..200).map(|i| i * 3).collect();
    let n = allocations(|| {
        for _ in 0..1_000 {
            let mut at = rtcp::write_rr(&mut buf, 1, &[block; 3]).unwrap();
            at += rtcp::write_sdes_cname(&mut buf[at..], 1, b"cname").unwrap();
            at += rtcp::write_nack(&mut buf[at..], 1, 2, &lost).unwrap();
            at += rtcp::write_fir(&mut buf[at..], 1, &[(2, 3)]).unwrap();
            at += rtcp::write_remb(&mut buf[at..], 1, 1_000_000, &[2]).unwrap();
            at += rtcp::write_bye(&mut buf[at..], &[1]).unwrap();
            let mut seen = 0;
            for p in parse_compound(&buf[..at]) {
                match p.unwrap() {
                    RtcpPacket::ReceiverReport { reports, .. } => seen += reports.count(),
                    RtcpPacket::Sdes(items) => seen += items.count(),
                    RtcpPacket::Nack { lost, .. } => seen += lost.count(),
                    RtcpPacket::Fir { entries, .. } => seen += entries.count(),
                    RtcpPacket::Remb { ssrcs, .. } | RtcpPacket::Bye { ssrcs } => {
                        seen += ssrcs.count()
                    }
                    _ => {}
                }
            }
            assert_eq!(seen, 3 + 1 + 200 + 1 + 1 + 1);
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn twcc_recorder_after_creation_even_with_jumps() {
    let mut rec = TwccRecorder::new();
    let start = Instant::now();
    let mut out = [0u8; 1200];
    let n = allocations(|| {
        let mut t = start;
        let mut seq = 0u16;
        for i in 0..20_000u32 {
            seq = match i % 2_000 {
                // A jump of 30 000, and a restart 30 000 lower.
                500 => seq.wrapping_add(30_000),
                1_000 => seq.wrapping_sub(30_000),
                _ if i % 7 == 0 => seq.wrapping_add(3),
                _ => seq.wrapping_add(1),
            };
            t += Duration::from_micros(700);
            rec.on_packet(seq, t);
            if i % 50 == 0 {
                while let Some(len) = rec.build_feedback(1, 2, &mut out) {
                    for p in parse_compound(&out[..len]) {
                        if let Ok(RtcpPacket::TransportCc(fb)) = p {
                            assert!(fb.packets().count() <= 512);
                        }
                    }
                }
            }
        }
    });
    assert_eq!(n, 0);
}
