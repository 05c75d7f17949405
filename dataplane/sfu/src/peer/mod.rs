//! One peer connection: its str0m `Rtc` (a full ICE agent, DTLS, SDP, data channels; in RTP
//! mode, but it never sees RTP) and, once DTLS has produced keys, its Shardcast
//! [`Transport`] (SRTP, RTP, RTCP); plus the per-peer tables the forwarding path needs without
//! asking str0m again (pt → codec, mid → subscription, our SSRC → subscription) and the
//! server-offer state (one outstanding offer at a time).
//!
//! Owns nothing of other peers. Must never read the clock or route packets itself: the core
//! drives it.

use crate::Map;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use shardcast_rtp::srtp::tap::{self, KeySlot};
use smallvec::SmallVec;
use str0m::bwe::Bitrate;
use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::format::CodecSpec;
use str0m::media::{Mid, Pt};
use str0m::{Candidate, Rtc, RtcConfig};

use crate::api::{LayerIndex, MediaKind, PeerRole};
use crate::config::CoreConfig;
use crate::ids::{PeerId, RoomId, TrackId};
use crate::transport::Transport;
use crate::tx_queue::Remote;

/// Our id for the AV1 dependency descriptor in offers we make (str0m's standard map leaves
/// 12 free); an offer's own id is kept in answers.
const DEPENDENCY_DESCRIPTOR_ID: u8 = 12;

/// A header extension str0m negotiates but never reads or writes: Shardcast owns RTP and
/// reads the value itself (`shardcast_rtp::rtp::read_extensions`).
#[derive(Debug)]
struct NegotiatedOnly;

impl str0m::rtp::ExtensionSerializer for NegotiatedOnly {
    fn write_to(&self, _buf: &mut [u8], _ev: &str0m::rtp::ExtensionValues) -> usize {
        0
    }
    fn parse_value(&self, _buf: &[u8], _ev: &mut str0m::rtp::ExtensionValues) -> bool {
        false
    }
    fn is_video(&self) -> bool {
        true
    }
    fn is_audio(&self) -> bool {
        false
    }
    fn requires_two_byte_form(&self, _ev: &str0m::rtp::ExtensionValues) -> bool {
        true
    }
}

mod receive;
pub(crate) use receive::{video_codec, Received};

/// A track this peer publishes, by the mid of its m-line.
#[derive(Debug, Clone)]
pub struct PublishedMid {
    pub mid: Mid,
    pub track: TrackId,
    /// Simulcast rids, lowest layer first (empty: one layer).
    pub rids: SmallVec<[str0m::media::Rid; 3]>,
}

/// Server-offer state for subscriptions.
#[derive(Default)]
pub struct Negotiation {
    /// The offer the client has not answered yet.
    pub pending: Option<SdpPendingOffer>,
    /// Subscriptions added in `pending` (their m-lines exist only once it is answered).
    pub in_flight: Vec<(TrackId, Mid)>,
    /// Subscriptions waiting for the next offer.
    pub queued_add: Vec<TrackId>,
    /// m-lines to deactivate in the next offer.
    pub queued_remove: Vec<Mid>,
}

