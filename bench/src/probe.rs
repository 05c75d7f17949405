//! The probe payload the floor's load generator sends: a magic, a send timestamp and a
//! sequence number at the front, filler after. Sinks read it back to measure latency and loss.
//! Plain bytes, no clock: the caller passes the time.

use std::time::{Duration, Instant};

/// Marks a probe, so a stray datagram is counted as foreign rather than misread.
pub const MAGIC: [u8; 4] = *b"SCB1";
/// Bytes the probe fields take at the front of a payload.
pub const PROBE_LEN: usize = 20;

/// Fills `payload` (at least PROBE_LEN bytes) with a probe sent `sent` after `epoch`.
pub fn write_probe(payload: &mut [u8], sent: Duration, seq: u64) {
    payload[..4].copy_from_slice(&MAGIC);
    payload[4..12].copy_from_slice(&(sent.as_nanos() as u64).to_be_bytes());
    payload[12..20].copy_from_slice(&seq.to_be_bytes());
}

/// Reads (send time since epoch, sequence) from a payload, if it is a probe.
pub fn read_probe(payload: &[u8]) -> Option<(Duration, u64)> {
    if payload.len() < PROBE_LEN || payload[..4] != MAGIC {
        return None;
    }
    let nanos = u64::from_be_bytes(payload[4..12].try_into().ok()?);
    let seq = u64::from_be_bytes(payload[12..20].try_into().ok()?);
    Some((Duration::from_nanos(nanos), seq))
}

/// One-way latency of a probe read at `now`, when sender and reader share `epoch`.
pub fn latency(epoch: Instant, now: Instant, sent: Duration) -> Duration {
    now.saturating_duration_since(epoch).saturating_sub(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trip() {
        let mut buf = [0u8; 64];
        write_probe(&mut buf, Duration::from_micros(1500), 77);
        assert_eq!(read_probe(&buf), Some((Duration::from_micros(1500), 77)));
        buf[0] = b'X';
        assert_eq!(read_probe(&buf), None);
        assert_eq!(read_probe(&buf[..10]), None);
    }

    #[test]
    fn latency_never_negative() {
        let epoch = Instant::now();
        let now = epoch + Duration::from_millis(5);
        assert_eq!(
            latency(epoch, now, Duration::from_millis(3)),
            Duration::from_millis(2)
        );
        assert_eq!(
            latency(epoch, now, Duration::from_millis(9)),
            Duration::ZERO
        );
    }
}
