//! Ingress, the first stage of the packet path: a UDP datagram is classified (RFC 7983) and
//! demultiplexed to its peer; STUN and DTLS go to the peer's str0m; SRTP and SRTCP are opened
//! here with the peer's own SRTP session. An RTP packet becomes a [`MediaPacket`] for
//! `route.rs` (after RTX is unwrapped and the reception statistics, the NACK generator and the
//! transport-cc record have seen it); an RTCP packet goes to `feedback.rs`. Also the other
//! inputs: messages from other shards and time passing.
//!
//! Must never block, panic on packet bytes, or allocate per dropped datagram: a bad one is a
//! counter (`DropReason`) and a `trace!`. The one allocation per media packet is its payload
//! (`Arc<[u8]>`), shared by every subscriber and shard from then on.

use std::net::SocketAddr;
use std::time::Instant;

use shardcast_rtp::srtp::{OpenedRtp, SrtpError};
use str0m::net::{Protocol as NetProtocol, Receive};
use str0m::Input;
use tracing::{debug, trace};

use super::ShardCore;
use crate::api::{CloseReason, ShardMessage};
use crate::demux::{self, Protocol};
use crate::ids::{PeerId, ShardId};
use crate::peer::Received;
use crate::stats::DropReason;
use crate::tx_queue::Remote;

/// Why an SRTP/SRTCP packet did not open.
fn srtp_drop_reason(e: &SrtpError) -> DropReason {
    match e {
        SrtpError::Replayed | SrtpError::TooOld => DropReason::SrtpReplay,
        SrtpError::TooShort | SrtpError::BadHeader => DropReason::RtpUndecodable,
        SrtpError::TooManyStreams => DropReason::RtpUnknownSsrc,
        SrtpError::OutputTooSmall => DropReason::Oversize,
        _ => DropReason::SrtpAuthFailed,
    }
}

