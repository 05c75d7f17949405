//! Output side of `ShardCore`: `poll_output`, draining touched peers' str0m output
//! (transmits, timeouts into the timer heap, events), the str0m event handlers, and
//! `with_peer`, the `catch_unwind` wrapper every call into a peer's str0m goes through.
//! Must never call into a peer's str0m outside `with_peer`.

use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use str0m::{Event, IceConnectionState};
use tracing::{debug, trace, warn};

use super::ShardCore;
use crate::api::{CloseReason, CoreEvent, MediaKind, Output, PeerRole, TrackInfo};
use crate::ids::{PeerId, TrackId};
use crate::peer::{Peer, PublishedMid};
use crate::track::PublishedTrack;

impl ShardCore {
    /// Hand every datagram queued so far to `send` (destination, bytes), in order. Call it
    /// before `poll_output` after each input; datagrams never come out of `poll_output`.
    pub fn drain_datagrams(&mut self, send: impl FnMut(SocketAddr, &[u8])) {
        self.tx.drain(send);
    }

    /// Next thing to do: a message, an event, or when to call `handle_timeout`.
    pub fn poll_output(&mut self) -> Output {
        if let Some(o) = self.out.pop_front() {
            return o;
        }
        let next = self
            .timers
            .earliest()
            .map_or(self.next_tick, |t| t.min(self.next_tick));
        Output::Timeout(next)
    }

    pub(crate) fn mark_dirty(&mut self, id: PeerId) {
        if let Some(p) = self.peers.get_mut(&id) {
            if !p.dirty {
                p.dirty = true;
                self.dirty.push(id);
            }
        }
    }

    /// Run `f` on a peer, catching panics. A panicking peer is closed and `None` returned.
    pub(crate) fn with_peer<R>(&mut self, id: PeerId, f: impl FnOnce(&mut Peer) -> R) -> Option<R> {
        let peer = self.peers.get_mut(&id)?;
        match catch_unwind(AssertUnwindSafe(|| f(peer))) {
            Ok(r) => Some(r),
            Err(_) => {
                warn!(peer = %id, "panic while handling peer; closing it");
                self.stats.peer_panics += 1;
                // The Rtc may be inconsistent: drop it without draining.
                self.remove_peer_state(id, CloseReason::Panic);
                None
            }
        }
    }

    /// Drain every peer touched by the current input (draining may touch more).
    pub(crate) fn drain_all(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            if let Some(p) = self.peers.get_mut(&id) {
                p.dirty = false;
            }
            self.drain_peer(now, id);
        }
    }

    pub(crate) fn drain_peer(&mut self, now: Instant, id: PeerId) {
        loop {
            let Some(res) = self.with_peer(id, |p| p.rtc.poll_output()) else {
                return;
            };
            match res {
                Err(e) => {
                    debug!(peer = %id, "poll_output error: {e}");
                    self.close_peer_with(now, id, CloseReason::Error);
                    return;
                }
                Ok(str0m::Output::Timeout(at)) => {
                    let alive = self.peers.get(&id).is_some_and(|p| p.rtc.is_alive());
                    if !alive {
                        self.close_peer_with(now, id, CloseReason::Disconnected);
                        return;
                    }
                    let at = self.timer_grid.round_up(now, at);
                    if let Some(p) = self.peers.get_mut(&id) {
                        if p.deadline != Some(at) {
                            p.deadline = Some(at);
                            self.timers.schedule(id, at);
                        }
                    }
                    return;
                }
                Ok(str0m::Output::Transmit(t)) => {
                    self.stats.datagrams_out += 1;
                    self.stats.bytes_out += t.contents.len() as u64;
                    self.tx.push(t.destination, &t.contents);
                }
                Ok(str0m::Output::Event(e)) => self.handle_event(now, id, e),
            }
        }
    }

    pub(crate) fn handle_event(&mut self, now: Instant, id: PeerId, event: Event) {
        match event {
            Event::RtpPacket(packet) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    let (ssrc, seq) = (packet.header.ssrc, packet.header.sequence_number);
                    super::rtp_drop::note_delivered(&mut p.rx_seen, ssrc, seq);
                }
                self.route_local(now, id, packet)
            }
            Event::Connected => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.connected = true;
                }
                self.out
                    .push_back(Output::Event(CoreEvent::PeerConnected { peer: id }));
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.close_peer_with(now, id, CloseReason::Disconnected);
            }
            Event::Closed => self.close_peer_with(now, id, CloseReason::RemoteClosed),
            Event::MediaAdded(m) => self.on_media_added(now, id, m),
            Event::MediaChanged(m) => {
                if !m.direction.is_receiving() {
                    let track = self
                        .peers
                        .get(&id)
                        .and_then(|p| p.published.iter().find(|x| x.mid == m.mid).map(|x| x.track));
                    if let Some(track) = track {
                        self.unpublish(now, id, track);
                    }
                }
            }
            Event::KeyframeRequest(req) => {
                let track = self
                    .peers
                    .get(&id)
                    .and_then(|p| p.sub_by_mid.get(&req.mid).copied());
                if let Some(track) = track {
                    let layer = self
                        .subs
                        .get(&(id, track))
                        .and_then(|s| s.forwarded_layer())
                        .unwrap_or(0);
                    self.request_keyframe(now, track, layer, false);
                }
            }
            Event::EgressBitrateEstimate(kind) => {
                let estimate = match kind {
                    str0m::bwe::BweKind::Twcc { estimate, .. } => Some(estimate),
                    str0m::bwe::BweKind::Remb { estimate, .. } => Some(estimate),
                    _ => None,
                };
                if let Some(p) = self.peers.get_mut(&id) {
                    if estimate.is_some() {
                        p.downlink_estimate = estimate;
                    }
                }
                self.update_layers_of(now, id);
            }
            other => trace!(peer = %id, "event {:?}", std::mem::discriminant(&other)),
        }
    }

    pub(crate) fn on_media_added(&mut self, now: Instant, id: PeerId, m: str0m::media::MediaAdded) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !m.direction.is_receiving() || peer.role == PeerRole::Subscribe {
            return;
        }
        if peer.published.iter().any(|p| p.mid == m.mid) {
            return;
        }
        let rids: smallvec::SmallVec<[str0m::media::Rid; 3]> = m
            .simulcast
            .as_ref()
            .map(|s| {
                let layers = if s.recv.is_empty() { &s.send } else { &s.recv };
                layers.iter().take(3).map(|l| l.rid).collect()
            })
            .unwrap_or_default();
        let track = TrackId::new(self.shard, self.next_track);
        self.next_track += 1;
        let kind = MediaKind::from(m.kind);
        let info = TrackInfo {
            track,
            room: peer.room.clone(),
            publisher_identity: peer.identity.to_string(),
            kind,
            rids: rids.iter().map(|r| r.to_string()).collect(),
        };
        peer.published.push(PublishedMid {
            mid: m.mid,
            track,
            rids,
        });
        self.out.push_back(Output::Event(CoreEvent::TrackPublished {
            peer: id,
            room: info.room.clone(),
            track,
            kind,
            identity: info.publisher_identity.clone(),
            rids: info.rids.clone(),
        }));
        self.tracks
            .insert(track, PublishedTrack::new(info, Some(id), Some(m.mid)));
        self.stats.tracks = self.local_track_count();
        debug!(peer = %id, %track, "track published");
        let _ = now;
    }
}
