//! An egress's WebRTC subscriber: one str0m `Rtc` in RTP mode, receive-only (one audio and
//! one video m-line), on a UDP socket and a thread of its own. The media node treats it as
//! any WHEP player; each RTP packet it receives goes to the egress's pipeline with its kind
//! and codec.
//!
//! Must never: block on the pipeline (the sink drops rather than wait), or run on the async
//! runtime's threads.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcast_dataplane::node::MediaKind;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

/// One received RTP packet, as a pipeline takes it.
#[derive(Debug, Clone)]
pub struct Packet {
    pub kind: MediaKind,
    pub codec: Codec,
    pub marker: bool,
    pub seq: u16,
    pub timestamp: u32,
    pub payload: Arc<[u8]>,
}

/// The subscriber before its answer: its offer is out.
pub struct Offered {
    rtc: Rtc,
    pending: SdpPendingOffer,
    audio: Mid,
    video: Mid,
}

/// Why a receiver stopped other than being told to.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("the media node's answer is not usable: {0}")]
    Answer(String),
    #[error("no route to the media node: {0}")]
    Socket(#[from] std::io::Error),
    #[error("the media connection failed: {0}")]
    Rtc(String),
    #[error("the media connection was lost")]
    Disconnected,
}

/// A receive-only offer (Opus; VP8, VP9, H.264 — what the pipelines can record) and the
/// state to accept its answer with.
///
/// Without transport-wide congestion control: the media node then has no estimate for this
/// subscriber and forwards the best layer from the start (a recording wants the camera's
/// full size at once, not a ramp from the lowest simulcast layer), and its NACKs still
/// repair loss.
pub fn offer(now: Instant) -> (Offered, String) {
    let mut config = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_vp9(true)
        .enable_h264(true);
    let twcc = str0m::rtp::Extension::TransportSequenceNumber;
    let mut kept = str0m::rtp::ExtensionMap::empty();
    for (id, e) in config.extension_map().iter().filter(|(_, e)| **e != twcc) {
        kept.set(id, e.clone());
    }
    let mut rtc = config.set_extension_map(kept).build(now);
    let mut api = rtc.sdp_api();
    let audio = api.add_media(
        str0m::media::MediaKind::Audio,
        Direction::RecvOnly,
        None,
        None,
        None,
    );
    let video = api.add_media(
        str0m::media::MediaKind::Video,
        Direction::RecvOnly,
        None,
        None,
        None,
    );
    let (offer, pending) = api.apply().expect("two new m-lines are a change");
    let sdp = offer.to_sdp_string();
    (
        Offered {
            rtc,
            pending,
            audio,
            video,
        },
        sdp,
    )
}

impl Offered {
    /// Takes the node's answer and opens a UDP socket towards its first UDP candidate (the
    /// node is ICE-lite: it learns our address from our checks).
    pub fn accept(mut self, answer: &str) -> Result<Running, ReceiveError> {
        let remote = first_udp_candidate(answer)
            .ok_or_else(|| ReceiveError::Answer("no UDP candidate".into()))?;
        let parsed =
            SdpAnswer::from_sdp_string(answer).map_err(|e| ReceiveError::Answer(e.to_string()))?;
        self.rtc
            .sdp_api()
            .accept_answer(self.pending, parsed)
            .map_err(|e| ReceiveError::Answer(e.to_string()))?;
        let unspecified: SocketAddr = if remote.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let socket = UdpSocket::bind(unspecified)?;
        // Connected: the kernel picks the local address that routes to the node, which is
        // the host candidate we offer.
        socket.connect(remote)?;
        let local = socket.local_addr()?;
        let candidate =
            Candidate::host(local, "udp").map_err(|e| ReceiveError::Answer(e.to_string()))?;
        self.rtc.add_local_candidate(candidate);
        Ok(Running {
            rtc: self.rtc,
            socket,
            local,
            audio: self.audio,
            video: self.video,
            connected: false,
        })
    }
}

/// `ip:port` of the first UDP `a=candidate` line of `sdp`.
fn first_udp_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("a=candidate:")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 6 || !f[2].eq_ignore_ascii_case("udp") {
            return None;
        }
        let ip: std::net::IpAddr = f[4].parse().ok()?;
        Some(SocketAddr::new(ip, f[5].parse().ok()?))
    })
}

/// The subscriber with its socket, ready to run.
pub struct Running {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    audio: Mid,
    video: Mid,
    connected: bool,
}

/// How long ICE and DTLS may take before the egress gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Least time between two keyframe requests of one stream.
const PLI_INTERVAL: Duration = Duration::from_secs(1);

