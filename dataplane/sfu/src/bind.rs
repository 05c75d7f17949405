//! Binding a new peer's recvonly m-lines to published tracks in the answer (WHEP, RFC 9725):
//! the viewer offers recvonly audio/video, the answer makes them sendonly from us, and each
//! one becomes a subscription's outgoing stream at once, so media flows with no server offer.
//!
//! Must never add m-lines or start a negotiation: whatever the offer did not ask for is not
//! bound.

use std::time::Instant;

use str0m::media::Mid;
use tracing::debug;

use crate::api::{MediaKind, TrackInfo};
use crate::core::ShardCore;
use crate::ids::PeerId;
use crate::track::{PublishedTrack, Subscription};

impl ShardCore {
    /// Bind `id`'s sending m-lines (in the order of `answer`) to `tracks`, same kind, in
    /// order. Returns how many were bound.
    pub(crate) fn bind_answered(
        &mut self,
        now: Instant,
        id: PeerId,
        answer: &str,
        tracks: Vec<TrackInfo>,
    ) -> usize {
        if tracks.is_empty() {
            return 0;
        }
        let mids = mids_in_order(answer);
        // (mid, kind, our SSRC) of every m-line we may send on, in SDP order.
        let lines = self
            .with_peer(id, |p| {
                mids.iter()
                    .filter_map(|mid| {
                        let media = p.rtc.media(*mid)?;
                        if !media.direction().is_sending() || media.disabled() {
                            return None;
                        }
                        let kind = MediaKind::from(media.kind());
                        let ssrc = p.rtc.direct_api().stream_tx_by_mid(*mid, None)?.ssrc();
                        Some((*mid, kind, ssrc))
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut tracks: Vec<Option<TrackInfo>> = tracks.into_iter().map(Some).collect();
        let mut bound = 0;
        for (mid, kind, ssrc) in lines {
            let Some(info) = tracks
                .iter_mut()
                .find(|t| t.as_ref().is_some_and(|t| t.kind == kind))
                .and_then(Option::take)
            else {
                continue;
            };
            let track = info.track;
            if self.subs.contains_key(&(id, track)) {
                continue;
            }
            let published = self
                .tracks
                .get(&track)
                .is_some_and(|t| t.publisher.is_some());
            if track.shard() == self.shard && !published {
                continue; // unpublished meanwhile: this m-line stays empty
            }
            let Some(peer) = self.peers.get_mut(&id) else {
                return bound;
            };
            peer.subscriptions.push(track);
            peer.sub_by_mid.insert(mid, track);
            self.tracks
                .entry(track)
                .or_insert_with(|| PublishedTrack::new(info, None, None))
                .subscribers
                .push(id);
            let mut sub = Subscription::new();
            sub.mid = Some(mid);
            sub.ssrc = Some(ssrc);
            sub.restart();
            self.subs.insert((id, track), sub);
            self.request_keyframe(now, track, 0, true);
            debug!(peer = %id, %track, %mid, "offered m-line bound to track");
            bound += 1;
        }
        self.stats.subscriptions = self.subs.len() as u64;
        bound
    }
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

    #[test]
    fn mids_come_in_sdp_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a0\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v1\r\n";
        let mids: Vec<String> = mids_in_order(sdp).iter().map(|m| m.to_string()).collect();
        assert_eq!(mids, ["a0", "v1"]);
    }
}
