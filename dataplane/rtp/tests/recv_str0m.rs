//! Cross-check against str0m's own receiver (an independent implementation of RFC 3550
//! A.3/A.8 and RFC 4585 NACK): two str0m peers connect in memory, the left one sends a
//! video stream through a simulated link that drops and delays chosen packets, and every
//! packet the right one receives is also fed to our `ReceiveStats` and `NackGenerator`.
//! Whenever str0m writes a receiver report, ours for the same instant must match it; the
//! packets NACKed by both must be exactly the ones the link dropped.
//!
//! What is not compared, and why: str0m counts repaired packets as received (we count wire
//! loss), so the sender keeps no RTX history and the link drops any retransmission;
//! str0m's jitter is an f32 in microseconds rounded to RTP units while ours is A.8's integer
//! form, so jitter may differ by one unit; str0m carries SR times through f64, so LSR may
//! differ by one unit of 1/65536 s.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, UNIX_EPOCH};

use shardcast_rtp::recv::ntp::NtpClock;
use shardcast_rtp::recv::{NackGenerator, ReceiveStats};
use str0m::format::Codec;
use str0m::media::MediaKind;
use str0m::net::{Protocol, Receive};
use str0m::rtp::rtcp::Rtcp;
use str0m::rtp::{RawPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};

const MEDIA: u32 = 42;
const RTX: u32 = 44;
const CLOCK_RATE: u32 = 90_000;
const FRAME: Duration = Duration::from_millis(20);
const LATENCY: Duration = Duration::from_millis(30);
const FIRST_SEQ: u64 = 65_000; // crosses the 16-bit wrap after 536 packets
const PACKETS: u64 = 900; // 18 s of media: about 17 receiver reports

/// The link's verdict on media packet number `n` (from 0): dropped, or its extra delay in
/// ms (0..=4, less than the packet spacing, so arrival order is kept).
fn link(n: u64) -> Option<u64> {
    let burst = (400..406).contains(&n);
    let scattered = n > 10 && (n * 2_654_435_761) % 100 < 4;
    if burst || scattered {
        None
    } else {
        Some((n * 7) % 5)
    }
}

/// The extended number of a media packet, from the 16-bit one (the test wrote them in
/// order from FIRST_SEQ, fewer than 65536: this stands in for the SRTP layer's ROC guess).
fn ext_of(seq: u16) -> u64 {
    FIRST_SEQ + u64::from(seq.wrapping_sub(FIRST_SEQ as u16))
}

/// SSRC, sequence number and timestamp of an RTP datagram (not RTCP, STUN or DTLS).
fn rtp_header(b: &[u8]) -> Option<(u32, u16, u32)> {
    let head = b.get(..12)?;
    let rtcp = (64..=95).contains(&(head[1] & 0x7f)); // RFC 5761: PT 192..=223 with marker
    if head[0] & 0xc0 != 0x80 || rtcp {
        return None;
    }
    let seq = u16::from_be_bytes([head[2], head[3]]);
    let ts = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let ssrc = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    Some((ssrc, seq, ts))
}

struct Peer {
    rtc: Rtc,
    timeout: Instant,
}

struct InFlight {
    at: Instant,
    to_right: bool,
    source: SocketAddr,
    destination: SocketAddr,
    bytes: Vec<u8>,
}

/// Two peers, the link between them, and ours beside the right one.
struct World {
    left: Peer,
    right: Peer,
    net: Vec<InFlight>,
    now: Instant,
    last_media_arrival: Instant,
    stats: ReceiveStats,
    nack: NackGenerator,
    reports_compared: usize,
    reports_with_lsr: usize,
    str0m_nacked: BTreeSet<u16>,
    our_nacked: BTreeSet<u16>,
    dropped: BTreeSet<u16>,
}

impl World {
    fn new() -> Self {
        let t0 = Instant::now();
        let build = || {
            Rtc::builder()
                .set_rtp_mode(true)
                .enable_raw_packets(true)
                .build(t0)
        };
        World {
            left: Peer {
                rtc: build(),
                timeout: t0,
            },
            right: Peer {
                rtc: build(),
                timeout: t0,
            },
            net: Vec::new(),
            now: t0,
            last_media_arrival: t0,
            stats: ReceiveStats::new(MEDIA, CLOCK_RATE),
            nack: NackGenerator::new(),
            reports_compared: 0,
            reports_with_lsr: 0,
            str0m_nacked: BTreeSet::new(),
            our_nacked: BTreeSet::new(),
            dropped: BTreeSet::new(),
        }
    }

