//! `ShardCore`: the sans-IO SFU of one shard. Owns the peers, the demux table, the timer
//! heap, the tracks and subscriptions, and the output queue.
//!
//! Every input (`handle_datagram`, `handle_shard_message`, `handle_timeout`, control calls)
//! runs to completion: the touched peers are drained into the output queue before it
//! returns, so `poll_output` only pops. Each call into a peer's str0m is wrapped in
//! `catch_unwind`: a panic closes that peer, is counted, and the shard goes on.
//! Must never read the clock, touch a socket or block.

use std::collections::VecDeque;

use crate::Map;
use std::net::SocketAddr;
use std::time::Instant;

use crate::api::{Output, TrackInfo};
use crate::config::CoreConfig;
use crate::demux::Demux;
use crate::ids::{PeerId, RoomId, ShardId, TrackId};
use crate::peer::Peer;
use crate::room::Room;
use crate::stats::ShardStats;
use crate::timers::{TimerGrid, TimerHeap};
use crate::track::{PublishedTrack, Subscription};
use crate::tx_queue::TxQueue;
use shardcast_rtp::recv::ntp::NtpClock;

/// Errors of the control calls (the node API maps them to its stable codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("malformed SDP: {0}")]
    BadSdp(String),
    #[error("unknown peer {0}")]
    UnknownPeer(PeerId),
    #[error("unknown track {0}")]
    UnknownTrack(TrackId),
    #[error("negotiation state does not allow this: {0}")]
    BadState(String),
    #[error("peer {0} already exists")]
    DuplicatePeer(PeerId),
}

pub struct ShardCore {
    pub(crate) config: CoreConfig,
    pub(crate) shard: ShardId,
    pub(crate) local_addr: SocketAddr,
    /// The shard's ICE-TCP listening address, offered as a passive TCP candidate (None: UDP
    /// only).
    pub(crate) tcp_addr: Option<SocketAddr>,
    pub(crate) peers: Map<PeerId, Peer>,
    pub(crate) demux: Demux,
    pub(crate) timers: TimerHeap,
    pub(crate) timer_grid: TimerGrid,
    pub(crate) tracks: Map<TrackId, PublishedTrack>,
    pub(crate) subs: Map<(PeerId, TrackId), Subscription>,
    pub(crate) rooms: Map<RoomId, Room>,
    pub(crate) out: VecDeque<Output>,
    /// Datagrams to send, drained by the shard each turn (`drain_datagrams`).
    pub(crate) tx: TxQueue,
    pub(crate) dirty: Vec<PeerId>,
    pub(crate) stats: ShardStats,
    pub(crate) next_track: u64,
    pub(crate) next_tick: Instant,
    /// Where SRTP/SRTCP is opened into (taken out while a packet is handled).
    pub(crate) scratch: Vec<u8>,
    /// Where a payload is copied to be patched for one subscriber: VP8/VP9 picture ids, the
    /// payload types in a RED packet's block headers.
    pub(crate) payload_scratch: Vec<u8>,
    /// The subscribers of the track being routed, copied out of it so the loop can touch
    /// the rest of the core (reused: no allocation per packet).
    pub(crate) route_scratch: Vec<PeerId>,
    /// One transport-cc feedback's results, reused.
    pub(crate) twcc_results: Vec<shardcast_rtp::bwe::PacketResult>,
    /// Our NTP clock (sender reports, RTT from report blocks).
    pub(crate) ntp: NtpClock,
    /// The core's start: the base of abs-send-time.
    pub(crate) epoch: Instant,
}

impl ShardCore {
    pub fn new(config: CoreConfig, shard: ShardId, local_addr: SocketAddr, now: Instant) -> Self {
        let next_tick = now + config.tick;
        let timer_grid = TimerGrid::new(now, config.timer_granularity);
        ShardCore {
            config,
            shard,
            local_addr,
            tcp_addr: None,
            peers: Map::default(),
            demux: Demux::default(),
            timers: TimerHeap::default(),
            timer_grid,
            tracks: Map::default(),
            subs: Map::default(),
            rooms: Map::default(),
            out: VecDeque::new(),
            tx: TxQueue::default(),
            dirty: Vec::new(),
            stats: ShardStats::default(),
            next_track: 1,
            next_tick,
            scratch: vec![0; crate::tx_queue::MAX_TX_DATAGRAM + shardcast_rtp::srtp::SEAL_SLACK],
            payload_scratch: Vec::with_capacity(crate::tx_queue::MAX_TX_DATAGRAM),
            route_scratch: Vec::new(),
            twcc_results: Vec::new(),
            // Until `set_wall_clock`, NTP time counts from the Unix epoch at `now`: only
            // differences matter to peers (RTT, lip sync), never the absolute value.
            ntp: NtpClock::new(now, std::time::Duration::ZERO),
            epoch: now,
        }
    }

