//! The synthetic payload format and the VP8 framing around it (see the crate docs).
//!
//! Owns byte layouts only: building and parsing. It must never allocate on parse or panic on
//! any input; malformed input is a `None`.

/// First bytes of every synthetic body.
pub const MAGIC: [u8; 4] = *b"SCST";
/// Format version in byte 4 of the body.
pub const VERSION: u8 = 1;
/// Size of the fixed synthetic header that starts every body.
pub const HEADER_LEN: usize = 40;
/// VP8 payload descriptor length this client writes: X, I (15-bit M picture id), L (TL0PICIDX).
pub const VP8_DESCRIPTOR_LEN: usize = 5;
/// VP8 payload header length on the first packet of a delta frame.
pub const VP8_HEADER_LEN: usize = 3;
/// VP8 payload header length on the first packet of a keyframe (start code and size).
pub const VP8_KEY_HEADER_LEN: usize = 10;

/// What a synthetic packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackKind {
    /// Opus-like audio.
    Audio,
    /// VP8 video.
    Video,
}

/// The fixed header of a synthetic body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticHeader {
    /// Audio or video.
    pub kind: TrackKind,
    /// Simulcast layer index (0 = lowest); 0 for audio.
    pub layer: u8,
    /// Whether the frame is a keyframe.
    pub keyframe: bool,
    /// The publisher's source id ([`crate::ClientConfig::source_id`]).
    pub source_id: u32,
    /// Frame number, counted per track from 0 (the same frame number on every layer).
    pub frame: u32,
    /// Index of this packet within its frame.
    pub packet_index: u16,
    /// Packets in this frame.
    pub packets_in_frame: u16,
    /// Send time in µs on the run's shared clock ([`crate::TimeBase`]).
    pub send_time_us: u64,
    /// Per sent stream (layer) counter of packets, from 0.
    pub stream_seq: u64,
}

impl SyntheticHeader {
    /// Writes the header followed by padding up to `body_len` (at least [`HEADER_LEN`]).
    pub fn write(&self, out: &mut Vec<u8>, body_len: usize) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(match self.kind {
            TrackKind::Audio => 0,
            TrackKind::Video => 1,
        });
        out.push(self.layer);
        out.push(u8::from(self.keyframe));
        out.extend_from_slice(&self.source_id.to_be_bytes());
        out.extend_from_slice(&self.frame.to_be_bytes());
        out.extend_from_slice(&self.packet_index.to_be_bytes());
        out.extend_from_slice(&self.packets_in_frame.to_be_bytes());
        out.extend_from_slice(&self.send_time_us.to_be_bytes());
        out.extend_from_slice(&self.stream_seq.to_be_bytes());
        out.extend_from_slice(&[0; 4]); // reserved
        debug_assert_eq!(out.len() - start, HEADER_LEN);
        let pad = body_len.max(HEADER_LEN) - HEADER_LEN;
        out.extend((0..pad).map(|i| padding_byte(self.stream_seq, i)));
    }

    /// Parses a body. `None` when it is too short or does not start with the magic.
    pub fn parse(body: &[u8]) -> Option<Self> {
        if body.len() < HEADER_LEN || body[..4] != MAGIC || body[4] != VERSION {
            return None;
        }
        let u16_at = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes(body[i..i + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |i: usize| u64::from_be_bytes(body[i..i + 8].try_into().unwrap_or([0; 8]));
        let kind = match body[5] {
            0 => TrackKind::Audio,
            1 => TrackKind::Video,
            _ => return None,
        };
        Some(Self {
            kind,
            layer: body[6],
            keyframe: body[7] & 1 == 1,
            source_id: u32_at(8),
            frame: u32_at(12),
            packet_index: u16_at(16),
            packets_in_frame: u16_at(18),
            send_time_us: u64_at(20),
            stream_seq: u64_at(28),
        })
    }

    /// Whether the padding after the header is exactly what [`Self::write`] produced.
    pub fn padding_ok(&self, body: &[u8]) -> bool {
        body.get(HEADER_LEN..).is_some_and(|pad| {
            pad.iter()
                .enumerate()
                .all(|(i, b)| *b == padding_byte(self.stream_seq, i))
        })
    }
}

/// Padding depends on the packet and the offset so a corrupted or misrouted byte shows.
fn padding_byte(stream_seq: u64, i: usize) -> u8 {
    (stream_seq as u8).wrapping_mul(31).wrapping_add(i as u8)
}

/// The VP8 fields this client writes and checks (RFC 7741).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Info {
    /// S bit: first packet of a VP8 partition (with partition index 0: of a frame).
    pub start_of_frame: bool,
    /// 15-bit picture id.
    pub picture_id: u16,
    /// Temporal-layer-0 picture index.
    pub tl0_pic_idx: u8,
    /// From the payload header's P bit; only meaningful when `start_of_frame`.
    pub keyframe: bool,
}

