//! RTX (RFC 4588 §4): a retransmission's payload starts with the 2-byte original sequence
//! number (OSN), then the original payload. Must never: allocate, or guess an OSN for an
//! RTX packet too short to carry one (RTX padding probes have none).

use super::wire;
use super::RtpError;

/// The original sequence number and the original payload of an RTX payload.
pub fn read_rtx_original_seq(rtx_payload: &[u8]) -> Result<(u16, &[u8]), RtpError> {
    let osn = wire::u16_at(rtx_payload, 0).ok_or(RtpError::NoRtxOriginalSeq)?;
    Ok((osn, rtx_payload.get(2..).unwrap_or(&[])))
}

/// Writes the original sequence number at the start of `payload_out` (where the RTX
/// payload begins, right after the header); the original payload goes after it. Returns 2.
pub fn write_rtx_original_seq(
    payload_out: &mut [u8],
    original_seq: u16,
) -> Result<usize, RtpError> {
    let have = payload_out.len();
    wire::put(payload_out, 0, &original_seq.to_be_bytes())
        .ok_or(RtpError::BufferTooSmall { need: 2, have })?;
    Ok(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn osn_is_big_endian_before_the_original_payload() {
        let mut buf = [0u8; 5];
        assert_eq!(write_rtx_original_seq(&mut buf, 0xABCD), Ok(2));
        buf[2..].copy_from_slice(&[7, 8, 9]);
        assert_eq!(buf[..2], [0xAB, 0xCD]);
        assert_eq!(read_rtx_original_seq(&buf), Ok((0xABCD, &[7u8, 8, 9][..])));
        assert_eq!(read_rtx_original_seq(&buf[..2]), Ok((0xABCD, &[][..])));
    }

    #[test]
    fn too_short_for_an_osn() {
        assert_eq!(read_rtx_original_seq(&[1]), Err(RtpError::NoRtxOriginalSeq));
        assert_eq!(read_rtx_original_seq(&[]), Err(RtpError::NoRtxOriginalSeq));
        assert_eq!(
            write_rtx_original_seq(&mut [0u8; 1], 5),
            Err(RtpError::BufferTooSmall { need: 2, have: 1 })
        );
    }
}
