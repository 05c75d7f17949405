//! Output side of `ShardCore`: `poll_output`, draining touched peers' str0m output
//! (transmits, timeouts into the timer heap, events), the str0m event handlers, and
//! `with_peer`, the `catch_unwind` wrapper every call into a peer's str0m goes through.
//! Must never call into a peer's str0m outside `with_peer`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use str0m::{Event, IceConnectionState};

use crate::demux::Protocol;
use tracing::{debug, trace, warn};

use super::ShardCore;
use crate::api::{CloseReason, CoreEvent, MediaKind, Output, TrackInfo};
use crate::ids::{PeerId, TrackId};
use crate::peer::{Peer, PublishedMid};
use crate::track::PublishedTrack;
use crate::tx_queue::Remote;

impl ShardCore {
    /// Hand every datagram queued so far to `send` (destination, bytes), in order. Call it
    /// before `poll_output` after each input; datagrams never come out of `poll_output`.
    /// A `Remote` with `Protocol::Tcp` goes on the ICE-TCP connection from that address.
    pub fn drain_datagrams(&mut self, mut send: impl FnMut(Remote, &[u8])) {
        let stats = &mut self.stats;
        self.tx.drain(|destination, bytes| {
            stats.datagrams_out += 1;
            stats.bytes_out += bytes.len() as u64;
            send(destination, bytes);
        });
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
                    if let Some(p) = self.peers.get_mut(&id) {
                        p.rtc_deadline = Some(at);
                    }
                    self.take_keys(now, id);
                    self.reschedule(now, id);
                    return;
                }
                Ok(str0m::Output::Transmit(t)) => {
                    if crate::demux::classify(&t.contents, usize::MAX) == Ok(Protocol::Rtp) {
                        // str0m's own sender reports for the m-lines it declared: the
                        // transport owns RTP and RTCP on the wire (and its SRTCP index).
                        self.stats.str0m_srtp_suppressed += 1;
                        continue;
                    }
                    self.tx.push(
                        Remote {
                            proto: t.proto,
                            addr: t.destination,
                        },
                        &t.contents,
                    );
                }
                Ok(str0m::Output::Event(e)) => self.handle_event(now, id, e),
            }
        }
    }

    /// Schedule peer `id` at the earlier of str0m's and its transport's deadlines (rounded
    /// to the timer grid), if that moved.
    pub(crate) fn reschedule(&mut self, now: Instant, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(at) = p.next_deadline() else {
            return;
        };
        let at = self.timer_grid.round_up(now, at);
        // A later deadline keeps the earlier heap entry: it fires, finds nothing due, and
        // reschedules then (cheaper than a second entry per change).
        if p.deadline.is_none_or(|d| at < d) {
            p.deadline = Some(at);
            self.timers.schedule(id, at);
        }
    }

    /// Once DTLS has produced keys for peer `id`, start its transport.
    fn take_keys(&mut self, now: Instant, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.transport.is_some() {
            return;
        }
        let Some(keys) = p.keys.take() else {
            return;
        };
        let provider = shardcast_rtp::srtp::tap::tapping_provider();
        let session = match shardcast_rtp::srtp::SrtpSession::new(provider, &keys) {
            Ok(s) => s,
            Err(e) => {
                warn!(peer = %id, "srtp keys unusable: {e}");
                self.close_peer_with(now, id, CloseReason::Error);
                return;
            }
        };
        let bwe = (self.config.bwe_initial_kbps > 0).then(|| shardcast_rtp::bwe::BweConfig {
            initial_bps: self.config.bwe_initial_kbps * 1000,
            min_bps: self.config.bwe_min_kbps * 1000,
            max_bps: self.config.bwe_max_kbps * 1000,
        });
        let mut rtcp_ssrc = fastrand::u32(1..);
        while p.sub_by_ssrc.contains_key(&rtcp_ssrc) {
            rtcp_ssrc = fastrand::u32(1..);
        }
        let mut tp = crate::transport::Transport::new(session, rtcp_ssrc, bwe, now);
        tp.ext_in = incoming_ext_ids(p);
        tp.transport_cc = sends_transport_cc(p);
        if let Some(bwe) = tp.bwe.as_mut() {
            bwe.set_transport_cc(tp.transport_cc);
        }
        debug!(peer = %id, profile = ?keys.profile, "srtp keys: transport up");
        p.transport = Some(tp);
        self.refresh_estimate(now, id);
    }

    pub(crate) fn handle_event(&mut self, now: Instant, id: PeerId, event: Event) {
        match event {
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
            Event::ChannelOpen(channel, label) => self.on_channel_open(id, channel, &label),
            Event::ChannelData(data) => self.on_channel_data(now, id, data),
            Event::ChannelClose(channel) => self.on_channel_close(id, channel),
            other => trace!(peer = %id, "event {:?}", std::mem::discriminant(&other)),
        }
    }

    pub(crate) fn on_media_added(&mut self, now: Instant, id: PeerId, m: str0m::media::MediaAdded) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !m.direction.is_receiving() || peer.role.receives_only() {
            return;
        }
        if peer.published.iter().any(|p| p.mid == m.mid) {
            return;
        }
        refresh_transport(peer);
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
            mid: m.mid.to_string(),
        }));
        self.tracks
            .insert(track, PublishedTrack::new(info, Some(id)));
        self.stats.tracks = self.local_track_count();
        debug!(peer = %id, %track, "track published");
        let _ = now;
    }
}

/// The header extension ids the peer uses on what it sends us. One set per bundle (RFC 8843
/// keeps an id's meaning across bundled m-lines); each id is taken from the first m-line
/// that negotiated it.
fn incoming_ext_ids(p: &Peer) -> shardcast_rtp::rtp::ExtIds {
    let mut ids = shardcast_rtp::rtp::ExtIds::default();
    for mid in p.rtc_mids() {
        let Some(media) = p.rtc.media(mid) else {
            continue;
        };
        let m = shardcast_rtp::rtp::ExtIds::from_str0m(media.remote_extmap());
        macro_rules! take {
            ($($f:ident),*) => { $( ids.$f = ids.$f.or(m.$f); )* };
        }
        take!(
            mid,
            rid,
            repaired_rid,
            abs_send_time,
            transport_cc,
            audio_level,
            video_orientation,
            abs_capture_time,
            playout_delay,
            dependency_descriptor
        );
    }
    ids
}

/// Whether some m-line we send on negotiated the transport-wide sequence number, so the
/// subscriber sends transport-cc feedback.
fn sends_transport_cc(p: &Peer) -> bool {
    p.rtc_mids().into_iter().any(|mid| {
        p.rtc.media(mid).is_some_and(|m| {
            m.direction().is_sending()
                && shardcast_rtp::rtp::ExtIds::from_str0m(m.remote_extmap())
                    .transport_cc
                    .is_some()
        })
    })
}

/// After a negotiation: the transport's view of the peer's extensions and feedback.
pub(crate) fn refresh_transport(p: &mut Peer) {
    let ids = incoming_ext_ids(p);
    let twcc = sends_transport_cc(p);
    if let Some(tp) = p.transport.as_mut() {
        tp.ext_in = ids;
        tp.transport_cc = twcc;
        if let Some(bwe) = tp.bwe.as_mut() {
            bwe.set_transport_cc(twcc);
        }
    }
}