impl Running {
    /// Receives until `stop` is set (Ok) or the connection fails. `sink` gets every media
    /// packet; `keyframe` is polled once per turn: true asks the publisher for a video
    /// keyframe (at most once per [`PLI_INTERVAL`]).
    pub fn run(
        mut self,
        stop: &AtomicBool,
        mut sink: impl FnMut(Packet),
        mut keyframe: impl FnMut() -> bool,
    ) -> Result<(), ReceiveError> {
        let started = Instant::now();
        let mut last_pli: Option<Instant> = None;
        let mut buf = vec![0u8; 2048];
        loop {
            let timeout = self.drain(&mut sink)?;
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let now = Instant::now();
            if !self.connected && now.duration_since(started) > CONNECT_TIMEOUT {
                return Err(ReceiveError::Rtc(
                    "ICE/DTLS did not complete in 10 s".into(),
                ));
            }
            if keyframe() && last_pli.is_none_or(|t| now.duration_since(t) >= PLI_INTERVAL) {
                self.request_keyframe();
                last_pli = Some(now);
            }
            // Wake at least every 50 ms to see `stop`.
            let wait = timeout
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(50));
            self.socket.set_read_timeout(Some(wait))?;
            let input = match self.socket.recv_from(&mut buf) {
                Ok((n, source)) => match buf[..n].try_into() {
                    Ok(contents) => Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: self.local,
                            contents,
                        },
                    ),
                    // Not STUN, DTLS or (S)RTP: ignore it.
                    Err(_) => continue,
                },
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    Input::Timeout(Instant::now())
                }
                // An ICMP error from an earlier send; the node may be restarting.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    Input::Timeout(Instant::now())
                }
                Err(e) => return Err(e.into()),
            };
            self.rtc
                .handle_input(input)
                .map_err(|e| ReceiveError::Rtc(e.to_string()))?;
        }
    }

    fn request_keyframe(&mut self) {
        if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(self.video, None) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }

    /// Sends what str0m has to send and hands out its events; returns its next deadline.
    fn drain(&mut self, sink: &mut impl FnMut(Packet)) -> Result<Instant, ReceiveError> {
        loop {
            match self
                .rtc
                .poll_output()
                .map_err(|e| ReceiveError::Rtc(e.to_string()))?
            {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(t) => {
                    // Lost datagrams are what RTP expects; a send error is not fatal.
                    let _ = self.socket.send(&t.contents);
                }
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => return Err(ReceiveError::Disconnected),
                Output::Event(Event::RtpPacket(p)) => {
                    if let Some(packet) = self.packet(p) {
                        sink(packet);
                    }
                }
                Output::Event(_) => {}
            }
        }
    }

    fn packet(&mut self, p: RtpPacket) -> Option<Packet> {
        let mid = self.rtc.direct_api().stream_rx(&p.header.ssrc)?.mid();
        let kind = if mid == self.audio {
            MediaKind::Audio
        } else if mid == self.video {
            MediaKind::Video
        } else {
            return None;
        };
        let pt = p.header.payload_type;
        let codec = self
            .rtc
            .codec_config()
            .find(|c| c.pt() == pt)
            .map(|c| c.spec().codec)?;
        Some(Packet {
            kind,
            codec,
            marker: p.header.marker,
            seq: p.header.sequence_number,
            timestamp: p.header.timestamp,
            payload: p.payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_udp_candidate_is_where_checks_go() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=candidate:1 1 tcp 1 127.0.0.1 9000 typ host tcptype passive\r\n\
                   a=candidate:2 1 udp 2 10.0.0.2 40000 typ host\r\n\
                   a=candidate:3 1 udp 1 10.0.0.3 40001 typ host\r\n";
        assert_eq!(
            first_udp_candidate(sdp),
            Some("10.0.0.2:40000".parse().unwrap())
        );
        assert_eq!(first_udp_candidate("v=0\r\n"), None);
        assert_eq!(
            first_udp_candidate("a=candidate:1 1 udp 1 not-an-ip 4 typ host"),
            None
        );
    }

    #[test]
    fn the_offer_receives_audio_and_video_in_recordable_codecs() {
        let (_, sdp) = offer(Instant::now());
        assert_eq!(sdp.matches("a=recvonly").count(), 2, "{sdp}");
        for codec in ["opus/48000", "VP8/90000", "VP9/90000", "H264/90000"] {
            assert!(sdp.contains(codec), "{codec} in {sdp}");
        }
        assert!(!sdp.contains("AV1"), "{sdp}");
        assert!(!sdp.contains("transport-wide-cc"), "{sdp}");
    }
}