impl Vp8Info {
    /// Writes the payload descriptor and, on the first packet of a frame, the payload header
    /// (for keyframes with start code and `width`×`height`).
    pub fn write(&self, out: &mut Vec<u8>, width: u16, height: u16) {
        // X=1, N=0, S, PID=0.
        out.push(0x80 | if self.start_of_frame { 0x10 } else { 0 });
        // I=1 (picture id), L=1 (TL0PICIDX), T=0, K=0.
        out.push(0xC0);
        let pid = self.picture_id & 0x7FFF;
        out.push(0x80 | (pid >> 8) as u8);
        out.push(pid as u8);
        out.push(self.tl0_pic_idx);
        if self.start_of_frame {
            // size0=0, show_frame=1, version=0, P (0 = keyframe).
            out.push(0x10 | u8::from(!self.keyframe));
            out.extend_from_slice(&[0, 0]);
            if self.keyframe {
                out.extend_from_slice(&[0x9D, 0x01, 0x2A]);
                out.extend_from_slice(&width.to_le_bytes());
                out.extend_from_slice(&height.to_le_bytes());
            }
        }
    }

    /// Parses a VP8 RTP payload; returns the fields and the offset of the synthetic body.
    /// Accepts any valid descriptor layout (a forwarder may rewrite it), not only ours.
    pub fn parse(payload: &[u8]) -> Option<(Self, usize)> {
        let b0 = *payload.first()?;
        let start_of_frame = b0 & 0x10 != 0 && b0 & 0x07 == 0;
        let mut i = 1;
        let (mut picture_id, mut tl0_pic_idx) = (0u16, 0u8);
        if b0 & 0x80 != 0 {
            let x = *payload.get(i)?;
            i += 1;
            if x & 0x80 != 0 {
                let p0 = *payload.get(i)?;
                if p0 & 0x80 != 0 {
                    picture_id = (u16::from(p0 & 0x7F) << 8) | u16::from(*payload.get(i + 1)?);
                    i += 2;
                } else {
                    picture_id = u16::from(p0);
                    i += 1;
                }
            }
            if x & 0x40 != 0 {
                tl0_pic_idx = *payload.get(i)?;
                i += 1;
            }
            if x & 0x30 != 0 {
                i += 1; // TID/Y/KEYIDX byte
            }
        }
        let mut keyframe = false;
        if start_of_frame {
            let h = *payload.get(i)?;
            keyframe = h & 0x01 == 0;
            i += if keyframe {
                VP8_KEY_HEADER_LEN
            } else {
                VP8_HEADER_LEN
            };
        }
        if i > payload.len() {
            return None;
        }
        Some((
            Self {
                start_of_frame,
                picture_id,
                tl0_pic_idx,
                keyframe,
            },
            i,
        ))
    }
}

/// H264 NAL unit types this client writes.
const NAL_SLICE: u8 = 1;
const NAL_IDR: u8 = 5;
const NAL_FU_A: u8 = 28;
/// nal_ref_idc 3 (highest), as encoders mark reference slices.
const NRI: u8 = 0x60;

/// H264 framing (RFC 6184, packetization-mode 1) around a synthetic body: a one-packet frame is
/// a single NAL unit (IDR or non-IDR slice); larger frames are FU-A fragments of one slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H264Info {
    /// The slice is an IDR (keyframe).
    pub keyframe: bool,
    /// First fragment of the frame (or a single NAL unit).
    pub start: bool,
    /// Last fragment of the frame (or a single NAL unit).
    pub end: bool,
}

