//! Reception statistics of one incoming stream (one SSRC), for the report blocks of the
//! RRs/SRs we send its sender: loss (RFC 3550 A.3), interarrival jitter (A.8), the
//! extended highest sequence number, and LSR/DLSR from the sender's last SR (§6.4.1).
//!
//! Owns only counters and a fixed bitmap of recent arrivals; must never allocate per packet
//! or let a sender's numbering grow it. Where this departs from A.1 it says so below.
//!
//! - No probation. A.1 only believes a new source after two packets in sequence, to keep
//!   stray or misdirected packets out; here every packet has passed SRTP authentication
//!   under this transport's keys and its SSRC was signalled, so the first packet starts the
//!   stream. A packet older than the first, arriving within the window, moves the base back
//!   (a start reordered on the wire costs no phantom loss).
//! - Extended numbers come from the SRTP layer's rollover guess, so A.1's `cycles`
//!   bookkeeping is not repeated. A.1's restart rule stays: a jump ahead by more than
//!   MAX_DROPOUT (3000), or back beyond the duplicate window (1024 rather than A.1's
//!   MAX_MISORDER of 100, since SRTP has vouched for it), is ignored unless the next packet
//!   follows it in sequence; then the counts restart there, as A.1's `init_seq` does.
//! - Duplicates are not counted as received (A.3 counts them, letting cumulative loss go
//!   negative); retransmissions are not counted at all: the sender should see the loss its
//!   path had, not what NACK repaired.
//! - Jitter is sampled only on packets that advance the highest sequence number and whose
//!   RTP timestamp differs from the previous sample's (the first packet of each frame, as
//!   libwebrtc and str0m do), and a transit jump above 5 s of media time is taken for a
//!   timestamp discontinuity rather than jitter.

use std::time::{Duration, Instant};

use super::ntp::middle32;
use super::window::SeqWindow;
use super::MAX_DROPOUT;
use crate::report::ReportBlock;

/// The sender's clock as its last SR stated it, and when that SR arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderClock {
    /// The SR's NTP timestamp (the sender's wall clock).
    pub ntp: u64,
    /// The RTP timestamp that corresponds to `ntp`.
    pub rtp_ts: u32,
    /// When the SR arrived here.
    pub arrival: Instant,
}

/// One incoming stream (one SSRC) as RFC 3550 A.1/A.3/A.8 track it.
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    ssrc: u32,
    clock_rate: u32,
    seq: Option<SeqState>,
    /// A.1's `bad_seq`: the number that would confirm a restart.
    restart_at: Option<u64>,
    jitter: Jitter,
    sender: Option<SenderClock>,
}

#[derive(Debug, Clone)]
struct SeqState {
    base: u64,
    highest: u64,
    received: u64,
    window: SeqWindow,
    expected_prior: u64,
    received_prior: u64,
}