pub struct Peer {
    #[allow(dead_code)]
    pub id: PeerId,
    pub room: RoomId,
    pub identity: Arc<str>,
    pub role: PeerRole,
    pub rtc: Rtc,
    pub local_ufrag: String,
    pub connected: bool,
    /// When the answer was made (the connect timeout counts from here).
    pub created: Instant,
    /// The deadline scheduled in the shard's timer heap: the earlier of str0m's and the
    /// transport's.
    pub deadline: Option<Instant>,
    /// str0m's own next timeout.
    pub rtc_deadline: Option<Instant>,
    /// Where DTLS leaves the SRTP keys for this peer (see `shardcast_rtp::srtp::tap`).
    pub keys: Arc<KeySlot>,
    /// Our RTP session with the peer, from the moment DTLS produced keys.
    pub transport: Option<Transport>,
    /// Where media for this peer goes: the source (and transport) of its latest DTLS record
    /// or authenticated SRTP/SRTCP packet, i.e. the pair the client itself sends on.
    pub remote: Option<Remote>,
    pub published: SmallVec<[PublishedMid; 2]>,
    /// Publisher side: payload type → codec of what this peer sends us, and for a RED
    /// payload type (RFC 2198) the payload type of the codec its blocks carry.
    pub pt_codecs: SmallVec<[(Pt, CodecSpec, Option<u8>); 4]>,
    /// Publisher side: RTX payload type → the payload type it repairs.
    pub rtx_apt: SmallVec<[(u8, u8); 4]>,
    /// Subscriber side: the audio m-lines on which the peer's last answer negotiated RED
    /// (learned from the SDP text: str0m keeps one RED choice per session, not per m-line).
    pub red_lines: SmallVec<[crate::sdp_red::RedLine; 2]>,
    /// Subscriber side: the subscription behind each sendonly m-line.
    pub sub_by_mid: Map<Mid, TrackId>,
    /// Subscriber side: the subscription behind each SSRC we send on (main and RTX), for the
    /// subscriber's RTCP about it.
    pub sub_by_ssrc: Map<u32, TrackId>,
    /// Tracks this peer subscribes to (for cleanup).
    pub subscriptions: SmallVec<[TrackId; 8]>,
    /// `PeerRole::Play`: the m-lines of its offer we may send on, in SDP order; a
    /// subscription takes the first free one of its kind.
    pub play_lines: SmallVec<[(Mid, MediaKind); 4]>,
    /// `PeerRole::Play`: the outgoing stream of a line whose track went away, kept so the
    /// next track on that line continues its sequence numbers and timestamps.
    pub parked: Vec<(Mid, crate::track::Subscription)>,
    pub negotiation: Negotiation,
    /// Latest downlink estimate from the transport's send-side estimator. `None`: none yet,
    /// or none needed (congestion control off, or a client that gives no transport-cc or
    /// REMB feedback and loses nothing).
    pub downlink_estimate: Option<Bitrate>,
    /// The desired bitrate last given to the estimator (bits/s).
    pub bwe_desired: u64,
    /// The room's video codec preference (`CreatePeer::video_codecs`), for every answer.
    pub video_codecs: Vec<String>,
    /// Room data: its grant, its room-data channels, its sending budget.
    pub data: crate::data::PeerData,
    /// Set while the peer is in the core's to-drain list.
    pub dirty: bool,
}

