//! A raw str0m test client (RTP mode, full ICE agent) with synthetic media: simulcast VP8
//! (layer index stamped into every payload) or VP9 SVC (`SvcMode`: every layer frame says
//! which frames it references), and Opus-like audio with RFC 6464 levels; it answers
//! keyframe requests and records what it receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::Codec;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// What a test client negotiates beyond the defaults (str0m's: everything on).
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// The transport-wide sequence number: without it the client sends no transport-cc
    /// feedback (as some non-browser stacks), only receiver reports.
    pub transport_cc: bool,
    /// RTX (RFC 4588) for video.
    pub rtx: bool,
    /// VP9 instead of VP8; a publisher sends this layering (one stream, no simulcast).
    pub vp9: Option<SvcMode>,
    /// Opus RED (RFC 2198) offered and, when negotiated, sent: each packet carries the
    /// previous frame as a redundant block, as libwebrtc does.
    pub red: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            transport_cc: true,
            rtx: true,
            vp9: None,
            red: false,
        }
    }
}

/// The VP9 layering a synthetic publisher sends (WebRTC scalability modes): temporal layers
/// in the pattern T0 T2 T1 T2; spatial layers predict from the one below in every picture
/// (L3T3) or only in keyframes (L3T3_KEY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvcMode {
    L1T3,
    L3T3,
    L3T3Key,
}

impl SvcMode {
    pub fn spatial_layers(self) -> u8 {
        match self {
            SvcMode::L1T3 => 1,
            _ => 3,
        }
    }
}

/// Tag byte at the end of every synthetic VP9 payload.
pub const VP9_TAG: u8 = 0xC0;
/// Share of the stream's bitrate per spatial layer (of 10).
const SPATIAL_SHARE: [u64; 3] = [1, 2, 7];
/// Temporal layer and picture id distance of the reference, by position in the pattern.
const TEMPORAL_PATTERN: [(u8, u16); 4] = [(0, 4), (2, 1), (1, 2), (2, 1)];

/// One VP9 packet a subscriber received, as sent on the wire (descriptor included).
#[derive(Debug, Clone)]
pub struct Vp9Rx {
    pub at: Instant,
    pub seq: u64,
    pub ts: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

/// Marker byte at the end of every synthetic video payload: 0xA0 + layer index.
pub const LAYER_TAG: u8 = 0xA0;
const AUDIO_TAG: u8 = 0xAA;

/// What a subscriber saw on one incoming m-line.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub ssrcs: Vec<Ssrc>,
    /// Extended sequence numbers in arrival order (duplicates included).
    pub seqs: Vec<u64>,
    pub packets: u64,
    /// (arrival, layer) of each video packet.
    pub layers: Vec<(Instant, u8)>,
    /// (arrival, layer) of each packet that starts a VP8 keyframe.
    pub keyframe_starts: Vec<(Instant, u8)>,
    /// (extended seq, RTP timestamp, VP8 picture id if the packet starts a frame) of each
    /// video packet, in arrival order.
    pub video: Vec<(u64, u32, Option<u16>)>,
    /// Every VP9 packet, in arrival order (duplicates included).
    pub vp9: Vec<Vp9Rx>,
    pub audio: bool,
    /// Every audio packet, in arrival order.
    pub audio_packets: Vec<AudioRx>,
}

/// One audio packet a subscriber received.
#[derive(Debug, Clone)]
pub struct AudioRx {
    pub seq: u64,
    pub ts: u32,
    pub pt: u8,
    pub payload: Vec<u8>,
}

/// The payload of synthetic Opus frame `n` (its number inside, so a receiver can tell
/// frames apart); `dtx`: the tiny frame an encoder sends during silence.
pub fn audio_frame(n: u64, dtx: bool) -> Vec<u8> {
    let mut p = n.to_be_bytes().to_vec();
    if !dtx {
        p.resize(80, 0x55);
    }
    p.push(AUDIO_TAG);
    p
}

#[derive(Debug)]
struct Layer {
    rid: Option<Rid>,
    ssrc: Option<Ssrc>,
    kbps: u64,
    seq: u64,
    picture_id: u16,
    keyframe_due: bool,
    enabled: bool,
    /// VP9: pictures since the last keyframe, and the TL0PICIDX.
    pics_since_key: u32,
    tl0: u8,
}

