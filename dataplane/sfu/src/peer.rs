//! One peer connection: its str0m `Rtc` (full ICE agent, RTP mode) and the per-peer tables
//! the forwarding path needs without asking str0m again (SSRC → track/layer, pt → codec,
//! mid → subscription), plus the server-offer state (one outstanding offer at a time).
//!
//! Owns nothing of other peers. Must never read the clock or route packets itself: the core
//! drives it.

use crate::Map;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use smallvec::SmallVec;
use str0m::bwe::Bitrate;
use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::format::CodecSpec;
use str0m::media::{Mid, Pt};
use str0m::rtp::Ssrc;
use str0m::{Candidate, Rtc, RtcConfig};

use crate::api::{LayerIndex, PeerRole};
use crate::config::CoreConfig;
use crate::core::SeqWindow;
use crate::ids::{PeerId, RoomId, TrackId};

/// A track this peer publishes, by the mid of its m-line.
#[derive(Debug, Clone)]
pub struct PublishedMid {
    pub mid: Mid,
    pub track: TrackId,
    /// Simulcast rids, lowest layer first (empty: one layer).
    pub rids: SmallVec<[str0m::media::Rid; 3]>,
}

/// Where an incoming SSRC goes, learned once per SSRC.
#[derive(Debug, Clone, Copy)]
pub struct SsrcRoute {
    pub track: TrackId,
    pub layer: LayerIndex,
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
    /// Current str0m deadline as scheduled in the shard's timer heap.
    pub deadline: Option<Instant>,
    pub published: SmallVec<[PublishedMid; 2]>,
    pub ssrc_routes: Map<Ssrc, SsrcRoute>,
    /// Sequence numbers str0m delivered per SSRC, to tell a replay from a forgery when it
    /// drops one (`core/rtp_drop.rs`).
    pub rx_seen: Map<Ssrc, SeqWindow>,
    /// Publisher side: payload type → codec of what this peer sends us.
    pub pt_codecs: SmallVec<[(Pt, CodecSpec); 4]>,
    /// Subscriber side: the subscription behind each sendonly m-line.
    pub sub_by_mid: Map<Mid, TrackId>,
    /// Tracks this peer subscribes to (for cleanup).
    pub subscriptions: SmallVec<[TrackId; 8]>,
    pub negotiation: Negotiation,
    /// Latest downlink estimate from str0m's TWCC bandwidth estimator.
    pub downlink_estimate: Option<Bitrate>,
    /// The desired bitrate last given to str0m's estimator (bits/s).
    pub bwe_desired: u64,
    /// When the next probe for a better layer may be asked for (see `route.rs`).
    pub bwe_probe_at: Option<Instant>,
    /// Set while the peer is in the core's to-drain list.
    pub dirty: bool,
}

impl Peer {
    /// A new server-side `Rtc`: a full ICE agent (controlled when answering), RTP mode, the
    /// shard's socket as the one host candidate, TWCC bandwidth estimation for the downlink.
    ///
    /// Full, not lite: the agent sends its own consent checks (RFC 7675) on the selected pair
    /// every few seconds, so a client that answers them stays connected even if it never
    /// sends a check of its own while media flows (docs/ARCHITECTURE.md, "Liveness").
    pub fn new(
        id: PeerId,
        room: RoomId,
        identity: &str,
        role: PeerRole,
        config: &CoreConfig,
        local_addr: SocketAddr,
        now: Instant,
    ) -> Result<Self, String> {
        let mut rtc_config = RtcConfig::new()
            .set_ice_lite(false)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .enable_vp9(true)
            .set_stats_interval(None)
            .set_send_buffer_video(config.send_buffer_video)
            .set_send_buffer_audio(config.send_buffer_audio);
        if config.bwe_initial_kbps > 0 {
            rtc_config = rtc_config.enable_bwe(Some(Bitrate::kbps(config.bwe_initial_kbps)));
        }
        let mut rtc = rtc_config.build(now);
        let candidate = Candidate::host(local_addr, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);
        if config.bwe_initial_kbps > 0 {
            rtc.bwe().set_bitrate(
                Bitrate::kbps(config.bwe_min_kbps),
                Bitrate::kbps(config.bwe_desired_kbps),
            );
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
            published: SmallVec::new(),
            ssrc_routes: Map::default(),
            rx_seen: Map::default(),
            pt_codecs: SmallVec::new(),
            sub_by_mid: Map::default(),
            subscriptions: SmallVec::new(),
            negotiation: Negotiation::default(),
            downlink_estimate: None,
            bwe_desired: config.bwe_desired_kbps * 1000,
            bwe_probe_at: None,
            dirty: false,
        })
    }

    /// Accept the client's offer; returns the answer SDP.
    pub fn accept_offer(&mut self, offer: &str) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| e.to_string())?;
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
        if let Some((_, spec)) = self.pt_codecs.iter().find(|(p, _)| *p == pt) {
            return Some(*spec);
        }
        let spec = self.rtc.codec_config().find(|p| p.pt() == pt)?.spec();
        self.pt_codecs.push((pt, spec));
        Some(spec)
    }

    /// Which of our tracks and layers an incoming SSRC carries, learned from str0m's
    /// mid/rid mapping the first time and cached.
    pub fn route_of(&mut self, ssrc: Ssrc) -> Option<SsrcRoute> {
        if let Some(r) = self.ssrc_routes.get(&ssrc) {
            return Some(*r);
        }
        let (mid, rid) = {
            let mut api = self.rtc.direct_api();
            let rx = api.stream_rx(&ssrc)?;
            (rx.mid(), rx.rid())
        };
        let published = self.published.iter().find(|p| p.mid == mid)?;
        let layer = match rid {
            Some(rid) => published.rids.iter().position(|r| *r == rid)? as LayerIndex,
            None => 0,
        };
        let route = SsrcRoute {
            track: published.track,
            layer,
        };
        self.ssrc_routes.insert(ssrc, route);
        Some(route)
    }
}
