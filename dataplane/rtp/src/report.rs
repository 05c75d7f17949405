//! The reception report block (RFC 3550 §6.4.1): what a receiver says about one stream.
//! Shared plain data: [`crate::recv`] fills it for the streams we receive, [`crate::rtcp`]
//! reads it from and writes it into SR/RR packets, the estimators consume it.

/// One report block of an SR or RR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// The SSRC this block reports on (the media source).
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256 units.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire; negative with duplicates).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | highest seq).
    pub ext_highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received from this source (0: none).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s (0: none).
    pub delay_since_last_sr: u32,
}