pub struct TestClient {
    pub name: String,
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub deadline: Instant,
    pub audio_mid: Option<Mid>,
    pub video_mid: Option<Mid>,
    layers: Vec<Layer>,
    vp9: Option<SvcMode>,
    audio_seq: u64,
    pub audio_level: i8,
    /// Opus DTX: only every 20th frame (400 ms) is sent, as a tiny one.
    pub dtx: bool,
    /// Audio frames produced so far (sent or left out for DTX).
    audio_frames: u64,
    /// The last audio frame sent (RED's redundant block) and its timestamp.
    last_audio: Option<(Vec<u8>, u32)>,
    next_video: Option<Instant>,
    next_audio: Option<Instant>,
    frame: u32,
    started: Option<Instant>,
    pub pending: Option<SdpPendingOffer>,
    pub received: HashMap<Mid, Received>,
    pub keyframe_requests: u64,
    pub connected: bool,
    /// When false the client stops sending anything (a peer that goes silent).
    pub alive: bool,
    /// How long before it is sent each video frame was captured (zero by default).
    pub video_capture_lag: Duration,
    /// When false, once connected the client sends no STUN binding requests of its own (no
    /// consent checks, as stacks that check only an idle pair) but still answers the
    /// server's checks and sends media.
    pub consent_checks: bool,
    /// Binding requests str0m wanted to send that `consent_checks == false` dropped.
    pub checks_suppressed: u64,
    /// The server's answer to our first offer.
    pub answer: Option<String>,
    /// Data channels open on this client, by label.
    pub channels: HashMap<String, ChannelId>,
    /// Every data-channel message received: (channel label, binary, bytes).
    pub channel_data: Vec<(String, bool, Vec<u8>)>,
    /// Datagrams str0m produced while handling input, until the world's next `poll`.
    queued: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    keys: std::sync::Arc<shardcast_rtp::srtp::tap::KeySlot>,
    srtp: Option<(
        shardcast_rtp::srtp::SrtpSession,
        shardcast_rtp::srtp::SrtpSession,
    )>,
}

impl TestClient {
    pub fn new(name: &str, addr: SocketAddr, now: Instant) -> Self {
        Self::with_options(name, addr, now, ClientOptions::default())
    }

    /// A client that negotiates less than str0m does by default (see [`ClientOptions`]).
    pub fn with_options(name: &str, addr: SocketAddr, now: Instant, opts: ClientOptions) -> Self {
        let transport_cc = opts.transport_cc;
        let mut config = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, opts.red)
            .enable_vp8(opts.vp9.is_none())
            .enable_vp9(opts.vp9.is_some())
            .set_stats_interval(None);
        if !opts.rtx {
            // VP8 without its RTX payload type: NACKs must be answered by plain resends.
            let codecs = config.codec_config();
            codecs.enable_vp8(false);
            codecs.add_config(
                96.into(),
                None,
                Codec::Vp8,
                str0m::media::Frequency::NINETY_KHZ,
                None,
                str0m::format::FormatParams::default(),
            );
        }
        if !transport_cc {
            let exts = config.extension_map();
            if let Some(id) = exts.id_of(str0m::rtp::Extension::TransportSequenceNumber) {
                let mut kept = str0m::rtp::ExtensionMap::empty();
                for (i, e) in exts.iter().filter(|(i, _)| *i != id) {
                    kept.set(i, e.clone());
                }
                config = config.set_extension_map(kept);
            }
        }
        // Through the key tap, so a test can seal packets as this client would.
        let (mut rtc, keys) = shardcast_rtp::srtp::tap::build_rtc(config, now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        TestClient {
            name: name.into(),
            rtc,
            addr,
            deadline: now,
            audio_mid: None,
            video_mid: None,
            layers: Vec::new(),
            vp9: opts.vp9,
            audio_seq: 1,
            audio_level: 30,
            dtx: false,
            audio_frames: 0,
            last_audio: None,
            next_video: None,
            next_audio: None,
            frame: 0,
            started: None,
            pending: None,
            received: HashMap::new(),
            keyframe_requests: 0,
            connected: false,
            alive: true,
            video_capture_lag: Duration::ZERO,
            consent_checks: true,
            checks_suppressed: 0,
            answer: None,
            channels: HashMap::new(),
            channel_data: Vec::new(),
            queued: Vec::new(),
            keys,
            srtp: None,
        }
    }

