//! Pure forwarding logic of the SFU core: what to forward to whom, and how to rewrite it.
//!
//! Everything here is deterministic, takes time as an argument and works on plain integers
//! and byte slices (no str0m types), so the routing code composes it per packet:
//!
//! ```text
//! publisher packet ─▶ LayerMonitor::on_packet            (per track: bitrate, liveness)
//!                  ─▶ codec::is_keyframe
//!   per subscription:
//!                  ─▶ LayerSelector::on_packet ─▶ Drop | Forward | ForwardSwitched
//!                       └ keyframe_needed() ─▶ KeyframeRequestCoalescer::should_send ─▶ PLI
//!                  ─▶ StreamRewriter::rewrite   (seq, ts; new_segment)
//!                  ─▶ SvcFilter::on_packet        (VP9/AV1 SVC instead of the selector's
//!                                                  verdict: spatial/temporal ceiling, marker)
//!                  ─▶ PictureIdRewriter           (VP8/VP9 picture id, TL0PICIDX)
//! audio packet     ─▶ ActiveSpeakerDetector::feed (per room); poll() ─▶ speaker event
//!                  ─▶ red::parse (RED, once) ─▶ per subscription: as RED, or the primary block
//! ```
//!
//! - [`codec`]: keyframe detection (VP8, VP9, H264), the VP8 descriptor,
//!   [`codec::PictureIdRewriter`] and its egress hooks `renumber` / `renumbered`.
//! - [`vp9`]: the VP9 descriptor (RFC 9628), [`vp9::SvcTrack`] (per track: its layering) and
//!   [`vp9::SvcFilter`] (per subscription: which spatial/temporal layers pass, and where).
//! - [`av1`]: AV1's dependency descriptor, read per stream against its template structure
//!   into the layers [`vp9::SvcTrack::on_av1`] and the same `SvcFilter` use.
//! - [`red`]: RFC 2198 redundant audio: [`red::RedLayout`] (checked once at ingress), the
//!   primary block for subscribers without RED, block payload types mapped for those with it.
//! - [`rewrite`]: [`rewrite::StreamRewriter`], one outgoing seq/timestamp space per subscription.
//! - [`layer`]: [`layer::LayerMonitor`], [`layer::LayerSelector`], [`layer::LayerAllocator`];
//!   audio is never layer-filtered, and comes off the estimate before video is placed.
//! - [`keyframe`]: [`keyframe::KeyframeRequestCoalescer`], at most one request per layer per
//!   300 ms toward a publisher.
//! - [`speaker`]: [`speaker::ActiveSpeakerDetector`] and the RFC 6464 level byte.
//!
//! Must never: allocate per packet, read the clock, or panic on any packet bytes.

pub mod av1;
pub mod codec;
pub mod keyframe;
pub mod layer;
pub mod red;
pub mod rewrite;
pub mod speaker;
pub mod vp9;

#[cfg(test)]
mod alloc_check;
