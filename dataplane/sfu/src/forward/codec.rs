//! Codec-aware peeks into RTP payloads: keyframe detection (VP8, VP9, H264, AV1), the VP8
//! payload descriptor (RFC 7741) and its in-place rewrite, and [`PictureIdRewriter`], which
//! keeps the VP8 or VP9 picture id and TL0PICIDX continuous when the forwarded simulcast layer
//! changes ([`renumber`] and [`renumbered`] apply it on egress). The VP9 descriptor is in
//! `vp9.rs`, AV1's dependency descriptor in `av1.rs`.
//!
//! Owns: byte-level parsing of the few header fields the SFU needs to route and rewrite.
//! Must never: allocate, panic on any input, or reassemble frames. A malformed payload is an
//! `Err(CodecError)` the caller counts and drops.

use thiserror::Error;

use super::vp9::{vp9_write, Vp9Descriptor};

/// Why a payload could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("payload is empty")]
    Empty,
    #[error("payload ends inside the codec header")]
    Truncated,
    #[error("codec header fields contradict each other")]
    Invalid,
}

/// The video codecs the SFU can look into. Anything else (audio) is never a "keyframe".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    /// One layer or simulcast from the payload; SVC layers from the dependency descriptor
    /// (`av1.rs`), not the payload.
    Av1,
}

/// Does this RTP payload start a keyframe? Only the packet that begins the frame says yes,
/// so a layer switch made on it delivers the whole keyframe.
pub fn is_keyframe(codec: VideoCodec, payload: &[u8]) -> Result<bool, CodecError> {
    match codec {
        VideoCodec::Vp8 => vp8_is_keyframe(payload),
        VideoCodec::Vp9 => vp9_is_keyframe(payload),
        VideoCodec::H264 => h264_is_keyframe(payload),
        VideoCodec::Av1 => av1_is_keyframe(payload),
    }
}

/// Width of the VP8 picture id as sent by the publisher (M bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureIdWidth {
    Bits7,
    Bits15,
}

impl PictureIdWidth {
    fn mask(self) -> u16 {
        match self {
            PictureIdWidth::Bits7 => 0x7f,
            PictureIdWidth::Bits15 => 0x7fff,
        }
    }
}

/// The parsed VP8 payload descriptor (RFC 7741 §4.2). Offsets point into the payload so the
/// fields can be rewritten in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Descriptor {
    /// Bytes of descriptor before the VP8 payload proper.
    pub header_len: usize,
    /// N: the frame is not used as a reference.
    pub non_reference: bool,
    /// S: this packet starts a VP8 partition.
    pub start_of_partition: bool,
    /// PID: the partition index.
    pub partition_id: u8,
    /// Picture id, its width and its byte offset.
    pub picture_id: Option<(u16, PictureIdWidth, usize)>,
    /// TL0PICIDX and its byte offset.
    pub tl0_pic_idx: Option<(u8, usize)>,
    /// Temporal layer index (T bit present).
    pub tid: Option<u8>,
    /// Y: layer sync bit (only meaningful with `tid`).
    pub layer_sync: bool,
    /// KEYIDX (K bit present).
    pub key_idx: Option<u8>,
}

impl Vp8Descriptor {
    /// Parse the descriptor at the start of `payload`.
    pub fn parse(payload: &[u8]) -> Result<Self, CodecError> {
        let b0 = *payload.first().ok_or(CodecError::Empty)?;
        let mut d = Vp8Descriptor {
            non_reference: b0 & 0x20 != 0,
            start_of_partition: b0 & 0x10 != 0,
            partition_id: b0 & 0x07,
            ..Default::default()
        };
        let mut i = 1;
        if b0 & 0x80 != 0 {
            let x = *payload.get(i).ok_or(CodecError::Truncated)?;
            i += 1;
            let (has_i, has_l, has_t, has_k) =
                (x & 0x80 != 0, x & 0x40 != 0, x & 0x20 != 0, x & 0x10 != 0);
            if has_i {
                let p0 = *payload.get(i).ok_or(CodecError::Truncated)?;
                if p0 & 0x80 != 0 {
                    let p1 = *payload.get(i + 1).ok_or(CodecError::Truncated)?;
                    let id = (u16::from(p0 & 0x7f) << 8) | u16::from(p1);
                    d.picture_id = Some((id, PictureIdWidth::Bits15, i));
                    i += 2;
                } else {
                    d.picture_id = Some((u16::from(p0), PictureIdWidth::Bits7, i));
                    i += 1;
                }
            }
            if has_l {
                let v = *payload.get(i).ok_or(CodecError::Truncated)?;
                d.tl0_pic_idx = Some((v, i));
                i += 1;
            }
            if has_t || has_k {
                let v = *payload.get(i).ok_or(CodecError::Truncated)?;
                if has_t {
                    d.tid = Some(v >> 6);
                    d.layer_sync = v & 0x20 != 0;
                }
                if has_k {
                    d.key_idx = Some(v & 0x1f);
                }
                i += 1;
            }
        }
        d.header_len = i;
        Ok(d)
    }

