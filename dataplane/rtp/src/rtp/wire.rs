//! Big-endian reads and writes that cannot panic: every access goes through `get`/`get_mut`
//! and reports `None` when it would fall outside the slice. Shared by [`crate::rtp`] and
//! [`crate::rtcp`] so no parser in the crate indexes packet bytes directly.

/// `N` bytes at `at`, or `None` past the end.
#[inline]
pub(crate) fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

#[inline]
pub(crate) fn u8_at(b: &[u8], at: usize) -> Option<u8> {
    b.get(at).copied()
}

#[inline]
pub(crate) fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    array::<2>(b, at).map(u16::from_be_bytes)
}

/// A 24-bit unsigned big-endian value.
#[inline]
pub(crate) fn u24_at(b: &[u8], at: usize) -> Option<u32> {
    array::<3>(b, at).map(|[x, y, z]| u32::from_be_bytes([0, x, y, z]))
}

#[inline]
pub(crate) fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    array::<4>(b, at).map(u32::from_be_bytes)
}

#[inline]
pub(crate) fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    array::<8>(b, at).map(u64::from_be_bytes)
}

/// Copies `bytes` into `out` at `at`; `None` (and nothing written) if it does not fit.
#[inline]
pub(crate) fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> Option<()> {
    out.get_mut(at..at.checked_add(bytes.len())?)?
        .copy_from_slice(bytes);
    Some(())
}

/// Sign-extends a 24-bit two's complement value (RTCP cumulative loss, transport-cc
/// reference time).
#[inline]
pub(crate) fn sign_extend_24(v: u32) -> i32 {
    ((v << 8) as i32) >> 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end_instead_of_panicking() {
        let b = [1, 2, 3, 4, 5];
        assert_eq!(u16_at(&b, 3), Some(0x0405));
        assert_eq!(u16_at(&b, 4), None);
        assert_eq!(u32_at(&b, 2), None);
        assert_eq!(u24_at(&b, 2), Some(0x030405));
        assert_eq!(u64_at(&b, 0), None);
        assert_eq!(array::<2>(&b, usize::MAX), None);
        let mut out = [0u8; 4];
        assert_eq!(put(&mut out, 3, &[9, 9]), None);
        assert_eq!(out, [0; 4]);
        assert_eq!(put(&mut out, 2, &[9, 9]), Some(()));
        assert_eq!(out, [0, 0, 9, 9]);
    }

    #[test]
    fn sign_extension_of_24_bits() {
        assert_eq!(sign_extend_24(0x7F_FFFF), 8_388_607);
        assert_eq!(sign_extend_24(0x80_0000), -8_388_608);
        assert_eq!(sign_extend_24(0xFF_FFFF), -1);
        assert_eq!(sign_extend_24(5), 5);
    }
}
