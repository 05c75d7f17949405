//! RFC 2198 redundant audio (RED, `audio/red` with `a=fmtp:<red> <opus>/<opus>`): the layout
//! of one RED payload, checked once at ingress, and what egress needs to send it on either
//! as RED (the blocks' payload type mapped to the subscriber's) or as its primary encoding
//! alone (the tail of the payload, a sub-slice: nothing is copied).
//!
//! ```text
//! redundant block header (4 bytes): |1| block PT (7) | timestamp offset (14) | length (10) |
//! primary block header   (1 byte):  |0| block PT (7) |
//! then the redundant blocks' data in header order, then the primary block's data
//! ```
//!
//! Owns nothing but the byte layout. Must never allocate, panic on any input, or accept a
//! payload whose blocks run past its end or carry another codec than the one RED was
//! negotiated for: a malformed payload is an `Err(RedError)` the caller counts and drops.

use thiserror::Error;

/// Why a RED payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RedError {
    #[error("RED payload is empty")]
    Empty,
    #[error("RED payload ends inside a block header")]
    TruncatedHeader,
    #[error("RED block lengths run past the payload")]
    TruncatedBlocks,
    #[error("RED block of payload type {0}, not the negotiated primary codec")]
    ForeignBlock(u8),
}

/// Where the blocks of one RED payload sit, from [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedLayout {
    /// Offset of the primary block's data: the length of the header section plus the
    /// redundant blocks. The primary encoding is `payload[primary..]`.
    pub primary: u16,
    /// Number of block headers (redundant blocks + the primary one).
    pub blocks: u8,
    /// The payload type every block carries (the publisher's primary codec).
    pub block_pt: u8,
}

/// Redundant blocks taken at most: libwebrtc sends one (two with its field trial); a header
/// section of hundreds of 4-byte headers is not audio anyone sends.
pub const MAX_RED_BLOCKS: usize = 16;

/// Parse the header section of a RED payload whose blocks must all be of payload type
/// `primary_pt` (the codec the negotiated `a=fmtp:<red> <pt>/<pt>` names).
pub fn parse(payload: &[u8], primary_pt: u8) -> Result<RedLayout, RedError> {
    if payload.is_empty() {
        return Err(RedError::Empty);
    }
    let mut at = 0usize;
    let mut data = 0usize;
    let mut blocks = 0usize;
    loop {
        let Some(&first) = payload.get(at) else {
            return Err(RedError::TruncatedHeader);
        };
        let pt = first & 0x7f;
        if pt != primary_pt {
            return Err(RedError::ForeignBlock(pt));
        }
        blocks += 1;
        if first & 0x80 == 0 {
            at += 1;
            break;
        }
        if blocks > MAX_RED_BLOCKS {
            return Err(RedError::TruncatedHeader);
        }
        let Some(h) = payload.get(at..at + 4) else {
            return Err(RedError::TruncatedHeader);
        };
        data += usize::from(u16::from_be_bytes([h[2], h[3]]) & 0x03ff);
        at += 4;
    }
    let primary = at + data;
    if primary > payload.len() {
        return Err(RedError::TruncatedBlocks);
    }
    Ok(RedLayout {
        // At most 16 × 4 + 1 header bytes and 17 × 1023 data bytes: fits.
        primary: primary as u16,
        blocks: blocks as u8,
        block_pt: primary_pt,
    })
}

