//! The RTP header (RFC 3550 §5.1) and its extensions (RFC 8285): parse a received packet's
//! header once, and write one header per forwarded copy into the caller's buffer.
//!
//! - [`header`]: the fixed header, CSRCs, the extension block and padding; the header
//!   writer and the padding-only packet (bandwidth probes).
//! - [`ext`]: the extension ids one m-line negotiated ([`ExtIds`]), reading their values
//!   out of a packet ([`read_extensions`]) and the values to write ([`OutExtensions`]).
//! - [`seq`]: extending 16-bit sequence numbers to 64 bits ([`SeqExtender`]).
//! - [`rtx`]: the original sequence number at the start of an RTX payload (RFC 4588 §4).
//!
//! Owns only byte layout. Must never: panic or loop without bound on packet bytes, allocate
//! (parse and write work in the caller's buffers), or know about streams, rooms or SRTP
//! (parse runs on an opened packet: with SRTP the padding is inside the encrypted part).

pub mod ext;
pub mod header;
pub mod rtx;
pub mod seq;
pub(crate) mod wire;

pub use ext::{
    abs_send_time, read_extensions, AudioLevel, ExtIds, Extensions, OutExtensions,
    DEPENDENCY_DESCRIPTOR_URI,
};
pub use header::{write_header, write_padding_packet, HeaderFields, RtpHeader, FIXED_HEADER_LEN};
pub use rtx::{read_rtx_original_seq, write_rtx_original_seq};
pub use seq::SeqExtender;

/// Why an RTP packet could not be parsed or a header could not be written. A caller counts
/// these (per variant if it likes) and drops the packet: none is worth more than a `trace!`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the 12-byte fixed header.
    #[error("RTP packet of {len} bytes is shorter than the fixed header")]
    TooShort { len: usize },
    /// The version field is not 2.
    #[error("RTP version {0} (only 2 exists)")]
    BadVersion(u8),
    /// The CSRC count points past the end of the packet.
    #[error("RTP CSRC list runs past the end of the packet")]
    CsrcPastEnd,
    /// The X bit is set but the extension block (header or its claimed length) runs past
    /// the end of the packet.
    #[error("RTP extension block runs past the end of the packet")]
    ExtensionPastEnd,
    /// One extension element's length runs past the end of the extension block.
    #[error("RTP header extension element runs past the end of its block")]
    ExtElementPastEnd,
    /// The P bit is set but the padding count is 0 or reaches into the header.
    #[error("RTP padding count {pad} is invalid for {payload} bytes after the header")]
    BadPadding { pad: u8, payload: usize },
    /// The caller's buffer is too small for what was asked.
    #[error("buffer of {have} bytes is too small, {need} needed")]
    BufferTooSmall { need: usize, have: usize },
    /// Extension id 0 is reserved (RFC 8285 §4.2/4.3) and cannot be written.
    #[error("extension id 0 cannot be written")]
    BadExtId,
    /// An extension value longer than the two-byte form's 255 bytes.
    #[error("extension value of {len} bytes exceeds 255")]
    ExtValueTooLong { len: usize },
    /// A payload type above 127 (the marker bit shares its byte).
    #[error("payload type {0} above 127")]
    BadPayloadType(u8),
    /// A padding-only packet needs at least one padding byte.
    #[error("padding-only packet needs 1..=255 padding bytes")]
    ZeroPadding,
    /// An RTX payload shorter than its 2-byte original sequence number (an RTX padding
    /// packet, or garbage).
    #[error("RTX payload shorter than the original sequence number")]
    NoRtxOriginalSeq,
}