    /// Is this the first packet of a VP8 keyframe? Needs the first byte of the VP8 payload
    /// header (P bit clear = key frame), present only at the start of partition 0.
    pub fn is_keyframe(&self, payload: &[u8]) -> bool {
        if !self.start_of_partition || self.partition_id != 0 {
            return false;
        }
        match payload.get(self.header_len) {
            Some(b) => b & 0x01 == 0,
            None => false,
        }
    }
}

/// Write `picture_id` (kept to the packet's own width) and `tl0_pic_idx` into a payload whose
/// descriptor `d` was parsed from it. Fields absent from the packet are left alone.
pub fn vp8_write(payload: &mut [u8], d: &Vp8Descriptor, picture_id: u16, tl0_pic_idx: u8) {
    if let Some((_, width, off)) = d.picture_id {
        write_picture_id(payload, width, off, picture_id);
    }
    if let Some((_, off)) = d.tl0_pic_idx {
        if let Some(b) = payload.get_mut(off) {
            *b = tl0_pic_idx;
        }
    }
}

/// Write a VP8 or VP9 picture id of `width` (M bit included) at `off`; the two descriptors
/// encode it alike.
pub(crate) fn write_picture_id(payload: &mut [u8], width: PictureIdWidth, off: usize, id: u16) {
    let id = id & width.mask();
    match width {
        PictureIdWidth::Bits7 => {
            if let Some(b) = payload.get_mut(off) {
                *b = id as u8;
            }
        }
        PictureIdWidth::Bits15 => {
            if off + 1 < payload.len() {
                payload[off] = 0x80 | (id >> 8) as u8;
                payload[off + 1] = id as u8;
            }
        }
    }
}

fn vp8_is_keyframe(payload: &[u8]) -> Result<bool, CodecError> {
    let d = Vp8Descriptor::parse(payload)?;
    if d.start_of_partition && d.partition_id == 0 && payload.len() <= d.header_len {
        return Err(CodecError::Truncated);
    }
    Ok(d.is_keyframe(payload))
}

/// VP9 (RFC 9628): P clear (not inter-predicted), B set (begins a frame), and, when layer
/// indices are present, spatial layer 0. A malformed descriptor is an error.
fn vp9_is_keyframe(payload: &[u8]) -> Result<bool, CodecError> {
    Ok(Vp9Descriptor::parse(payload)?.is_keyframe())
}

/// AV1 (the AV1 RTP payload format, §4.4): the aggregation header's N bit (the packet starts
/// a coded video sequence, which begins with a keyframe) with Z clear (the packet does not
/// continue an OBU from the previous one). An aggregation header alone is truncated.
fn av1_is_keyframe(payload: &[u8]) -> Result<bool, CodecError> {
    let header = *payload.first().ok_or(CodecError::Empty)?;
    if payload.len() < 2 {
        return Err(CodecError::Truncated);
    }
    let (z, n) = (header & 0x80 != 0, header & 0x08 != 0);
    Ok(n && !z)
}

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_STAP_A: u8 = 24;
const NAL_FU_A: u8 = 28;

