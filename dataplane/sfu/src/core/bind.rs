//! Binding a new peer's recvonly m-lines to published tracks in the answer (WHEP, RFC 9725):
//! the viewer offers recvonly audio/video, the answer makes them sendonly from us, and each
//! one becomes a subscription's outgoing stream at once, so media flows with no server offer.
//!
//! Offered recvonly m-lines that no track will fill are made `inactive` in the offer before
//! str0m answers it, so the answer never promises media we will not send.
//!
//! Must never add m-lines or start a negotiation: whatever the offer did not ask for is not
//! bound.

use std::time::Instant;

use str0m::media::Mid;
use tracing::debug;

use crate::api::{MediaKind, PeerRole, TrackInfo};
use crate::core::ShardCore;
use crate::ids::PeerId;
use crate::track::{PublishedTrack, Subscription};

impl ShardCore {
    /// The tracks of `bind` that can be bound now — published on this shard, or on another
    /// (the node set up that shard's fan-out) — without duplicates, in order.
    pub(crate) fn bindable(&self, bind: Vec<TrackInfo>) -> Vec<TrackInfo> {
        let mut out: Vec<TrackInfo> = Vec::with_capacity(bind.len());
        for info in bind {
            let track = info.track;
            let live = track.shard() != self.shard
                || self
                    .tracks
                    .get(&track)
                    .is_some_and(|t| t.publisher.is_some());
            if live && !out.iter().any(|o| o.track == track) {
                out.push(info);
            }
        }
        out
    }