impl H264Info {
    /// Writes the NAL unit header (single) or FU indicator and FU header (fragment).
    pub fn write(&self, out: &mut Vec<u8>) {
        let nal_type = if self.keyframe { NAL_IDR } else { NAL_SLICE };
        if self.start && self.end {
            out.push(NRI | nal_type);
        } else {
            out.push(NRI | NAL_FU_A);
            out.push(
                if self.start { 0x80 } else { 0 } | if self.end { 0x40 } else { 0 } | nal_type,
            );
        }
    }

    /// Parses what [`Self::write`] produced; returns the fields and the body offset.
    /// Other NAL unit types (STAP-A, SPS, ...) carry no synthetic body: `None`.
    pub fn parse(payload: &[u8]) -> Option<(Self, usize)> {
        let b0 = *payload.first()?;
        match b0 & 0x1F {
            t @ (NAL_SLICE | NAL_IDR) => Some((
                Self {
                    keyframe: t == NAL_IDR,
                    start: true,
                    end: true,
                },
                1,
            )),
            NAL_FU_A => {
                let fu = *payload.get(1)?;
                let t = fu & 0x1F;
                (t == NAL_SLICE || t == NAL_IDR).then_some((
                    Self {
                        keyframe: t == NAL_IDR,
                        start: fu & 0x80 != 0,
                        end: fu & 0x40 != 0,
                    },
                    2,
                ))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(keyframe: bool) -> SyntheticHeader {
        SyntheticHeader {
            kind: TrackKind::Video,
            layer: 2,
            keyframe,
            source_id: 0xABCD_0123,
            frame: 77,
            packet_index: 1,
            packets_in_frame: 3,
            send_time_us: 123_456_789,
            stream_seq: 4242,
        }
    }

    #[test]
    fn synthetic_header_round_trips_and_padding_is_checked() {
        let h = header(true);
        let mut buf = Vec::new();
        h.write(&mut buf, 300);
        assert_eq!(buf.len(), 300);
        assert_eq!(SyntheticHeader::parse(&buf), Some(h));
        assert!(h.padding_ok(&buf));
        buf[200] ^= 1;
        assert!(!h.padding_ok(&buf));
        assert_eq!(SyntheticHeader::parse(&buf[..HEADER_LEN - 1]), None);
        buf[0] = b'X';
        assert_eq!(SyntheticHeader::parse(&buf), None);
    }

    #[test]
    fn vp8_descriptor_round_trips_for_key_delta_and_continuation() {
        for (start, key) in [(true, true), (true, false), (false, false)] {
            let info = Vp8Info {
                start_of_frame: start,
                picture_id: 0x7ABC,
                tl0_pic_idx: 9,
                keyframe: key,
            };
            let mut buf = Vec::new();
            info.write(&mut buf, 640, 360);
            let body_at = buf.len();
            header(key).write(&mut buf, 100);
            let (parsed, at) = Vp8Info::parse(&buf).expect("parses");
            assert_eq!(parsed, info);
            assert_eq!(at, body_at);
            assert_eq!(SyntheticHeader::parse(&buf[at..]), Some(header(key)));
        }
    }

    #[test]
    fn h264_framing_round_trips_single_and_fragments() {
        for (keyframe, start, end) in [
            (true, true, true),
            (false, true, true),
            (true, true, false),
            (false, false, false),
            (false, false, true),
        ] {
            let info = H264Info {
                keyframe,
                start,
                end,
            };
            let mut buf = Vec::new();
            info.write(&mut buf);
            let at = buf.len();
            header(keyframe).write(&mut buf, 64);
            assert_eq!(H264Info::parse(&buf), Some((info, at)));
        }
        assert_eq!(H264Info::parse(&[NRI | NAL_FU_A]), None);
        assert_eq!(
            H264Info::parse(&[NRI | 24, 0, 1]),
            None,
            "STAP-A carries no body"
        );
    }

    #[test]
    fn vp8_parse_rejects_truncated_input_without_panicking() {
        let info = Vp8Info {
            start_of_frame: true,
            picture_id: 5,
            tl0_pic_idx: 1,
            keyframe: true,
        };
        let mut buf = Vec::new();
        info.write(&mut buf, 1, 1);
        for len in 0..buf.len() {
            assert_eq!(Vp8Info::parse(&buf[..len]), None, "len {len}");
        }
    }
}
