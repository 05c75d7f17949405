//! Peer and track lifecycle of `ShardCore`: unpublishing, dropping subscriptions, closing
//! a peer and freeing everything it owned, and the periodic core tick.
//! Must never leave a table entry behind for a closed peer or an ended track.

use std::time::Instant;

use tracing::debug;

use super::ShardCore;
use crate::api::{CloseReason, CoreEvent, Output, PeerRole, ShardMessage};
use crate::ids::{PeerId, TrackId};

impl ShardCore {
    pub(crate) fn local_track_count(&self) -> u64 {
        self.tracks
            .values()
            .filter(|t| t.publisher.is_some())
            .count() as u64
    }

    /// A published track goes away: tell everyone, drop its subscriptions.
    pub(crate) fn unpublish(&mut self, now: Instant, publisher: PeerId, track: TrackId) {
        let Some(t) = self.tracks.remove(&track) else {
            return;
        };
        if let Some(p) = self.peers.get_mut(&publisher) {
            p.published.retain(|m| m.track != track);
            if let Some(tp) = p.transport.as_mut() {
                tp.rx.retain(|_, r| r.track != track);
            }
        }
        for sub in t.subscribers.iter().copied() {
            if let Some(s) = self.subs.remove(&(sub, track)) {
                if let Some(p) = self.peers.get_mut(&sub) {
                    if let Some(e) = s.egress.as_ref() {
                        p.sub_by_ssrc.remove(&e.ssrc);
                        if let Some(r) = e.rtx_ssrc {
                            p.sub_by_ssrc.remove(&r);
                        }
                    }
                    p.subscriptions.retain(|x| *x != track);
                    p.negotiation.queued_add.retain(|x| *x != track);
                    if let Some(mid) = s.mid {
                        p.sub_by_mid.remove(&mid);
                        p.negotiation.queued_remove.push(mid);
                    }
                }
            }
        }
        for shard in t.remote_shards.iter().copied() {
            self.out.push_back(Output::ToShard {
                shard,
                msg: ShardMessage::TrackEnded { track },
            });
        }
        self.out
            .push_back(Output::Event(CoreEvent::TrackUnpublished {
                peer: publisher,
                room: t.info.room.clone(),
                track,
            }));
        self.stats.tracks = self.local_track_count();
        self.stats.subscriptions = self.subs.len() as u64;
        for sub in t.subscribers {
            self.maybe_offer(now, sub);
        }
    }

    /// Forget one subscription; `renegotiate` queues the m-line's removal.
    pub(crate) fn remove_subscription(
        &mut self,
        subscriber: PeerId,
        track: TrackId,
        renegotiate: bool,
    ) {
        let Some(s) = self.subs.remove(&(subscriber, track)) else {
            return;
        };
        if let Some(p) = self.peers.get_mut(&subscriber) {
            if let Some(e) = s.egress.as_ref() {
                p.sub_by_ssrc.remove(&e.ssrc);
                if let Some(r) = e.rtx_ssrc {
                    p.sub_by_ssrc.remove(&r);
                }
            }
            p.subscriptions.retain(|x| *x != track);
            p.negotiation.queued_add.retain(|x| *x != track);
            if let Some(mid) = s.mid {
                p.sub_by_mid.remove(&mid);
                if p.role == PeerRole::Play {
                    // The line stays offered: the next track on it continues this stream.
                    p.parked.retain(|(m, _)| *m != mid);
                    p.parked.push((mid, s));
                } else if renegotiate {
                    p.negotiation.queued_remove.push(mid);
                }
            }
        }
        let mut remove_track = false;
        if let Some(t) = self.tracks.get_mut(&track) {
            t.subscribers.retain(|x| *x != subscriber);
            remove_track = t.publisher.is_none() && t.subscribers.is_empty();
        }
        if remove_track {
            self.tracks.remove(&track);
        }
        self.stats.subscriptions = self.subs.len() as u64;
    }

