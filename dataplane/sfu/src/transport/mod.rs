//! One peer's own RTP session: everything on its transport after DTLS has produced the SRTP
//! keys. str0m keeps ICE, the DTLS handshake, SDP and data channels; it never sees SRTP or
//! SRTCP, and whatever SRTP/SRTCP it would send itself is dropped unsent
//! (`core/drain.rs`), so the SRTCP index space and every sender SSRC on the wire are ours.
//!
//! Owns: the SRTP session, what the peer sends us (incoming streams by SSRC with their
//! reception statistics and NACK state, the transport-cc arrival record), what we send it
//! (the transport-wide sequence counter and the send-side estimate), and its RTCP schedule.
//! The per-subscription egress state (SSRC, sent-packet ring) lives in `track::Subscription`;
//! the per-track packet history in `track::PublishedTrack`.
//! Must never route packets between peers (the core does) or read the clock.

pub(crate) mod sent;

use std::time::{Duration, Instant};

use shardcast_rtp::bwe::{BweConfig, ProbeCluster, ProbeClusterId, SendSideBwe};
use shardcast_rtp::recv::{NackGenerator, ReceiveStats};
use shardcast_rtp::rtcp::twcc::TwccRecorder;
use shardcast_rtp::rtp::ExtIds;
use shardcast_rtp::srtp::SrtpSession;

use crate::api::LayerIndex;
use crate::ids::TrackId;
use crate::Map;

/// How often a peer gets its receiver/sender reports.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How often transport-cc feedback goes to a publisher while its packets arrive (libwebrtc
/// sends every 50-250 ms depending on the rate; a publisher's uplink estimate reacts no
/// faster than its feedback).
pub(crate) const TWCC_FEEDBACK_INTERVAL: Duration = Duration::from_millis(50);
/// Incoming streams tracked per peer (main and RTX SSRCs; simulcast 3 + RTX 3 + audio = 7).
pub(crate) const MAX_RX_STREAMS: usize = 32;

/// Largest padding one RTP packet carries (the padding count is one byte).
pub(crate) const MAX_PADDING: usize = 255;
/// Most padding packets in one probe: 40 ms at 20 Mbit/s of 255-byte padding. With at most
/// 64 (until 2026-12-06) a probe could add only 3.3 Mbit/s to the media, so no probe measured
/// more than ≈ 5.5 Mbit/s and a subscriber wanting more (seven videos in a conference) climbed
/// the rest by AIMD alone: ≈ 20 s to the top layers in the conference-8 bench.
const MAX_PROBE_PACKETS: usize = 400;
/// Steps a probe's packets are spread over: one wake-up per millisecond of a 40 ms probe at
/// most, a few packets each, rather than one wake-up per packet.
const MAX_PROBE_STEPS: usize = 40;

/// A probe being sent: padding packets spread evenly over the probe's duration (there is
/// no pacer; a burst would measure the sender's socket, not the path), `per_step` packets at
/// each of `left` steps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActiveProbe {
    pub id: ProbeClusterId,
    pub left: usize,
    pub per_step: usize,
    pub bytes_each: usize,
    pub every: Duration,
    pub next_at: Instant,
    /// At least one step of it was sent.
    pub started: bool,
}

impl ActiveProbe {
    pub fn new(cluster: &ProbeCluster, now: Instant) -> Self {
        let packets = cluster.bytes.div_ceil(MAX_PADDING).clamp(
            cluster.packets.clamp(1, MAX_PROBE_PACKETS),
            MAX_PROBE_PACKETS,
        );
        let steps = packets.min(MAX_PROBE_STEPS);
        ActiveProbe {
            id: cluster.id,
            left: steps,
            per_step: packets.div_ceil(steps),
            bytes_each: (cluster.bytes / packets).clamp(1, MAX_PADDING),
            every: cluster.duration / steps as u32,
            next_at: now,
            started: false,
        }
    }
}

/// What one incoming SSRC carries.
pub(crate) struct RxStream {
    pub track: TrackId,
    pub layer: LayerIndex,
    pub kind: RxKind,
}

pub(crate) enum RxKind {
    /// The media itself.
    Main(Box<MainRx>),
    /// RFC 4588 retransmissions of the stream with SSRC `main`.
    Rtx { main: u32 },
}

/// Receive state of one incoming media stream.
pub(crate) struct MainRx {
    pub stats: ReceiveStats,
    /// Video only: browsers do not NACK or retransmit Opus.
    pub nack: Option<NackGenerator>,
    /// AV1 with a dependency descriptor: the stream's last template structure (made on the
    /// first such packet).
    pub av1: Option<Box<crate::forward::av1::Av1Stream>>,
}

