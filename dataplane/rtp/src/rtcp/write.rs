//! Writing RTCP packets into a caller's buffer, one function per type. Each returns the
//! packet's length, or `Err` when `out` is too small or the input cannot be encoded (more
//! items than the format holds); a failed write may have scribbled in `out` but never
//! past the length it needed. Compound assembly is the caller's: write packets back to
//! back, SR or RR first (RFC 3550 §6.1).
//!
//! Must never: allocate, or write a packet a conforming parser would reject.

use crate::report::ReportBlock;
use crate::rtp::wire;

use super::packet_type as pt;
use super::RtcpError;

/// At most 31 report blocks or sources fit the 5-bit count field.
const MAX_COUNT: usize = 31;

/// The sender part of a sender report (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderInfo {
    pub ssrc: u32,
    /// 64-bit NTP timestamp of this report.
    pub ntp: u64,
    /// The RTP timestamp corresponding to `ntp`.
    pub rtp_ts: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// A packet's bytes in `out` (bounds checked once), with the common header written.
fn start(
    out: &mut [u8],
    total: usize,
    count: u8,
    packet_type: u8,
) -> Result<Writer<'_>, RtcpError> {
    let have = out.len();
    let buf = out
        .get_mut(..total)
        .ok_or(RtcpError::BufferTooSmall { need: total, have })?;
    let mut w = Writer { buf, at: 0 };
    // The length field counts 32-bit words minus one; callers keep `total` a multiple of 4.
    let words = (total / 4 - 1) as u16;
    w.put(&[0x80 | count, packet_type])?;
    w.put(&words.to_be_bytes())?;
    Ok(w)
}

/// Sequential writes into a slice already sized for the packet.
struct Writer<'o> {
    buf: &'o mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), RtcpError> {
        let have = self.buf.len();
        wire::put(self.buf, self.at, bytes).ok_or(RtcpError::BufferTooSmall {
            need: self.at + bytes.len(),
            have,
        })?;
        self.at += bytes.len();
        Ok(())
    }

    fn u32(&mut self, v: u32) -> Result<(), RtcpError> {
        self.put(&v.to_be_bytes())
    }

    fn report_block(&mut self, r: &ReportBlock) -> Result<(), RtcpError> {
        // Cumulative loss is a 24-bit signed field: clamp, do not wrap.
        let lost = r.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
        self.u32(r.ssrc)?;
        self.u32(u32::from(r.fraction_lost) << 24 | lost)?;
        self.u32(r.ext_highest_seq)?;
        self.u32(r.jitter)?;
        self.u32(r.last_sr)?;
        self.u32(r.delay_since_last_sr)
    }

    fn done(self) -> usize {
        self.at
    }
}

fn check_count(count: usize, max: usize) -> Result<u8, RtcpError> {
    if count > max {
        return Err(RtcpError::TooMany { count, max });
    }
    Ok(count as u8)
}

/// Sender report with up to 31 report blocks.
pub fn write_sr(
    out: &mut [u8],
    info: &SenderInfo,
    reports: &[ReportBlock],
) -> Result<usize, RtcpError> {
    let count = check_count(reports.len(), MAX_COUNT)?;
    let mut w = start(out, 28 + 24 * reports.len(), count, pt::SR)?;
    w.u32(info.ssrc)?;
    w.put(&info.ntp.to_be_bytes())?;
    w.u32(info.rtp_ts)?;
    w.u32(info.packet_count)?;
    w.u32(info.octet_count)?;
    for r in reports {
        w.report_block(r)?;
    }
    Ok(w.done())
}

/// Receiver report with up to 31 report blocks (0 is valid: the usual first packet of a
/// compound from a receiver that has nothing to report yet).
pub fn write_rr(out: &mut [u8], ssrc: u32, reports: &[ReportBlock]) -> Result<usize, RtcpError> {
    let count = check_count(reports.len(), MAX_COUNT)?;
    let mut w = start(out, 8 + 24 * reports.len(), count, pt::RR)?;
    w.u32(ssrc)?;
    for r in reports {
        w.report_block(r)?;
    }
    Ok(w.done())
}

/// SDES with one chunk holding one CNAME item (1..=255 bytes).
pub fn write_sdes_cname(out: &mut [u8], ssrc: u32, cname: &[u8]) -> Result<usize, RtcpError> {
    if cname.is_empty() || cname.len() > 255 {
        return Err(RtcpError::BadSdesValue { len: cname.len() });
    }
    // SSRC, CNAME item (type, length, value), at least one null octet, pad to 32 bits.
    let chunk = (4 + 2 + cname.len() + 1).next_multiple_of(4);
    let mut w = start(out, 4 + chunk, 1, pt::SDES)?;
    w.u32(ssrc)?;
    w.put(&[1, cname.len() as u8])?;
    w.put(cname)?;
    let nulls = [0u8; 4];
    let pad = 4 + chunk - w.at;
    w.put(nulls.get(..pad).unwrap_or(&nulls))?;
    Ok(w.done())
}

/// BYE for up to 31 sources (no reason text).
pub fn write_bye(out: &mut [u8], ssrcs: &[u32]) -> Result<usize, RtcpError> {
    let count = check_count(ssrcs.len(), MAX_COUNT)?;
    let mut w = start(out, 4 + 4 * ssrcs.len(), count, pt::BYE)?;
    for &s in ssrcs {
        w.u32(s)?;
    }
    Ok(w.done())
}

