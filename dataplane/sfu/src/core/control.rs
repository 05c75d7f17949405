//! Control calls of `ShardCore` (node-API commands): create/renegotiate/close peers,
//! subscriptions, preferences, mutes, remote fan-out, and the server offer that carries
//! subscription changes. Each returns synchronously after draining the touched peers.
//! Must never route media or wait for the client.

use std::time::Instant;

use str0m::change::SdpOffer;
use tracing::debug;

use super::{CoreError, ShardCore};
use crate::api::{CloseReason, CreatePeer, LayerPreference, MediaKind, PeerRole, TrackInfo};
use crate::api::{CoreEvent, Output};
use crate::ids::{PeerId, ShardId, TrackId};
use crate::peer::Peer;
use crate::room::Room;
use crate::track::{PublishedTrack, Subscription};

impl ShardCore {
    /// Create a peer from the client's offer; returns the SDP answer. The offer's recvonly
    /// m-lines are bound to `req.bind_tracks` (see `CreatePeer::bind_tracks`).
    pub fn create_peer(
        &mut self,
        now: Instant,
        id: PeerId,
        req: CreatePeer<TrackInfo>,
    ) -> Result<String, CoreError> {
        if self.peers.contains_key(&id) {
            return Err(CoreError::DuplicatePeer(id));
        }
        let bind = self.bindable(req.bind_tracks);
        // A player's lines without a track yet stay open for tracks that come later.
        let offer = if req.role == PeerRole::Play {
            req.offer.clone()
        } else {
            super::bind::unbound_inactive(&req.offer, &bind)
        };
        // Malformed SDP is refused before a peer exists (found by fuzz/fuzz_targets/sdp_offer.rs,
        // when making one generated a DTLS key pair and certificate), and the offer is parsed
        // once: str0m's SDP parser is the largest part of a join's cost to the shard.
        let parsed =
            SdpOffer::from_sdp_string(&offer).map_err(|e| CoreError::BadSdp(e.to_string()))?;
        let mut peer = Peer::new(
            id,
            req.room.clone(),
            &req.identity,
            req.role,
            &self.config,
            self.local_addr,
            self.tcp_addr,
            now,
        )
        .map_err(CoreError::BadState)?;
        peer.data.allowed = req.can_send_data;
        peer.video_codecs = req.video_codecs.clone();
        let answer = peer
            .accept_parsed_offer(parsed)
            .map_err(CoreError::BadSdp)?;
        let answer = crate::sdp_fixup::candidates_in_every_bundled_section(&answer);
        let answer = crate::sdp_order::order_video_codecs(&offer, &answer, &req.video_codecs);
        peer.learn_red(Some(&offer), &answer);
        self.demux.add_peer(id, peer.local_ufrag.clone());
        self.rooms
            .entry(req.room.clone())
            .or_insert_with(|| Room::new(req.room.clone(), now))
            .members
            .push(id);
        self.peers.insert(id, peer);
        self.stats.peers = self.peers.len() as u64;
        debug!(peer = %id, room = %req.room, "peer created");
        self.bind_answered(now, id, &answer, bind);
        self.mark_dirty(id);
        self.drain_all(now);
        Ok(answer)
    }

    /// The client re-offers (new tracks, ICE restart); returns the answer.
    pub fn renegotiate(
        &mut self,
        now: Instant,
        id: PeerId,
        offer: &str,
    ) -> Result<String, CoreError> {
        let res = self
            .with_peer(id, |p| p.accept_offer(offer))
            .ok_or(CoreError::UnknownPeer(id))?;
        if let Some(p) = self.peers.get_mut(&id) {
            super::drain::refresh_transport(p);
            // An ICE restart in the offer gives us new credentials: checks from the client's
            // new address name the new ufrag, and must still find this peer.
            let ufrag = p.rtc.direct_api().local_ice_credentials().ufrag;
            if ufrag != p.local_ufrag {
                p.local_ufrag = ufrag.clone();
                self.demux.set_ufrag(id, ufrag);
            }
        }
        self.mark_dirty(id);
        self.drain_all(now);
        let answer = res.map_err(CoreError::BadSdp)?;
        let answer = crate::sdp_fixup::candidates_in_every_bundled_section(&answer);
        let preferred = self
            .peers
            .get(&id)
            .map(|p| p.video_codecs.clone())
            .unwrap_or_default();
        let answer = crate::sdp_order::order_video_codecs(offer, &answer, &preferred);
        if let Some(p) = self.peers.get_mut(&id) {
            p.learn_red(Some(offer), &answer);
        }
        // Changes queued during a glare go out in a fresh offer.
        self.maybe_offer(now, id);
        Ok(answer)
    }

