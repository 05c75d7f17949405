//! The lists inside RTCP packets, as iterators over bytes the parser already checked:
//! report blocks, SSRC lists, NACKed sequence numbers, FIR entries and SDES items.
//!
//! Each is built by [`super::parse`] after checking its count against the packet length,
//! so a walk only touches bytes known to be there; reads still go through `get` and end
//! (never panic) should that ever not hold. Must never: allocate, or yield more items than
//! the bytes hold (a NACK's 4-byte FCI yields at most 17 numbers).

use crate::report::ReportBlock;
use crate::rtp::wire;

use super::RtcpError;

/// Bytes of one report block (RFC 3550 §6.4.1).
const REPORT_BLOCK_LEN: usize = 24;

/// The report blocks of an SR or RR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportBlocks<'a> {
    bytes: &'a [u8],
}

impl<'a> ReportBlocks<'a> {
    pub(super) fn new(
        body: &'a [u8],
        at: usize,
        count: u8,
        packet_type: u8,
    ) -> Result<Self, RtcpError> {
        let len = usize::from(count) * REPORT_BLOCK_LEN;
        // The fixed part before the blocks must be there even with no blocks.
        if body.len() < at {
            return Err(RtcpError::Truncated { packet_type });
        }
        let bytes = body.get(at..at + len).ok_or(RtcpError::CountPastEnd {
            packet_type,
            count: usize::from(count),
        })?;
        Ok(ReportBlocks { bytes })
    }
}

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;

    fn next(&mut self) -> Option<ReportBlock> {
        let b = self.bytes;
        let [ssrc, lost, ext_highest_seq, jitter, last_sr, delay_since_last_sr] = [
            wire::u32_at(b, 0)?,
            wire::u32_at(b, 4)?,
            wire::u32_at(b, 8)?,
            wire::u32_at(b, 12)?,
            wire::u32_at(b, 16)?,
            wire::u32_at(b, 20)?,
        ];
        self.bytes = b.get(REPORT_BLOCK_LEN..).unwrap_or(&[]);
        Some(ReportBlock {
            ssrc,
            fraction_lost: (lost >> 24) as u8,
            cumulative_lost: wire::sign_extend_24(lost & 0x00FF_FFFF),
            ext_highest_seq,
            jitter,
            last_sr,
            delay_since_last_sr,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.bytes.len() / REPORT_BLOCK_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for ReportBlocks<'_> {}

/// A list of SSRCs (BYE sources, REMB's SSRC feedback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcList<'a> {
    bytes: &'a [u8],
}

impl<'a> SsrcList<'a> {
    pub(super) fn new(
        body: &'a [u8],
        at: usize,
        count: usize,
        packet_type: u8,
    ) -> Result<Self, RtcpError> {
        let bytes = body
            .get(at..at + count * 4)
            .ok_or(RtcpError::CountPastEnd { packet_type, count })?;
        Ok(SsrcList { bytes })
    }
}

impl Iterator for SsrcList<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let ssrc = wire::u32_at(self.bytes, 0)?;
        self.bytes = self.bytes.get(4..).unwrap_or(&[]);
        Some(ssrc)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.bytes.len() / 4, Some(self.bytes.len() / 4))
    }
}

impl ExactSizeIterator for SsrcList<'_> {}

/// The sequence numbers a generic NACK reports lost, in FCI order: each PID, then the
/// PID + i for every bit i (1..=16) set in its BLP. At most 17 per 4 bytes of packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NackSeqs<'a> {
    fci: &'a [u8],
    pid: u16,
    blp: u16,
    /// Next BLP bit to look at (1..=16); 17 when the next FCI entry is due.
    bit: u16,
}

impl<'a> NackSeqs<'a> {
    pub(super) fn new(fci: &'a [u8]) -> Self {
        NackSeqs {
            fci,
            pid: 0,
            blp: 0,
            bit: 17,
        }
    }

    /// The number of FCI entries (PID/BLP pairs) left, counting the current one.
    pub fn fci_count(&self) -> usize {
        self.fci.len() / 4 + usize::from(self.bit <= 16)
    }
}