/// H264 (RFC 6184): an IDR slice or an SPS in a single-NAL packet, inside a STAP-A, or at the
/// start of an FU-A. A keyframe is usually SPS, PPS, IDR; the SPS packet comes first.
fn h264_is_keyframe(payload: &[u8]) -> Result<bool, CodecError> {
    let b0 = *payload.first().ok_or(CodecError::Empty)?;
    match b0 & 0x1f {
        NAL_IDR | NAL_SPS => Ok(true),
        NAL_STAP_A => {
            let mut rest = &payload[1..];
            if rest.is_empty() {
                return Err(CodecError::Truncated);
            }
            while !rest.is_empty() {
                if rest.len() < 3 {
                    return Err(CodecError::Truncated);
                }
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if size == 0 || rest.len() < 2 + size {
                    return Err(CodecError::Truncated);
                }
                if matches!(rest[2] & 0x1f, NAL_IDR | NAL_SPS) {
                    return Ok(true);
                }
                rest = &rest[2 + size..];
            }
            Ok(false)
        }
        NAL_FU_A => {
            let fu = *payload.get(1).ok_or(CodecError::Truncated)?;
            Ok(fu & 0x80 != 0 && matches!(fu & 0x1f, NAL_IDR | NAL_SPS))
        }
        _ => Ok(false),
    }
}

/// Per subscription: maps the forwarded layer's picture id and TL0PICIDX onto one outgoing
/// sequence so the decoder sees no jump at a layer switch.
///
/// Call [`PictureIdRewriter::next`] / `next_vp9` (or `rewrite`, VP8 in place) for every
/// forwarded packet, with
/// `new_segment` true on the first packet after a switch or resume (`Rewritten::new_segment`).
#[derive(Debug, Clone, Default)]
pub struct PictureIdRewriter {
    state: Option<PictureIdState>,
}

#[derive(Debug, Clone, Copy)]
struct PictureIdState {
    pid_offset: u16,
    tl0_offset: u8,
    last_in_pid: u16,
    last_out_pid: u16,
    last_out_tl0: u8,
}

impl PictureIdRewriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The outgoing picture id (masked to the packet's own 7- or 15-bit width) and TL0PICIDX
    /// for a forwarded packet whose descriptor is `d`, without touching the payload: for
    /// payloads shared between subscribers, where the bytes are patched on send.
    pub fn next(&mut self, d: &Vp8Descriptor, new_segment: bool) -> PictureIds {
        let pid = d.picture_id.map(|(v, w, _)| (v, w));
        self.next_ids(pid, d.tl0_pic_idx.map(|(v, _)| v), new_segment)
    }

    /// [`Self::next`] for a VP9 packet: its picture id and TL0PICIDX behave as VP8's.
    pub fn next_vp9(&mut self, d: &Vp9Descriptor, new_segment: bool) -> PictureIds {
        let pid = d.picture_id.map(|(v, w, _)| (v, w));
        self.next_ids(pid, d.tl0_pic_idx.map(|(v, _)| v), new_segment)
    }

    fn next_ids(
        &mut self,
        pid: Option<(u16, PictureIdWidth)>,
        in_tl0: Option<u8>,
        new_segment: bool,
    ) -> PictureIds {
        let in_pid = pid.map(|(v, _)| v);
        let first = self.state.is_none();
        let mut s = self.state.unwrap_or(PictureIdState {
            pid_offset: 0,
            tl0_offset: 0,
            last_in_pid: in_pid.unwrap_or(0),
            last_out_pid: in_pid.unwrap_or(0),
            last_out_tl0: in_tl0.unwrap_or(0),
        });
        if new_segment && !first {
            // The first frame of the new segment follows the last forwarded frame.
            if let Some(p) = in_pid {
                s.pid_offset = s.last_out_pid.wrapping_add(1).wrapping_sub(p) & 0x7fff;
            }
            if let Some(t) = in_tl0 {
                s.tl0_offset = s.last_out_tl0.wrapping_add(1).wrapping_sub(t);
            }
        }
        let out_pid = in_pid.map(|p| p.wrapping_add(s.pid_offset) & 0x7fff);
        let out_tl0 = in_tl0.map(|t| t.wrapping_add(s.tl0_offset));
        if let (Some(p), Some(o)) = (in_pid, out_pid) {
            // Only move "last" forward, so a reordered packet of an older frame does not
            // pull the base of the next switch backwards.
            if pid_newer(p, s.last_in_pid) || new_segment || first {
                s.last_in_pid = p;
                s.last_out_pid = o;
            }
        }
        if let Some(t) = out_tl0 {
            if (t.wrapping_sub(s.last_out_tl0) as i8) >= 0 || new_segment || first {
                s.last_out_tl0 = t;
            }
        }
        self.state = Some(s);
        PictureIds {
            picture_id: match (out_pid, pid) {
                (Some(o), Some((_, w))) => Some(o & w.mask()),
                _ => None,
            },
            tl0_pic_idx: out_tl0,
        }
    }

    /// Rewrite the descriptor of a forwarded packet in place ([`Self::next`] + [`vp8_write`]).
    pub fn rewrite(&mut self, payload: &mut [u8], new_segment: bool) -> Result<(), CodecError> {
        let d = Vp8Descriptor::parse(payload)?;
        let ids = self.next(&d, new_segment);
        vp8_write(
            payload,
            &d,
            ids.picture_id.unwrap_or(0),
            ids.tl0_pic_idx.unwrap_or(0),
        );
        Ok(())
    }
}

