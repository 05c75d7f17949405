//! NTP time (RFC 3550 §4: 64-bit fixed point, seconds since 1900 in the high 32 bits) from
//! `Instant`s, and the round-trip time a report block's LSR/DLSR give (RFC 3550 §6.4.1).
//!
//! Sans-IO: the caller reads the clocks once at start-up (an `Instant` and the `SystemTime`
//! at that instant) and every later conversion is arithmetic from that anchor, so the NTP
//! time in our SRs never jumps when the wall clock is stepped. Must never read a clock.

use std::time::{Duration, Instant};

/// Seconds from 1900-01-01 (the NTP epoch) to 1970-01-01 (the Unix epoch).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// An RTT above this is a lying or confused peer, not a path (RFC 3550 gives no bound).
const MAX_RTT: Duration = Duration::from_secs(10);

/// Maps `Instant`s to NTP time and back, from one anchor pair.
#[derive(Debug, Clone, Copy)]
pub struct NtpClock {
    anchor: Instant,
    anchor_ntp: u64,
}

impl NtpClock {
    /// `anchor_unix` is the wall-clock time at `anchor`, since the Unix epoch
    /// (`SystemTime::now().duration_since(UNIX_EPOCH)` taken right after `Instant::now()`).
    pub fn new(anchor: Instant, anchor_unix: Duration) -> Self {
        let since_1900 = anchor_unix.saturating_add(Duration::from_secs(NTP_UNIX_OFFSET_SECS));
        NtpClock {
            anchor,
            anchor_ntp: to_fixed(since_1900),
        }
    }

    /// NTP time at `at` (before or after the anchor). NTP seconds wrap in 2036 (era 1); so
    /// does this, as the 64-bit field on the wire does.
    pub fn ntp(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.anchor) {
            Some(after) => self.anchor_ntp.wrapping_add(to_fixed(after)),
            None => self.anchor_ntp.wrapping_sub(to_fixed(self.anchor - at)),
        }
    }

    /// The `Instant` of an NTP time, taking the era nearest the anchor (so times within 68
    /// years of it map right across the 2036 wrap). `instant_of(ntp(t)) == t` exactly: NTP
    /// resolution (0.23 ns) is finer than an `Instant`'s. `None` if the platform's `Instant`
    /// cannot represent it.
    pub fn instant_of(&self, ntp: u64) -> Option<Instant> {
        let delta = ntp.wrapping_sub(self.anchor_ntp) as i64;
        let magnitude = from_fixed_ceil(delta.unsigned_abs());
        if delta >= 0 {
            self.anchor.checked_add(magnitude)
        } else {
            self.anchor.checked_sub(magnitude)
        }
    }
}

/// The middle 32 bits of an NTP time (16.16 fixed point): what LSR carries.
pub fn middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// RTT from a report block's LSR and DLSR (both 16.16 seconds) at its arrival time
/// `now_ntp` (RFC 3550 §6.4.1: A - LSR - DLSR). `None` when LSR is 0 (no SR seen), when the
/// result is negative (LSR from the future, or DLSR longer than the time since our SR), or
/// above 10 s. The 16.16 arithmetic wraps every 18 h; so does this, as RFC 3550 intends.
pub fn rtt(now_ntp: u64, last_sr: u32, delay_since_last_sr: u32) -> Option<Duration> {
    if last_sr == 0 {
        return None;
    }
    let since_sr = middle32(now_ntp).wrapping_sub(last_sr);
    if since_sr > u32::MAX / 2 {
        return None; // LSR is ahead of now: not one of our SRs, or a clock that went back.
    }
    let units = since_sr.checked_sub(delay_since_last_sr)?;
    let rtt = Duration::from_secs(u64::from(units >> 16))
        + Duration::from_nanos((u64::from(units & 0xffff) * 1_000_000_000) >> 16);
    (rtt <= MAX_RTT).then_some(rtt)
}

/// A duration as 32.32 fixed point, rounded down (wrapping past 2^32 s, as NTP does).
fn to_fixed(d: Duration) -> u64 {
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (d.as_secs() << 32).wrapping_add(frac)
}

