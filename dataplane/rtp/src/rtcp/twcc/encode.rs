//! Encoding transport-cc feedback into a caller's buffer: packet status chunks chosen as
//! libwebrtc's encoder chooses them, receive deltas, the fixed fields and padding.
//!
//! Chunk choice: statuses collect in a pending chunk of up to 14; it stays a two-bit vector
//! while it has at most 7, a one-bit vector up to 14 while nothing needs a large delta, and
//! a run (up to 8 191) while every status is the same. When the next status fits none of
//! these, the pending statuses are flushed: as a run if all equal, as a one-bit vector if
//! 14, else as a two-bit vector of the first 7 (the rest stay pending).
//!
//! Chunks are written into `out` as they complete; deltas go into a fixed scratch array
//! and are copied after the chunks at the end (their position is only known then). Adding
//! a packet that does not fit rolls everything back to before it. Must never: allocate,
//! or produce a packet larger than `out`.

use crate::rtp::wire;

use super::{LARGE_DELTA, NOT_RECEIVED, SMALL_DELTA};
use crate::rtcp::packet_type::RTPFB;

/// Most statuses (received or not) one feedback reports.
pub const MAX_STATUS: usize = 512;
/// Fixed bytes before the first chunk.
const FIXED_LEN: usize = 20;
/// The longest run a run-length chunk holds.
const MAX_RUN: u16 = 0x1FFF;

/// The statuses not yet written as a chunk.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The first 14 statuses (a run may count more).
    symbols: [u8; 14],
    n: u16,
    all_same: bool,
    has_large: bool,
}

impl Pending {
    const EMPTY: Pending = Pending {
        symbols: [0; 14],
        n: 0,
        all_same: true,
        has_large: false,
    };

    fn first(&self) -> u8 {
        self.symbols[0]
    }

    fn can_add(&self, symbol: u8) -> bool {
        if self.n < 7 {
            return true;
        }
        if self.n < 14 && !self.has_large && symbol != LARGE_DELTA {
            return true;
        }
        self.all_same && self.first() == symbol && self.n < MAX_RUN
    }

    /// Adds `symbol`; the caller checked [`Pending::can_add`].
    fn add(&mut self, symbol: u8) {
        if let Some(slot) = self.symbols.get_mut(usize::from(self.n)) {
            *slot = symbol;
        }
        if self.n > 0 && self.first() != symbol {
            self.all_same = false;
        }
        self.has_large |= symbol == LARGE_DELTA;
        self.n += 1;
    }

    /// Takes the next complete chunk out (called when the next symbol cannot be added,
    /// so there are at least 7 pending).
    fn flush(&mut self) -> u16 {
        if self.all_same {
            let chunk = run(self.first(), self.n);
            *self = Pending::EMPTY;
            return chunk;
        }
        if self.n == 14 {
            let chunk = one_bit(&self.symbols);
            *self = Pending::EMPTY;
            return chunk;
        }
        let chunk = two_bit(self.symbols.get(..7).unwrap_or(&[]));
        let rest = usize::from(self.n).saturating_sub(7);
        let mut next = Pending::EMPTY;
        for &s in self.symbols.get(7..7 + rest).unwrap_or(&[]) {
            next.add(s);
        }
        *self = next;
        chunk
    }

    /// The last chunk, if any statuses are pending (at most one chunk remains: more than
    /// 7 pending and not all equal means no large delta among them).
    fn finish(&self) -> Option<u16> {
        let n = usize::from(self.n);
        match n {
            0 => None,
            _ if self.all_same => Some(run(self.first(), self.n)),
            1..=7 => Some(two_bit(self.symbols.get(..n).unwrap_or(&[]))),
            _ => Some(one_bit(self.symbols.get(..n).unwrap_or(&[]))),
        }
    }
}

fn run(symbol: u8, n: u16) -> u16 {
    u16::from(symbol & 0x03) << 13 | (n & MAX_RUN)
}

