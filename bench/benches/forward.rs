//! Layer filter + header rewrite per forwarded video packet, with shardcast-sfu's own
//! forwarding logic: LayerMonitor (publisher side), keyframe peek, LayerSelector verdict,
//! StreamRewriter (seq/ts) and PictureIdRewriter (picture id, TL0PICIDX in place). Three simulcast
//! layers arrive interleaved; the subscriber forwards one. No crypto, no I/O. Forwarded
//! payloads are first copied into a scratch buffer (≈ 1.1 KB memcpy, included in the figure)
//! so the input keeps its own picture ids from round to round.

use std::time::{Duration, Instant};

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcast_sfu::forward::codec::{is_keyframe, PictureIdRewriter, VideoCodec};
use shardcast_sfu::forward::layer::{LayerConfig, LayerMonitor, LayerSelector, Verdict};
use shardcast_sfu::forward::rewrite::StreamRewriter;

/// A VP8 payload: 5-byte descriptor (X=1 S=1 | I=1 L=1 | M=1 15-bit picture id | TL0PICIDX),
/// then a 3-byte frame header (P bit 0 on keyframes) and filler.
fn vp8_payload(picture_id: u16, tl0: u8, keyframe: bool, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x90;
    p[1] = 0xc0;
    p[2] = 0x80 | ((picture_id >> 8) as u8 & 0x7f);
    p[3] = picture_id as u8;
    p[4] = tl0;
    p[5] = if keyframe { 0x00 } else { 0x01 };
    p
}

struct Packet {
    layer: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    payload: Vec<u8>,
}

/// One second of three-layer simulcast at 30 fps, one packet per layer per frame, a keyframe
/// on every layer at frame 0.
fn packets() -> Vec<Packet> {
    let mut out = Vec::new();
    for frame in 0..30u32 {
        for layer in 0..3u8 {
            out.push(Packet {
                layer,
                ssrc: 1000 + layer as u32,
                seq: frame as u16,
                ts: frame * 3000,
                payload: vp8_payload(frame as u16, frame as u8, frame == 0, 1100),
            });
        }
    }
    out
}

fn forward(c: &mut Criterion<common::ThreadCpuTime>) {
    let base = Instant::now();
    let input = packets();
    let mut group = c.benchmark_group("forward");
    group.throughput(Throughput::Elements(1));
    group.bench_function("layer_filter_and_rewrite", |b| {
        let mut monitor = LayerMonitor::new(LayerConfig::default());
        let mut selector = LayerSelector::new(LayerConfig::default());
        let mut rewriter = StreamRewriter::new(90_000);
        let mut vp8 = PictureIdRewriter::new();
        let mut scratch = vec![0u8; 1500];
        let mut i = 0usize;
        let mut round = 0u32;
        b.iter(|| {
            let p = &input[i];
            let now = base + Duration::from_micros((round as u64 * 90 + i as u64) * 11_111);
            monitor.on_packet(now, p.layer, p.payload.len() + 12);
            let keyframe = is_keyframe(VideoCodec::Vp8, &p.payload).unwrap_or(false);
            let verdict = selector.on_packet(now, &monitor, p.layer, keyframe);
            let mut forwarded = false;
            if verdict != Verdict::Drop {
                let seq = p.seq.wrapping_add((round * 30) as u16);
                let ts = p.ts.wrapping_add(round * 90_000);
                if let Ok(r) =
                    rewriter.rewrite(now, p.ssrc, seq, ts, verdict == Verdict::ForwardSwitched)
                {
                    let payload = &mut scratch[..p.payload.len()];
                    payload.copy_from_slice(&p.payload);
                    forwarded = vp8.rewrite(payload, r.new_segment).is_ok();
                }
            }
            i += 1;
            if i == input.len() {
                i = 0;
                round += 1;
            }
            forwarded
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = forward
}
criterion_main!(benches);