impl SeqState {
    fn new(first: u64) -> Self {
        SeqState {
            base: first,
            highest: first,
            received: 1,
            window: SeqWindow::new(first),
            expected_prior: 0,
            received_prior: 0,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Jitter {
    /// Arrival times are measured in RTP units from here (the first packet's arrival).
    origin: Option<Instant>,
    /// Transit time (arrival minus RTP timestamp, in RTP units) of the last sample.
    last_transit: Option<u32>,
    last_ts: u32,
    /// Jitter × 16, as A.8's integer version keeps it.
    q4: u64,
}

impl ReceiveStats {
    /// Statistics for `ssrc`, whose RTP clock runs at `clock_rate` Hz (jitter is in its units).
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        ReceiveStats {
            ssrc,
            clock_rate,
            seq: None,
            restart_at: None,
            jitter: Jitter::default(),
            sender: None,
        }
    }

    /// A packet arrived (after SRTP): its extended seq (`roc << 16 | seq`, from the SRTP
    /// layer), its RTP timestamp and arrival time. Duplicates are ignored; retransmissions
    /// (`retransmit`: it came as RTX, or is otherwise a repair) are not counted at all.
    pub fn on_packet(&mut self, ext_seq: u64, rtp_ts: u32, arrival: Instant, retransmit: bool) {
        if retransmit {
            return;
        }
        let Some(s) = &mut self.seq else {
            self.seq = Some(SeqState::new(ext_seq));
            self.jitter.sample(self.clock_rate, rtp_ts, arrival);
            return;
        };
        if ext_seq > s.highest {
            if ext_seq - s.highest > MAX_DROPOUT {
                self.maybe_restart(ext_seq, rtp_ts, arrival);
                return;
            }
            s.window.set(ext_seq);
            s.highest = ext_seq;
            s.received += 1;
            self.jitter.sample(self.clock_rate, rtp_ts, arrival);
            return;
        }
        match s.window.contains(ext_seq) {
            Some(true) => {} // a duplicate
            Some(false) => {
                s.window.set(ext_seq);
                s.received += 1;
                s.base = s.base.min(ext_seq);
            }
            None => self.maybe_restart(ext_seq, rtp_ts, arrival),
        }
    }

    /// A.1: a packet far from the stream only counts if the next one follows it; then the
    /// stream restarts at that next one.
    fn maybe_restart(&mut self, ext_seq: u64, rtp_ts: u32, arrival: Instant) {
        if self.restart_at == Some(ext_seq) {
            tracing::debug!(
                ssrc = self.ssrc,
                ext_seq,
                "rtp: sequence restarted, statistics reset"
            );
            self.seq = Some(SeqState::new(ext_seq));
            self.restart_at = None;
            self.jitter.last_transit = None;
            self.jitter.sample(self.clock_rate, rtp_ts, arrival);
        } else {
            self.restart_at = Some(ext_seq.wrapping_add(1));
        }
    }

    /// The sender's SR: remember NTP↔RTP and when it arrived (for LSR/DLSR, and for mapping
    /// the sender's clock onto the SRs we send for this stream).
    pub fn on_sender_report(&mut self, ntp: u64, rtp_ts: u32, arrival: Instant) {
        self.sender = Some(SenderClock {
            ntp,
            rtp_ts,
            arrival,
        });
    }

    /// The sender's last SR, if any.
    pub fn last_sender_report(&self) -> Option<SenderClock> {
        self.sender
    }

    /// A report block for an RR/SR we send at `now`: fraction lost is over the packets
    /// expected since the previous call. Before any packet only the SSRC and LSR/DLSR are set
    /// (RFC 3550 §6.4 says to report only on sources heard since the last report: check
    /// [`Self::packets_received`]).
    pub fn report_block(&mut self, now: Instant) -> ReportBlock {
        let mut block = ReportBlock {
            ssrc: self.ssrc,
            ..ReportBlock::default()
        };
        if let Some(sr) = self.sender {
            block.last_sr = middle32(sr.ntp);
            block.delay_since_last_sr = to_16_16(now.saturating_duration_since(sr.arrival));
        }
        let Some(s) = &mut self.seq else {
            return block;
        };
        // u128: a hostile numbering can make `expected` anything up to 2^64.
        let expected = u128::from(s.highest - s.base) + 1;
        let received = u128::from(s.received);
        let lost = expected as i128 - received as i128;
        // 24-bit signed on the wire: clamp, never wrap (RFC 3550 A.3).
        block.cumulative_lost = lost.clamp(-0x80_0000, 0x7f_ffff) as i32;

        let expected_interval = expected.saturating_sub(u128::from(s.expected_prior));
        let received_interval = received.saturating_sub(u128::from(s.received_prior));
        s.expected_prior = u64::try_from(expected).unwrap_or(u64::MAX);
        s.received_prior = s.received;
        let lost_interval = expected_interval as i128 - received_interval as i128;
        if expected_interval > 0 && lost_interval > 0 {
            let fraction = ((lost_interval as u128) << 8) / expected_interval;
            block.fraction_lost = fraction.min(255) as u8;
        }

        block.ext_highest_seq = s.highest as u32;
        block.jitter = u32::try_from(self.jitter.q4 >> 4).unwrap_or(u32::MAX);
        block
    }

    /// Packets counted as received (no duplicates, no retransmissions) since the stream
    /// started or last restarted.
    pub fn packets_received(&self) -> u64 {
        self.seq.as_ref().map_or(0, |s| s.received)
    }

    /// The highest extended sequence number received, once any has.
    pub fn highest_ext_seq(&self) -> Option<u64> {
        self.seq.as_ref().map(|s| s.highest)
    }
}

impl Jitter {
    /// One A.8 step for a packet that advanced the stream.
    fn sample(&mut self, clock_rate: u32, rtp_ts: u32, arrival: Instant) {
        let origin = *self.origin.get_or_insert(arrival);
        let arrival_ts = rtp_units(arrival.saturating_duration_since(origin), clock_rate);
        let transit = arrival_ts.wrapping_sub(rtp_ts);
        if let Some(prev) = self.last_transit {
            if rtp_ts == self.last_ts {
                return; // Same frame: keep the first packet's transit as the reference.
            }
            let d = u64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
            if d <= u64::from(clock_rate) * 5 {
                self.q4 = self.q4 + d - ((self.q4 + 8) >> 4);
            }
        }
        self.last_transit = Some(transit);
        self.last_ts = rtp_ts;
    }
}

/// A duration in RTP clock units, modulo 2^32 as RTP timestamps are.
fn rtp_units(d: Duration, clock_rate: u32) -> u32 {
    let rate = u64::from(clock_rate);
    let whole = d.as_secs().wrapping_mul(rate);
    let part = u64::from(d.subsec_nanos()) * rate / 1_000_000_000;
    whole.wrapping_add(part) as u32
}

/// A duration in 1/65536 s (DLSR's unit), saturating at the field's maximum.
fn to_16_16(d: Duration) -> u32 {
    let units =
        u128::from(d.as_secs()) * 65_536 + u128::from(d.subsec_nanos()) * 65_536 / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}