    /// Candidates the client trickled after its offer (`candidate:…`, RFC 8839): all parsed
    /// first, so a malformed one adds none.
    pub fn add_remote_candidates(
        &mut self,
        now: Instant,
        id: PeerId,
        candidates: &[String],
    ) -> Result<(), CoreError> {
        if !self.peers.contains_key(&id) {
            return Err(CoreError::UnknownPeer(id));
        }
        let parsed = candidates
            .iter()
            .map(|c| {
                let c = c.trim().strip_prefix("a=").unwrap_or(c.trim());
                str0m::Candidate::from_sdp_string(c)
                    .map_err(|e| CoreError::BadSdp(format!("candidate `{c}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.with_peer(id, |p| {
            for c in parsed {
                p.rtc.add_remote_candidate(c);
            }
        });
        self.mark_dirty(id);
        self.drain_all(now);
        Ok(())
    }

    /// The client's answer to our last `CoreEvent::Offer`.
    pub fn accept_answer(
        &mut self,
        now: Instant,
        id: PeerId,
        answer: &str,
    ) -> Result<(), CoreError> {
        let answer_text = answer;
        let res = self
            .with_peer(
                id,
                |p| -> Result<Vec<(TrackId, str0m::media::Mid)>, CoreError> {
                    let pending = p
                        .negotiation
                        .pending
                        .take()
                        .ok_or_else(|| CoreError::BadState("no offer outstanding".into()))?;
                    let answer = str0m::change::SdpAnswer::from_sdp_string(answer)
                        .map_err(|e| CoreError::BadSdp(e.to_string()))?;
                    p.rtc
                        .sdp_api()
                        .accept_answer(pending, answer)
                        .map_err(|e| CoreError::BadSdp(e.to_string()))?;
                    p.learn_red(None, answer_text);
                    Ok(std::mem::take(&mut p.negotiation.in_flight))
                },
            )
            .ok_or(CoreError::UnknownPeer(id))?;
        let confirmed = res?;
        for (track, mid) in confirmed {
            if self.start_egress(id, track, mid) {
                self.request_keyframe(now, track, 0, true);
            }
        }
        if let Some(p) = self.peers.get_mut(&id) {
            super::drain::refresh_transport(p);
        }
        self.mark_dirty(id);
        self.drain_all(now);
        self.maybe_offer(now, id);
        Ok(())
    }

    /// Subscription (`id`, `track`) goes out on m-line `mid`, now negotiated: its outgoing
    /// stream takes the SSRC (and RTX SSRC) str0m declared there and the header extensions
    /// the subscriber agreed to. Returns whether it is ready to send.
    pub(crate) fn start_egress(
        &mut self,
        id: PeerId,
        track: TrackId,
        mid: str0m::media::Mid,
    ) -> bool {
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        let Some((kind, ext)) = peer.rtc.media(mid).map(|m| {
            (
                MediaKind::from(m.kind()),
                shardcast_rtp::rtp::ExtIds::from_str0m(m.remote_extmap()),
            )
        }) else {
            return false;
        };
        let Some((ssrc, rtx)) = peer
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .map(|s| (*s.ssrc(), s.rtx().map(|r| *r)))
        else {
            return false;
        };
        let Some(sub) = self.subs.get_mut(&(id, track)) else {
            return false;
        };
        if let Some(old) = sub.egress.take() {
            peer.sub_by_ssrc.remove(&old.ssrc);
            if let Some(r) = old.rtx_ssrc {
                peer.sub_by_ssrc.remove(&r);
            }
        }
        let video = kind == MediaKind::Video;
        sub.egress = Some(crate::track::Egress::new(ssrc, rtx, ext, video));
        sub.restart();
        peer.sub_by_ssrc.insert(ssrc, track);
        if let Some(r) = rtx {
            peer.sub_by_ssrc.insert(r, track);
        }
        true
    }

    /// Forward `info.track` to `subscriber`: a new sendonly m-line, offered now or batched
    /// into the next offer if one is outstanding.
    pub fn subscribe(
        &mut self,
        now: Instant,
        subscriber: PeerId,
        info: TrackInfo,
    ) -> Result<(), CoreError> {
        let Some(peer) = self.peers.get_mut(&subscriber) else {
            return Err(CoreError::UnknownPeer(subscriber));
        };
        let track = info.track;
        if self.subs.contains_key(&(subscriber, track)) {
            return Ok(());
        }
        if track.shard() == self.shard {
            match self.tracks.get(&track) {
                Some(t) if t.publisher.is_some() => {}
                _ => return Err(CoreError::UnknownTrack(track)),
            }
        }
        if peer.role == PeerRole::Play {
            // No server offer: the first free offered line of the track's kind, if any.
            if let Some(mid) = self.free_play_line(subscriber, info.kind) {
                self.bind_line(now, subscriber, mid, info);
                if let Some(p) = self.peers.get_mut(&subscriber) {
                    super::drain::refresh_transport(p);
                }
                self.drain_all(now);
            }
            return Ok(());
        }
        peer.subscriptions.push(track);
        peer.negotiation.queued_add.push(track);
        let entry = self
            .tracks
            .entry(track)
            .or_insert_with(|| PublishedTrack::new(info, None));
        entry.subscribers.push(subscriber);
        self.subs.insert((subscriber, track), Subscription::new());
        self.stats.subscriptions = self.subs.len() as u64;
        self.maybe_offer(now, subscriber);
        Ok(())
    }

    pub fn unsubscribe(
        &mut self,
        now: Instant,
        subscriber: PeerId,
        track: TrackId,
    ) -> Result<(), CoreError> {
        if !self.peers.contains_key(&subscriber) {
            return Err(CoreError::UnknownPeer(subscriber));
        }
        self.remove_subscription(subscriber, track, true);
        self.maybe_offer(now, subscriber);
        Ok(())
    }

    pub fn set_preference(
        &mut self,
        now: Instant,
        subscriber: PeerId,
        track: TrackId,
        preference: LayerPreference,
    ) -> Result<(), CoreError> {
        let sub = self
            .subs
            .get_mut(&(subscriber, track))
            .ok_or(CoreError::UnknownTrack(track))?;
        sub.preference = preference;
        self.update_layers_of(now, subscriber);
        self.drain_all(now);
        Ok(())
    }

    pub fn set_track_muted(
        &mut self,
        now: Instant,
        track: TrackId,
        muted: bool,
    ) -> Result<(), CoreError> {
        let t = self
            .tracks
            .get_mut(&track)
            .ok_or(CoreError::UnknownTrack(track))?;
        t.muted = muted;
        if !muted {
            for sub in t.subscribers.clone() {
                if let Some(s) = self.subs.get_mut(&(sub, track)) {
                    s.restart();
                }
            }
            self.request_keyframe(now, track, 0, true);
            self.drain_all(now);
        }
        Ok(())
    }

    /// Close a peer and free everything it owned. Unknown peers are fine.
    pub fn close_peer(&mut self, now: Instant, id: PeerId) {
        self.close_peer_with(now, id, CloseReason::Requested);
    }

    /// Subscribers on `shard` want `track`'s media.
    pub fn add_remote_fanout(&mut self, track: TrackId, shard: ShardId) {
        if let Some(t) = self.tracks.get_mut(&track) {
            if !t.remote_shards.contains(&shard) {
                t.remote_shards.push(shard);
            }
        }
    }

    pub fn remove_remote_fanout(&mut self, track: TrackId, shard: ShardId) {
        if let Some(t) = self.tracks.get_mut(&track) {
            t.remote_shards.retain(|s| *s != shard);
        }
    }

    /// If no offer is outstanding and changes are queued, make the next server offer.
    pub(crate) fn maybe_offer(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let n = &peer.negotiation;
        if n.pending.is_some() || (n.queued_add.is_empty() && n.queued_remove.is_empty()) {
            return;
        }
        let adds: Vec<(TrackId, MediaKind, String)> = n
            .queued_add
            .iter()
            .filter_map(|t| {
                let info = &self.tracks.get(t)?.info;
                Some((*t, info.kind, info.publisher_identity.clone()))
            })
            .collect();
        let res = self.with_peer(id, |p| {
            let removes = std::mem::take(&mut p.negotiation.queued_remove);
            p.negotiation.queued_add.clear();
            let mut api = p.rtc.sdp_api();
            let mut added = Vec::with_capacity(adds.len());
            for (track, kind, identity) in &adds {
                let mid = api.add_media(
                    (*kind).into(),
                    str0m::media::Direction::SendOnly,
                    Some(sanitize_msid(identity)),
                    Some(track.to_string()),
                    None,
                );
                added.push((*track, mid));
            }
            for mid in removes {
                api.set_direction(mid, str0m::media::Direction::Inactive);
            }
            let (offer, pending) = api.apply()?;
            p.negotiation.pending = Some(pending);
            for (track, mid) in &added {
                p.sub_by_mid.insert(*mid, *track);
            }
            p.negotiation.in_flight = added.clone();
            let sdp = crate::sdp_fixup::candidates_in_every_bundled_section(&offer.to_sdp_string());
            Some((sdp, added))
        });
        let Some(Some((sdp, added))) = res else {
            return;
        };
        for (track, mid) in added {
            if let Some(s) = self.subs.get_mut(&(id, track)) {
                s.set_mid(mid);
            }
        }
        self.out
            .push_back(Output::Event(CoreEvent::Offer { peer: id, sdp }));
        self.mark_dirty(id);
        self.drain_all(now);
    }
}

/// msid stream ids are tokens (RFC 8830): keep identities readable, replace the rest.
fn sanitize_msid(identity: &str) -> String {
    let s: String = identity
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}
