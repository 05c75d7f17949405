//! The RTP fixed header, CSRC list, extension block and padding (RFC 3550 §5.1, §5.3.1):
//! [`RtpHeader::parse`] for a received packet, [`write_header`] for a forwarded copy and
//! [`write_padding_packet`] for bandwidth probes.
//!
//! Parse runs once per received packet and write once per forwarded copy: both are a
//! handful of bounds-checked loads and stores, no allocation, no loops over packet bytes
//! except the extension block (bounded by its length).

use core::ops::Range;

use super::ext::{self, ExtIds, OutExtensions};
use super::wire;
use super::RtpError;

/// Bytes of the fixed header (without CSRCs or extensions).
pub const FIXED_HEADER_LEN: usize = 12;

/// One parsed RTP header: plain values and where things are in the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc_count: u8,
    /// Bytes up to the payload (fixed header, CSRCs, extension block).
    pub header_len: usize,
    /// Padding bytes at the end (P bit), including the count byte; 0 without padding.
    pub padding_len: usize,
    /// The extension block, if any: its profile (0xBEDE one-byte form, 0x100X two-byte
    /// form, or anything else) and the byte range of its elements in the packet (after the
    /// 4-byte block header).
    pub ext: Option<(u16, Range<usize>)>,
}

impl RtpHeader {
    /// Parses the header of an RTP packet (an opened one: with SRTP the padding count is
    /// encrypted). Checks the version, and that CSRCs, the extension block and padding
    /// all lie within the packet, so the ranges it returns can be used without checks.
    pub fn parse(packet: &[u8]) -> Result<RtpHeader, RtpError> {
        let fixed: [u8; FIXED_HEADER_LEN] =
            wire::array(packet, 0).ok_or(RtpError::TooShort { len: packet.len() })?;
        let [b0, b1, s0, s1, t0, t1, t2, t3, x0, x1, x2, x3] = fixed;
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = b0 & 0x20 != 0;
        let has_ext = b0 & 0x10 != 0;
        let csrc_count = b0 & 0x0F;
        let mut header_len = FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
        if header_len > packet.len() {
            return Err(RtpError::CsrcPastEnd);
        }
        let ext = if has_ext {
            let profile = wire::u16_at(packet, header_len).ok_or(RtpError::ExtensionPastEnd)?;
            let words = wire::u16_at(packet, header_len + 2).ok_or(RtpError::ExtensionPastEnd)?;
            let start = header_len + 4;
            let end = start + 4 * usize::from(words);
            if end > packet.len() {
                return Err(RtpError::ExtensionPastEnd);
            }
            header_len = end;
            Some((profile, start..end))
        } else {
            None
        };
        let padding_len = if has_padding {
            // The packet is at least 12 bytes long here, so it has a last byte.
            let pad = packet.last().copied().unwrap_or(0);
            let payload = packet.len() - header_len;
            if pad == 0 || usize::from(pad) > payload {
                return Err(RtpError::BadPadding { pad, payload });
            }
            usize::from(pad)
        } else {
            0
        };
        Ok(RtpHeader {
            marker: b1 & 0x80 != 0,
            payload_type: b1 & 0x7F,
            seq: u16::from_be_bytes([s0, s1]),
            timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
            ssrc: u32::from_be_bytes([x0, x1, x2, x3]),
            csrc_count,
            header_len,
            padding_len,
            ext,
        })
    }

    /// The payload's byte range in a packet of `packet_len` bytes (the one parsed):
    /// after the header, before the padding. Empty, never inverted, for another length.
    pub fn payload_range(&self, packet_len: usize) -> Range<usize> {
        let end = packet_len.saturating_sub(self.padding_len);
        self.header_len.min(end)..end
    }

    /// The payload of the packet this header was parsed from.
    pub fn payload<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        packet.get(self.payload_range(packet.len())).unwrap_or(&[])
    }

    /// The `index`th CSRC of the packet this header was parsed from.
    pub fn csrc(&self, packet: &[u8], index: usize) -> Option<u32> {
        if index >= usize::from(self.csrc_count) {
            return None;
        }
        wire::u32_at(packet, FIXED_HEADER_LEN + 4 * index)
    }
}

/// What to write for one outgoing packet (no CSRCs: an SFU forwards, it does not mix).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderFields {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Writes the fixed header and the extensions `ids` negotiated into `out` (one-byte form,
/// RFC 8285 §4.2, when every id is 1..=14 and every value 1..=16 bytes; two-byte form
/// otherwise), padded to 32 bits. Returns the header length. Never allocates.
pub fn write_header(
    out: &mut [u8],
    fields: &HeaderFields,
    ext: &OutExtensions<'_>,
    ids: &ExtIds,
) -> Result<usize, RtpError> {
    if fields.payload_type > 127 {
        return Err(RtpError::BadPayloadType(fields.payload_type));
    }
    let too_small = RtpError::BufferTooSmall {
        need: FIXED_HEADER_LEN,
        have: out.len(),
    };
    let fixed = out.get_mut(..FIXED_HEADER_LEN).ok_or(too_small)?;
    let [s0, s1] = fields.seq.to_be_bytes();
    let [t0, t1, t2, t3] = fields.timestamp.to_be_bytes();
    let [x0, x1, x2, x3] = fields.ssrc.to_be_bytes();
    let b1 = u8::from(fields.marker) << 7 | fields.payload_type;
    fixed.copy_from_slice(&[0x80, b1, s0, s1, t0, t1, t2, t3, x0, x1, x2, x3]);
    let ext_len = ext::write_block(out, FIXED_HEADER_LEN, ext, ids)?;
    if ext_len > 0 {
        if let Some(b0) = out.first_mut() {
            *b0 |= 0x10;
        }
    }
    Ok(FIXED_HEADER_LEN + ext_len)
}

/// Writes a packet that is only header and `padding` bytes of padding (P bit set, the last
/// byte holding the count, RFC 3550 §5.1): what a sender uses to probe for bandwidth. The
/// extensions should carry at least the transport-cc seq, or the probe is never reported.
/// Returns the packet length.
pub fn write_padding_packet(
    out: &mut [u8],
    fields: &HeaderFields,
    ext: &OutExtensions<'_>,
    ids: &ExtIds,
    padding: u8,
) -> Result<usize, RtpError> {
    if padding == 0 {
        return Err(RtpError::ZeroPadding);
    }
    let header_len = write_header(out, fields, ext, ids)?;
    let total = header_len + usize::from(padding);
    let have = out.len();
    let pad = out
        .get_mut(header_len..total)
        .ok_or(RtpError::BufferTooSmall { need: total, have })?;
    pad.fill(0);
    if let Some(last) = pad.last_mut() {
        *last = padding;
    }
    if let Some(b0) = out.first_mut() {
        *b0 |= 0x20;
    }
    Ok(total)
}
