//! The codec and rewrite parsers on the forwarding path: keyframe detection (VP8, VP9,
//! H.264, AV1), the VP8 payload descriptor and its in-place rewrite, and one subscription's
//! sequence/timestamp rewriter fed a publisher's (hostile) sequence numbers, timestamps and
//! SSRCs. Records (see `shardcast_fuzz::records`), tag low two bits:
//! 0 keyframe detection under each codec and the bytes as an AV1 dependency descriptor of one
//! stream (whose template structure earlier records may have set), 1 a VP8 payload through
//! the descriptor parser and the picture-id rewriter, 2 a packet header for the stream rewriter (ssrc index, seq, ts;
//! tag bit 2: a layer switch), 3 a skipped packet.
#![no_main]

use std::time::{Duration, Instant};

use shardcast_fuzz::records;
use shardcast_sfu::forward::av1::Av1Stream;
use shardcast_sfu::forward::codec::{
    is_keyframe, vp8_write, PictureIdRewriter, VideoCodec, Vp8Descriptor,
};
use shardcast_sfu::forward::rewrite::StreamRewriter;

const SSRCS: [u32; 3] = [0x1111_1111, 0x2222_2222, 0x3333_3333];

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = b.get(at + i).copied().unwrap_or(0);
    }
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut stream = StreamRewriter::with_start(90_000, 1000, 5000);
    let mut vp8 = PictureIdRewriter::new();
    let mut scratch = Vec::new();
    let mut av1 = Av1Stream::default();
    for (tag, bytes) in records(data) {
        match tag & 3 {
            0 => {
                for codec in [
                    VideoCodec::Vp8,
                    VideoCodec::Vp9,
                    VideoCodec::H264,
                    VideoCodec::Av1,
                ] {
                    let _ = is_keyframe(codec, bytes);
                }
                if let Some(f) = av1.on_descriptor(bytes) {
                    assert!(f.sid < f.spatial_layers && f.tid < f.temporal_layers);
                }
            }
            1 => {
                let Ok(d) = Vp8Descriptor::parse(bytes) else {
                    continue;
                };
                assert!(d.header_len <= bytes.len());
                let _ = d.is_keyframe(bytes);
                let new_segment = tag & 4 != 0;
                let ids = vp8.next(&d, new_segment);
                scratch.clear();
                scratch.extend_from_slice(bytes);
                vp8_write(
                    &mut scratch,
                    &d,
                    ids.picture_id.unwrap_or(0),
                    ids.tl0_pic_idx.unwrap_or(0),
                );
                // The rewrite changes the ids only: the descriptor keeps its shape.
                let again = Vp8Descriptor::parse(&scratch).expect("rewritten descriptor parses");
                assert_eq!(again.header_len, d.header_len);
                assert_eq!(
                    again.picture_id.map(|p| (p.1, p.2)),
                    d.picture_id.map(|p| (p.1, p.2))
                );
                assert_eq!(again.picture_id.map(|p| p.0), ids.picture_id);
                assert_eq!(again.tl0_pic_idx.map(|t| t.0), ids.tl0_pic_idx);
                let _ = vp8.rewrite(&mut scratch, new_segment);
            }
            2 => {
                let [s, dt] = be::<2>(bytes, 0);
                let seq = u16::from_be_bytes(be(bytes, 2));
                let ts = u32::from_be_bytes(be(bytes, 4));
                now += Duration::from_millis(u64::from(dt));
                let ssrc = SSRCS[usize::from(s) % SSRCS.len()];
                let _ = stream.rewrite(now, ssrc, seq, ts, tag & 4 != 0);
                let _ = stream.frame_ticks();
            }
            _ => {
                let [s] = be::<1>(bytes, 0);
                let seq = u16::from_be_bytes(be(bytes, 1));
                stream.skip(SSRCS[usize::from(s) % SSRCS.len()], seq);
            }
        }
    }
});
