//! RTP header extensions (RFC 8285): which ids one m-line negotiated, reading the values we
//! use out of a received packet, and writing the block of a forwarded one.
//!
//! Values are borrowed from the packet (no copies, no allocation); unknown ids are skipped,
//! and a known id whose value has the wrong size is ignored (as libwebrtc does) rather than
//! failing the packet. A structurally broken block (an element running past its end) is an
//! error. Must never: allocate, or interpret values beyond their byte layout (what a mid or
//! rid means is the SFU's business).

use str0m::rtp::{Extension, ExtensionMap};

use super::header::RtpHeader;
use super::wire;
use super::RtpError;

/// The URI of the AV1 dependency descriptor, which str0m 0.25 maps only as an unknown URI.
pub const DEPENDENCY_DESCRIPTOR_URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// One-byte form profile (RFC 8285 §4.2).
const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// Two-byte form profile (RFC 8285 §4.3); the low 4 bits are "appbits".
const TWO_BYTE_PROFILE: u16 = 0x1000;

/// Negotiated extension ids of one direction of one m-line (from str0m's SDP result).
/// `None`: not negotiated, never read nor written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtIds {
    pub mid: Option<u8>,
    pub rid: Option<u8>,
    pub repaired_rid: Option<u8>,
    pub abs_send_time: Option<u8>,
    pub transport_cc: Option<u8>,
    pub audio_level: Option<u8>,
    pub video_orientation: Option<u8>,
    pub abs_capture_time: Option<u8>,
    pub playout_delay: Option<u8>,
    pub dependency_descriptor: Option<u8>,
}

impl ExtIds {
    /// The ids of the extensions we handle in a str0m map (others are left out).
    pub fn from_str0m(map: &ExtensionMap) -> ExtIds {
        let mut ids = ExtIds::default();
        for (id, ext) in map.iter() {
            let slot = match ext {
                Extension::RtpMid => &mut ids.mid,
                Extension::RtpStreamId => &mut ids.rid,
                Extension::RepairedRtpStreamId => &mut ids.repaired_rid,
                Extension::AbsoluteSendTime => &mut ids.abs_send_time,
                Extension::TransportSequenceNumber => &mut ids.transport_cc,
                Extension::AudioLevel => &mut ids.audio_level,
                Extension::VideoOrientation => &mut ids.video_orientation,
                Extension::AbsoluteCaptureTime => &mut ids.abs_capture_time,
                Extension::PlayoutDelay => &mut ids.playout_delay,
                other if other.as_uri() == DEPENDENCY_DESCRIPTOR_URI => {
                    &mut ids.dependency_descriptor
                }
                _ => continue,
            };
            *slot = Some(id);
        }
        ids
    }
}

/// Audio level (RFC 6464): the V flag and the level in -dBov.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioLevel {
    /// The sender's voice activity flag.
    pub voice: bool,
    /// -dBov, 0..=127 (0 is loudest, 127 silence).
    pub level: u8,
}

/// Extension values read from one packet (borrowing it), or to write into one.
///
/// The same type serves both directions, so a forwarder can pass on what it read and
/// replace only what it owns: `OutExtensions { transport_cc: Some(seq), ..read }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extensions<'a> {
    pub mid: Option<&'a [u8]>,
    pub rid: Option<&'a [u8]>,
    pub repaired_rid: Option<&'a [u8]>,
    pub transport_cc: Option<u16>,
    /// 24-bit 6.18 fixed-point seconds (see [`abs_send_time`]).
    pub abs_send_time: Option<u32>,
    pub audio_level: Option<AudioLevel>,
    /// The CVO byte (RFC 7742 / 3GPP TS 26.114): camera, flip and rotation bits.
    pub video_orientation: Option<u8>,
    pub dependency_descriptor: Option<&'a [u8]>,
    /// 8 or 16 bytes (with the estimated clock offset).
    pub abs_capture_time: Option<&'a [u8]>,
    /// 3 bytes: 12-bit minimum and maximum delay in 10 ms units.
    pub playout_delay: Option<&'a [u8]>,
}

/// What to write for one outgoing packet: the same fields as [`Extensions`].
pub type OutExtensions<'a> = Extensions<'a>;