    /// ICE, DTLS and SRTP keys through str0m's direct API, on addresses that exist only here.
    fn connect(&mut self) {
        let l_addr: SocketAddr = (Ipv4Addr::new(10, 0, 0, 1), 1000).into();
        let r_addr: SocketAddr = (Ipv4Addr::new(10, 0, 0, 2), 2000).into();
        let (l, r) = (&mut self.left.rtc, &mut self.right.rtc);
        let l_host = Candidate::host(l_addr, "udp").expect("candidate");
        let r_host = Candidate::host(r_addr, "udp").expect("candidate");
        l.add_local_candidate(l_host.clone());
        l.add_remote_candidate(r_host.clone());
        r.add_local_candidate(r_host);
        r.add_remote_candidate(l_host);
        let (l_finger, r_finger) = (
            l.direct_api().local_dtls_fingerprint().clone(),
            r.direct_api().local_dtls_fingerprint().clone(),
        );
        l.direct_api().set_remote_fingerprint(r_finger);
        r.direct_api().set_remote_fingerprint(l_finger);
        let (l_creds, r_creds) = (
            l.direct_api().local_ice_credentials(),
            r.direct_api().local_ice_credentials(),
        );
        l.direct_api().set_remote_ice_credentials(r_creds);
        r.direct_api().set_remote_ice_credentials(l_creds);
        l.direct_api().set_ice_controlling(true);
        r.direct_api().set_ice_controlling(false);
        l.direct_api().start_dtls(true).expect("dtls");
        r.direct_api().start_dtls(false).expect("dtls");
        let deadline = self.now + Duration::from_secs(10);
        while !(self.left.rtc.is_connected() && self.right.rtc.is_connected()) {
            assert!(self.now < deadline, "peers did not connect");
            self.step(None);
        }
    }