    /// This client's SRTP session (its view: seals what it sends, opens what it receives)
    /// and the server's view of it (opens what the client sends), once DTLS produced keys.
    fn sessions(
        &mut self,
    ) -> &mut (
        shardcast_rtp::srtp::SrtpSession,
        shardcast_rtp::srtp::SrtpSession,
    ) {
        if self.srtp.is_none() {
            let keys = self.keys.take().expect("DTLS done: keys");
            let provider = shardcast_rtp::srtp::tap::tapping_provider();
            let mine = shardcast_rtp::srtp::SrtpSession::new(provider, &keys).unwrap();
            let theirs = shardcast_rtp::srtp::DtlsKeys {
                dtls_client: !keys.dtls_client,
                ..keys
            };
            let server = shardcast_rtp::srtp::SrtpSession::new(provider, &theirs).unwrap();
            self.srtp = Some((mine, server));
        }
        self.srtp.as_mut().unwrap()
    }

    /// Seal an RTP packet with this client's own SRTP keys, as if it had sent it (a test
    /// forging authenticated packets the client's str0m would never send).
    pub fn seal_rtp(&mut self, header: &[u8], payload: &[u8]) -> Vec<u8> {
        let sealer = &mut self.sessions().0.sealer;
        let mut out = vec![0u8; header.len() + payload.len() + 64];
        let n = sealer.seal_rtp(header, payload, 0, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// Seal a compound RTCP packet as this client would send it.
    pub fn seal_rtcp(&mut self, compound: &[u8]) -> Vec<u8> {
        let sealer = &mut self.sessions().0.sealer;
        let mut out = vec![0u8; compound.len() + 64];
        let n = sealer.seal_rtcp(compound, &mut out).unwrap();
        out.truncate(n);
        out
    }

    /// Open an SRTCP datagram the server sent this client (`None`: not SRTCP, or not ours).
    pub fn open_rtcp_from_server(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
        let opener = &mut self.sessions().0.opener;
        let mut out = vec![0u8; datagram.len() + 64];
        let n = opener.open_rtcp(datagram, &mut out).ok()?;
        out.truncate(n);
        Some(out)
    }

    /// Open an SRTCP datagram this client sent (as the server would).
    pub fn open_rtcp_from_client(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
        let opener = &mut self.sessions().1.opener;
        let mut out = vec![0u8; datagram.len() + 64];
        let n = opener.open_rtcp(datagram, &mut out).ok()?;
        out.truncate(n);
        Some(out)
    }

    /// Offer audio + video; `layers` = (rid, kbps) lowest first, or one entry with rid None.
    pub fn offer_publish(&mut self, layers: &[(Option<&str>, u64)]) -> String {
        let mut api = self.rtc.sdp_api();
        let audio = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(self.name.clone()),
            None,
            None,
        );
        let simulcast = if layers.iter().any(|(r, _)| r.is_some()) {
            let mut s = Simulcast::new();
            for (rid, _) in layers {
                s.add_send_layer(SimulcastLayer::new(rid.unwrap()));
            }
            Some(s)
        } else {
            None
        };
        let video = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(self.name.clone()),
            None,
            simulcast,
        );
        let (offer, pending) = api.apply().unwrap();
        self.pending = Some(pending);
        self.audio_mid = Some(audio);
        self.video_mid = Some(video);
        self.layers = layers
            .iter()
            .map(|(rid, kbps)| Layer {
                rid: rid.map(Rid::from),
                ssrc: None,
                kbps: *kbps,
                seq: 1,
                picture_id: 100,
                keyframe_due: true,
                enabled: true,
                pics_since_key: 0,
                tl0: 0,
            })
            .collect();
        offer.to_sdp_string()
    }