/// Generic NACK (RFC 4585 §6.2.1) for `lost`, sorted oldest first (wrapping): each seq
/// within 16 after the current entry's PID goes into its BLP, any other starts a new FCI
/// entry. An unsorted list is still reported completely, only in more entries; duplicates
/// of a PID are dropped.
pub fn write_nack(
    out: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    lost: &[u16],
) -> Result<usize, RtcpError> {
    let entries = nack_entries(lost);
    let count = entries.clone().count();
    if count == 0 {
        return Err(RtcpError::EmptyNack);
    }
    let mut w = start(out, 12 + 4 * count, 1, pt::RTPFB)?;
    w.u32(sender_ssrc)?;
    w.u32(media_ssrc)?;
    for (pid, blp) in entries {
        w.put(&pid.to_be_bytes())?;
        w.put(&blp.to_be_bytes())?;
    }
    Ok(w.done())
}

/// The (PID, BLP) pairs for `lost`, without allocating (the caller walks it twice).
fn nack_entries(lost: &[u16]) -> impl Iterator<Item = (u16, u16)> + Clone + '_ {
    let mut i = 0;
    core::iter::from_fn(move || {
        let pid = *lost.get(i)?;
        let mut blp = 0u16;
        i += 1;
        while let Some(&seq) = lost.get(i) {
            let d = seq.wrapping_sub(pid);
            if d > 16 {
                break;
            }
            if d > 0 {
                blp |= 1 << (d - 1);
            }
            i += 1;
        }
        Some((pid, blp))
    })
}

/// Picture loss indication (RFC 4585 §6.3.1).
pub fn write_pli(out: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Result<usize, RtcpError> {
    let mut w = start(out, 12, 1, pt::PSFB)?;
    w.u32(sender_ssrc)?;
    w.u32(media_ssrc)?;
    Ok(w.done())
}

/// Full intra request (RFC 5104 §4.3.1): one entry per (media SSRC, command sequence
/// number); the sender increments the number for every new request to one SSRC.
pub fn write_fir(
    out: &mut [u8],
    sender_ssrc: u32,
    entries: &[(u32, u8)],
) -> Result<usize, RtcpError> {
    let mut w = start(out, 12 + 8 * entries.len(), 4, pt::PSFB)?;
    w.u32(sender_ssrc)?;
    // The media source SSRC of the common feedback header is unused for FIR (RFC 5104).
    w.u32(0)?;
    for &(ssrc, seq) in entries {
        w.u32(ssrc)?;
        w.put(&[seq, 0, 0, 0])?;
    }
    Ok(w.done())
}

/// REMB (draft-alvestrand-rmcat-remb-03): `bitrate_bps` as an 18-bit mantissa and 6-bit
/// exponent (rounded down to what that holds), for up to 255 SSRCs.
pub fn write_remb(
    out: &mut [u8],
    sender_ssrc: u32,
    bitrate_bps: u64,
    ssrcs: &[u32],
) -> Result<usize, RtcpError> {
    let count = u8::try_from(ssrcs.len()).map_err(|_| RtcpError::TooMany {
        count: ssrcs.len(),
        max: 255,
    })?;
    let exp = (64 - bitrate_bps.leading_zeros()).saturating_sub(18);
    let mantissa = (bitrate_bps >> exp) as u32;
    let mut w = start(out, 20 + 4 * ssrcs.len(), 15, pt::PSFB)?;
    w.u32(sender_ssrc)?;
    w.u32(0)?;
    w.put(b"REMB")?;
    w.put(&[count, (exp as u8) << 2 | (mantissa >> 16) as u8])?;
    w.put(&(mantissa as u16).to_be_bytes())?;
    for &s in ssrcs {
        w.u32(s)?;
    }
    Ok(w.done())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(lost: &[u16]) -> Vec<(u16, u16)> {
        nack_entries(lost).collect()
    }

    #[test]
    fn nack_packing_of_pid_and_blp() {
        assert_eq!(entries(&[]), []);
        assert_eq!(entries(&[5]), [(5, 0)]);
        // 6 is bit 0, 21 is bit 15 (PID + 16), 22 needs a new entry.
        assert_eq!(entries(&[5, 6, 21, 22]), [(5, 0x8001), (22, 0)]);
        // Across the wrap.
        assert_eq!(entries(&[65_535, 0, 1]), [(65_535, 0b11)]);
        // Unsorted: still complete, in more entries; a repeated PID is dropped.
        assert_eq!(entries(&[10, 10, 3, 11]), [(10, 0), (3, 1 << 7)]);
        assert_eq!(entries(&[10, 3, 30]), [(10, 0), (3, 0), (30, 0)]);
    }

    #[test]
    fn remb_mantissa_and_exponent() {
        let mut buf = [0u8; 24];
        // 1 000 000 = 0xF4240 (20 bits): exponent 2, mantissa 250 000.
        assert_eq!(write_remb(&mut buf, 1, 1_000_000, &[9]), Ok(24));
        assert_eq!(buf[16..20], [1, 2 << 2 | 0x03, 0xD0, 0x90]);
        // Fits the mantissa: exponent 0.
        assert_eq!(write_remb(&mut buf, 1, 200_000, &[9]), Ok(24));
        assert_eq!(buf[17] >> 2, 0);
    }
}