impl<'a> Extensions<'a> {
    /// Takes one element's value for every field negotiated with `id`.
    fn assign(&mut self, id: u8, v: &'a [u8], ids: &ExtIds) {
        let is = |field: Option<u8>| field == Some(id);
        let non_empty = (!v.is_empty()).then_some(v);
        if is(ids.mid) {
            self.mid = non_empty;
        }
        if is(ids.rid) {
            self.rid = non_empty;
        }
        if is(ids.repaired_rid) {
            self.repaired_rid = non_empty;
        }
        if is(ids.transport_cc) && matches!(v.len(), 2 | 4) {
            // 4 bytes: transport-wide-cc-02 appends a feedback request; the seq is first.
            self.transport_cc = wire::u16_at(v, 0);
        }
        if is(ids.abs_send_time) && v.len() == 3 {
            self.abs_send_time = wire::u24_at(v, 0);
        }
        if is(ids.audio_level) && v.len() == 1 {
            self.audio_level = wire::u8_at(v, 0).map(|b| AudioLevel {
                voice: b & 0x80 != 0,
                level: b & 0x7F,
            });
        }
        if is(ids.video_orientation) && v.len() == 1 {
            self.video_orientation = wire::u8_at(v, 0);
        }
        if is(ids.dependency_descriptor) && v.len() >= 3 {
            self.dependency_descriptor = Some(v);
        }
        if is(ids.abs_capture_time) && matches!(v.len(), 8 | 16) {
            self.abs_capture_time = Some(v);
        }
        if is(ids.playout_delay) && v.len() == 3 {
            self.playout_delay = Some(v);
        }
    }

    /// Calls `f(id, value)` for every field that has a value and a negotiated id.
    fn for_each_element(
        &self,
        ids: &ExtIds,
        mut f: impl FnMut(u8, &[u8]) -> Result<(), RtpError>,
    ) -> Result<(), RtpError> {
        let mut item = |id: Option<u8>, v: Option<&[u8]>| match (id, v) {
            (Some(id), Some(v)) => f(id, v),
            _ => Ok(()),
        };
        item(ids.mid, self.mid)?;
        item(ids.rid, self.rid)?;
        item(ids.repaired_rid, self.repaired_rid)?;
        let tcc = self.transport_cc.map(u16::to_be_bytes);
        item(ids.transport_cc, tcc.as_ref().map(|b| &b[..]))?;
        let ast = self.abs_send_time.map(|t| {
            let [_, a, b, c] = t.to_be_bytes();
            [a, b, c]
        });
        item(ids.abs_send_time, ast.as_ref().map(|b| &b[..]))?;
        let level = self
            .audio_level
            .map(|a| [u8::from(a.voice) << 7 | a.level.min(127)]);
        item(ids.audio_level, level.as_ref().map(|b| &b[..]))?;
        let cvo = self.video_orientation.map(|v| [v]);
        item(ids.video_orientation, cvo.as_ref().map(|b| &b[..]))?;
        item(ids.dependency_descriptor, self.dependency_descriptor)?;
        item(ids.abs_capture_time, self.abs_capture_time)?;
        item(ids.playout_delay, self.playout_delay)
    }
}

/// Reads the values `ids` negotiated out of `packet`'s extension block.
///
/// A block with another profile than the one- or two-byte form carries nothing we know
/// (Ok, all `None`). Errors only when an element runs past the block.
pub fn read_extensions<'a>(
    packet: &'a [u8],
    header: &RtpHeader,
    ids: &ExtIds,
) -> Result<Extensions<'a>, RtpError> {
    let mut out = Extensions::default();
    let Some((profile, range)) = &header.ext else {
        return Ok(out);
    };
    let block = packet
        .get(range.clone())
        .ok_or(RtpError::ExtensionPastEnd)?;
    let one_byte = if *profile == ONE_BYTE_PROFILE {
        true
    } else if profile & 0xFFF0 == TWO_BYTE_PROFILE {
        false
    } else {
        return Ok(out);
    };
    let mut at = 0;
    // Every turn advances `at` by at least one byte: bounded by the block length.
    while let Some(b) = wire::u8_at(block, at) {
        let (id, len, value_at) = if one_byte {
            let id = b >> 4;
            if id == 0 {
                // Padding between elements (RFC 8285 §4.2; libwebrtc skips on the id alone).
                at += 1;
                continue;
            }
            if id == 15 {
                // Reserved: stop processing the block here (RFC 8285 §4.2).
                break;
            }
            (id, usize::from(b & 0x0F) + 1, at + 1)
        } else {
            if b == 0 {
                at += 1;
                continue;
            }
            let len = wire::u8_at(block, at + 1).ok_or(RtpError::ExtElementPastEnd)?;
            (b, usize::from(len), at + 2)
        };
        let value = block
            .get(value_at..value_at + len)
            .ok_or(RtpError::ExtElementPastEnd)?;
        out.assign(id, value, ids);
        at = value_at + len;
    }
    Ok(out)
}

