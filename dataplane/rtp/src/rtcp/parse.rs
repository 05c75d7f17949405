//! Parsing one decrypted compound RTCP packet: [`parse_compound`] yields each packet as
//! an [`RtcpPacket`] borrowing the bytes, and ends after the first error.
//!
//! Every count is checked against the packet length when the packet is parsed, so the
//! list iterators ([`super::lists`]) only walk bytes known to be there. Must never: panic,
//! allocate, or go on after an error (the framing of what follows cannot be trusted).

use crate::rtp::wire;

use super::lists::{FirEntries, NackSeqs, ReportBlocks, SdesItems, SsrcList};
use super::packet_type as pt;
use super::twcc::TwccFeedback;
use super::RtcpError;

/// Bytes of the RTCP common header.
const HEADER_LEN: usize = 4;

/// One RTCP packet of a compound, borrowing its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    SenderReport {
        ssrc: u32,
        /// 64-bit NTP timestamp (RFC 3550 §4).
        ntp: u64,
        rtp_ts: u32,
        packet_count: u32,
        octet_count: u32,
        reports: ReportBlocks<'a>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: ReportBlocks<'a>,
    },
    Sdes(SdesItems<'a>),
    Bye {
        ssrcs: SsrcList<'a>,
    },
    /// Generic NACK (RFC 4585 §6.2.1); `lost` expands every PID/BLP pair.
    Nack {
        sender_ssrc: u32,
        media_ssrc: u32,
        lost: NackSeqs<'a>,
    },
    Pli {
        sender_ssrc: u32,
        media_ssrc: u32,
    },
    /// Full intra request (RFC 5104 §4.3.1): (media SSRC, command sequence number) pairs.
    Fir {
        sender_ssrc: u32,
        entries: FirEntries<'a>,
    },
    /// Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb).
    Remb {
        sender_ssrc: u32,
        /// Saturates at `u64::MAX` for an exponent that would overflow.
        bitrate_bps: u64,
        ssrcs: SsrcList<'a>,
    },
    TransportCc(TwccFeedback<'a>),
    /// Anything else (XR, APP, SLI, RPSI, application feedback that is not REMB, ...).
    Other {
        packet_type: u8,
        fmt: u8,
    },
}

/// Iterates the packets of one decrypted compound RTCP packet.
pub fn parse_compound(compound: &[u8]) -> RtcpIter<'_> {
    RtcpIter {
        rest: compound,
        failed: false,
    }
}

/// The packets of a compound: each `Ok`, until the end or the first `Err` (after which it
/// yields nothing: the framing of what follows cannot be trusted).
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let result = self.next_packet();
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

impl<'a> RtcpIter<'a> {
    fn next_packet(&mut self) -> Result<RtcpPacket<'a>, RtcpError> {
        let rest = self.rest;
        let [b0, packet_type, l0, l1] =
            wire::array::<4>(rest, 0).ok_or(RtcpError::TooShort { len: rest.len() })?;
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let total = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        let packet = rest.get(..total).ok_or(RtcpError::LengthPastEnd {
            claimed: total,
            available: rest.len(),
        })?;
        self.rest = rest.get(total..).unwrap_or(&[]);
        let mut body = packet.get(HEADER_LEN..).unwrap_or(&[]);
        if b0 & 0x20 != 0 {
            let pad = packet.last().copied().unwrap_or(0);
            if pad == 0 || usize::from(pad) > body.len() {
                return Err(RtcpError::BadPadding {
                    pad,
                    body: body.len(),
                });
            }
            body = body.get(..body.len() - usize::from(pad)).unwrap_or(&[]);
        }
        parse_body(b0 & 0x1F, packet_type, body)
    }
}

/// One packet's body (after the common header, without padding).
fn parse_body(count: u8, packet_type: u8, body: &[u8]) -> Result<RtcpPacket<'_>, RtcpError> {
    let truncated = RtcpError::Truncated { packet_type };
    let u32_at = |at| wire::u32_at(body, at).ok_or(truncated);
    match packet_type {
        pt::SR => {
            let ssrc = u32_at(0)?;
            let ntp = wire::u64_at(body, 4).ok_or(truncated)?;
            let reports = ReportBlocks::new(body, 24, count, packet_type)?;
            Ok(RtcpPacket::SenderReport {
                ssrc,
                ntp,
                rtp_ts: u32_at(12)?,
                packet_count: u32_at(16)?,
                octet_count: u32_at(20)?,
                reports,
            })
        }
        pt::RR => Ok(RtcpPacket::ReceiverReport {
            ssrc: u32_at(0)?,
            reports: ReportBlocks::new(body, 4, count, packet_type)?,
        }),
        pt::SDES => Ok(RtcpPacket::Sdes(SdesItems::new(body, count)?)),
        pt::BYE => Ok(RtcpPacket::Bye {
            ssrcs: SsrcList::new(body, 0, usize::from(count), packet_type)?,
        }),
        pt::RTPFB => match count {
            1 => Ok(RtcpPacket::Nack {
                sender_ssrc: u32_at(0)?,
                media_ssrc: u32_at(4)?,
                lost: NackSeqs::new(body.get(8..).unwrap_or(&[])),
            }),
            15 => Ok(RtcpPacket::TransportCc(TwccFeedback::parse(body)?)),
            fmt => Ok(RtcpPacket::Other { packet_type, fmt }),
        },
        pt::PSFB => match count {
            1 => Ok(RtcpPacket::Pli {
                sender_ssrc: u32_at(0)?,
                media_ssrc: u32_at(4)?,
            }),
            4 => {
                let sender_ssrc = u32_at(0)?;
                // Media SSRC (unused for FIR) at 4; the entries follow.
                u32_at(4)?;
                Ok(RtcpPacket::Fir {
                    sender_ssrc,
                    entries: FirEntries::new(body.get(8..).unwrap_or(&[])),
                })
            }
            15 if body.get(8..12) == Some(b"REMB") => parse_remb(body),
            fmt => Ok(RtcpPacket::Other { packet_type, fmt }),
        },
        _ => Ok(RtcpPacket::Other {
            packet_type,
            fmt: count,
        }),
    }
}

fn parse_remb(body: &[u8]) -> Result<RtcpPacket<'_>, RtcpError> {
    let truncated = RtcpError::Truncated {
        packet_type: pt::PSFB,
    };
    let sender_ssrc = wire::u32_at(body, 0).ok_or(truncated)?;
    let [num_ssrc, e0, m1, m2] = wire::array::<4>(body, 12).ok_or(truncated)?;
    let exp = u32::from(e0 >> 2);
    let mantissa = u64::from(e0 & 0x03) << 16 | u64::from(m1) << 8 | u64::from(m2);
    // 18 bits of mantissa shifted by up to 63: compute wide, saturate.
    let bitrate_bps = u64::try_from(u128::from(mantissa) << exp).unwrap_or(u64::MAX);
    let ssrcs = SsrcList::new(body, 16, usize::from(num_ssrc), pt::PSFB)?;
    Ok(RtcpPacket::Remb {
        sender_ssrc,
        bitrate_bps,
        ssrcs,
    })
}