/// Outgoing VP8 / VP9 ids for one packet; `None` where the packet has no such field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PictureIds {
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
}

impl PictureIds {
    /// A packet without picture ids (audio, H.264).
    pub const NONE: PictureIds = PictureIds {
        picture_id: None,
        tl0_pic_idx: None,
    };
}

/// The picture ids a forwarded packet carries, as egress sees them: the descriptor of either
/// codec that has them.
#[derive(Debug, Clone, Copy)]
enum Ids {
    Vp8(Vp8Descriptor),
    Vp9(Vp9Descriptor),
}

impl Ids {
    fn parse(codec: Option<VideoCodec>, payload: &[u8]) -> Option<Ids> {
        match codec? {
            VideoCodec::Vp8 => Vp8Descriptor::parse(payload).ok().map(Ids::Vp8),
            VideoCodec::Vp9 => Vp9Descriptor::parse(payload).ok().map(Ids::Vp9),
            VideoCodec::H264 | VideoCodec::Av1 => None,
        }
    }

    fn current(&self) -> PictureIds {
        let (pid, tl0) = match self {
            Ids::Vp8(d) => (d.picture_id.map(|p| p.0), d.tl0_pic_idx.map(|t| t.0)),
            Ids::Vp9(d) => (d.picture_id.map(|p| p.0), d.tl0_pic_idx.map(|t| t.0)),
        };
        PictureIds {
            picture_id: pid,
            tl0_pic_idx: tl0,
        }
    }

    /// `payload` with `ids` written, in `scratch` (only when they differ from its own).
    fn patched<'a>(
        &self,
        payload: &'a [u8],
        ids: PictureIds,
        scratch: &'a mut Vec<u8>,
    ) -> &'a [u8] {
        if self.current() == ids {
            return payload;
        }
        scratch.clear();
        scratch.extend_from_slice(payload);
        let (pid, tl0) = (ids.picture_id.unwrap_or(0), ids.tl0_pic_idx.unwrap_or(0));
        match self {
            Ids::Vp8(d) => vp8_write(scratch, d, pid, tl0),
            Ids::Vp9(d) => vp9_write(scratch, d, pid, tl0),
        }
        scratch
    }
}

/// Egress: a forwarded VP8 or VP9 payload with the picture id and TL0PICIDX of this
/// subscription's numbering (`rw`), and those ids (for the sent ring). The payload is shared
/// with the history and every other subscriber, so a changed one is a copy in `scratch`.
/// Other codecs, and a payload whose descriptor does not parse, pass as they are.
pub fn renumber<'a>(
    codec: Option<VideoCodec>,
    rw: &mut PictureIdRewriter,
    payload: &'a [u8],
    new_segment: bool,
    scratch: &'a mut Vec<u8>,
) -> (PictureIds, &'a [u8]) {
    let none = PictureIds {
        picture_id: None,
        tl0_pic_idx: None,
    };
    let Some(d) = Ids::parse(codec, payload) else {
        return (none, payload);
    };
    let ids = match &d {
        Ids::Vp8(d) => rw.next(d, new_segment),
        Ids::Vp9(d) => rw.next_vp9(d, new_segment),
    };
    (ids, d.patched(payload, ids, scratch))
}

