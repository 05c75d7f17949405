//! Shardcast's own RTP stack for one WebRTC transport, once DTLS has produced SRTP keys.
//!
//! str0m keeps ICE, the DTLS handshake, SDP and data channels; everything after the keys is
//! here, sans-IO like str0m: no sockets, no clock (time is passed in), no SFU logic (which
//! packet goes to whom is `shardcast-sfu`'s business).
//!
//! - [`srtp`]: keys from DTLS keying material (RFC 5764, RFC 3711 §4.3, RFC 7714), sealing
//!   and opening SRTP/SRTCP for AES_CM_128_HMAC_SHA1_80, AEAD_AES_128_GCM and
//!   AEAD_AES_256_GCM, replay protection; [`srtp::tap`] captures a str0m peer's keying
//!   material through its pluggable crypto provider.
//! - [`rtp`]: the RTP header and its extensions (RFC 3550, RFC 8285): parse, and write into
//!   a caller's buffer.
//! - [`rtcp`]: compound RTCP (SR, RR, SDES, BYE, NACK, PLI, FIR, REMB, transport-cc):
//!   parse, and write into a caller's buffer; [`rtcp::twcc`] records arrivals and builds
//!   transport-cc feedback for the streams we receive.
//! - [`recv`]: per incoming stream: reception statistics for receiver reports (RFC 3550
//!   A.3, A.8), the NACK generator, NTP time and RTT from LSR/DLSR; [`recv::history`], a
//!   bounded packet history keyed by extended sequence number.
//! - [`bwe`]: a send-side bandwidth estimate from transport-cc feedback (delay-based
//!   trendline and loss-based, as GCC), REMB where that is all a client sends, and probing.
//!
//! Must never: panic on bytes from the network, allocate per packet on the seal/open and
//! parse paths, read the clock, or grow without bound on a peer's input.

pub mod bwe;
pub mod recv;
pub mod report;
pub mod rtcp;
pub mod rtp;
pub mod srtp;
