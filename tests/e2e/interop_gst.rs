//! GStreamer 1.22 `webrtcbin` (Debian's packages, driven by `tests/interop/gst_whip.py`)
//! publishes VP8 + Opus over WHIP and plays them back over WHEP through a real
//! `shardcast serve` for 60 s: the player decodes video and audio in every 10 s of it and
//! no peer is closed. libnice checks connectivity only while a pair is being validated and
//! then keeps the path warm with binding indications, so this is the client that ICE-lite
//! dropped 15 s into the call (issue 11).

use shardcast_tests::interop::{publish_and_play, Stack};

#[test]
fn gstreamer_webrtcbin_publishes_and_plays_for_a_minute() -> anyhow::Result<()> {
    publish_and_play(Stack::Gstreamer)
}