/// Egress, a retransmission: `payload` with the ids it was first sent with.
pub fn renumbered<'a>(
    codec: Option<VideoCodec>,
    payload: &'a [u8],
    ids: PictureIds,
    scratch: &'a mut Vec<u8>,
) -> &'a [u8] {
    if ids.picture_id.is_none() && ids.tl0_pic_idx.is_none() {
        return payload;
    }
    match Ids::parse(codec, payload) {
        Some(d) => d.patched(payload, ids, scratch),
        None => payload,
    }
}

/// `a` is newer than `b` in 15-bit picture id space.
fn pid_newer(a: u16, b: u16) -> bool {
    let diff = a.wrapping_sub(b) & 0x7fff;
    diff != 0 && diff < 0x4000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// X=1, S=1, PID=0, I+L+T, 15-bit picture id, then the VP8 payload header byte.
    fn vp8_packet(pid: u16, tl0: u8, start: bool, key: bool) -> Vec<u8> {
        let b0 = 0x80 | if start { 0x10 } else { 0 };
        let mut p = vec![b0, 0xE0, 0x80 | (pid >> 8) as u8, pid as u8, tl0, 0x40];
        p.push(if key { 0x00 } else { 0x01 });
        p.extend_from_slice(&[0xAA; 10]);
        p
    }

    fn vp8_packet7(pid: u8, start: bool, key: bool) -> Vec<u8> {
        let b0 = 0x80 | if start { 0x10 } else { 0 };
        vec![b0, 0x80, pid & 0x7f, if key { 0x10 } else { 0x11 }, 0, 0]
    }

    fn pid_of(p: &[u8]) -> u16 {
        Vp8Descriptor::parse(p).unwrap().picture_id.unwrap().0
    }
    fn tl0_of(p: &[u8]) -> u8 {
        Vp8Descriptor::parse(p).unwrap().tl0_pic_idx.unwrap().0
    }

    #[test]
    fn vp8_descriptor_fields() {
        let p = vp8_packet(0x1234, 77, true, true);
        let d = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(d.picture_id, Some((0x1234, PictureIdWidth::Bits15, 2)));
        assert_eq!(d.tl0_pic_idx, Some((77, 4)));
        assert_eq!(d.tid, Some(1));
        assert_eq!(d.header_len, 6);
        assert!(d.start_of_partition);
        let p7 = vp8_packet7(100, true, false);
        let d7 = Vp8Descriptor::parse(&p7).unwrap();
        assert_eq!(d7.picture_id, Some((100, PictureIdWidth::Bits7, 2)));
        assert_eq!(d7.tl0_pic_idx, None);
        assert_eq!(d7.header_len, 3);
        // Minimal descriptor: no X byte at all.
        let d0 = Vp8Descriptor::parse(&[0x10, 0x00]).unwrap();
        assert_eq!(d0.header_len, 1);
        assert_eq!(d0.picture_id, None);
    }

    #[test]
    fn vp8_keyframe_only_at_partition_start() {
        let vp8 = VideoCodec::Vp8;
        assert_eq!(is_keyframe(vp8, &vp8_packet(1, 1, true, true)), Ok(true));
        assert_eq!(is_keyframe(vp8, &vp8_packet(1, 1, true, false)), Ok(false));
        // Continuation packet: the byte after the descriptor is not a payload header.
        assert_eq!(is_keyframe(vp8, &vp8_packet(1, 1, false, true)), Ok(false));
        // Partition 1 start: not the frame start.
        let mut p = vp8_packet(1, 1, true, true);
        p[0] |= 0x01;
        assert_eq!(is_keyframe(vp8, &p), Ok(false));
        assert_eq!(is_keyframe(vp8, &vp8_packet7(5, true, true)), Ok(true));
        assert_eq!(is_keyframe(vp8, &[]), Err(CodecError::Empty));
        assert_eq!(is_keyframe(vp8, &[0x90, 0x80]), Err(CodecError::Truncated));
        assert_eq!(is_keyframe(vp8, &[0x10]), Err(CodecError::Truncated));
    }

    #[test]
    fn vp8_write_keeps_width() {
        let mut p = vp8_packet7(3, true, false);
        let d = Vp8Descriptor::parse(&p).unwrap();
        vp8_write(&mut p, &d, 0x1ff, 9);
        assert_eq!(pid_of(&p), 0x7f);
        assert_eq!(p.len(), 6);
        let mut p = vp8_packet(3, 4, true, false);
        let d = Vp8Descriptor::parse(&p).unwrap();
        vp8_write(&mut p, &d, 0xffff, 200);
        assert_eq!(pid_of(&p), 0x7fff);
        assert_eq!(tl0_of(&p), 200);
        // The payload after the descriptor is untouched.
        assert_eq!(&p[6..8], &[0x01, 0xAA]);
    }

    #[test]
    fn vp9_keyframe() {
        let vp9 = VideoCodec::Vp9;
        // I=1 (15-bit id), P=0, L=0, B=1.
        assert_eq!(is_keyframe(vp9, &[0x88, 0x81, 0x02, 0xff]), Ok(true));
        // P=1: inter frame.
        assert_eq!(is_keyframe(vp9, &[0xC8, 0x81, 0x02, 0xff]), Ok(false));
        // B=0: continuation.
        assert_eq!(is_keyframe(vp9, &[0x80, 0x05, 0xff]), Ok(false));
        // L=1 with SID=1: not the base spatial layer.
        assert_eq!(is_keyframe(vp9, &[0xA8, 0x05, 0x02, 0x00]), Ok(false));
        assert_eq!(is_keyframe(vp9, &[0xA8, 0x05, 0x00, 0x00]), Ok(true));
        assert_eq!(is_keyframe(vp9, &[0xA8, 0x05]), Err(CodecError::Truncated));
    }

    #[test]
    fn h264_keyframe() {
        let h = VideoCodec::H264;
        assert_eq!(is_keyframe(h, &[0x65, 0x88]), Ok(true)); // IDR
        assert_eq!(is_keyframe(h, &[0x67, 0x42]), Ok(true)); // SPS
        assert_eq!(is_keyframe(h, &[0x41, 0x9a]), Ok(false)); // non-IDR slice
        assert_eq!(is_keyframe(h, &[0x68, 0xce]), Ok(false)); // PPS alone
                                                              // STAP-A: PPS then IDR.
        let stap = [0x78, 0x00, 0x02, 0x68, 0xce, 0x00, 0x02, 0x65, 0x88];
        assert_eq!(is_keyframe(h, &stap), Ok(true));
        let stap_p = [0x78, 0x00, 0x02, 0x41, 0x9a];
        assert_eq!(is_keyframe(h, &stap_p), Ok(false));
        assert_eq!(
            is_keyframe(h, &[0x78, 0x00, 0x09, 0x65]),
            Err(CodecError::Truncated)
        );
        // FU-A start of IDR, middle of IDR.
        assert_eq!(is_keyframe(h, &[0x7c, 0x85, 0x00]), Ok(true));
        assert_eq!(is_keyframe(h, &[0x7c, 0x05, 0x00]), Ok(false));
        assert_eq!(is_keyframe(h, &[0x7c]), Err(CodecError::Truncated));
    }

    #[test]
    fn av1_keyframe() {
        let av1 = VideoCodec::Av1;
        // N=1, W=1 (one OBU): a sequence header OBU (type 1) begins the keyframe.
        assert_eq!(is_keyframe(av1, &[0x18, 0x0a, 0x0b]), Ok(true));
        // N=0: a delta frame.
        assert_eq!(is_keyframe(av1, &[0x10, 0x32, 0x00]), Ok(false));
        // Z=1: continues an OBU of the previous packet, never a start.
        assert_eq!(is_keyframe(av1, &[0x88, 0x0a, 0x0b]), Ok(false));
        assert_eq!(is_keyframe(av1, &[0x18]), Err(CodecError::Truncated));
        assert_eq!(is_keyframe(av1, &[]), Err(CodecError::Empty));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut buf = [0u8; 24];
        let mut rw = PictureIdRewriter::new();
        for _ in 0..200_000 {
            let len = rng.usize(0..buf.len());
            rng.fill(&mut buf[..len]);
            let p = &mut buf[..len];
            for c in [
                VideoCodec::Vp8,
                VideoCodec::Vp9,
                VideoCodec::H264,
                VideoCodec::Av1,
            ] {
                let _ = is_keyframe(c, p);
            }
            if let Ok(d) = Vp8Descriptor::parse(p) {
                assert!(d.header_len <= p.len());
                vp8_write(p, &d, rng.u16(..), rng.u8(..));
            }
            let _ = rw.rewrite(p, rng.bool());
        }
    }

    #[test]
    fn rewriter_is_continuous_across_a_switch() {
        let mut rw = PictureIdRewriter::new();
        let mut out = Vec::new();
        // Low layer: picture ids 100..=102, tl0 10..=12.
        for i in 0..3u16 {
            let mut p = vp8_packet(100 + i, 10 + i as u8, true, i == 0);
            rw.rewrite(&mut p, i == 0).unwrap();
            out.push((pid_of(&p), tl0_of(&p)));
        }
        // Switch to the high layer, whose counters are elsewhere (and wrap soon).
        for i in 0..3u16 {
            let pid = (0x7ffe + i) & 0x7fff;
            let mut p = vp8_packet(pid, 250u8.wrapping_add(i as u8 * 3), true, i == 0);
            rw.rewrite(&mut p, i == 0).unwrap();
            out.push((pid_of(&p), tl0_of(&p)));
            // A second packet of the same frame keeps the same picture id.
            let mut q = vp8_packet(pid, 250u8.wrapping_add(i as u8 * 3), false, false);
            rw.rewrite(&mut q, false).unwrap();
            assert_eq!(pid_of(&q), pid_of(&p));
        }
        let pids: Vec<u16> = out.iter().map(|o| o.0).collect();
        assert_eq!(pids, vec![100, 101, 102, 103, 104, 105]);
        // TL0PICIDX follows the new layer's own steps after one continuous step.
        let tl0s: Vec<u8> = out.iter().map(|o| o.1).collect();
        assert_eq!(tl0s, vec![10, 11, 12, 13, 16, 19]);
    }

    #[test]
    fn next_computes_without_writing() {
        let mut rw = PictureIdRewriter::new();
        let p = vp8_packet(500, 9, true, true);
        let d = Vp8Descriptor::parse(&p).unwrap();
        let ids = rw.next(&d, true);
        assert_eq!(
            ids,
            PictureIds {
                picture_id: Some(500),
                tl0_pic_idx: Some(9)
            }
        );
        // The next layer uses 7-bit ids: the value handed out fits that width.
        let q = vp8_packet7(3, true, true);
        let ids = rw.next(&Vp8Descriptor::parse(&q).unwrap(), true);
        assert_eq!(
            ids,
            PictureIds {
                picture_id: Some(501 & 0x7f),
                tl0_pic_idx: None
            }
        );
        // No picture id at all.
        let none = rw.next(&Vp8Descriptor::parse(&[0x10, 0x00]).unwrap(), false);
        assert_eq!(
            none,
            PictureIds {
                picture_id: None,
                tl0_pic_idx: None
            }
        );
    }

    #[test]
    fn rewriter_7bit_wraps_modulo_128() {
        let mut rw = PictureIdRewriter::new();
        let mut p = vp8_packet(126, 0, true, true);
        rw.rewrite(&mut p, true).unwrap();
        let mut q = vp8_packet7(40, true, true);
        rw.rewrite(&mut q, true).unwrap();
        assert_eq!(pid_of(&q), 127);
        let mut r = vp8_packet7(41, true, false);
        rw.rewrite(&mut r, false).unwrap();
        assert_eq!(pid_of(&r), 0);
    }
}