impl Iterator for NackSeqs<'_> {
    type Item = u16;

    fn next(&mut self) -> Option<u16> {
        // At most 16 turns per FCI entry.
        loop {
            if self.bit > 16 {
                self.pid = wire::u16_at(self.fci, 0)?;
                self.blp = wire::u16_at(self.fci, 2)?;
                self.fci = self.fci.get(4..).unwrap_or(&[]);
                self.bit = 1;
                return Some(self.pid);
            }
            let i = self.bit;
            self.bit += 1;
            if self.blp & (1 << (i - 1)) != 0 {
                return Some(self.pid.wrapping_add(i));
            }
        }
    }
}

/// FIR entries: (media SSRC, command sequence number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirEntries<'a> {
    bytes: &'a [u8],
}

impl<'a> FirEntries<'a> {
    /// Bytes of one entry: SSRC, sequence number, 3 reserved.
    const LEN: usize = 8;

    /// The whole entries in `fci` (a partial one at the end is not read).
    pub(super) fn new(fci: &'a [u8]) -> Self {
        let whole = fci.len() / Self::LEN * Self::LEN;
        FirEntries {
            bytes: fci.get(..whole).unwrap_or(&[]),
        }
    }
}

impl Iterator for FirEntries<'_> {
    type Item = (u32, u8);

    fn next(&mut self) -> Option<(u32, u8)> {
        let ssrc = wire::u32_at(self.bytes, 0)?;
        let seq = wire::u8_at(self.bytes, 4)?;
        self.bytes = self.bytes.get(Self::LEN..).unwrap_or(&[]);
        Some((ssrc, seq))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.bytes.len() / Self::LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for FirEntries<'_> {}

/// One SDES item (RFC 3550 §6.5): its chunk's SSRC, the item type (1 = CNAME) and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    pub ssrc: u32,
    pub kind: u8,
    pub value: &'a [u8],
}

/// The items of all chunks of an SDES packet, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItems<'a> {
    body: &'a [u8],
    at: usize,
    chunks_left: u8,
    /// The SSRC of the chunk being read; `None` between chunks.
    ssrc: Option<u32>,
}

impl<'a> SdesItems<'a> {
    pub(super) fn new(body: &'a [u8], count: u8) -> Result<Self, RtcpError> {
        let items = SdesItems {
            body,
            at: 0,
            chunks_left: count,
            ssrc: None,
        };
        // Walk once to validate; each step consumes at least one byte.
        let mut check = items.clone();
        while check.step()?.is_some() {}
        Ok(items)
    }

    /// The next item, `Ok(None)` after the last chunk.
    fn step(&mut self) -> Result<Option<SdesItem<'a>>, RtcpError> {
        loop {
            let ssrc = match self.ssrc {
                Some(ssrc) => ssrc,
                None => {
                    if self.chunks_left == 0 {
                        return Ok(None);
                    }
                    let ssrc = wire::u32_at(self.body, self.at).ok_or(RtcpError::SdesPastEnd)?;
                    self.at += 4;
                    self.chunks_left -= 1;
                    self.ssrc = Some(ssrc);
                    ssrc
                }
            };
            let kind = wire::u8_at(self.body, self.at).ok_or(RtcpError::SdesPastEnd)?;
            if kind == 0 {
                // End of the chunk's items; null octets pad it to the next 32-bit boundary.
                self.at = (self.at + 1).next_multiple_of(4);
                self.ssrc = None;
                continue;
            }
            let len = wire::u8_at(self.body, self.at + 1).ok_or(RtcpError::SdesPastEnd)?;
            let start = self.at + 2;
            let value = self
                .body
                .get(start..start + usize::from(len))
                .ok_or(RtcpError::SdesPastEnd)?;
            self.at = start + usize::from(len);
            return Ok(Some(SdesItem { ssrc, kind, value }));
        }
    }
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = SdesItem<'a>;

    fn next(&mut self) -> Option<SdesItem<'a>> {
        self.step().ok().flatten()
    }
}