impl Peer {
    /// A new server-side `Rtc`: a full ICE agent (controlled when answering), RTP mode, the
    /// shard's UDP socket as the first host candidate and, when the shard listens for ICE-TCP,
    /// its TCP port as a passive TCP host candidate after it (RFC 6544; str0m gives host TCP
    /// a lower type preference, 90 against 126, so UDP wins where both work), built through
    /// the key tap so the transport gets the SRTP keys. str0m's own bandwidth estimation stays off: the transport
    /// estimates.
    ///
    /// Full, not lite: the agent sends its own consent checks (RFC 7675) on the selected pair
    /// every few seconds, so a client that answers them stays connected even if it never
    /// sends a check of its own while media flows (docs/ARCHITECTURE.md, "Liveness").
    // Identity, role and both local candidates: each is a different question a caller answers.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: PeerId,
        room: RoomId,
        identity: &str,
        role: PeerRole,
        config: &CoreConfig,
        local_addr: SocketAddr,
        tcp_addr: Option<SocketAddr>,
        now: Instant,
    ) -> Result<Self, String> {
        let rtc_config = RtcConfig::new()
            .set_ice_lite(false)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, true)
            .enable_vp8(true)
            .enable_h264(true)
            .enable_vp9(true)
            .enable_av1(true)
            // AV1 SVC layers are read from it (`forward::av1`); str0m only negotiates it.
            .set_extension(
                DEPENDENCY_DESCRIPTOR_ID,
                str0m::rtp::Extension::with_serializer(
                    shardcast_rtp::rtp::DEPENDENCY_DESCRIPTOR_URI,
                    NegotiatedOnly,
                ),
            )
            .set_stats_interval(None)
            // str0m never sends media here: keep its per-stream buffers minimal.
            .set_send_buffer_video(1)
            .set_send_buffer_audio(1);
        let (mut rtc, keys) = tap::build_rtc(rtc_config, now);
        let candidate = Candidate::host(local_addr, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);
        if let Some(tcp) = tcp_addr {
            let candidate = Candidate::builder()
                .tcp()
                .host(tcp)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
                .map_err(|e| e.to_string())?;
            rtc.add_local_candidate(candidate);
        }
        let local_ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        Ok(Peer {
            id,
            room,
            identity: identity.into(),
            role,
            rtc,
            local_ufrag,
            connected: false,
            created: now,
            deadline: None,
            rtc_deadline: None,
            keys,
            transport: None,
            remote: None,
            published: SmallVec::new(),
            pt_codecs: SmallVec::new(),
            red_lines: SmallVec::new(),
            rtx_apt: SmallVec::new(),
            sub_by_mid: Map::default(),
            sub_by_ssrc: Map::default(),
            subscriptions: SmallVec::new(),
            play_lines: SmallVec::new(),
            parked: Vec::new(),
            negotiation: Negotiation::default(),
            downlink_estimate: None,
            bwe_desired: config.bwe_desired_kbps * 1000,
            video_codecs: Vec::new(),
            data: crate::data::PeerData::new(true, &config.data_limits),
            dirty: false,
        })
    }

    /// Accept the client's offer; returns the answer SDP.
    pub fn accept_offer(&mut self, offer: &str) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| e.to_string())?;
        self.accept_parsed_offer(offer)
    }

    /// As [`Peer::accept_offer`], for an offer already parsed (str0m's SDP parser is the
    /// largest part of making a peer: parse once).
    pub fn accept_parsed_offer(&mut self, offer: SdpOffer) -> Result<String, String> {
        // A client offer while ours is outstanding (glare): str0m drops ours; requeue what
        // it carried so the next server offer adds it again.
        if self.negotiation.pending.take().is_some() {
            let in_flight = std::mem::take(&mut self.negotiation.in_flight);
            for (track, mid) in in_flight {
                self.sub_by_mid.remove(&mid);
                self.negotiation.queued_add.push(track);
            }
        }
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| e.to_string())?;
        Ok(answer.to_sdp_string())
    }

    /// The codec of an incoming payload type, cached per pt.
    pub fn codec_of(&mut self, pt: Pt) -> Option<CodecSpec> {
        self.format_of(pt).map(|(spec, _)| spec)
    }

    /// The codec of an incoming payload type and, when it is the RED payload type negotiated
    /// for that codec (RFC 2198), the codec's own payload type (what RED's blocks carry);
    /// cached per pt.
    pub fn format_of(&mut self, pt: Pt) -> Option<(CodecSpec, Option<u8>)> {
        if let Some((_, spec, red)) = self.pt_codecs.iter().find(|(p, ..)| *p == pt) {
            return Some((*spec, *red));
        }
        let (spec, red) = match self.rtc.codec_config().find(|p| p.pt() == pt) {
            Some(p) => (p.spec(), None),
            None => {
                let p = self.rtc.codec_config().find(|p| p.red() == Some(pt))?;
                (p.spec(), Some(*p.pt()))
            }
        };
        self.pt_codecs.push((pt, spec, red));
        Some((spec, red))
    }

    /// The RED payload type negotiated on the peer's m-line `mid` for the primary codec of
    /// payload type `primary` (its `a=fmtp:<red> <primary>/<primary>`), if any.
    pub fn red_pt(&self, mid: Mid, primary: u8) -> Option<u8> {
        self.red_lines
            .iter()
            .find(|l| l.mid == mid && l.primary == primary)
            .map(|l| l.red)
    }

    /// Remember which m-lines carry RED once a negotiation concluded with `answer`: the
    /// peer's answer to our offer (`offer` None) says it per m-line; our answer to the
    /// peer's `offer` counts only where the offer had RED too (str0m writes the session's
    /// RED choice on every audio m-line it answers, including ones offered without it).
    pub fn learn_red(&mut self, offer: Option<&str>, answer: &str) {
        let mut lines = crate::sdp_red::red_lines(answer);
        if let Some(offer) = offer {
            let offered = crate::sdp_red::red_lines(offer);
            lines.retain(|l| offered.contains(l));
        }
        self.red_lines = lines;
    }

    /// The payload type an RTX payload type repairs (RFC 4588 `apt`), cached per pt.
    pub fn rtx_apt(&mut self, rtx_pt: u8) -> Option<u8> {
        if let Some((_, apt)) = self.rtx_apt.iter().find(|(r, _)| *r == rtx_pt) {
            return Some(*apt);
        }
        let apt = self
            .rtc
            .codec_config()
            .find(|p| p.resend().map(|r| *r) == Some(rtx_pt))
            .map(|p| *p.pt())?;
        self.rtx_apt.push((rtx_pt, apt));
        Some(apt)
    }

    /// The published track and layer that a mid (and rid) name.
    pub fn published_layer(&self, mid: Mid, rid: Option<&[u8]>) -> Option<(TrackId, LayerIndex)> {
        let published = self.published.iter().find(|p| p.mid == mid)?;
        let layer = match rid {
            Some(rid) => published.rids.iter().position(|r| r.as_bytes() == rid)? as LayerIndex,
            None => 0,
        };
        Some((published.track, layer))
    }

    /// The mids of the m-lines that carry media we know of: what it publishes and what it
    /// subscribes to.
    pub fn rtc_mids(&self) -> SmallVec<[Mid; 8]> {
        self.published
            .iter()
            .map(|p| p.mid)
            .chain(self.sub_by_mid.keys().copied())
            .collect()
    }

    /// The earliest of str0m's and the transport's deadlines.
    pub fn next_deadline(&self) -> Option<Instant> {
        let tp = self.transport.as_ref().map(|t| t.deadline());
        match (self.rtc_deadline, tp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