/// Writes the extension block (its 4-byte header, elements, zero padding to 32 bits) at
/// `out[at..]`. Returns its length, 0 when there is nothing to write (no X bit then).
pub(crate) fn write_block(
    out: &mut [u8],
    at: usize,
    ext: &Extensions<'_>,
    ids: &ExtIds,
) -> Result<usize, RtpError> {
    let mut one_byte = true;
    let mut count = 0usize;
    let mut value_bytes = 0usize;
    ext.for_each_element(ids, |id, v| {
        if id == 0 {
            return Err(RtpError::BadExtId);
        }
        if v.len() > 255 {
            return Err(RtpError::ExtValueTooLong { len: v.len() });
        }
        // The one-byte form has 4-bit ids 1..=14 and lengths 1..=16 for every element.
        if id > 14 || v.is_empty() || v.len() > 16 {
            one_byte = false;
        }
        count += 1;
        value_bytes += v.len();
        Ok(())
    })?;
    if count == 0 {
        return Ok(0);
    }
    let body = value_bytes + count * if one_byte { 1 } else { 2 };
    let words = body.div_ceil(4);
    let total = 4 + words * 4;
    let too_small = RtpError::BufferTooSmall {
        need: at + total,
        have: out.len(),
    };
    let block = out.get_mut(at..at + total).ok_or(too_small)?;
    let profile = if one_byte {
        ONE_BYTE_PROFILE
    } else {
        TWO_BYTE_PROFILE
    };
    let [p0, p1] = profile.to_be_bytes();
    // At most 10 elements of 257 bytes: the word count always fits 16 bits.
    let [w0, w1] = (words as u16).to_be_bytes();
    wire::put(block, 0, &[p0, p1, w0, w1]).ok_or(too_small)?;
    let mut pos = 4;
    ext.for_each_element(ids, |id, v| {
        // Lengths were checked above (1..=16 for one-byte, ..=255 for two-byte).
        if one_byte {
            wire::put(block, pos, &[id << 4 | (v.len() as u8 - 1)]).ok_or(too_small)?;
            pos += 1;
        } else {
            wire::put(block, pos, &[id, v.len() as u8]).ok_or(too_small)?;
            pos += 2;
        }
        wire::put(block, pos, v).ok_or(too_small)?;
        pos += v.len();
        Ok(())
    })?;
    if let Some(pad) = block.get_mut(pos..) {
        pad.fill(0);
    }
    Ok(total)
}

/// abs-send-time (24-bit 6.18 fixed-point seconds, wrapping every 64 s) of a send time
/// given as the duration since a base the caller keeps fixed for the transport. Rounded
/// to the nearest 1/262144 s, as libwebrtc does.
pub fn abs_send_time(since_base: core::time::Duration) -> u32 {
    let nanos = since_base.as_nanos();
    let fixed = ((nanos << 18) + 500_000_000) / 1_000_000_000;
    (fixed & 0x00FF_FFFF) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn abs_send_time_is_6_18_fixed_point_wrapping_at_64_s() {
        assert_eq!(abs_send_time(Duration::ZERO), 0);
        assert_eq!(abs_send_time(Duration::from_secs(1)), 1 << 18);
        assert_eq!(abs_send_time(Duration::from_millis(500)), 1 << 17);
        assert_eq!(abs_send_time(Duration::from_secs(64)), 0);
        assert_eq!(abs_send_time(Duration::from_secs(65)), 1 << 18);
        // 63.999999 s is just under the wrap: the largest value, not 0 by truncation.
        assert_eq!(
            abs_send_time(Duration::from_nanos(63_999_998_000)),
            0xFF_FFFF
        );
        // One unit is 3.814697 µs: 2 µs rounds up to 1, 1 µs down to 0.
        assert_eq!(abs_send_time(Duration::from_micros(2)), 1);
        assert_eq!(abs_send_time(Duration::from_micros(1)), 0);
    }

    #[test]
    fn from_str0m_maps_chromes_standard_ids() {
        let ids = ExtIds::from_str0m(&ExtensionMap::standard());
        assert_eq!(
            ids,
            ExtIds {
                audio_level: Some(1),
                abs_send_time: Some(2),
                transport_cc: Some(3),
                mid: Some(4),
                rid: Some(10),
                repaired_rid: Some(11),
                video_orientation: Some(13),
                ..ExtIds::default()
            }
        );
        let mut map = ExtensionMap::empty();
        map.set(
            16,
            Extension::with_serializer(DEPENDENCY_DESCRIPTOR_URI, NoSerializer),
        );
        map.set(5, Extension::PlayoutDelay);
        map.set(6, Extension::AbsoluteCaptureTime);
        map.set(7, Extension::VideoContentType);
        let ids = ExtIds::from_str0m(&map);
        assert_eq!(ids.dependency_descriptor, Some(16));
        assert_eq!(ids.playout_delay, Some(5));
        assert_eq!(ids.abs_capture_time, Some(6));
        assert_eq!(ids.mid, None);
    }

    #[derive(Debug)]
    struct NoSerializer;
    impl str0m::rtp::ExtensionSerializer for NoSerializer {
        fn write_to(&self, _: &mut [u8], _: &str0m::rtp::ExtensionValues) -> usize {
            0
        }
        fn parse_value(&self, _: &[u8], _: &mut str0m::rtp::ExtensionValues) -> bool {
            false
        }
        fn is_video(&self) -> bool {
            true
        }
        fn is_audio(&self) -> bool {
            false
        }
    }
}