pub(crate) struct Transport {
    pub srtp: SrtpSession,
    /// Our sender SSRC for the RTCP that is not about a stream we send (RR, NACK, PLI,
    /// transport-cc feedback): distinct from every SSRC we send media on.
    pub rtcp_ssrc: u32,
    /// Header extension ids the peer uses on what it sends us (one set per bundle:
    /// RFC 8843 keeps an id's meaning the same across bundled m-lines).
    pub ext_in: ExtIds,
    /// Incoming streams by SSRC, learned on first packet.
    pub rx: Map<u32, RxStream>,
    pub twcc_in: TwccRecorder,
    /// Next transport-wide sequence number for what we send.
    pub twcc_out: u64,
    /// The downlink estimate (None with congestion control off).
    pub bwe: Option<SendSideBwe>,
    /// The peer negotiated the transport-wide sequence number on something we send it, so
    /// it sends transport-cc feedback: the estimate is ours (delay-based, probed), not only
    /// its REMB or its losses.
    pub transport_cc: bool,
    /// The probe being sent, if any.
    pub probe: Option<ActiveProbe>,
    /// Round-trip time from the peer's report blocks (LSR/DLSR).
    pub rtt: Option<Duration>,
    pub next_report: Instant,
    /// When the next transport-cc feedback is due, while arrivals wait to be reported.
    pub next_twcc_feedback: Option<Instant>,
    /// Our NTP clock minus the publisher's (NTP units), smoothed over its sender reports:
    /// maps the publisher's capture clock onto ours once, for all of its streams, so the
    /// sender reports we write keep its audio and video in sync.
    pub clock_offset: Option<i128>,
}

impl Transport {
    pub fn new(srtp: SrtpSession, rtcp_ssrc: u32, bwe: Option<BweConfig>, now: Instant) -> Self {
        Transport {
            srtp,
            rtcp_ssrc,
            ext_in: ExtIds::default(),
            rx: Map::default(),
            twcc_in: TwccRecorder::new(),
            twcc_out: 0,
            bwe: bwe.map(SendSideBwe::new),
            transport_cc: false,
            probe: None,
            rtt: None,
            next_report: now + REPORT_INTERVAL,
            next_twcc_feedback: None,
            clock_offset: None,
        }
    }

    /// The earliest instant this transport has work of its own (reports, feedback, NACKs,
    /// the estimator's timers).
    pub fn deadline(&self) -> Instant {
        let mut at = self.next_report;
        if let Some(t) = self.next_twcc_feedback {
            at = at.min(t);
        }
        for s in self.rx.values() {
            if let RxKind::Main(m) = &s.kind {
                if let Some(t) = m.nack.as_ref().and_then(|n| n.next_due()) {
                    at = at.min(t);
                }
            }
        }
        if let Some(t) = self.bwe.as_ref().and_then(|b| b.poll_timeout()) {
            at = at.min(t);
        }
        if let Some(p) = &self.probe {
            at = at.min(p.next_at);
        }
        at
    }

    /// The next transport-wide sequence number.
    pub fn next_twcc(&mut self) -> u64 {
        let s = self.twcc_out;
        self.twcc_out += 1;
        s
    }

    /// A publisher's sender report arrived at `our_ntp` saying `their_ntp`: fold the offset
    /// between the two clocks into the smoothed one (1/16 per report, after the first).
    pub fn update_clock_offset(&mut self, our_ntp: u64, their_ntp: u64) {
        let sample = i128::from(our_ntp) - i128::from(their_ntp);
        self.clock_offset = Some(match self.clock_offset {
            None => sample,
            Some(o) => o + (sample - o) / 16,
        });
    }
}

/// The 64-bit extended sequence number nearest to `highest` whose low 16 bits are `seq`.
pub(crate) fn extend_near(highest: u64, seq: u16) -> u64 {
    let base = highest & !0xffff;
    let cand = base | u64::from(seq);
    [cand, cand.wrapping_add(1 << 16), cand.wrapping_sub(1 << 16)]
        .into_iter()
        .filter(|c| *c < (1u64 << 48))
        .min_by_key(|c| c.abs_diff(highest))
        .unwrap_or(cand)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_near_picks_the_closest_cycle() {
        assert_eq!(extend_near(0x1_0005, 0x0003), 0x1_0003);
        assert_eq!(
            extend_near(0x1_fffe, 0x0002),
            0x2_0002,
            "forward over the wrap"
        );
        assert_eq!(
            extend_near(0x2_0002, 0xfffe),
            0x1_fffe,
            "back over the wrap"
        );
        assert_eq!(extend_near(5, 0xfffe), 0xfffe, "never below zero");
    }
}