/// A one-bit status vector; missing trailing symbols are "not received".
fn one_bit(symbols: &[u8]) -> u16 {
    symbols
        .iter()
        .take(14)
        .enumerate()
        .fold(0x8000, |c, (i, &s)| {
            c | u16::from(s != NOT_RECEIVED) << (13 - i)
        })
}

/// A two-bit status vector; missing trailing symbols are "not received".
fn two_bit(symbols: &[u8]) -> u16 {
    symbols
        .iter()
        .take(7)
        .enumerate()
        .fold(0xC000, |c, (i, &s)| c | u16::from(s & 0x03) << (12 - 2 * i))
}

/// One feedback packet being written into `out`.
pub(crate) struct TwccWriter<'o> {
    out: &'o mut [u8],
    /// End of the chunks written so far.
    chunks_end: usize,
    pending: Pending,
    deltas: [u8; 2 * MAX_STATUS],
    delta_len: usize,
    status_count: usize,
}

impl<'o> TwccWriter<'o> {
    /// Starts a feedback; `None` if `out` cannot hold even one reported packet.
    /// `reference_time` is in 64 ms units (written as 24-bit two's complement).
    pub(crate) fn new(
        out: &'o mut [u8],
        sender_ssrc: u32,
        media_ssrc: u32,
        base_seq: u16,
        reference_time: i64,
        fb_pkt_count: u8,
    ) -> Option<TwccWriter<'o>> {
        // Fixed part, one chunk, one large delta: 24 bytes, a multiple of 4.
        if out.len() < FIXED_LEN + 4 {
            return None;
        }
        let [_, r0, r1, r2] = ((reference_time as u32) & 0x00FF_FFFF).to_be_bytes();
        wire::put(out, 4, &sender_ssrc.to_be_bytes())?;
        wire::put(out, 8, &media_ssrc.to_be_bytes())?;
        wire::put(out, 12, &base_seq.to_be_bytes())?;
        wire::put(out, 16, &[r0, r1, r2, fb_pkt_count])?;
        Some(TwccWriter {
            out,
            chunks_end: FIXED_LEN,
            pending: Pending::EMPTY,
            deltas: [0; 2 * MAX_STATUS],
            delta_len: 0,
            status_count: 0,
        })
    }

    /// Statuses added so far.
    pub(crate) fn status_count(&self) -> usize {
        self.status_count
    }

    /// Adds `lost` packets not received, then one received `delta` × 250 µs after the
    /// previous received one. `false`, with nothing changed, if that does not fit `out`
    /// or [`MAX_STATUS`].
    pub(crate) fn add_received(&mut self, lost: usize, delta: i16) -> bool {
        if self.status_count + lost + 1 > MAX_STATUS {
            return false;
        }
        let saved = (self.chunks_end, self.pending, self.delta_len);
        if self.try_add(lost, delta) {
            self.status_count += lost + 1;
            return true;
        }
        (self.chunks_end, self.pending, self.delta_len) = saved;
        false
    }

    fn try_add(&mut self, lost: usize, delta: i16) -> bool {
        for _ in 0..lost {
            if !self.push(NOT_RECEIVED) {
                return false;
            }
        }
        let bytes = delta.to_be_bytes();
        let (symbol, value) = match u8::try_from(delta) {
            Ok(small) => (SMALL_DELTA, &[small][..]),
            Err(_) => (LARGE_DELTA, &bytes[..]),
        };
        if !self.push(symbol) || wire::put(&mut self.deltas, self.delta_len, value).is_none() {
            return false;
        }
        self.delta_len += value.len();
        self.len_so_far().next_multiple_of(4) <= self.out.len()
    }

    fn push(&mut self, symbol: u8) -> bool {
        if !self.pending.can_add(symbol) {
            let chunk = self.pending.flush();
            if wire::put(self.out, self.chunks_end, &chunk.to_be_bytes()).is_none() {
                return false;
            }
            self.chunks_end += 2;
        }
        self.pending.add(symbol);
        true
    }

    /// Bytes the packet would have if finished now, before padding.
    fn len_so_far(&self) -> usize {
        self.chunks_end + if self.pending.n > 0 { 2 } else { 0 } + self.delta_len
    }

    /// Writes the last chunk, the deltas, the padding (P bit, count in the last byte, as
    /// libwebrtc does) and the header. Returns the packet length.
    pub(crate) fn finish(mut self) -> Option<usize> {
        if let Some(chunk) = self.pending.finish() {
            wire::put(self.out, self.chunks_end, &chunk.to_be_bytes())?;
            self.chunks_end += 2;
        }
        let deltas = self.deltas.get(..self.delta_len)?;
        wire::put(self.out, self.chunks_end, deltas)?;
        let len = self.chunks_end + self.delta_len;
        let total = len.next_multiple_of(4);
        let pad = total - len;
        let padding = self.out.get_mut(len..total)?;
        padding.fill(0);
        if let Some(last) = padding.last_mut() {
            *last = pad as u8;
        }
        let b0 = 0x80 | if pad > 0 { 0x20 } else { 0 } | 15;
        let words = (total / 4 - 1) as u16;
        wire::put(self.out, 0, &[b0, RTPFB])?;
        wire::put(self.out, 2, &words.to_be_bytes())?;
        wire::put(self.out, 14, &(self.status_count as u16).to_be_bytes())?;
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::twcc::feedback::{chunk_capacity, chunk_symbol};

    /// Chunks for a list of symbols, as the writer would emit them.
    fn chunks(symbols: &[u8]) -> Vec<u16> {
        let mut p = Pending::EMPTY;
        let mut out = vec![];
        for &s in symbols {
            if !p.can_add(s) {
                out.push(p.flush());
            }
            p.add(s);
        }
        out.extend(p.finish());
        out
    }

    fn decode(chunks: &[u16], count: usize) -> Vec<u8> {
        let mut out = vec![];
        for &c in chunks {
            for i in 0..chunk_capacity(c) {
                if out.len() < count {
                    out.push(chunk_symbol(c, i));
                }
            }
        }
        out
    }

    #[test]
    // Grouped as the draft draws them: type bit, symbol bits, run length / symbol list.
    #[allow(clippy::unusual_byte_groupings)]
    fn the_drafts_chunk_examples() {
        // Run-length example 1: 221 × "not received".
        assert_eq!(chunks(&[0; 221]), [0b0_00_0000011011101]);
        // Status vector example 1: 1 not, 5 received, 3 not, 3 received, 2 not: libwebrtc
        // would only emit that as the last chunk, with the trailing losses left off.
        let v = [0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1];
        assert_eq!(chunks(&v), [0b1_0_01111100011100]);
    }

    #[test]
    fn choices_between_runs_and_vectors() {
        // 7 small then a large: all-same flushes as a run, the large starts anew.
        assert_eq!(chunks(&[1, 1, 1, 1, 1, 1, 1, 2]), [run(1, 7), run(2, 1)]);
        // A large within the first 7 forces two-bit vectors.
        let mixed = [1, 2, 1, 0, 1, 1, 1, 1, 1];
        let c = chunks(&mixed);
        assert_eq!(c[0] >> 14, 0b11);
        assert_eq!(decode(&c, mixed.len()), mixed);
        // A long run of losses is one chunk.
        assert_eq!(chunks(&[0; 8000]), [run(0, 8000)]);
        // And longer than a run holds: two.
        assert_eq!(chunks(&[0; 9000]), [run(0, 8191), run(0, 809)]);
    }

    #[test]
    fn every_mix_decodes_back() {
        // A deterministic pseudo-random walk over statuses.
        let mut x = 0x1234_5678u32;
        for len in 1..200 {
            let symbols: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    [0, 1, 1, 1, 2][(x % 5) as usize]
                })
                .collect();
            let c = chunks(&symbols);
            assert_eq!(decode(&c, len), symbols, "len {len}");
        }
    }
}