    /// Tie our NTP time to the wall clock: `unix` is the time since the Unix epoch at
    /// `at`. The shard calls it once at start-up; the core itself never reads a clock.
    pub fn set_wall_clock(&mut self, at: Instant, unix: std::time::Duration) {
        self.ntp = NtpClock::new(at, unix);
    }

    pub fn shard(&self) -> ShardId {
        self.shard
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Offer `addr` (the shard's ICE-TCP listener) as a passive TCP host candidate in the
    /// answers of peers created from now on. Frames from its connections come in through
    /// `handle_receive` with `Protocol::Tcp`.
    pub fn set_tcp_candidate(&mut self, addr: Option<SocketAddr>) {
        self.tcp_addr = addr;
    }

    /// The counters, with the gauges that are cheaper to read than to keep current.
    pub fn stats(&self) -> ShardStats {
        ShardStats {
            rooms: self.rooms.len() as u64,
            timers: self.timers.len() as u64,
            ..self.stats.clone()
        }
    }

    /// What a subscriber needs to subscribe to `track` (local tracks only).
    pub fn track_info(&self, track: TrackId) -> Option<TrackInfo> {
        let t = self.tracks.get(&track)?;
        t.publisher.map(|_| t.info.clone())
    }

    /// The tracks a local peer publishes.
    pub fn tracks_of(&self, peer: PeerId) -> Vec<TrackId> {
        self.peers
            .get(&peer)
            .map(|p| p.published.iter().map(|m| m.track).collect())
            .unwrap_or_default()
    }

    /// The latest downlink estimate (bits/s) for a subscriber, from its transport's
    /// send-side estimator (`None`: unconstrained, or none yet).
    pub fn downlink_estimate(&self, peer: PeerId) -> Option<u64> {
        self.peers.get(&peer)?.downlink_estimate.map(|b| b.as_u64())
    }

    /// The layer currently forwarded on a subscription (`None`: nothing yet, or paused).
    pub fn forwarded_layer(&self, subscriber: PeerId, track: TrackId) -> Option<u8> {
        self.subs.get(&(subscriber, track))?.forwarded_layer()
    }

    pub fn has_peer(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }
}

mod allocate;
mod bind;
mod control;
mod data;
mod drain;
mod egress;
mod feedback;
mod ingress;
mod lifecycle;
mod route;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CloseReason, CoreEvent, CreatePeer, Output, PeerRole};

    fn client_offer(now: Instant) -> String {
        let mut rtc = str0m::Rtc::new(now);
        let mut api = rtc.sdp_api();
        api.add_channel("c".into());
        let (offer, _pending) = api.apply().expect("offer");
        offer.to_sdp_string()
    }

    #[test]
    fn a_panicking_peer_is_closed_and_the_shard_goes_on() {
        let now = Instant::now();
        let addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut core = ShardCore::new(CoreConfig::default(), ShardId(0), addr, now);
        let (a, b) = (PeerId::new(ShardId(0), 1), PeerId::new(ShardId(0), 2));
        for id in [a, b] {
            let req = CreatePeer {
                room: RoomId::new("r"),
                identity: format!("p{}", id.0),
                role: PeerRole::Both,
                offer: client_offer(now),
                bind_tracks: Vec::new(),
                can_send_data: true,
                video_codecs: Vec::new(),
            };
            core.create_peer(now, id, req).expect("answer");
        }
        assert_eq!(core.stats().peers, 2);
        let r: Option<()> = core.with_peer(a, |_| panic!("boom inside str0m"));
        assert_eq!(r, None);
        assert_eq!(core.stats().peer_panics, 1);
        assert_eq!(core.stats().peers, 1);
        assert!(core.has_peer(b) && !core.has_peer(a));
        let mut closed = false;
        loop {
            match core.poll_output() {
                Output::Timeout(_) => break,
                Output::Event(CoreEvent::PeerClosed { peer, reason }) => {
                    closed |= peer == a && reason == CloseReason::Panic;
                }
                _ => {}
            }
        }
        assert!(closed, "PeerClosed with reason panic");
        // The other peer still works.
        core.handle_timeout(now + std::time::Duration::from_millis(50));
        assert!(core.has_peer(b));
    }

    #[test]
    fn garbage_sdp_is_an_error_not_a_peer() {
        let now = Instant::now();
        let addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut core = ShardCore::new(CoreConfig::default(), ShardId(0), addr, now);
        let req = CreatePeer {
            room: RoomId::new("r"),
            identity: "x".into(),
            role: PeerRole::Both,
            offer: "v=0 nonsense".into(),
            bind_tracks: Vec::new(),
            can_send_data: true,
            video_codecs: Vec::new(),
        };
        let err = core.create_peer(now, PeerId(1), req).unwrap_err();
        assert!(matches!(err, CoreError::BadSdp(_)));
        assert_eq!(core.stats().peers, 0);
    }
}
