//! RTCP (RFC 3550 §6, RFC 4585, RFC 5104 FIR, REMB draft-alvestrand-rmcat-remb-03,
//! transport-cc draft-holmer-rmcat-transport-wide-cc-extensions-01): parse the packets
//! of one decrypted compound packet, and write packets into a caller's buffer.
//!
//! - [`parse`]: [`parse_compound`] iterates a compound packet; each [`RtcpPacket`] borrows
//!   the bytes, and its lists ([`lists`]: report blocks, NACKed seqs, FIR entries, ...)
//!   are iterators over them, validated when the packet is parsed.
//! - [`mod@write`]: one function per packet type; compound assembly is the caller's (it writes
//!   several packets back to back).
//! - [`twcc`]: transport-cc feedback: walking a received one, and [`twcc::TwccRecorder`],
//!   which records the arrivals of the streams we receive and writes feedback for them.
//!
//! RTCP comes from hostile clients: every length and count is checked against the bytes
//! before anything is read, and every loop is bounded by the packet length. Must never:
//! panic, allocate, or loop more than the packet's bytes justify; know about streams or
//! what a report means (that is [`crate::recv`] and [`crate::bwe`]).

pub mod lists;
pub mod parse;
pub mod twcc;
pub mod write;

pub use lists::{FirEntries, NackSeqs, ReportBlocks, SdesItem, SdesItems, SsrcList};
pub use parse::{parse_compound, RtcpIter, RtcpPacket};
pub use twcc::{TwccArrival, TwccFeedback, TwccPackets, TwccRecorder};
pub use write::{
    write_bye, write_fir, write_nack, write_pli, write_remb, write_rr, write_sdes_cname, write_sr,
    SenderInfo,
};

/// RTCP packet types (RFC 3550 §12.1, RFC 4585 §6.1, RFC 3611).
pub mod packet_type {
    pub const SR: u8 = 200;
    pub const RR: u8 = 201;
    pub const SDES: u8 = 202;
    pub const BYE: u8 = 203;
    pub const APP: u8 = 204;
    /// Transport-layer feedback (NACK fmt 1, transport-cc fmt 15).
    pub const RTPFB: u8 = 205;
    /// Payload-specific feedback (PLI fmt 1, FIR fmt 4, REMB/application fmt 15).
    pub const PSFB: u8 = 206;
    pub const XR: u8 = 207;
}

/// Why an RTCP packet could not be parsed or written. The parser ends the compound at the
/// first error; the caller counts it and moves on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// Fewer than the 4 bytes of a common header left.
    #[error("{len} bytes left, shorter than an RTCP header")]
    TooShort { len: usize },
    /// The version field is not 2.
    #[error("RTCP version {0} (only 2 exists)")]
    BadVersion(u8),
    /// The length field claims more bytes than the compound has left.
    #[error("RTCP length of {claimed} bytes, only {available} left")]
    LengthPastEnd { claimed: usize, available: usize },
    /// The P bit is set but the padding count is 0 or longer than the packet body.
    #[error("RTCP padding count {pad} invalid for a body of {body} bytes")]
    BadPadding { pad: u8, body: usize },
    /// The body is shorter than the fixed part of its packet type.
    #[error("RTCP packet type {packet_type} truncated")]
    Truncated { packet_type: u8 },
    /// A count field (report blocks, sources, SDES chunks) points past the packet's end.
    #[error("RTCP packet type {packet_type}: count {count} runs past the end")]
    CountPastEnd { packet_type: u8, count: usize },
    /// An SDES chunk or item runs past the end of the packet.
    #[error("RTCP SDES chunk runs past the end")]
    SdesPastEnd,
    /// Transport-cc status chunks end before the packet status count is covered.
    #[error("transport-cc chunks end before status count {status_count} is covered")]
    TwccChunksPastEnd { status_count: u16 },
    /// Transport-cc receive deltas run past the end of the packet.
    #[error("transport-cc receive deltas run past the end")]
    TwccDeltasPastEnd,
    /// A transport-cc status symbol of 3 (reserved).
    #[error("transport-cc reserved status symbol")]
    TwccReservedSymbol,
    /// The caller's buffer is too small for the packet.
    #[error("buffer of {have} bytes is too small, {need} needed")]
    BufferTooSmall { need: usize, have: usize },
    /// More items than the 5-bit count (31) or the format allows.
    #[error("{count} items, at most {max} fit one packet")]
    TooMany { count: usize, max: usize },
    /// A NACK needs at least one lost sequence number.
    #[error("NACK without sequence numbers")]
    EmptyNack,
    /// An SDES value (CNAME) must be 1..=255 bytes.
    #[error("SDES value of {len} bytes, 1..=255 allowed")]
    BadSdesValue { len: usize },
}
