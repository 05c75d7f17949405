//! Test-only proof that the per-packet path allocates nothing: a counting global allocator
//! (per thread, so parallel tests do not disturb each other) wrapped around the system one,
//! and one stream driven through every per-packet call of this module.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use super::codec::{is_keyframe, PictureIdRewriter, VideoCodec, Vp8Descriptor};
use super::keyframe::KeyframeRequestCoalescer;
use super::layer::{LayerConfig, LayerMonitor, LayerSelector, Verdict};
use super::rewrite::StreamRewriter;
use super::speaker::{ActiveSpeakerDetector, AudioLevel, SpeakerConfig};

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every operation to `System` unchanged; it only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

#[test]
fn per_packet_path_does_not_allocate() {
    let t0 = Instant::now();
    let mut mon = LayerMonitor::new(LayerConfig::default());
    let mut sel = LayerSelector::new(LayerConfig::default());
    let mut kf = KeyframeRequestCoalescer::default();
    let mut rw = StreamRewriter::new(90_000);
    let mut vp8 = PictureIdRewriter::new();
    let mut speakers = ActiveSpeakerDetector::new(SpeakerConfig::default());
    // VP8: X+S, I+L, 15-bit picture id, TL0PICIDX, then the payload header (P bit).
    let mut payload = [0x90u8, 0xC0, 0x80, 0x01, 0x05, 0x01, 0xAB, 0xAB];
    // Participants are registered (the one allocation speakers make) before counting.
    speakers.feed(t0, 1, AudioLevel::parse(0x9e));
    speakers.feed(t0, 2, AudioLevel::parse(0x40));
    let before = allocs();
    let (mut forwarded, mut switches) = (0u32, 0u32);
    for i in 0..20_000u32 {
        let now = t0 + Duration::from_millis(u64::from(i / 3) * 11);
        let layer = (i % 3) as u8;
        // Unconstrained, then a budget under every layer: a switch up, then one down.
        sel.set_budget(if i > 10_000 { Some(200_000) } else { None });
        // A keyframe on every layer every 90 packets.
        payload[5] = if i % 90 < 3 { 0x00 } else { 0x01 };
        let key = is_keyframe(VideoCodec::Vp8, &payload).unwrap_or(false);
        mon.on_packet(now, layer, 1200);
        let verdict = sel.on_packet(now, &mon, layer, key);
        if let Some(l) = sel.keyframe_needed() {
            let _ = kf.should_send(now, l);
        }
        if verdict != Verdict::Drop {
            let seq = (i / 3) as u16;
            let out = rw.rewrite(
                now,
                0x100 + u32::from(layer),
                seq,
                i / 9 * 3000,
                verdict == Verdict::ForwardSwitched,
            );
            if let (Ok(out), Ok(d)) = (out, Vp8Descriptor::parse(&payload)) {
                let _ = vp8.next(&d, out.new_segment);
                forwarded += 1;
                switches += u32::from(out.new_segment);
            }
        }
        speakers.feed(now, u64::from(i % 2) + 1, AudioLevel::parse(0x9e));
        if i % 30 == 0 {
            let _ = speakers.poll(now);
        }
    }
    let after = allocs();
    assert!(forwarded > 1000 && switches >= 2, "{forwarded} {switches}");
    assert_eq!(after - before, 0, "allocations on the per-packet path");
}