    /// A receive-only client: offers nothing but a data channel so ICE/DTLS can start; the
    /// server adds m-lines with its own offers.
    pub fn offer_subscribe(&mut self) -> String {
        let mut api = self.rtc.sdp_api();
        api.add_channel("ctl".into());
        let (offer, pending) = api.apply().unwrap();
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    /// The client's network changes to `addr` (a phone leaving Wi-Fi): the new address
    /// becomes a candidate (the old one no longer receives anything), and it offers an ICE
    /// restart (new ufrag and password).
    pub fn move_and_restart_ice(&mut self, addr: SocketAddr) -> String {
        self.addr = addr;
        self.rtc
            .add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = self.rtc.sdp_api();
        api.ice_restart(true);
        let (offer, pending) = api.apply().expect("an ICE restart is a change");
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    pub fn accept_answer(&mut self, answer: &str) {
        let pending = self.pending.take().expect("offer outstanding");
        self.answer.get_or_insert_with(|| answer.to_string());
        let answer = SdpAnswer::from_sdp_string(answer).unwrap();
        self.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    }

    /// Answer a server offer.
    pub fn accept_offer(&mut self, offer: &str) -> String {
        let offer = SdpOffer::from_sdp_string(offer).unwrap();
        self.rtc
            .sdp_api()
            .accept_offer(offer)
            .unwrap()
            .to_sdp_string()
    }

    /// Open a data channel labelled `label` (in-band, DCEP) on the client's SCTP association
    /// (its offer must have negotiated one); `lossy`: unordered, no retransmissions.
    pub fn open_channel(&mut self, label: &str, lossy: bool) {
        let config = str0m::channel::ChannelConfig {
            label: label.into(),
            ordered: !lossy,
            reliability: if lossy {
                str0m::channel::Reliability::MaxRetransmits { retransmits: 0 }
            } else {
                str0m::channel::Reliability::Reliable
            },
            ..Default::default()
        };
        let id = self.rtc.direct_api().create_data_channel(config);
        self.channels.insert(label.into(), id);
    }

    /// Send one message on the channel labelled `label`; whether str0m took it.
    pub fn send_on_channel(&mut self, label: &str, binary: bool, bytes: &[u8]) -> bool {
        let Some(&id) = self.channels.get(label) else {
            return false;
        };
        self.rtc
            .channel(id)
            .is_some_and(|mut c| c.write(binary, bytes).unwrap_or(false))
    }

    /// The messages received on the channel labelled `label`, in order.
    pub fn received_on(&self, label: &str) -> Vec<&[u8]> {
        self.channel_data
            .iter()
            .filter(|(l, _, _)| l == label)
            .map(|(_, _, b)| b.as_slice())
            .collect()
    }

    /// Stop or resume sending one simulcast layer.
    pub fn set_layer_enabled(&mut self, layer: usize, enabled: bool) {
        self.layers[layer].enabled = enabled;
        if enabled {
            self.layers[layer].keyframe_due = true;
        }
    }

    pub fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if !self.alive {
            return;
        }
        let input = Input::Receive(
            now,
            str0m::net::Receive {
                proto: str0m::net::Protocol::Udp,
                source: from,
                destination: self.addr,
                contents: data.try_into().unwrap(),
            },
        );
        self.rtc.handle_input(input).unwrap();
        // str0m in RTP mode holds one received packet until the next poll_output: a second
        // datagram handled before polling would overwrite it. Drain after every datagram.
        let out = self.poll(now);
        self.queued.extend(out);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.alive {
            self.deadline = now + Duration::from_secs(3600);
            return;
        }
        if now >= self.deadline {
            self.rtc.handle_input(Input::Timeout(now)).unwrap();
        }
        if self.connected {
            self.send_media(now);
        }
    }

    /// Next time this client wants to run.
    pub fn next_wakeup(&self) -> Instant {
        let mut t = self.deadline;
        for m in [self.next_video, self.next_audio].into_iter().flatten() {
            if self.connected && self.alive {
                t = t.min(m);
            }
        }
        t
    }

    /// Drain str0m; returns datagrams to send.
    pub fn poll(&mut self, now: Instant) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        let mut out = std::mem::take(&mut self.queued);
        if !self.alive {
            return out;
        }
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => {
                    self.deadline = t;
                    break;
                }
                Output::Transmit(t) => {
                    if !self.consent_checks && self.connected && is_binding_request(&t.contents) {
                        self.checks_suppressed += 1;
                        continue;
                    }
                    out.push((t.source, t.destination, t.contents.to_vec()))
                }
                Output::Event(e) => self.on_event(now, e),
            }
        }
        out
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Connected => {
                self.connected = true;
                self.started = Some(now);
                self.next_video = self.video_mid.map(|_| now);
                self.next_audio = self.audio_mid.map(|_| now);
            }
            Event::ChannelOpen(id, label) => {
                self.channels.insert(label, id);
            }
            Event::ChannelData(d) => {
                let label = self
                    .channels
                    .iter()
                    .find(|(_, id)| **id == d.id)
                    .map(|(l, _)| l.clone())
                    .unwrap_or_default();
                self.channel_data.push((label, d.binary, d.data));
            }
            Event::KeyframeRequest(req) => {
                self.keyframe_requests += 1;
                for l in &mut self.layers {
                    if req.rid.is_none() || l.rid == req.rid {
                        l.keyframe_due = true;
                    }
                }
            }
            Event::RtpPacket(p) => {
                let Some(mid) = self.mid_of(p.header.ssrc) else {
                    return;
                };
                let r = self.received.entry(mid).or_default();
                if !r.ssrcs.contains(&p.header.ssrc) {
                    r.ssrcs.push(p.header.ssrc);
                }
                if p.payload.is_empty() {
                    return;
                }
                r.seqs.push(*p.seq_no);
                r.packets += 1;
                match p.payload.last() {
                    Some(&AUDIO_TAG) => {
                        r.audio = true;
                        r.audio_packets.push(AudioRx {
                            seq: *p.seq_no,
                            ts: p.header.timestamp,
                            pt: *p.header.payload_type,
                            payload: p.payload.to_vec(),
                        });
                    }
                    Some(&VP9_TAG) => r.vp9.push(Vp9Rx {
                        at: now,
                        seq: *p.seq_no,
                        ts: p.header.timestamp,
                        marker: p.header.marker,
                        payload: p.payload.to_vec(),
                    }),
                    Some(&b) if (LAYER_TAG..LAYER_TAG + 3).contains(&b) => {
                        r.layers.push((now, b - LAYER_TAG));
                        let seq = *p.seq_no;
                        let ts = p.header.timestamp;
                        // Our descriptor is 4 bytes (X, S, 15-bit picture id); P = 0 is key.
                        let p = &p.payload;
                        let start = p.len() > 4 && p[0] & 0x10 != 0;
                        let pid = (start && p[0] & 0x80 != 0 && p[1] & 0x80 != 0)
                            .then(|| u16::from(p[2] & 0x7f) << 8 | u16::from(p[3]));
                        r.video.push((seq, ts, pid));
                        if p.len() > 4 && p[0] & 0x10 != 0 && p[4] & 0x01 == 0 {
                            r.keyframe_starts.push((now, b - LAYER_TAG));
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn mid_of(&mut self, ssrc: Ssrc) -> Option<Mid> {
        self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid())
    }

    fn pt_of(&self, codec: Codec) -> Option<str0m::media::Pt> {
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .map(|p| p.pt())
    }

    fn send_media(&mut self, now: Instant) {
        let started = self.started.unwrap_or(now);
        if let (Some(mid), Some(at)) = (self.audio_mid, self.next_audio) {
            if now >= at {
                self.next_audio = Some(at + Duration::from_millis(20));
                let ts = (now - started).as_millis() as u32 * 48;
                let n = self.audio_frames;
                self.audio_frames += 1;
                if !self.dtx || n.is_multiple_of(20) {
                    self.send_audio_frame(mid, now, ts, audio_frame(n, self.dtx));
                }
            }
        }
        if let (Some(mid), Some(at)) = (self.video_mid, self.next_video) {
            if now >= at {
                self.next_video = Some(at + Duration::from_millis(33));
                self.frame += 1;
                let periodic = self.frame.is_multiple_of(90); // a keyframe every ~3 s
                                                              // The frame was captured `video_capture_lag` ago (an encoder's delay): its
                                                              // timestamp and the wall clock str0m's sender reports map it to say so.
                let captured = now
                    .checked_sub(self.video_capture_lag)
                    .unwrap_or(now)
                    .max(started);
                let ts = (captured - started).as_micros() as u64 * 90 / 1000;
                if let Some(mode) = self.vp9 {
                    let Some(pt) = self.pt_of(Codec::Vp9) else {
                        return;
                    };
                    if self.layers.len() > 1 {
                        // Simulcast: one VP9 stream per rid, without layer indices.
                        for idx in 0..self.layers.len() {
                            let key = self.layers[idx].keyframe_due || periodic;
                            self.layers[idx].keyframe_due = false;
                            self.send_vp9_simulcast_frame(captured, mid, idx, pt, ts as u32, key);
                        }
                    } else if !self.layers.is_empty() {
                        let key = self.layers[0].keyframe_due || periodic;
                        self.layers[0].keyframe_due = false;
                        self.send_vp9_picture(captured, mid, mode, pt, ts as u32, key);
                    }
                    return;
                }
                let Some(pt) = self.pt_of(Codec::Vp8) else {
                    return;
                };
                for idx in 0..self.layers.len() {
                    if !self.layers[idx].enabled {
                        continue;
                    }
                    let key = self.layers[idx].keyframe_due || periodic;
                    self.layers[idx].keyframe_due = false;
                    self.send_frame(captured, mid, idx, pt, ts as u32, key);
                }
            }
        }
    }

    /// One audio frame: as RED (the previous frame as its redundant block) when RED was
    /// negotiated, else plain Opus.
    fn send_audio_frame(&mut self, mid: Mid, now: Instant, ts: u32, frame: Vec<u8>) {
        let opus = self
            .rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| (p.pt(), p.red()));
        let Some((pt, red)) = opus else { return };
        let (pt, payload) = match red {
            Some(red_pt) => {
                let previous = self
                    .last_audio
                    .as_ref()
                    .map(|(f, t)| (&f[..], ts.wrapping_sub(*t)));
                (red_pt, red_payload(*pt, previous, &frame))
            }
            None => (pt, frame.clone()),
        };
        self.last_audio = Some((frame, ts));
        self.send_raw_audio(mid, now, ts, pt, payload);
    }

    /// Send `payload` as the next audio packet, under payload type `pt`, as it is.
    pub fn send_raw_audio(
        &mut self,
        mid: Mid,
        now: Instant,
        ts: u32,
        pt: str0m::media::Pt,
        payload: Vec<u8>,
    ) {
        let mut api = self.rtc.direct_api();
        if let Some(tx) = api.stream_tx_by_mid(mid, None) {
            let ext = ExtensionValues {
                audio_level: Some(-self.audio_level),
                voice_activity: Some(true),
                ..Default::default()
            };
            tx.write_rtp(RtpWrite::new(pt, self.audio_seq.into(), ts, now, payload).ext_vals(ext));
            self.audio_seq += 1;
        }
    }

    /// The negotiated RED payload type, if any.
    pub fn red_pt(&self) -> Option<str0m::media::Pt> {
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == Codec::Opus)
            .and_then(|p| p.red())
    }

    fn send_frame(
        &mut self,
        captured: Instant,
        mid: Mid,
        idx: usize,
        pt: str0m::media::Pt,
        ts: u32,
        key: bool,
    ) {
        let layer = &mut self.layers[idx];
        let bytes = (layer.kbps * 1000 / 8 / 30).max(40) as usize;
        let bytes = if key { bytes * 2 } else { bytes };
        let npackets = bytes.div_ceil(1000);
        let mut api = self.rtc.direct_api();
        let tx = match layer.ssrc {
            Some(ssrc) => api.stream_tx(&ssrc),
            None => api.stream_tx_by_mid(mid, layer.rid),
        };
        let Some(tx) = tx else { return };
        layer.ssrc = Some(tx.ssrc());
        let pid = layer.picture_id & 0x7fff;
        layer.picture_id = layer.picture_id.wrapping_add(1);
        for i in 0..npackets {
            let first = i == 0;
            let mut p = Vec::with_capacity(1010);
            // VP8 descriptor: X, S on the first packet, I with a 15-bit picture id.
            p.push(if first { 0x90 } else { 0x80 });
            p.push(0x80);
            p.push(0x80 | (pid >> 8) as u8);
            p.push(pid as u8);
            if first {
                if key {
                    p.extend_from_slice(&[
                        0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00,
                    ]);
                } else {
                    p.extend_from_slice(&[0x11, 0x02, 0x00]);
                }
            }
            p.resize(bytes / npackets, 0x33);
            p.push(LAYER_TAG + idx as u8);
            let last = i + 1 == npackets;
            tx.write_rtp(
                RtpWrite::new(pt, layer.seq.into(), ts, captured, p)
                    .marker(last)
                    .nackable(true),
            );
            layer.seq += 1;
        }
    }

    /// One VP9 picture of every spatial layer of `mode`, each layer frame in packets of at
    /// most 1000 bytes. After the descriptor each payload says (original picture id, SID,
    /// TID, the layer frames it references, packet index, packet count), so a subscriber can
    /// check that everything it got is decodable.
    fn send_vp9_picture(
        &mut self,
        captured: Instant,
        mid: Mid,
        mode: SvcMode,
        pt: str0m::media::Pt,
        ts: u32,
        key: bool,
    ) {
        let layer = &mut self.layers[0];
        if key {
            layer.pics_since_key = 0;
        }
        let psk = layer.pics_since_key;
        layer.pics_since_key += 1;
        let (tid, pdiff) = TEMPORAL_PATTERN[(psk % 4) as usize];
        if tid == 0 {
            layer.tl0 = layer.tl0.wrapping_add(1);
        }
        // RFC 9628 U: pictures after a T0 or T1 picture with a higher TID reference nothing
        // before it with a higher TID.
        let switch_up = tid < 2;
        let pid = layer.picture_id & 0x7fff;
        layer.picture_id = layer.picture_id.wrapping_add(1);
        let (tl0, kbps) = (layer.tl0, layer.kbps);
        let mut api = self.rtc.direct_api();
        let tx = match layer.ssrc {
            Some(ssrc) => api.stream_tx(&ssrc),
            None => api.stream_tx_by_mid(mid, None),
        };
        let Some(tx) = tx else { return };
        layer.ssrc = Some(tx.ssrc());
        let spatial = mode.spatial_layers();
        for sid in 0..spatial {
            let share = if spatial == 1 {
                10
            } else {
                SPATIAL_SHARE[usize::from(sid)]
            };
            // L1T3: the higher the temporal layer the larger its frames, so each step of
            // frame rate costs clearly more than the one below (T0 9%, T0+T1 27%).
            let weight = match mode {
                SvcMode::L1T3 => [1, 2, 8][usize::from(tid)],
                _ => 2,
            };
            let bytes = (kbps * 1000 / 8 / 30 * share / 10 * weight / 2).max(60) as usize;
            let bytes = if key { bytes * 2 } else { bytes };
            let npackets = bytes.div_ceil(1000);
            let inter_layer = sid > 0 && (key || mode == SvcMode::L3T3);
            let mut refs: Vec<(u16, u8)> = Vec::new();
            if !key {
                refs.push((pid.wrapping_sub(pdiff) & 0x7fff, sid));
            }
            if inter_layer {
                refs.push((pid, sid - 1));
            }
            for i in 0..npackets {
                let (first, last) = (i == 0, i + 1 == npackets);
                let ss = key && sid == 0 && first;
                let mut p = Vec::with_capacity(1100);
                p.push(
                    0x80 | 0x20
                        | if key { 0 } else { 0x40 }
                        | if first { 0x08 } else { 0 }
                        | if last { 0x04 } else { 0 }
                        | if ss { 0x02 } else { 0 },
                );
                p.extend_from_slice(&[0x80 | (pid >> 8) as u8, pid as u8]);
                p.push(tid << 5 | u8::from(switch_up) << 4 | sid << 1 | u8::from(inter_layer));
                p.push(tl0);
                if ss {
                    p.push((spatial - 1) << 5 | 0x10 | 0x08);
                    for s in 0..spatial {
                        let (w, h) = (320u16 << s, 180u16 << s);
                        p.extend_from_slice(&w.to_be_bytes());
                        p.extend_from_slice(&h.to_be_bytes());
                    }
                    p.push(4);
                    for (t, d) in TEMPORAL_PATTERN {
                        p.push(t << 5 | u8::from(t < 2) << 4 | 1 << 2);
                        p.push((d as u8) << 1);
                    }
                }
                p.extend_from_slice(&pid.to_be_bytes());
                p.extend_from_slice(&[sid, tid, refs.len() as u8]);
                for (rp, rs) in &refs {
                    p.extend_from_slice(&rp.to_be_bytes());
                    p.push(*rs);
                }
                p.extend_from_slice(&[i as u8, npackets as u8]);
                p.resize((bytes / npackets).max(p.len()), 0x33);
                p.push(VP9_TAG);
                tx.write_rtp(
                    RtpWrite::new(pt, layer.seq.into(), ts, captured, p)
                        .marker(last && sid + 1 == spatial)
                        .nackable(true),
                );
                layer.seq += 1;
            }
        }
    }

    /// One frame of simulcast layer `idx` as its own VP9 stream: a 15-bit picture id, no layer
    /// indices; after the descriptor the same fields as `send_vp9_picture` (SID = `idx`), each
    /// frame referencing the one before of its stream unless it is a keyframe.
    fn send_vp9_simulcast_frame(
        &mut self,
        captured: Instant,
        mid: Mid,
        idx: usize,
        pt: str0m::media::Pt,
        ts: u32,
        key: bool,
    ) {
        let layer = &mut self.layers[idx];
        let bytes = (layer.kbps * 1000 / 8 / 30).max(60) as usize;
        let bytes = if key { bytes * 2 } else { bytes };
        let npackets = bytes.div_ceil(1000);
        let mut api = self.rtc.direct_api();
        let tx = match layer.ssrc {
            Some(ssrc) => api.stream_tx(&ssrc),
            None => api.stream_tx_by_mid(mid, layer.rid),
        };
        let Some(tx) = tx else { return };
        layer.ssrc = Some(tx.ssrc());
        let pid = layer.picture_id & 0x7fff;
        layer.picture_id = layer.picture_id.wrapping_add(1);
        let refs: &[(u16, u8)] = if key {
            &[]
        } else {
            &[(pid.wrapping_sub(1) & 0x7fff, idx as u8)]
        };
        for i in 0..npackets {
            let (first, last) = (i == 0, i + 1 == npackets);
            let mut p = Vec::with_capacity(1100);
            p.push(
                0x80 | if key { 0 } else { 0x40 }
                    | if first { 0x08 } else { 0 }
                    | if last { 0x04 } else { 0 },
            );
            p.extend_from_slice(&[0x80 | (pid >> 8) as u8, pid as u8]);
            p.extend_from_slice(&pid.to_be_bytes());
            p.extend_from_slice(&[idx as u8, 0, refs.len() as u8]);
            for (rp, rs) in refs {
                p.extend_from_slice(&rp.to_be_bytes());
                p.push(*rs);
            }
            p.extend_from_slice(&[i as u8, npackets as u8]);
            p.resize((bytes / npackets).max(p.len()), 0x33);
            p.push(VP9_TAG);
            tx.write_rtp(
                RtpWrite::new(pt, layer.seq.into(), ts, captured, p)
                    .marker(last)
                    .nackable(true),
            );
            layer.seq += 1;
        }
    }

    /// Send each of `payloads` as one VP9 packet of the video stream, as they are (a test's
    /// malformed descriptors), in the stream's sequence.
    pub fn send_raw_vp9(&mut self, payloads: &[&[u8]]) {
        let (Some(mid), Some(pt)) = (self.video_mid, self.pt_of(Codec::Vp9)) else {
            return;
        };
        let now = self.started.unwrap_or(self.deadline);
        let layer = &mut self.layers[0];
        let mut api = self.rtc.direct_api();
        let tx = match layer.ssrc {
            Some(ssrc) => api.stream_tx(&ssrc),
            None => api.stream_tx_by_mid(mid, None),
        };
        let Some(tx) = tx else { return };
        for p in payloads {
            tx.write_rtp(RtpWrite::new(pt, layer.seq.into(), 0, now, p.to_vec()).nackable(true));
            layer.seq += 1;
        }
    }

    /// Ask the sender of everything we receive on `mid` for a keyframe (unused by default).
    pub fn request_keyframe(&mut self, mid: Mid) {
        if let Some(rx) = self.rtc.direct_api().stream_rx_by_mid(mid, None) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
    }
}

/// An RFC 2198 payload: `previous` (frame, timestamp offset) as one redundant block, if
/// any, then `primary`; every block of payload type `pt`.
pub fn red_payload(pt: u8, previous: Option<(&[u8], u32)>, primary: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some((frame, offset)) = previous {
        out.push(0x80 | pt);
        let v = (offset & 0x3fff) << 10 | frame.len() as u32;
        out.extend_from_slice(&v.to_be_bytes()[1..]);
    }
    out.push(pt);
    if let Some((frame, _)) = previous {
        out.extend_from_slice(frame);
    }
    out.extend_from_slice(primary);
    out
}

/// A STUN binding request (RFC 7983 first byte 0..=3, then STUN's own parse).
pub fn is_binding_request(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| *b < 4)
        && str0m::ice::StunMessage::parse(datagram).is_ok_and(|m| m.is_binding_request())
}
