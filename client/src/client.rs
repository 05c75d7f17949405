//! The client: one str0m `Rtc` in RTP mode, the synthetic sources and the receive stats.
//!
//! Owns signaling (offer/answer through str0m's SDP API), pacing of the sources and event
//! handling. It must never read the clock, open a socket or spawn a thread: time comes in
//! as `now`, datagrams come in through `handle_datagram` and go out through `poll_output`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, CodecSpec};
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tracing::{debug, trace, warn};

use crate::config::{ClientConfig, VideoCodec};
use crate::error::ClientError;
use crate::payload::TrackKind;
use crate::publish::{AudioSource, FrameSent, OutPacket, VideoSource};
use crate::stats::{ClientStats, Received, TrackStats};

/// PLIs for one stalled stream are sent at most this often.
const PLI_INTERVAL: Duration = Duration::from_millis(500);
/// Without any deadline from str0m or the sources, wake up this often anyway.
const IDLE_WAKE: Duration = Duration::from_millis(100);

/// What the caller must do next.
#[derive(Debug)]
pub enum ClientOutput {
    /// Send `contents` from `source` (the client's local address) to `destination`.
    Transmit {
        /// The local address to send from.
        source: SocketAddr,
        /// The remote address.
        destination: SocketAddr,
        /// The datagram.
        contents: Vec<u8>,
    },
    /// Nothing more to send: call [`Client::handle_timeout`] at this instant (or earlier when
    /// a datagram arrives).
    Timeout(Instant),
}

struct Published<S> {
    /// Set by `create_offer`.
    mid: Option<Mid>,
    source: S,
}

/// A sans-IO WebRTC participant with synthetic media. See the crate docs for the payload.
pub struct Client {
    rtc: Rtc,
    config: ClientConfig,
    local_addr: SocketAddr,
    /// The protocol of the one local candidate (what received datagrams came over).
    proto: Protocol,
    pending_offer: Option<SdpPendingOffer>,
    audio: Option<Published<AudioSource>>,
    video: Option<Published<VideoSource>>,
    stats: ClientStats,
    connected: bool,
    ice_state: Option<IceConnectionState>,
    last_now: Instant,
    last_pli: HashMap<Ssrc, Instant>,
    error: Option<String>,
    scratch: Vec<OutPacket>,
    frames: Vec<FrameSent>,
    outbox: VecDeque<ClientOutput>,
    rtc_timeout: Instant,
    channel_offered: bool,
    /// The recvonly m-lines of `ClientConfig::offer_receive` are in an offer already.
    receive_offered: bool,
}

impl Client {
    /// A client whose only ICE candidate is `local_addr` (UDP host).
    pub fn new(
        config: ClientConfig,
        local_addr: SocketAddr,
        now: Instant,
    ) -> Result<Self, ClientError> {
        let candidate = Candidate::host(local_addr, "udp")
            .map_err(|e| ClientError::BadLocalAddress(e.to_string()))?;
        Self::with_candidate(config, local_addr, candidate, now)
    }

    /// A client whose only ICE candidate is an active TCP host candidate at `local_addr`
    /// (RFC 6544): the caller connects a TCP stream from `local_addr` to the server's passive
    /// candidate, writes every `Transmit` onto it as an RFC 4571 frame, and feeds the frames
    /// it reads to [`Client::handle_datagram`] (which then takes them as TCP).
    pub fn new_tcp(
        config: ClientConfig,
        local_addr: SocketAddr,
        now: Instant,
    ) -> Result<Self, ClientError> {
        let candidate = Candidate::builder()
            .tcp()
            .host(local_addr)
            .tcptype(str0m::net::TcpType::Active)
            .build()
            .map_err(|e| ClientError::BadLocalAddress(e.to_string()))?;
        Self::with_candidate(config, local_addr, candidate, now)
    }