    /// Advance to the next event (`write_at`, a delivery, or a peer's timeout), handle it
    /// and drain both peers. Returns true if it was the write.
    fn step(&mut self, write_at: Option<Instant>) -> bool {
        let deliver_at = self.net.iter().map(|d| d.at).min();
        let t = [
            write_at,
            deliver_at,
            Some(self.left.timeout),
            Some(self.right.timeout),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("peers always have a timeout");
        self.now = self.now.max(t);
        let now = self.now;
        let wrote = write_at == Some(t);
        if wrote {
            self.left.timeout = now; // the caller writes; the left peer polls it out now
        } else if let Some(i) = self.net.iter().position(|d| d.at == t) {
            let d = self.net.swap_remove(i);
            let peer = if d.to_right {
                &mut self.right
            } else {
                &mut self.left
            };
            let contents = d.bytes.as_slice().try_into().expect("datagram");
            let receive = Receive {
                proto: Protocol::Udp,
                source: d.source,
                destination: d.destination,
                contents,
            };
            peer.rtc
                .handle_input(Input::Receive(now, receive))
                .expect("input");
            match rtp_header(&d.bytes) {
                Some((MEDIA, seq, rtp_ts)) if d.to_right => {
                    self.stats.on_packet(ext_of(seq), rtp_ts, now, false);
                    self.nack.on_packet(ext_of(seq), false, now);
                }
                _ => {}
            }
        } else {
            let peer = if self.left.timeout == t {
                &mut self.left
            } else {
                &mut self.right
            };
            peer.rtc.handle_input(Input::Timeout(now)).expect("timeout");
        }
        if !wrote {
            self.drain(true);
            self.drain(false);
        }
        let mut out = [0u16; 64];
        let n = self.nack.poll(now, Duration::from_millis(100), &mut out);
        self.our_nacked.extend(&out[..n]);
        wrote
    }

    /// Poll a peer to its timeout: its datagrams go onto the link; the right peer's receiver
    /// reports are compared with ours, its SRs and NACKs recorded.
    fn drain(&mut self, left: bool) {
        let now = self.now;
        loop {
            let peer = if left {
                &mut self.left
            } else {
                &mut self.right
            };
            match peer.rtc.poll_output().expect("poll") {
                Output::Timeout(t) => {
                    peer.timeout = t.max(now + Duration::from_micros(100));
                    return;
                }
                Output::Transmit(t) => {
                    let bytes = t.contents.to_vec();
                    let mut at = now + LATENCY;
                    match rtp_header(&bytes) {
                        Some((RTX, _, _)) => continue, // no repairs: see the top of the file
                        Some((MEDIA, seq, _)) if left => {
                            let Some(extra) = link(ext_of(seq) - FIRST_SEQ) else {
                                self.dropped.insert(seq);
                                continue;
                            };
                            at = (at + Duration::from_millis(extra)).max(self.last_media_arrival);
                            self.last_media_arrival = at;
                        }
                        _ => {}
                    }
                    let (source, destination) = (t.source, t.destination);
                    self.net.push(InFlight {
                        at,
                        to_right: left,
                        source,
                        destination,
                        bytes,
                    });
                }
                Output::Event(Event::RawPacket(raw)) if !left => self.on_right_raw(*raw),
                Output::Event(_) => {}
            }
        }
    }

    fn on_right_raw(&mut self, raw: RawPacket) {
        let now = self.now;
        match raw {
            RawPacket::RtcpTx(Rtcp::ReceiverReport(rr)) => {
                for theirs in rr.reports.iter().filter(|r| *r.ssrc == MEDIA) {
                    let ours = self.stats.report_block(now);
                    let n = self.reports_compared;
                    assert_eq!(
                        ours.fraction_lost, theirs.fraction_lost,
                        "fraction lost, #{n}"
                    );
                    let lost = ours.cumulative_lost as u32 & 0xff_ffff;
                    assert_eq!(lost, theirs.packets_lost, "cumulative lost, #{n}");
                    assert_eq!(
                        ours.ext_highest_seq, theirs.max_seq,
                        "extended highest, #{n}"
                    );
                    assert!(
                        ours.jitter.abs_diff(theirs.jitter) <= 1,
                        "#{n}: {ours:?} {theirs:?}"
                    );
                    assert!(ours.last_sr.abs_diff(theirs.last_sr_time) <= 1, "LSR, #{n}");
                    assert_eq!(ours.delay_since_last_sr, theirs.last_sr_delay, "DLSR, #{n}");
                    self.reports_compared += 1;
                    self.reports_with_lsr += usize::from(theirs.last_sr_time != 0);
                }
            }
            RawPacket::RtcpRx(Rtcp::SenderReport(sr)) if *sr.sender_info.ssrc == MEDIA => {
                let unix = sr
                    .sender_info
                    .ntp_time
                    .duration_since(UNIX_EPOCH)
                    .expect("after 1970");
                let ntp = NtpClock::new(now, unix).ntp(now);
                self.stats
                    .on_sender_report(ntp, sr.sender_info.rtp_time.numer() as u32, now);
            }
            RawPacket::RtcpTx(Rtcp::Nack(nack)) if *nack.ssrc == MEDIA => {
                for e in nack.reports.iter() {
                    self.str0m_nacked.insert(e.pid);
                    for bit in 0..16u16 {
                        if e.blp & (1 << bit) != 0 {
                            self.str0m_nacked.insert(e.pid.wrapping_add(bit + 1));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

#[test]
fn receiver_reports_and_nacks_match_str0m() {
    str0m::crypto::from_feature_flags().install_process_default();
    let mut w = World::new();
    w.connect();

    let mid = "vid".into();
    let l = &mut w.left.rtc;
    l.direct_api().declare_media(mid, MediaKind::Video);
    l.direct_api()
        .declare_stream_tx(Ssrc::from(MEDIA), Some(RTX.into()), mid, None);
    let r = &mut w.right.rtc;
    r.direct_api().declare_media(mid, MediaKind::Video);
    r.direct_api()
        .expect_stream_rx(Ssrc::from(MEDIA), Some(RTX.into()), mid, None);
    let pt = w
        .left
        .rtc
        .codec_config()
        .find(|p| p.spec().codec == Codec::Vp8)
        .map(|p| p.pt())
        .expect("vp8 configured");

    let start = w.now;
    for n in 0..PACKETS {
        let write_at = start + FRAME * n as u32;
        while !w.step(Some(write_at)) {}
        let rtp_ts = (n as u32).wrapping_mul(CLOCK_RATE / 50).wrapping_add(7);
        let write = RtpWrite::new(
            pt,
            (FIRST_SEQ + n).into(),
            rtp_ts,
            w.now,
            vec![0x90, 0, 0, 1],
        );
        let mut api = w.left.rtc.direct_api();
        api.stream_tx(&MEDIA.into())
            .expect("declared")
            .write_rtp(write);
        w.drain(true);
        w.drain(false);
    }
    let end = w.now + Duration::from_secs(3);
    while w.now < end {
        w.step(None);
    }

    assert!(
        w.reports_compared >= 15,
        "only {} reports compared",
        w.reports_compared
    );
    assert!(
        w.reports_with_lsr >= 10,
        "only {} carried LSR",
        w.reports_with_lsr
    );
    let told = (0..PACKETS).filter(|&n| link(n).is_none()).count();
    assert_eq!(
        (told, w.dropped.len()),
        (40, 40),
        "the link dropped what it was told to"
    );
    assert_eq!(
        w.str0m_nacked, w.dropped,
        "str0m NACKs exactly the dropped packets"
    );
    assert_eq!(w.our_nacked, w.dropped, "and so do we");
}
