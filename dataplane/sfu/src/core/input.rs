//! Inputs of `ShardCore`: UDP datagrams (demux, then the owning peer's str0m), messages
//! from other shards, and time passing (due peer timers, the core tick).
//! Must never block or allocate per dropped datagram: a bad one is a counter and a `trace!`.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::net::{Protocol as NetProtocol, Receive};
use str0m::Input;
use tracing::{debug, trace};

use super::ShardCore;
use crate::api::{CloseReason, ShardMessage};
use crate::demux::{self, Protocol};
use crate::ids::ShardId;
use crate::stats::DropReason;

impl ShardCore {
    /// One UDP datagram from `source` to our `destination` socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += buf.len() as u64;
        let proto = match demux::classify(buf, self.config.max_datagram) {
            Ok(p) => p,
            Err(reason) => return self.drop_datagram(reason, source),
        };
        let known = self.demux.by_tuple(source, destination);
        let id = match (known, proto) {
            (Some(id), _) => id,
            (None, Protocol::Stun) => {
                match demux::stun_local_ufrag(buf).and_then(|u| self.demux.by_ufrag(u)) {
                    Some(id) => id,
                    None => return self.drop_datagram(DropReason::UnknownStunUser, source),
                }
            }
            (None, _) => return self.drop_datagram(DropReason::UnknownSource, source),
        };
        let Ok(contents) = buf.try_into() else {
            return self.drop_datagram(DropReason::Garbage, source);
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: NetProtocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let expects_rtp = proto == Protocol::Rtp && !demux::is_rtcp(buf);
        let rtp_before = self.stats.rtp_in;
        let learn = known.is_none();
        // str0m drops a check it cannot authenticate without a word: ask first, to count it.
        let check = proto == Protocol::Stun && crate::consent::is_stun_check(buf);
        let res = self.with_peer(id, |p| {
            if learn && !p.rtc.accepts(&input) {
                return Ok(false);
            }
            if check && !crate::consent::authenticates(&p.rtc, now, destination, buf) {
                return Ok(false);
            }
            p.rtc.handle_input(input).map(|_| true)
        });
        match res {
            None => return,
            Some(Ok(false)) => return self.drop_datagram(DropReason::StunAuthFailed, source),
            Some(Ok(true)) => {
                if learn {
                    self.demux.learn(source, destination, id);
                    self.stats.demux_entries = self.demux.len() as u64;
                }
            }
            Some(Err(e)) => {
                trace!(peer = %id, %source, "str0m rejected datagram: {e}");
                self.stats.drop(DropReason::PeerError);
            }
        }
        self.mark_dirty(id);
        self.drain_all(now);
        if expects_rtp && self.stats.rtp_in == rtp_before {
            if let Some(reason) = self.rtp_drop_reason(id, buf) {
                trace!(peer = %id, %source, reason = reason.as_str(), "rtp dropped by str0m");
                self.stats.drop(reason);
            }
        }
    }

    /// A message from another shard.
    pub fn handle_shard_message(&mut self, now: Instant, from: ShardId, msg: ShardMessage) {
        match msg {
            ShardMessage::Media(packet) => self.route_remote(now, packet),
            ShardMessage::KeyframeRequest { track, layer } => {
                trace!(%track, layer, %from, "keyframe request from shard");
                self.request_keyframe(now, track, layer, false);
            }
            ShardMessage::TrackEnded { track } => {
                let subs = self
                    .tracks
                    .get(&track)
                    .filter(|t| t.publisher.is_none())
                    .map(|t| t.subscribers.clone())
                    .unwrap_or_default();
                for sub in subs {
                    self.remove_subscription(sub, track, true);
                    self.maybe_offer(now, sub);
                }
                self.tracks.remove(&track);
                self.stats.tracks = self.local_track_count();
            }
        }
        self.drain_all(now);
    }

    /// Time passed: run due peers' timers and the core's own tick.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id)) = self.timers.pop_due(now) {
            let Some(peer) = self.peers.get(&id) else {
                continue;
            };
            if peer.deadline != Some(at) {
                continue; // stale entry
            }
            let res = self.with_peer(id, |p| {
                p.deadline = None;
                p.rtc.handle_input(Input::Timeout(now))
            });
            if let Some(Err(e)) = res {
                debug!(peer = %id, "timeout error: {e}");
                self.close_peer_with(now, id, CloseReason::Error);
                continue;
            }
            self.mark_dirty(id);
        }
        if now >= self.next_tick {
            self.next_tick = now + self.config.tick;
            self.tick(now);
        }
        self.drain_all(now);
    }

    pub(crate) fn drop_datagram(&mut self, reason: DropReason, source: SocketAddr) {
        trace!(%source, reason = reason.as_str(), "datagram dropped");
        self.stats.drop(reason);
    }
}
