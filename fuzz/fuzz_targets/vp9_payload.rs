//! The VP9 forwarding path: the payload descriptor parser (RFC 9628) and its in-place
//! picture-id / TL0PICIDX rewrite, the per-track layering (`SvcTrack`) and three
//! subscriptions' SVC filters (`SvcFilter` over a `LayerSelector`) fed a publisher's (hostile)
//! packets. Records (see `shardcast_fuzz::records`), tag low two bits:
//! 0 a VP9 payload at the next RTP timestamp step (tag bits 2..: the step), 1 a budget for
//! subscription (first byte % 3) of (next four bytes) bit/s, 2 a preference (first byte:
//! subscription, second: max layer, third: visible), 3 time passes (first byte: ms).
#![no_main]

use std::time::{Duration, Instant};

use shardcast_fuzz::records;
use shardcast_sfu::forward::codec::{renumber, renumbered, PictureIdRewriter, VideoCodec};
use shardcast_sfu::forward::layer::{
    LayerConfig, LayerMonitor, LayerPreference, LayerSelector, Verdict,
};
use shardcast_sfu::forward::vp9::{vp9_write, SvcFilter, SvcTrack, Vp9Descriptor};

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = b.get(at + i).copied().unwrap_or(0);
    }
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut ts = 0u32;
    let mut track = SvcTrack::default();
    let mut monitor = LayerMonitor::new(LayerConfig::default());
    monitor.set_cumulative(true);
    let mut subs: Vec<(LayerSelector, SvcFilter, PictureIdRewriter)> = (0..3)
        .map(|_| {
            (
                LayerSelector::new(LayerConfig::default()),
                SvcFilter::new(),
                PictureIdRewriter::new(),
            )
        })
        .collect();
    let mut scratch = Vec::new();
    let mut resend = Vec::new();
    for (tag, bytes) in records(data) {
        match tag & 3 {
            0 => {
                ts = ts.wrapping_add(u32::from(tag >> 2) * 750);
                let Ok(d) = Vp9Descriptor::parse(bytes) else {
                    continue;
                };
                assert!(d.header_len <= bytes.len());
                assert!(usize::from(d.ref_count) <= d.ref_diffs.len());
                // The rewrite changes the ids only: the descriptor keeps its shape.
                scratch.clear();
                scratch.extend_from_slice(bytes);
                vp9_write(&mut scratch, &d, 0x7fff, 0xff);
                let again = Vp9Descriptor::parse(&scratch).expect("rewritten descriptor parses");
                assert_eq!(again.header_len, d.header_len);
                assert_eq!(again.layers, d.layers);
                assert_eq!(again.scalability, d.scalability);
                let Some(p) = track.on_packet(&d, ts) else {
                    continue;
                };
                monitor.on_packet(now, p.choice, bytes.len());
                let view = monitor.view(now);
                for (sel, filter, pictures) in subs.iter_mut() {
                    let v = filter.on_packet(now, sel, &view, &p);
                    if v.verdict == Verdict::Drop {
                        continue;
                    }
                    assert!(filter.ceiling().is_some(), "forwarding without a ceiling");
                    let (s, t) = v.ceiling;
                    assert!(p.sid <= s && p.tid <= t, "a layer above the ceiling passed");
                    let new_segment = v.verdict == Verdict::ForwardSwitched;
                    let (ids, out) = renumber(
                        Some(VideoCodec::Vp9),
                        pictures,
                        bytes,
                        new_segment,
                        &mut resend,
                    );
                    assert_eq!(out.len(), bytes.len());
                    let out = out.to_vec();
                    let again = renumbered(Some(VideoCodec::Vp9), bytes, ids, &mut resend);
                    assert_eq!(again, &out[..], "a resend carries the ids first sent");
                }
            }
            1 => {
                let [i] = be::<1>(bytes, 0);
                let bps = u32::from_be_bytes(be(bytes, 1));
                let (sel, _, _) = &mut subs[usize::from(i) % 3];
                sel.set_budget((bps != 0).then_some(u64::from(bps)));
                sel.update(now, &monitor);
            }
            2 => {
                let [i, max, visible] = be::<3>(bytes, 0);
                let (sel, filter, _) = &mut subs[usize::from(i) % 3];
                sel.set_preference(LayerPreference {
                    max_layer: (max < 8).then_some(max),
                    visible: visible & 1 == 0,
                });
                let _ = filter.keyframe_needed(sel);
            }
            _ => {
                let [ms] = be::<1>(bytes, 0);
                now += Duration::from_millis(u64::from(ms));
            }
        }
    }
});