    /// Bind `id`'s sending m-lines (in the order of `answer`) to `tracks`, same kind, in
    /// order; a `Play` peer also remembers its lines for tracks that come later. Returns how
    /// many were bound.
    pub(crate) fn bind_answered(
        &mut self,
        now: Instant,
        id: PeerId,
        answer: &str,
        tracks: Vec<TrackInfo>,
    ) -> usize {
        let mids = mids_in_order(answer);
        // (mid, kind) of every m-line we may send on, in SDP order.
        let lines = self
            .with_peer(id, |p| {
                mids.iter()
                    .filter_map(|mid| {
                        let media = p.rtc.media(*mid)?;
                        if !media.direction().is_sending() || media.disabled() {
                            return None;
                        }
                        Some((*mid, MediaKind::from(media.kind())))
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if let Some(p) = self.peers.get_mut(&id).filter(|p| p.role == PeerRole::Play) {
            p.play_lines = lines.iter().copied().collect();
        }
        let mut tracks: Vec<Option<TrackInfo>> = tracks.into_iter().map(Some).collect();
        let mut bound = 0;
        for (mid, kind) in lines {
            let Some(info) = tracks
                .iter_mut()
                .find(|t| t.as_ref().is_some_and(|t| t.kind == kind))
                .and_then(Option::take)
            else {
                continue;
            };
            if self.bind_line(now, id, mid, info) {
                bound += 1;
            }
        }
        if let Some(p) = self.peers.get_mut(&id) {
            super::drain::refresh_transport(p);
        }
        self.stats.subscriptions = self.subs.len() as u64;
        bound
    }

    /// A `Play` peer's first offered m-line of `kind` that carries no track.
    pub(crate) fn free_play_line(&self, id: PeerId, kind: MediaKind) -> Option<Mid> {
        let p = self.peers.get(&id)?;
        p.play_lines
            .iter()
            .find(|(mid, k)| *k == kind && !p.sub_by_mid.contains_key(mid))
            .map(|(mid, _)| *mid)
    }

    /// Make `info.track` the outgoing stream of peer `id`'s sending m-line `mid`, with no
    /// negotiation. A stream parked on that line (its track went away) continues: same
    /// SSRC, sequence numbers and timestamps carry on, a new segment starts at the next
    /// keyframe. Returns whether it was bound.
    pub(crate) fn bind_line(
        &mut self,
        now: Instant,
        id: PeerId,
        mid: Mid,
        info: TrackInfo,
    ) -> bool {
        let track = info.track;
        if self.subs.contains_key(&(id, track)) {
            return false;
        }
        let published = self
            .tracks
            .get(&track)
            .is_some_and(|t| t.publisher.is_some());
        if track.shard() == self.shard && !published {
            return false; // unpublished meanwhile: this m-line stays empty
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        let parked = peer
            .parked
            .iter()
            .position(|(m, _)| *m == mid)
            .map(|i| peer.parked.swap_remove(i).1);
        peer.subscriptions.push(track);
        peer.sub_by_mid.insert(mid, track);
        let sub = match parked {
            Some(mut sub) => {
                // The sent ring names the old track's packets: nothing in it can be resent.
                if let Some(e) = sub.egress.as_mut() {
                    peer.sub_by_ssrc.insert(e.ssrc, track);
                    if let Some(r) = e.rtx_ssrc {
                        peer.sub_by_ssrc.insert(r, track);
                    }
                    if e.sent.is_some() {
                        e.sent = Some(crate::transport::sent::SentRing::new());
                    }
                }
                sub.pt_map.clear();
                sub.told_paused = false;
                sub.restart();
                sub
            }
            None => {
                let mut sub = Subscription::new();
                sub.set_mid(mid);
                sub
            }
        };
        let resumed = sub.egress.is_some();
        self.tracks
            .entry(track)
            .or_insert_with(|| PublishedTrack::new(info, None))
            .subscribers
            .push(id);
        self.subs.insert((id, track), sub);
        if resumed || self.start_egress(id, track, mid) {
            self.request_keyframe(now, track, 0, true);
        }
        debug!(peer = %id, %track, %mid, resumed, "offered m-line bound to track");
        self.stats.subscriptions = self.subs.len() as u64;
        true
    }
}

/// `offer` with each recvonly audio/video m-line that gets no track of `bind` turned
/// `inactive`. Pairing is the one `bind_answered` applies to the answer: in SDP order, each
/// m-line we may send on (offered recvonly or sendrecv, not rejected) takes the next track of
/// its kind. Text-level on purpose: str0m answers an offered direction as given, and has no
/// call to change a direction inside the answer it builds.
///
/// Port 0 rejects an m-line unless its mid is in the offer's BUNDLE group: that is a
/// `bundle-only` line of a max-bundle offer (RFC 8843 §7.2, GStreamer's webrtcbin sends them),
/// which str0m answers like any other, so it is paired like any other.
pub(crate) fn unbound_inactive(offer: &str, bind: &[TrackInfo]) -> String {
    let mut left =
        [MediaKind::Audio, MediaKind::Video].map(|k| bind.iter().filter(|t| t.kind == k).count());
    let bundled = bundle_group(offer);
    let mut live = live_by_section(offer, &bundled).into_iter();
    let mut kind: Option<usize> = None;
    let mut out = String::with_capacity(offer.len());
    for line in offer.split_inclusive('\n') {
        let text = line.trim_end();
        if let Some(m) = text.strip_prefix("m=") {
            let media = m.split(' ').next();
            kind = match (live.next().unwrap_or(false), media) {
                (false, _) => None,
                (true, Some("audio")) => Some(0),
                (true, Some("video")) => Some(1),
                _ => None,
            };
        }
        if let (Some(k), "a=recvonly" | "a=sendrecv") = (kind, text) {
            if left[k] > 0 {
                left[k] -= 1;
            } else if text == "a=recvonly" {
                out.push_str(&line.replacen("a=recvonly", "a=inactive", 1));
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

/// The mids of the session-level `a=group:BUNDLE` lines.
fn bundle_group(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .take_while(|l| !l.starts_with("m="))
        .filter_map(|l| l.trim_end().strip_prefix("a=group:BUNDLE"))
        .flat_map(str::split_whitespace)
        .collect()
}

/// For each m-line in order: not rejected (a port other than 0, or a mid in the BUNDLE group).
fn live_by_section(sdp: &str, bundled: &[&str]) -> Vec<bool> {
    let mut out: Vec<bool> = Vec::new();
    let mut port_zero = false;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            port_zero = m.split(' ').nth(1) == Some("0");
            out.push(!port_zero);
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            if let Some(last) = out.last_mut() {
                *last = !port_zero || bundled.contains(&mid);
            }
        }
    }
    out
}

/// The mids of an SDP's m-lines, in order (sections without a mid are skipped).
fn mids_in_order(sdp: &str) -> Vec<Mid> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .map(Mid::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(track: u64, kind: MediaKind) -> TrackInfo {
        TrackInfo {
            track: crate::ids::TrackId::new(crate::ids::ShardId(0), track),
            room: crate::ids::RoomId::new("r"),
            publisher_identity: "p".into(),
            kind,
            rids: Vec::new(),
        }
    }

    #[test]
    fn only_recvonly_lines_without_a_track_turn_inactive() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
                     m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n\
                     m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=recvonly\r\n\
                     m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\na=recvonly\r\n\
                     m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:4\r\n";
        let out = unbound_inactive(
            offer,
            &[info(1, MediaKind::Video), info(2, MediaKind::Audio)],
        );
        let dirs: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("a=recvonly") || l.starts_with("a=inactive"))
            .collect();
        // audio bound, first video bound, rejected line untouched, second video inactive.
        assert_eq!(
            dirs,
            ["a=recvonly", "a=recvonly", "a=recvonly", "a=inactive"]
        );
        assert_eq!(out.len(), offer.len(), "only the one attribute changed");
        assert_eq!(
            unbound_inactive(offer, &[]).matches("a=inactive").count(),
            3
        );
    }

    #[test]
    fn bundle_only_lines_are_paired_and_rejected_ones_are_not() {
        // A max-bundle offer: the first line carries the transport, the rest are
        // bundle-only (port 0, in the group); mid 9 is outside the group, so rejected.
        let offer = "v=0\r\na=group:BUNDLE v0 a1 v2\r\n\
                     m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v0\r\na=recvonly\r\n\
                     m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=bundle-only\r\na=mid:a1\r\na=recvonly\r\n\
                     m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=bundle-only\r\na=mid:v2\r\na=recvonly\r\n\
                     m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:9\r\na=recvonly\r\n";
        let out = unbound_inactive(
            offer,
            &[info(1, MediaKind::Video), info(2, MediaKind::Audio)],
        );
        let dirs: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("a=recvonly") || l.starts_with("a=inactive"))
            .collect();
        // video bound, bundle-only audio bound, bundle-only second video has no track,
        // the rejected line is left alone.
        assert_eq!(
            dirs,
            ["a=recvonly", "a=recvonly", "a=inactive", "a=recvonly"]
        );
    }

    #[test]
    fn mids_come_in_sdp_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a0\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v1\r\n";
        let mids: Vec<String> = mids_in_order(sdp).iter().map(|m| m.to_string()).collect();
        assert_eq!(mids, ["a0", "v1"]);
    }
}
