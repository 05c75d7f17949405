//! Per-packet cost of the forwarding decision and rewrite for one subscription: layer monitor,
//! keyframe peek, layer filter, seq/ts rewrite and VP8 picture-id rewrite (in place), over a
//! 3-layer VP8 simulcast stream of which one layer is forwarded.
//!
//! Run: `cargo bench -p shardcast-sfu --bench forward`. Report = time per packet offered.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardcast_sfu::forward::codec::{is_keyframe, PictureIdRewriter, VideoCodec};
use shardcast_sfu::forward::layer::{LayerConfig, LayerMonitor, LayerSelector, Verdict};
use shardcast_sfu::forward::rewrite::StreamRewriter;

struct Pkt {
    at: Instant,
    layer: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    payload: Vec<u8>,
}

/// 3 layers, 30 fps, 1/2/4 packets per frame, a keyframe every 60 frames.
fn stream(frames: u32) -> Vec<Pkt> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut seq = [0u16, 10_000, 20_000];
    for f in 0..frames {
        let at = t0 + Duration::from_millis(u64::from(f) * 33);
        for layer in 0..3u8 {
            let n = 1 << layer;
            for i in 0..n {
                let l = usize::from(layer);
                seq[l] = seq[l].wrapping_add(1);
                let pid = (f as u16).wrapping_add(1000 * u16::from(layer)) & 0x7fff;
                let start = if i == 0 { 0x10 } else { 0 };
                let mut payload = vec![
                    0x80 | start,
                    0xC0,
                    0x80 | (pid >> 8) as u8,
                    pid as u8,
                    f as u8,
                ];
                payload.push(if i == 0 && f % 60 == 0 { 0x00 } else { 0x01 });
                payload.resize(1100, 0xAB);
                out.push(Pkt {
                    at,
                    layer,
                    ssrc: 0x1000 + u32::from(layer),
                    seq: seq[l],
                    ts: f * 3000,
                    payload,
                });
            }
        }
    }
    out
}

fn bench_forward(c: &mut Criterion) {
    let mut pkts = stream(600);
    let mut g = c.benchmark_group("forward");
    g.throughput(Throughput::Elements(pkts.len() as u64));
    g.bench_function("layer_filter_and_rewrite", |b| {
        b.iter(|| {
            let mut mon = LayerMonitor::new(LayerConfig::default());
            let mut sel = LayerSelector::new(LayerConfig::default());
            sel.set_budget(Some(2_000_000));
            let mut rw = StreamRewriter::new(90_000);
            let mut vp8 = PictureIdRewriter::new();
            let mut forwarded = 0u32;
            for p in pkts.iter_mut() {
                mon.on_packet(p.at, p.layer, p.payload.len() + 12);
                let key = is_keyframe(VideoCodec::Vp8, &p.payload).unwrap_or(false);
                let switch = match sel.on_packet(p.at, &mon, p.layer, key) {
                    Verdict::Drop => continue,
                    Verdict::Forward => false,
                    Verdict::ForwardSwitched => true,
                };
                if let Ok(out) = rw.rewrite(p.at, p.ssrc, p.seq, p.ts, switch) {
                    let _ = vp8.rewrite(&mut p.payload, out.new_segment);
                    black_box(out);
                    forwarded += 1;
                }
            }
            black_box(forwarded)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_forward);
criterion_main!(benches);