    fn with_candidate(
        config: ClientConfig,
        local_addr: SocketAddr,
        candidate: Candidate,
        now: Instant,
    ) -> Result<Self, ClientError> {
        let proto = candidate.proto();
        let mut rtc_config = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true);
        if !config.transport_cc {
            let twcc = str0m::rtp::Extension::TransportSequenceNumber;
            let exts = rtc_config.extension_map();
            let mut kept = str0m::rtp::ExtensionMap::empty();
            for (id, e) in exts.iter().filter(|(_, e)| **e != twcc) {
                kept.set(id, e.clone());
            }
            rtc_config = rtc_config.set_extension_map(kept);
        }
        let mut rtc = rtc_config.build(now);
        rtc.add_local_candidate(candidate);
        let source_id = config.source_id();
        let audio = config.publish_audio.then(|| Published {
            mid: None,
            source: AudioSource::new(config.seed, source_id),
        });
        let video = config.publish_video.clone().map(|spec| Published {
            mid: None,
            source: VideoSource::new(spec, config.seed, source_id),
        });
        Ok(Self {
            rtc,
            config,
            local_addr,
            proto,
            pending_offer: None,
            audio,
            video,
            stats: ClientStats::default(),
            connected: false,
            ice_state: None,
            last_now: now,
            last_pli: HashMap::new(),
            error: None,
            scratch: Vec::new(),
            frames: Vec::new(),
            outbox: VecDeque::new(),
            rtc_timeout: now,
            channel_offered: false,
            receive_offered: false,
        })
    }

    /// The initial offer (later calls offer only what is new, else
    /// [`ClientError::NothingToOffer`]): one sendonly m-line per published track (video with
    /// `a=simulcast:send q;h;f` when it has several layers). A client that publishes nothing
    /// offers a data channel, so ICE and DTLS have something to negotiate; media to receive
    /// comes later in offers from the server ([`Client::accept_offer`]). With
    /// `ClientConfig::offer_receive` it offers recvonly audio + video m-lines instead (WHEP).
    pub fn create_offer(&mut self, now: Instant) -> Result<String, ClientError> {
        self.last_now = now;
        let name = self.config.name.clone();
        let mut change = self.rtc.sdp_api();
        if let Some(audio) = self.audio.as_mut().filter(|a| a.mid.is_none()) {
            audio.mid = Some(change.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some(name.clone()),
                Some(format!("{name}-audio")),
                None,
            ));
        }
        if let Some(video) = self.video.as_mut().filter(|v| v.mid.is_none()) {
            let spec = video.source.spec();
            let simulcast = spec.is_simulcast().then(|| {
                let mut s = Simulcast::new();
                for layer in &spec.layers {
                    s.add_send_layer(SimulcastLayer::new(&layer.rid));
                }
                s
            });
            video.mid = Some(change.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some(name.clone()),
                Some(format!("{name}-video")),
                simulcast,
            ));
        }
        if self.config.offer_receive && !self.receive_offered {
            // A WHEP player's m-lines: the server binds them to published tracks in its
            // answer, audio to audio and video to video.
            change.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            self.receive_offered = true;
        }
        let receiving = self.config.offer_receive;
        if self.audio.is_none() && self.video.is_none() && !receiving && !self.channel_offered {
            change.add_channel("shardcast".into());
            self.channel_offered = true;
        }
        let (offer, pending) = change.apply().ok_or(ClientError::NothingToOffer)?;
        self.pending_offer = Some(pending);
        Ok(offer.to_sdp_string())
    }

    /// An offer that restarts ICE (new credentials) keeping the local candidate, for
    /// reconnecting after a network change; answer it with [`Client::accept_answer`].
    pub fn ice_restart_offer(&mut self, now: Instant) -> Result<String, ClientError> {
        self.last_now = now;
        let mut change = self.rtc.sdp_api();
        change.ice_restart(true);
        let (offer, pending) = change.apply().ok_or(ClientError::NothingToOffer)?;
        self.pending_offer = Some(pending);
        Ok(offer.to_sdp_string())
    }

    /// Applies the answer to [`Client::create_offer`].
    pub fn accept_answer(&mut self, now: Instant, sdp: &str) -> Result<(), ClientError> {
        self.last_now = now;
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| ClientError::BadSdp(e.to_string()))?;
        let pending = self
            .pending_offer
            .take()
            .ok_or(ClientError::NoPendingOffer)?;
        self.rtc.sdp_api().accept_answer(pending, answer)?;
        self.pump();
        Ok(())
    }

    /// Answers an offer from the remote (the server adding or removing tracks to receive, or
    /// a peer publishing directly to this client). An outstanding own offer is dropped (glare:
    /// the remote's offer wins) and what it added is offered again by the next
    /// [`Client::create_offer`].
    pub fn accept_offer(&mut self, now: Instant, sdp: &str) -> Result<String, ClientError> {
        self.last_now = now;
        let offer =
            SdpOffer::from_sdp_string(sdp).map_err(|e| ClientError::BadSdp(e.to_string()))?;
        let answer = self.rtc.sdp_api().accept_offer(offer)?;
        if self.pending_offer.take().is_some() {
            // Glare: str0m dropped our offer, and with it the m-lines it added; offer them
            // again on the next create_offer.
            let rtc = &self.rtc;
            if let Some(a) = self
                .audio
                .as_mut()
                .filter(|a| a.mid.is_some_and(|m| rtc.media(m).is_none()))
            {
                a.mid = None;
            }
            if let Some(v) = self
                .video
                .as_mut()
                .filter(|v| v.mid.is_some_and(|m| rtc.media(m).is_none()))
            {
                v.mid = None;
            }
            self.channel_offered = false;
        }
        self.pump();
        Ok(answer.to_sdp_string())
    }

    /// Feeds one received datagram (UDP, or one RFC 4571 frame for a [`Client::new_tcp`]
    /// client). Unparseable or rejected input is counted in
    /// [`ClientStats::datagrams_rejected`] and dropped.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        self.last_now = now;
        let Ok(receive) = Receive::new(self.proto, source, destination, contents) else {
            self.stats.datagrams_rejected += 1;
            trace!(%source, len = contents.len(), "unparseable datagram");
            return;
        };
        if let Err(e) = self.rtc.handle_input(Input::Receive(now, receive)) {
            self.stats.datagrams_rejected += 1;
            debug!(%source, error = %e, "datagram rejected");
        }
        self.pump();
    }

    /// Advances time: writes media that is due, then lets str0m run its timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        if self.connected {
            self.send_due_media(now);
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.fail(e);
        }
        self.pump();
    }

    /// The next thing to do. Call until it returns [`ClientOutput::Timeout`] after every
    /// `handle_*` and signaling call.
    pub fn poll_output(&mut self) -> ClientOutput {
        self.pump();
        if let Some(t) = self.outbox.pop_front() {
            return t;
        }
        let media = self.next_media_at().filter(|_| self.connected);
        let at = media.map_or(self.rtc_timeout, |m| m.min(self.rtc_timeout));
        ClientOutput::Timeout(at.min(self.last_now + IDLE_WAKE).max(self.last_now))
    }

    /// Drains str0m until its next timeout. str0m keeps only one received RTP packet for
    /// the next `poll_output`, so this runs after every input, not only when the caller polls.
    fn pump(&mut self) {
        while self.error.is_none() {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    if !self.config.consent_checks && self.connected && is_binding_request(&t) {
                        self.stats.consent_checks_dropped += 1;
                        continue;
                    }
                    self.outbox.push_back(ClientOutput::Transmit {
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.to_vec(),
                    })
                }
                Ok(Output::Event(event)) => self.handle_event(event),
                Ok(Output::Timeout(at)) => {
                    self.rtc_timeout = at;
                    return;
                }
                Err(e) => self.fail(e),
            }
        }
        self.rtc_timeout = self.last_now + IDLE_WAKE;
    }

    /// ICE and DTLS are up and media flows.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The ICE agent's last state (after an ICE restart: `Checking` until a check with the
    /// new credentials succeeds).
    pub fn ice_state(&self) -> Option<IceConnectionState> {
        self.ice_state
    }

    /// The error that stopped this client, if one did (str0m failed; the client is dead).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// What this client received and sent so far.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Hands every latency sample (µs) recorded since the last call to `sink` and forgets
    /// it, so a long-running caller (the bench harness) can keep its own histogram without
    /// the `max_latency_samples` cap. Only the kept samples move; counts, sums, min and max in
    /// [`ClientStats`] stay as they are.
    pub fn drain_latency_samples(&mut self, mut sink: impl FnMut(u32)) {
        for track in self.stats.tracks.values_mut() {
            track.latency.samples.drain(..).for_each(&mut sink);
        }
    }

    /// This client's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The local address given at creation (the ICE host candidate).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The mid of the published audio track, once offered.
    pub fn audio_mid(&self) -> Option<String> {
        self.audio
            .as_ref()
            .and_then(|a| a.mid)
            .map(|m| m.to_string())
    }

    /// The mid of the published video track, once offered.
    pub fn video_mid(&self) -> Option<String> {
        self.video
            .as_ref()
            .and_then(|v| v.mid)
            .map(|m| m.to_string())
    }

    /// Audio "speaking" (the loudness plus a 0–15 dB wobble, see [`Client::set_loudness`])
    /// or silent (100–120 dB below full scale). Speaking is the default.
    pub fn set_speaking(&mut self, speaking: bool) {
        if let Some(audio) = &mut self.audio {
            audio.source.set_speaking(speaking);
        }
    }

    /// The speaking level in dB below full scale (RFC 6464: 0 loudest, 127 silence;
    /// default 20), so tests can make one speaker dominate another.
    pub fn set_loudness(&mut self, dbov: u8) {
        if let Some(audio) = &mut self.audio {
            audio.source.set_loudness(dbov);
        }
    }

    /// Stops (or resumes) sending simulcast layer `layer` (0 = lowest), as when an encoder
    /// drops a layer for lack of bandwidth or CPU. A resumed layer starts with a keyframe.
    pub fn set_layer_active(&mut self, layer: usize, active: bool) {
        if let Some(video) = &mut self.video {
            video.source.set_layer_active(layer, active);
        }
    }

    /// Asks the remote for a keyframe on every received video stream (PLI).
    pub fn request_keyframes(&mut self) {
        let mids: Vec<Mid> = self
            .stats
            .video_tracks()
            .map(|t| Mid::from(t.mid.as_str()))
            .collect();
        let mut api = self.rtc.direct_api();
        for mid in mids {
            for rid in [
                None,
                Some(Rid::from("q")),
                Some(Rid::from("h")),
                Some(Rid::from("f")),
            ] {
                if let Some(rx) = api.stream_rx_by_mid(mid, rid) {
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                    self.stats.keyframe_requests_sent += 1;
                }
            }
        }
    }

    fn fail(&mut self, e: str0m::RtcError) {
        warn!(client = %self.config.name, error = %e, "client stopped");
        self.error.get_or_insert(e.to_string());
    }

    fn next_media_at(&self) -> Option<Instant> {
        let a = self.audio.as_ref().and_then(|a| a.source.next_at());
        let v = self.video.as_ref().and_then(|v| v.source.next_at());
        match (a, v) {
            (Some(a), Some(v)) => Some(a.min(v)),
            (a, v) => a.or(v),
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                debug!(client = %self.config.name, "connected");
                self.connected = true;
                self.stats.connected_at.get_or_insert(self.last_now);
            }
            Event::IceConnectionStateChange(state) => {
                debug!(client = %self.config.name, ?state, "ICE state");
                self.ice_state = Some(state);
                if state == IceConnectionState::Disconnected {
                    self.stats.ice_disconnected_at = Some(self.last_now);
                }
            }
            Event::MediaAdded(added) => self.track_added(added.mid, added.kind, added.direction),
            Event::RtpPacket(packet) => self.packet_received(packet),
            Event::KeyframeRequest(req) => {
                let Some(video) = self.video.as_mut().filter(|v| v.mid == Some(req.mid)) else {
                    return;
                };
                self.stats.published.keyframe_requests += 1;
                let layers = &video.source.spec().layers;
                let layer = match req.rid {
                    Some(rid) => layers.iter().position(|l| *rid == *l.rid),
                    None => Some(0),
                };
                if let Some(layer) = layer {
                    video.source.request_keyframe(layer);
                }
            }
            _ => {}
        }
    }

    fn track_added(&mut self, mid: Mid, kind: MediaKind, direction: Direction) {
        if !self.config.subscribe || !direction.is_receiving() {
            return;
        }
        let track_id = self.rtc.media(mid).map(|m| m.track_id().to_string());
        let kind = match kind {
            MediaKind::Audio => TrackKind::Audio,
            MediaKind::Video => TrackKind::Video,
        };
        let cap = self.config.max_latency_samples;
        self.stats
            .tracks
            .entry(mid.to_string())
            .or_insert_with(|| TrackStats::new(mid.to_string(), track_id, kind, cap));
    }

    fn packet_received(&mut self, packet: RtpPacket) {
        if !self.config.subscribe {
            return;
        }
        self.stats.first_media_at.get_or_insert(packet.timestamp);
        let ssrc = packet.header.ssrc;
        let mid = self.rtc.direct_api().stream_rx(&ssrc).map(|rx| rx.mid());
        let Some(mid) = mid else {
            self.stats.unknown_packets += 1;
            return;
        };
        if !self.stats.tracks.contains_key(&*mid) {
            let kind = self.rtc.media(mid).map(|m| m.kind());
            let Some(kind) = kind else {
                self.stats.unknown_packets += 1;
                return;
            };
            self.track_added(mid, kind, Direction::RecvOnly);
        }
        let pt = packet.header.payload_type;
        let codec = match self
            .rtc
            .codec_config()
            .find(|p| p.pt() == pt)
            .map(|p| p.spec().codec)
        {
            Some(Codec::Vp8) => Some(VideoCodec::Vp8),
            Some(Codec::H264) => Some(VideoCodec::H264),
            _ => None,
        };
        let Some(track) = self.stats.tracks.get_mut(&*mid) else {
            return;
        };
        let stalled = track.record(
            Received {
                ssrc: *ssrc,
                seq: *packet.seq_no,
                payload: &packet.payload,
                audio_level: packet.header.ext_vals.audio_level,
                now_us: self.config.time_base.micros(packet.timestamp),
                codec,
            },
            self.config.verify_payloads,
        );
        if stalled && self.config.request_keyframes {
            let now = packet.timestamp;
            let due = self
                .last_pli
                .get(&ssrc)
                .is_none_or(|at| now.saturating_duration_since(*at) >= PLI_INTERVAL);
            if due {
                if let Some(rx) = self.rtc.direct_api().stream_rx(&ssrc) {
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                    self.last_pli.insert(ssrc, now);
                    self.stats.keyframe_requests_sent += 1;
                }
            }
        }
    }

    fn send_due_media(&mut self, now: Instant) {
        let time = self.config.time_base;
        let mut out = std::mem::take(&mut self.scratch);
        // A source starts once its send stream exists, so the first frame is a keyframe the
        // remote can see.
        if let Some(audio) = self.audio.as_mut().filter(|a| a.source.next_at().is_none()) {
            if let Some(mid) = audio.mid {
                if self.rtc.direct_api().stream_tx_by_mid(mid, None).is_some() {
                    audio.source.start(now);
                }
            }
        }
        if let Some(video) = self.video.as_mut().filter(|v| v.source.next_at().is_none()) {
            let rid = video
                .source
                .spec()
                .is_simulcast()
                .then(|| Rid::from(video.source.spec().layers[0].rid.as_str()));
            if let Some(mid) = video.mid {
                if self.rtc.direct_api().stream_tx_by_mid(mid, rid).is_some() {
                    video.source.start(now);
                }
            }
        }
        if let Some(audio) = &mut self.audio {
            audio.source.poll(now, &time, &mut out);
            let opus = audio
                .mid
                .and_then(|mid| negotiated_pt(&self.rtc, mid, |c| c.codec == Codec::Opus));
            if let (Some(pt), false) = (opus, out.is_empty()) {
                let mut api = self.rtc.direct_api();
                if let Some(tx) = audio.mid.and_then(|mid| api.stream_tx_by_mid(mid, None)) {
                    for p in out.drain(..) {
                        let mut ext = ExtensionValues::default();
                        if let Some((level, voice)) = p.audio_level {
                            ext.audio_level = Some(-level);
                            ext.voice_activity = Some(voice);
                        }
                        let write =
                            RtpWrite::new(pt, SeqNo::from(p.seq), p.rtp_time, now, p.payload)
                                .marker(p.marker)
                                .ext_vals(ext);
                        tx.write_rtp(write);
                        self.stats.published.audio_packets += 1;
                    }
                }
            }
            out.clear();
        }
        if let Some(video) = &mut self.video {
            let mut frames = std::mem::take(&mut self.frames);
            video.source.poll(now, &time, &mut out, &mut frames);
            let codec = video.source.spec().codec;
            let pt = video.mid.and_then(|mid| {
                negotiated_pt(&self.rtc, mid, |c| match codec {
                    VideoCodec::Vp8 => c.codec == Codec::Vp8,
                    VideoCodec::H264 => {
                        c.codec == Codec::H264 && c.format.packetization_mode == Some(1)
                    }
                })
            });
            let simulcast = video.source.spec().is_simulcast();
            let rids: Vec<Rid> = video
                .source
                .spec()
                .layers
                .iter()
                .map(|l| Rid::from(l.rid.as_str()))
                .collect();
            if let Some(pt) = pt {
                let mut api = self.rtc.direct_api();
                for p in out.drain(..) {
                    let rid = simulcast.then(|| rids[p.layer]);
                    let Some(tx) = video.mid.and_then(|mid| api.stream_tx_by_mid(mid, rid)) else {
                        continue;
                    };
                    let write = RtpWrite::new(pt, SeqNo::from(p.seq), p.rtp_time, now, p.payload)
                        .marker(p.marker)
                        .nackable(true);
                    tx.write_rtp(write);
                    self.stats.published.video_packets[p.layer.min(3)] += 1;
                }
            }
            for f in frames.drain(..) {
                let l = f.layer.min(3);
                self.stats.published.video_frames[l] += 1;
                self.stats.published.keyframes[l] += u64::from(f.keyframe);
            }
            self.frames = frames;
            out.clear();
        }
        self.scratch = out;
    }
}

/// The first payload type of ours that matches `wanted` and that the remote accepted for
/// `mid` (an answer may drop some of the offered types).
fn negotiated_pt(rtc: &Rtc, mid: Mid, wanted: impl Fn(&CodecSpec) -> bool) -> Option<Pt> {
    let remote = rtc.media(mid).map(|m| m.remote_pts()).unwrap_or(&[]);
    rtc.codec_config()
        .iter()
        .filter(|p| wanted(&p.spec()))
        .map(|p| p.pt())
        .find(|pt| remote.is_empty() || remote.contains(pt))
}

/// A STUN binding request: the only thing `ClientConfig::consent_checks` holds back.
fn is_binding_request(t: &str0m::net::Transmit) -> bool {
    t.contents.first().is_some_and(|b| *b < 4)
        && str0m::ice::StunMessage::parse(&t.contents).is_ok_and(|m| m.is_binding_request())
}
