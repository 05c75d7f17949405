//! shardcast-client: a sans-IO WebRTC client (one str0m `Rtc` in RTP mode) that publishes
//! synthetic audio and simulcast VP8 video and measures what it receives. Tests, the bench
//! harness and end-to-end checks use it; the server must never depend on it.
//!
//! # Use
//!
//! ```text
//! let mut c = Client::new(ClientConfig::new("alice", 1, TimeBase::real()).with_audio()
//!                             .with_video(VideoSpec::simulcast3()), local_addr, now)?;
//! let offer = c.create_offer(now)?;          // sendonly audio + video (a=simulcast:send q;h;f)
//! c.accept_answer(now, &server_answer)?;
//! c.accept_offer(now, &server_offer)?;        // later: the server adds tracks to receive
//! loop {
//!     match c.poll_output() {                 // drain after every handle_* / signaling call
//!         ClientOutput::Transmit { destination, contents, .. } => send(destination, contents),
//!         ClientOutput::Timeout(at) => { /* wait for a datagram or `at` */ break }
//!     }
//! }
//! c.handle_datagram(now, source, local_addr, &buf);  // or c.handle_timeout(now)
//! c.stats().video_tracks() ...                // what a viewer would notice
//! ```
//! [`udp::run_blocking`] is that loop over a real socket, for tests.
//!
//! # Synthetic payload format
//!
//! Audio RTP payloads are the synthetic body alone (Opus pt, 20 ms per packet, RFC 6464
//! audio level extension). Video RTP payloads are a VP8 payload descriptor (RFC 7741),
//! then — on the first packet of a frame — a VP8 payload header, then the synthetic body:
//!
//! ```text
//! VP8 descriptor (5 bytes): X=1 S=first-packet PID=0 | I=1 L=1 | M=1 picture id (15 bit) | TL0PICIDX
//! VP8 header (first packet only): 3 bytes, P bit (byte 0, bit 0) = 0 on keyframes;
//!                                 keyframes add start code 9d 01 2a and width, height (LE u16)
//! synthetic body, big-endian, 40-byte header then padding:
//!   0  magic "SCST"          4  version (1)          5  kind (0 audio, 1 video)
//!   6  layer (0 = lowest)    7  flags (bit 0 keyframe)
//!   8  source id u32         12 frame number u32 (same number on every layer)
//!   16 packet index u16      18 packets in frame u16
//!   20 send time u64 (µs on the run's shared clock, see `TimeBase`)
//!   28 per-stream sequence counter u64   36 reserved u32
//!   40.. padding: byte i = (stream_seq as u8) * 31 + i  (mod 256)
//! ```
//!
//! A frame is sent on every active layer per tick with the same frame number; each layer has
//! its own SSRC, RTP sequence numbers, picture ids and TL0PICIDX, as a real simulcast encoder.
//! Every frame is temporal layer 0, so TL0PICIDX steps by one per frame.
//!
//! With [`VideoCodec::H264`] the VP8 descriptor and header are replaced by H264 framing
//! (RFC 6184, packetization-mode 1): a one-packet frame is a single NAL unit (type 5 IDR on
//! keyframes, else type 1), larger frames are FU-A fragments (FU indicator, FU header with
//! S/E bits and the slice type); the synthetic body follows. No SPS/PPS are sent.

mod client;
pub mod config;
mod error;
pub mod payload;
mod publish;
pub mod stats;
pub mod udp;

pub use client::{Client, ClientOutput};
pub use config::{ClientConfig, LayerSpec, TimeBase, VideoCodec, VideoSpec, LAYER_RIDS};
pub use error::ClientError;
pub use payload::TrackKind;
pub use stats::{ClientStats, LatencyStats, LayerChange, PublishStats, TrackStats};
/// The ICE agent states `Client::ice_state` reports (str0m's).
pub use str0m::IceConnectionState;
