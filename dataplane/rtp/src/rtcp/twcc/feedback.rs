//! A received transport-cc feedback: its fixed fields, and [`TwccPackets`], an
//! allocation-free walk over the packets it reports.
//!
//! Parsing walks the chunks once to check that they cover the status count
//! within the packet, that no symbol is reserved, and that the deltas the statuses call for
//! are all there: that walk is bounded by the packet's bytes (every chunk is 2 bytes), never
//! by the count it claims. A lying count, chunk or delta list is an error. The packet walk
//! afterwards yields exactly `status_count` items (at most 65 535: runs of "not received"
//! cost 2 bytes for 8 191 of them, so a caller that must bound its work per packet should
//! look at `status_count` first).

use crate::rtp::wire;

use super::{DELTA_US, LARGE_DELTA, NOT_RECEIVED, REFERENCE_US, RESERVED, SMALL_DELTA};
use crate::rtcp::RtcpError;

/// Fixed bytes of the body after the common header.
const FIXED_LEN: usize = 16;

/// One transport-cc feedback packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccFeedback<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    /// Transport-wide sequence number of the first packet reported.
    pub base_seq: u16,
    /// How many packets are reported, from `base_seq` on.
    pub status_count: u16,
    /// 24-bit signed, in 64 ms units, in the feedback sender's own time base.
    pub reference_time: i32,
    /// Incremented by one per feedback packet: gaps mean lost feedback.
    pub fb_pkt_count: u8,
    chunks: &'a [u8],
    deltas: &'a [u8],
}

/// One reported packet: its transport-wide seq, and when it arrived in µs after the
/// feedback's reference time (`reference_time * 64 ms`), `None` if not received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TwccArrival {
    pub seq: u16,
    pub arrival_us: Option<i64>,
}

/// Symbols a chunk holds and the symbol at `index`.
pub(crate) fn chunk_capacity(chunk: u16) -> usize {
    match chunk >> 14 {
        0 | 1 => usize::from(chunk & 0x1FFF),
        2 => 14,
        _ => 7,
    }
}

pub(crate) fn chunk_symbol(chunk: u16, index: usize) -> u8 {
    match chunk >> 14 {
        0 | 1 => ((chunk >> 13) & 0x03) as u8,
        2 => ((chunk >> (13 - index.min(13))) & 0x01) as u8,
        _ => ((chunk >> (12 - 2 * index.min(6))) & 0x03) as u8,
    }
}

fn delta_size(symbol: u8) -> usize {
    match symbol {
        SMALL_DELTA => 1,
        LARGE_DELTA => 2,
        _ => 0,
    }
}

impl<'a> TwccFeedback<'a> {
    /// Parses and validates the body of an RTPFB FMT 15 packet (after the common header,
    /// padding removed).
    pub(crate) fn parse(body: &'a [u8]) -> Result<TwccFeedback<'a>, RtcpError> {
        let truncated = RtcpError::Truncated {
            packet_type: crate::rtcp::packet_type::RTPFB,
        };
        let fixed: [u8; FIXED_LEN] = wire::array(body, 0).ok_or(truncated)?;
        let [s0, s1, s2, s3, m0, m1, m2, m3, b0, b1, c0, c1, r0, r1, r2, fb_pkt_count] = fixed;
        let status_count = u16::from_be_bytes([c0, c1]);
        let mut left = usize::from(status_count);
        let mut at = FIXED_LEN;
        let mut delta_bytes = 0usize;
        while left > 0 {
            let chunk =
                wire::u16_at(body, at).ok_or(RtcpError::TwccChunksPastEnd { status_count })?;
            at += 2;
            let n = chunk_capacity(chunk).min(left);
            if chunk >> 15 == 0 {
                // A run: one symbol n times.
                let symbol = chunk_symbol(chunk, 0);
                if symbol == RESERVED && n > 0 {
                    return Err(RtcpError::TwccReservedSymbol);
                }
                delta_bytes += n * delta_size(symbol);
            } else {
                for i in 0..n {
                    let symbol = chunk_symbol(chunk, i);
                    if symbol == RESERVED {
                        return Err(RtcpError::TwccReservedSymbol);
                    }
                    delta_bytes += delta_size(symbol);
                }
            }
            left -= n;
        }
        let chunks = body.get(FIXED_LEN..at).unwrap_or(&[]);
        let deltas = body
            .get(at..at + delta_bytes)
            .ok_or(RtcpError::TwccDeltasPastEnd)?;
        Ok(TwccFeedback {
            sender_ssrc: u32::from_be_bytes([s0, s1, s2, s3]),
            media_ssrc: u32::from_be_bytes([m0, m1, m2, m3]),
            base_seq: u16::from_be_bytes([b0, b1]),
            status_count,
            reference_time: wire::sign_extend_24(u32::from_be_bytes([0, r0, r1, r2])),
            fb_pkt_count,
            chunks,
            deltas,
        })
    }

    /// The reference time in µs of the feedback sender's time base.
    pub fn reference_time_us(&self) -> i64 {
        i64::from(self.reference_time) * REFERENCE_US
    }

    /// How many of the reported packets were received (one delta each).
    pub fn received_count(&self) -> usize {
        self.packets().filter(|p| p.arrival_us.is_some()).count()
    }

    /// Walks the reported packets in sequence order.
    pub fn packets(&self) -> TwccPackets<'a> {
        TwccPackets {
            chunks: self.chunks,
            deltas: self.deltas,
            chunk: 0,
            index: 0,
            in_chunk: 0,
            left: usize::from(self.status_count),
            seq: self.base_seq,
            arrival_us: 0,
        }
    }
}

/// The packets of one feedback, each with its arrival (see [`TwccArrival`]).
#[derive(Debug, Clone)]
pub struct TwccPackets<'a> {
    chunks: &'a [u8],
    deltas: &'a [u8],
    chunk: u16,
    index: usize,
    in_chunk: usize,
    left: usize,
    seq: u16,
    arrival_us: i64,
}

impl Iterator for TwccPackets<'_> {
    type Item = TwccArrival;

    fn next(&mut self) -> Option<TwccArrival> {
        if self.left == 0 {
            return None;
        }
        // Skips empty runs; bounded by the chunk bytes.
        while self.in_chunk == 0 {
            self.chunk = wire::u16_at(self.chunks, 0)?;
            self.chunks = self.chunks.get(2..).unwrap_or(&[]);
            self.index = 0;
            self.in_chunk = chunk_capacity(self.chunk).min(self.left);
        }
        let symbol = chunk_symbol(self.chunk, self.index);
        self.index += 1;
        self.in_chunk -= 1;
        self.left -= 1;
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        let delta = match symbol {
            SMALL_DELTA => {
                let d = wire::u8_at(self.deltas, 0)?;
                self.deltas = self.deltas.get(1..).unwrap_or(&[]);
                Some(i64::from(d))
            }
            LARGE_DELTA => {
                let d = wire::u16_at(self.deltas, 0)? as i16;
                self.deltas = self.deltas.get(2..).unwrap_or(&[]);
                Some(i64::from(d))
            }
            NOT_RECEIVED => None,
            // Rejected by parse.
            _ => None,
        };
        let arrival_us = delta.map(|d| {
            self.arrival_us += d * DELTA_US;
            self.arrival_us
        });
        Some(TwccArrival { seq, arrival_us })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}
