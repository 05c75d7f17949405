//! Client configuration: what a synthetic participant publishes and how it receives.
//!
//! Owns only plain data and its defaults; it must never touch str0m or the clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The rids of the three simulcast layers, lowest quality first ("quarter", "half", "full").
pub const LAYER_RIDS: [&str; 3] = ["q", "h", "f"];

/// Maps the caller's `now: Instant` to microseconds on a clock shared by every client of a
/// run, so a receiver can compute latency from a send time written by another process.
///
/// `Instant` cannot cross a process boundary, so each process pairs one of its own instants
/// with the Unix time read at the same moment ([`TimeBase::real`]). Tests in virtual time use
/// [`TimeBase::virtual_at`], where the shared clock starts at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBase {
    /// An instant on this process's clock.
    pub instant: Instant,
    /// Microseconds on the shared clock at `instant`.
    pub shared_us: u64,
}

impl TimeBase {
    /// A time base for real sockets: pairs `Instant::now()` with the Unix time in µs.
    pub fn real() -> Self {
        let unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Self {
            instant: Instant::now(),
            shared_us: unix_us,
        }
    }

    /// A time base for virtual time: the shared clock reads 0 at `instant`.
    pub fn virtual_at(instant: Instant) -> Self {
        Self {
            instant,
            shared_us: 0,
        }
    }

    /// Microseconds on the shared clock at `now`. Instants before the base saturate.
    pub fn micros(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.instant).as_micros() as u64;
        let before = self.instant.saturating_duration_since(now).as_micros() as u64;
        (self.shared_us + since).saturating_sub(before)
    }
}

/// One simulcast layer of a published video track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// The RTP stream id (`a=rid`), e.g. "q", "h", "f".
    pub rid: String,
    /// Target bitrate in bits per second; sets the frame size.
    pub bitrate_bps: u32,
    /// Nominal picture size, written into VP8 keyframe headers.
    pub width: u16,
    /// Nominal picture size, written into VP8 keyframe headers.
    pub height: u16,
}

/// The video codec a publisher sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoCodec {
    /// VP8 (RFC 7741) with picture id and TL0PICIDX.
    #[default]
    Vp8,
    /// H264 (RFC 6184), packetization-mode 1: single NAL units and FU-A.
    H264,
}

/// A published video track.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoSpec {
    /// VP8 unless set otherwise.
    pub codec: VideoCodec,
    /// Layers, lowest first. One layer means no simulcast (no rids in the SDP).
    pub layers: Vec<LayerSpec>,
    /// Frames per second, per layer.
    pub fps: u32,
    /// A keyframe is sent on every layer at least this often.
    pub keyframe_interval: Duration,
    /// Keyframes are this many times larger than delta frames (real encoders: 3–10×).
    pub keyframe_size_factor: u32,
}

impl VideoSpec {
    /// Three layers q/h/f at 150/500/1500 kbps, 30 fps, a keyframe every 2 s.
    pub fn simulcast3() -> Self {
        let sizes = [
            (150_000, 320, 180),
            (500_000, 640, 360),
            (1_500_000, 1280, 720),
        ];
        Self {
            codec: VideoCodec::Vp8,
            layers: LAYER_RIDS
                .iter()
                .zip(sizes)
                .map(|(rid, (bitrate_bps, width, height))| LayerSpec {
                    rid: rid.to_string(),
                    bitrate_bps,
                    width,
                    height,
                })
                .collect(),
            fps: 30,
            keyframe_interval: Duration::from_secs(2),
            keyframe_size_factor: 2,
        }
    }

    /// One layer (no simulcast) at `bitrate_bps`, 30 fps, a keyframe every 2 s.
    pub fn single(bitrate_bps: u32) -> Self {
        Self {
            codec: VideoCodec::Vp8,
            layers: vec![LayerSpec {
                rid: LAYER_RIDS[2].to_string(),
                bitrate_bps,
                width: 1280,
                height: 720,
            }],
            fps: 30,
            keyframe_interval: Duration::from_secs(2),
            keyframe_size_factor: 2,
        }
    }

    /// The same spec sending `codec`.
    pub fn with_codec(mut self, codec: VideoCodec) -> Self {
        self.codec = codec;
        self
    }

    /// Whether the track is sent as simulcast (more than one layer, with rids).
    pub fn is_simulcast(&self) -> bool {
        self.layers.len() > 1
    }
}

/// Everything a [`crate::Client`] needs at creation.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Human-readable name; also the msid stream id of published tracks.
    pub name: String,
    /// Seeds SSRC-independent randomness (payload sizes, level wobble) and the source id
    /// written into every payload, so runs are reproducible.
    pub seed: u64,
    /// Publish one Opus-like audio track (50 packets/s, RFC 6464 level).
    pub publish_audio: bool,
    /// Publish one video track (VP8 or H264), simulcast when it has several layers.
    pub publish_video: Option<VideoSpec>,
    /// Track received media in [`crate::ClientStats`]; off ignores incoming media.
    pub subscribe: bool,
    /// Offer one recvonly audio and one recvonly video m-line in the initial offer, as a
    /// WHEP player does (RFC 9725): media then flows on the answer, with no server offer.
    pub offer_receive: bool,
    /// Parse and check every received synthetic payload (layers, frames, decodability,
    /// picture ids, latency, content). Off counts only: packets, bytes, SSRCs, sequence gaps
    /// and audio levels — the cheap mode for viewers in large load runs.
    pub verify_payloads: bool,
    /// Send a PLI when a received video stream stops being decodable (as a browser does).
    pub request_keyframes: bool,
    /// The run's shared clock for send timestamps and latency.
    pub time_base: TimeBase,
    /// At most this many latency samples are kept (later ones only update min/max/sum).
    pub max_latency_samples: usize,
    /// Negotiate the transport-wide sequence number, and so send transport-cc feedback
    /// (as browsers do). Off: receiver reports only, as some non-browser stacks.
    pub transport_cc: bool,
    /// Send ICE consent checks (STUN binding requests) once connected, as str0m's agent does
    /// every few seconds. Off drops them, as stacks that check only an idle pair behave while
    /// media flows; the client still answers the remote's checks.
    pub consent_checks: bool,
}

impl ClientConfig {
    /// A client that publishes nothing and subscribes, with payload verification on.
    pub fn new(name: impl Into<String>, seed: u64, time_base: TimeBase) -> Self {
        Self {
            name: name.into(),
            seed,
            publish_audio: false,
            publish_video: None,
            subscribe: true,
            offer_receive: false,
            verify_payloads: true,
            request_keyframes: true,
            time_base,
            max_latency_samples: 100_000,
            transport_cc: true,
            consent_checks: true,
        }
    }

    /// Sends no consent checks of its own once connected (see `consent_checks`).
    pub fn without_consent_checks(mut self) -> Self {
        self.consent_checks = false;
        self
    }

    /// Publishes audio.
    pub fn with_audio(mut self) -> Self {
        self.publish_audio = true;
        self
    }

    /// A WHEP player: the initial offer carries recvonly audio + video m-lines.
    pub fn with_receive_offer(mut self) -> Self {
        self.offer_receive = true;
        self
    }

    /// Publishes video per `spec`.
    pub fn with_video(mut self, spec: VideoSpec) -> Self {
        self.publish_video = Some(spec);
        self
    }

    /// The 32-bit source id written into every payload this client sends.
    pub fn source_id(&self) -> u32 {
        (self.seed ^ (self.seed >> 32)) as u32
    }
}
