//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-
//! extensions-01): the RTPFB (205) FMT 15 packet that tells a sender when each of its
//! packets arrived.
//!
//! - [`feedback`]: a received feedback ([`TwccFeedback`]) and the walk over its packets.
//! - [`encode`]: packet status chunks and receive deltas as libwebrtc encodes them.
//! - [`recorder`]: [`TwccRecorder`], arrivals of the streams we receive → feedback.
//!
//! Layout reminder: 20 fixed bytes (header, sender SSRC, media SSRC, base seq, status
//! count, 24-bit reference time in 64 ms units, feedback count), then 16-bit chunks that
//! give each packet a 2-bit status (0 not received, 1 small delta, 2 large or negative
//! delta, 3 reserved), then one receive delta per received packet in 250 µs units (1 byte
//! unsigned or 2 bytes signed), each relative to the previous received packet and the
//! first to the reference time.

pub mod encode;
pub mod feedback;
pub mod recorder;

pub use feedback::{TwccArrival, TwccFeedback, TwccPackets};
pub use recorder::TwccRecorder;

/// Status symbols.
pub(crate) const NOT_RECEIVED: u8 = 0;
pub(crate) const SMALL_DELTA: u8 = 1;
pub(crate) const LARGE_DELTA: u8 = 2;
pub(crate) const RESERVED: u8 = 3;

/// Receive deltas are in 250 µs units; the reference time in 64 ms units.
pub(crate) const DELTA_US: i64 = 250;
pub(crate) const REFERENCE_US: i64 = 64_000;