/// 32.32 fixed point as a duration, rounded up: the exact inverse of [`to_fixed`] on every
/// value it produced (floor there and ceiling here land back on the same nanosecond).
fn from_fixed_ceil(f: u64) -> Duration {
    let nanos = ((f & 0xffff_ffff) * 1_000_000_000).div_ceil(1 << 32);
    // nanos may round up to a whole second; Duration::new carries it (secs < 2^32, no overflow).
    Duration::new(f >> 32, nanos as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3550 Fig. 2: the SR was sent at NTP 0xb44db705:20000000, "10 Nov 1995 11:33:25.125
    /// UTC", which is Unix time 816003205.125.
    const FIG2_SR_NTP: u64 = 0xb44d_b705_2000_0000;
    const FIG2_SR_UNIX: Duration = Duration::from_millis(816_003_205_125);

    #[test]
    fn maps_rfc3550_figure_2_wall_clock_to_its_ntp_time() {
        let t0 = Instant::now();
        let clock = NtpClock::new(t0, FIG2_SR_UNIX);
        assert_eq!(clock.ntp(t0), FIG2_SR_NTP);
        assert_eq!(middle32(clock.ntp(t0)), 0xb705_2000, "the LSR of Fig. 2");
        // The RR arrives 11.375 s later at A = 0xb710:8000.
        let a = t0 + Duration::from_millis(11_375);
        assert_eq!(middle32(clock.ntp(a)), 0xb710_8000);
    }

    #[test]
    fn rtt_of_rfc3550_figure_2_is_6_125_s() {
        let now = 0xb44d_b710_8000_0000; // A = 0xb710:8000
        assert_eq!(
            rtt(now, 0xb705_2000, 0x0005_4000),
            Some(Duration::from_millis(6125))
        );
    }

    #[test]
    fn rtt_refuses_what_is_not_a_round_trip() {
        let now = 0xb44d_b710_8000_0000;
        assert_eq!(rtt(now, 0, 0x0005_4000), None, "LSR 0: no SR seen");
        assert_eq!(
            rtt(now, 0xb705_2000, 0x000b_6001),
            None,
            "DLSR longer than the time since"
        );
        assert_eq!(rtt(now, 0xb711_0000, 0), None, "LSR from the future");
        assert_eq!(rtt(now, 0xb705_2000, 0), None, "11.375 s is no RTT");
        assert_eq!(rtt(now, 0xb710_8000, 0), Some(Duration::ZERO));
        assert_eq!(rtt(now, 0xb710_8000, u32::MAX), None);
        // Across the 16.16 wrap (every 18.2 h): LSR just before it, A just after.
        assert_eq!(
            rtt(0x0000_0001_0000_0000, 0xffff_8000, 0x0001_4000),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn instants_round_trip_exactly_through_ntp() {
        let t0 = Instant::now();
        let clock = NtpClock::new(t0, Duration::new(1_700_000_000, 123_456_789));
        for offset_ns in [
            0u64,
            1,
            2,
            3,
            999_999_999,
            1_000_000_000,
            86_400_000_000_007,
        ] {
            let d = Duration::from_nanos(offset_ns);
            let later = t0 + d;
            assert_eq!(
                clock.instant_of(clock.ntp(later)),
                Some(later),
                "+{offset_ns} ns"
            );
            if let Some(earlier) = t0.checked_sub(d) {
                assert_eq!(
                    clock.instant_of(clock.ntp(earlier)),
                    Some(earlier),
                    "-{offset_ns} ns"
                );
            }
        }
        // And one second of NTP is exactly 2^32.
        let one_s = clock
            .ntp(t0 + Duration::from_secs(1))
            .wrapping_sub(clock.ntp(t0));
        assert_eq!(one_s, 1 << 32);
    }

    #[test]
    fn crosses_the_2036_ntp_wrap() {
        // Era 0 ends at Unix 2085978496 (2036-02-07 06:28:16 UTC); anchor a second before.
        let t0 = Instant::now();
        let clock = NtpClock::new(t0, Duration::from_secs(2_085_978_495));
        assert_eq!(clock.ntp(t0), 0xffff_ffff_0000_0000);
        let after = t0 + Duration::from_millis(1500);
        assert_eq!(
            clock.ntp(after),
            0x0000_0000_8000_0000,
            "era 1, half a second in"
        );
        assert_eq!(clock.instant_of(0x0000_0000_8000_0000), Some(after));
    }

    #[test]
    fn middle32_takes_the_middle() {
        assert_eq!(middle32(0x1122_3344_5566_7788), 0x3344_5566);
        assert_eq!(middle32(u64::MAX), u32::MAX);
    }
}