impl ShardCore {
    /// One UDP datagram from `source` to our `destination` socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        self.handle_receive(now, NetProtocol::Udp, source, destination, buf)
    }

    /// One datagram that arrived over `proto`: a UDP datagram, or one RFC 4571 frame of an
    /// ICE-TCP connection from `source` to our listener at `destination` (`Protocol::Tcp`).
    /// Both take the same path; the 5-tuple includes the protocol.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        transport: NetProtocol,
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
        let from = Remote {
            proto: transport,
            addr: source,
        };
        let known = self.demux.by_tuple(from, destination);
        let id = match (known, proto) {
            (Some(id), Protocol::Rtp) => return self.handle_srtp(now, id, from, buf),
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
                proto: transport,
                source,
                destination,
                contents,
            },
        );
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
                    self.demux.learn(from, destination, id);
                    self.stats.demux_entries = self.demux.len() as u64;
                }
                if proto == Protocol::Dtls {
                    // The client runs DTLS on the pair it nominated: send media there.
                    if let Some(p) = self.peers.get_mut(&id) {
                        p.remote = Some(from);
                    }
                }
            }
            Some(Err(e)) => {
                trace!(peer = %id, %source, "str0m rejected datagram: {e}");
                self.stats.drop(DropReason::PeerError);
            }
        }
        self.mark_dirty(id);
        self.drain_all(now);
    }

    /// SRTP or SRTCP from a known 5-tuple: open it with the peer's session.
    fn handle_srtp(&mut self, now: Instant, id: PeerId, from: Remote, buf: &[u8]) {
        let source = from.addr;
        let rtcp = demux::is_rtcp(buf);
        // The plaintext goes to the core's scratch buffer, taken out for the duration so the
        // handlers below may borrow the core (a move, no allocation).
        let mut plain = std::mem::take(&mut self.scratch);
        let opened = {
            let Some(peer) = self.peers.get_mut(&id) else {
                self.scratch = plain;
                return;
            };
            let Some(tp) = peer.transport.as_mut() else {
                self.scratch = plain;
                return self.drop_datagram(DropReason::NoSrtpKeys, source);
            };
            let res = if rtcp {
                tp.srtp.opener.open_rtcp(buf, &mut plain).map(|n| (n, None))
            } else {
                tp.srtp
                    .opener
                    .open_rtp(buf, &mut plain)
                    .map(|o| (o.len, Some(o)))
            };
            if res.is_ok() {
                peer.remote = Some(from);
            }
            res
        };
        match opened {
            Err(e) => {
                trace!(peer = %id, %source, "srtp dropped: {e}");
                self.drop_datagram(srtp_drop_reason(&e), source);
            }
            Ok((n, None)) => {
                self.on_rtcp(now, id, &plain[..n]);
                self.reschedule(now, id);
            }
            Ok((n, Some(o))) => self.on_rtp(now, id, &plain[..n], o),
        }
        self.scratch = plain;
        self.drain_all(now);
    }

    /// One opened RTP packet of publisher `id`.
    fn on_rtp(&mut self, now: Instant, id: PeerId, pkt: &[u8], opened: OpenedRtp) {
        let received = self.with_peer(id, |p| p.receive_rtp(now, pkt, opened.ext_seq));
        match received {
            None => {}
            Some(Err(reason)) => {
                trace!(peer = %id, ssrc = opened.ssrc, reason = reason.as_str(), "rtp dropped");
                self.stats.drop(reason);
            }
            Some(Ok(Received::Nothing)) => {}
            Some(Ok(Received::Padding {
                track,
                layer,
                source,
                seq,
            })) => self.route_padding(track, layer, source, seq),
            Some(Ok(Received::Malformed {
                track,
                layer,
                source,
                seq,
            })) => {
                trace!(peer = %id, ssrc = opened.ssrc, "rtp dropped: malformed payload header");
                self.stats.drop(DropReason::RtpPayloadMalformed);
                self.route_padding(track, layer, source, seq);
            }
            Some(Ok(Received::Media {
                packet,
                source,
                keyframe_needed,
            })) => {
                self.stats.rtp_in += 1;
                if keyframe_needed {
                    self.request_keyframe(now, packet.track, packet.layer, false);
                }
                self.route_local(now, id, source, packet);
            }
        }
        // The transport's deadline may have moved (feedback, NACKs due).
        self.reschedule(now, id);
    }

    /// A message from another shard.
    pub fn handle_shard_message(&mut self, now: Instant, from: ShardId, msg: ShardMessage) {
        match msg {
            ShardMessage::Media(packet) => self.route_remote(now, packet),
            ShardMessage::KeyframeRequest { track, layer } => {
                trace!(%track, layer, %from, "keyframe request from shard");
                self.request_keyframe(now, track, layer, false);
            }
            ShardMessage::SenderClock {
                track,
                layer,
                clock,
            } => {
                if let Some(t) = self.tracks.get_mut(&track) {
                    if let Some(slot) = t.clocks.get_mut(usize::from(layer)) {
                        *slot = Some(clock);
                    }
                }
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
            ShardMessage::Data {
                room,
                kind,
                from,
                envelope,
            } => self.deliver_data(&room, kind, from, &envelope),
        }
        self.drain_all(now);
    }

    /// Time passed: run due peers' timers (str0m's and the transport's) and the core's tick.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, id)) = self.timers.pop_due(now) {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.deadline != Some(at) {
                continue; // stale entry
            }
            peer.deadline = None;
            self.stats.peer_timeouts += 1;
            if peer.rtc_deadline.is_some_and(|d| d <= now) {
                let res = self.with_peer(id, |p| {
                    p.rtc_deadline = None;
                    p.rtc.handle_input(Input::Timeout(now))
                });
                if let Some(Err(e)) = res {
                    debug!(peer = %id, "timeout error: {e}");
                    self.close_peer_with(now, id, CloseReason::Error);
                    continue;
                }
            }
            self.transport_timeout(now, id);
            self.mark_dirty(id);
        }
        if now >= self.next_tick {
            self.next_tick = now + self.config.tick;
            self.tick(now);
        }
        self.drain_all(now);
    }

    /// Whether a datagram from `source` over `proto` to our `destination` now reaches a peer
    /// without a STUN lookup: its peer's ICE agent accepted a check from that 5-tuple. The
    /// shard asks it for a new ICE-TCP connection, which must prove itself this way early.
    pub fn knows(&self, proto: NetProtocol, source: SocketAddr, destination: SocketAddr) -> bool {
        let from = Remote {
            proto,
            addr: source,
        };
        self.demux.by_tuple(from, destination).is_some()
    }

    pub(crate) fn drop_datagram(&mut self, reason: DropReason, source: SocketAddr) {
        trace!(%source, reason = reason.as_str(), "datagram dropped");
        self.stats.drop(reason);
    }
}