    pub(crate) fn close_peer_with(&mut self, now: Instant, id: PeerId, reason: CloseReason) {
        // Only a close we decide on is announced: after a remote close, consent loss or a
        // timeout there is nobody listening, and after an error str0m may be inconsistent.
        if matches!(reason, CloseReason::Requested | CloseReason::ConnectTimeout) {
            self.send_bye(id);
            self.send_close(id);
        }
        self.remove_peer_state(id, reason);
        let _ = now;
    }

    /// Start str0m's local shutdown (`Rtc::close`: its DTLS close_notify; the RTCP BYE it
    /// would seal is suppressed, `send_bye` sent ours) and queue the datagrams it emits at once, so the remote sees the close
    /// instead of waiting for consent to expire. str0m does not wait for replies, and we drop
    /// the `Rtc` right after, so its later output (none expected) is not drained.
    fn send_close(&mut self, id: PeerId) {
        let sent = self.with_peer(id, |p| {
            let mut out = Vec::new();
            if p.rtc.close().is_err() {
                return out;
            }
            // Bounded: a closing Rtc emits a handful of datagrams, never a stream.
            for _ in 0..64 {
                match p.rtc.poll_output() {
                    Ok(str0m::Output::Transmit(t)) => out.push(t),
                    Ok(str0m::Output::Event(_)) => {}
                    Ok(str0m::Output::Timeout(_)) | Err(_) => break,
                }
            }
            out
        });
        for t in sent.into_iter().flatten() {
            if crate::demux::classify(&t.contents, usize::MAX) == Ok(crate::demux::Protocol::Rtp) {
                self.stats.str0m_srtp_suppressed += 1;
                continue;
            }
            let to = crate::tx_queue::Remote {
                proto: t.proto,
                addr: t.destination,
            };
            self.tx.push(to, &t.contents);
        }
    }

    /// Free every piece of state a peer owns and announce it.
    pub(crate) fn remove_peer_state(&mut self, id: PeerId, reason: CloseReason) {
        let Some(peer) = self.peers.remove(&id) else {
            return;
        };
        self.demux.remove_peer(id);
        for track in peer.subscriptions.iter().copied() {
            self.remove_subscription(id, track, false);
        }
        let now_for_unpublish = self.next_tick;
        // Re-insert a shell so unpublish can update the publisher's tables uniformly.
        for m in peer.published.iter() {
            self.unpublish(now_for_unpublish, id, m.track);
        }
        if let Some(room) = self.rooms.get_mut(&peer.room) {
            room.members.retain(|m| *m != id);
            room.speaker.remove(id);
            if room.members.is_empty() {
                self.rooms.remove(&peer.room);
            }
        }
        self.stats.peers = self.peers.len() as u64;
        self.stats.peers_closed += 1;
        self.stats.demux_entries = self.demux.len() as u64;
        self.out
            .push_back(Output::Event(CoreEvent::PeerClosed { peer: id, reason }));
        debug!(peer = %id, reason = reason.as_str(), "peer closed");
    }

    /// Periodic work: active speakers, layer re-evaluation, peers that never connected.
    pub(crate) fn tick(&mut self, now: Instant) {
        // A peer whose ICE/DTLS never completes (answer given, no STUN ever arrives) holds a
        // demux entry, a ufrag and maybe bound subscriptions: str0m's ICE-lite agent keeps
        // waiting for checks forever when the offer carried no candidates, so we end it.
        let timeout = self.config.connect_timeout;
        let stale: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.connected && now.saturating_duration_since(p.created) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            debug!(peer = %id, "never connected; closing");
            self.close_peer_with(now, id, CloseReason::ConnectTimeout);
        }
        let mut speakers = Vec::new();
        for room in self.rooms.values_mut() {
            if let Some(peer) = room.speaker.poll(now) {
                speakers.push(CoreEvent::ActiveSpeaker {
                    room: room.id.clone(),
                    peer,
                });
            }
        }
        for e in speakers {
            self.out.push_back(Output::Event(e));
        }
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.update_layers_of(now, id);
        }
    }
}