impl RedLayout {
    /// The primary encoding: the last block, a sub-slice of `payload` (empty when the
    /// publisher sent only redundancy).
    pub fn primary<'a>(&self, payload: &'a [u8]) -> &'a [u8] {
        payload.get(usize::from(self.primary)..).unwrap_or(&[])
    }

    /// Whether the primary block carries no data.
    pub fn primary_is_empty(&self, payload: &[u8]) -> bool {
        self.primary(payload).is_empty()
    }

    /// `payload` with every block's payload type set to `pt` (the subscriber's number for
    /// the primary codec), written into `scratch`; `payload` itself when they already agree.
    /// The F bits, timestamp offsets, lengths and data are unchanged.
    pub fn with_block_pt<'a>(
        &self,
        payload: &'a [u8],
        pt: u8,
        scratch: &'a mut Vec<u8>,
    ) -> &'a [u8] {
        if pt == self.block_pt {
            return payload;
        }
        scratch.clear();
        scratch.extend_from_slice(payload);
        for i in 0..usize::from(self.blocks) {
            if let Some(b) = scratch.get_mut(i * 4) {
                *b = (*b & 0x80) | (pt & 0x7f);
            }
        }
        scratch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RED payload of `redundant` blocks (timestamp offset, data) and a primary block.
    fn red(pt: u8, redundant: &[(u16, &[u8])], primary: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (offset, data) in redundant {
            out.push(0x80 | pt);
            let v = (u32::from(*offset) << 10) | data.len() as u32;
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
        out.push(pt);
        for (_, data) in redundant {
            out.extend_from_slice(data);
        }
        out.extend_from_slice(primary);
        out
    }

    #[test]
    fn rfc2198_example_one_redundant_block() {
        // RFC 2198 §3's layout with one redundant block: 4-byte header (F=1, offset, length),
        // 1-byte primary header, then the redundant data and the primary data.
        let p = red(111, &[(960, b"older")], b"newest frame");
        assert_eq!(&p[..5], &[0x80 | 111, 0x0f, 0x00, 0x05, 111]);
        let l = parse(&p, 111).unwrap();
        assert_eq!(l.blocks, 2);
        assert_eq!(l.primary, 5 + 5);
        assert_eq!(l.primary(&p), b"newest frame");
    }

    #[test]
    fn rfc2198_bit_layout_of_offset_and_length() {
        // Offset 0x3fff (14 bits) and length 0x3ff (10 bits) share three bytes.
        let data = vec![7u8; 1023];
        let p = red(111, &[(0x3fff, &data)], b"x");
        assert_eq!(&p[1..4], &[0xff, 0xff, 0xff]);
        let l = parse(&p, 111).unwrap();
        assert_eq!(l.primary(&p), b"x");
    }

    #[test]
    fn primary_only_and_several_blocks() {
        let p = red(111, &[], b"opus");
        let l = parse(&p, 111).unwrap();
        assert_eq!((l.blocks, l.primary(&p)), (1, &b"opus"[..]));

        let p = red(100, &[(1920, b"a"), (960, b"bb")], b"ccc");
        let l = parse(&p, 100).unwrap();
        assert_eq!((l.blocks, l.primary(&p)), (3, &b"ccc"[..]));
    }

    #[test]
    fn empty_primary_and_empty_redundant_blocks_parse() {
        // DTX can leave a block empty; RFC 2198 allows length 0.
        let p = red(111, &[(960, b"")], b"");
        let l = parse(&p, 111).unwrap();
        assert!(l.primary_is_empty(&p));
    }

    #[test]
    fn malformed_payloads_are_refused() {
        assert_eq!(parse(&[], 111), Err(RedError::Empty));
        // A redundant header cut short, or no primary header after it.
        assert_eq!(
            parse(&[0x80 | 111, 0x0f], 111),
            Err(RedError::TruncatedHeader)
        );
        assert_eq!(
            parse(&[0x80 | 111, 0x0f, 0x00, 0x00], 111),
            Err(RedError::TruncatedHeader)
        );
        // Lengths past the end.
        let mut p = red(111, &[(960, b"older")], b"");
        p.truncate(p.len() - 1);
        assert_eq!(parse(&p, 111), Err(RedError::TruncatedBlocks));
        // A block of another codec (a stripped subscriber would get it as Opus).
        let p = red(13, &[], b"cn");
        assert_eq!(parse(&p, 111), Err(RedError::ForeignBlock(13)));
        let mut p = red(111, &[(960, b"older")], b"new");
        p[0] = 0x80;
        assert_eq!(parse(&p, 111), Err(RedError::ForeignBlock(0)));
        // Endless F=1 headers.
        let p: Vec<u8> = std::iter::repeat_n([0x80 | 111, 0, 0, 0], 40)
            .flatten()
            .collect();
        assert_eq!(parse(&p, 111), Err(RedError::TruncatedHeader));
    }

    #[test]
    fn block_payload_types_are_remapped_and_nothing_else() {
        let p = red(111, &[(960, b"older")], b"new");
        let l = parse(&p, 111).unwrap();
        let mut scratch = Vec::new();
        assert!(std::ptr::eq(l.with_block_pt(&p, 111, &mut scratch), &p[..]));
        let out = l.with_block_pt(&p, 109, &mut scratch).to_vec();
        assert_eq!(out, red(109, &[(960, b"older")], b"new"));
        let again = parse(&out, 109).unwrap();
        assert_eq!(again.primary(&out), b"new");
    }
}
