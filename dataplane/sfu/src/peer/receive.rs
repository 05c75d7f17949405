//! What a peer itself decides about one RTP packet it sent us, once SRTP opened it: which
//! published track and layer its SSRC carries (learned on the first packet), RTX unwrapped
//! onto the main stream (RFC 4588), the transport-cc arrival recorded, reception statistics
//! and the NACK generator fed. The result tells the core what to route; the core does the
//! routing.
//!
//! Must never touch another peer, allocate for a dropped packet, or trust a length or an id
//! from the packet without a check.

use std::sync::Arc;
use std::time::Instant;

use shardcast_rtp::recv::{Arrival, NackGenerator, ReceiveStats};
use shardcast_rtp::rtp::{read_extensions, read_rtx_original_seq, Extensions, RtpHeader};
use str0m::media::{Mid, Pt, Rid};

use super::Peer;
use crate::api::{LayerIndex, MediaKind, MediaPacket};
use crate::forward::codec::{is_keyframe, VideoCodec};
use crate::ids::TrackId;
use crate::stats::DropReason;
use crate::transport::{extend_near, MainRx, RxKind, RxStream, MAX_RX_STREAMS};

/// What one received RTP packet means for the core.
pub(crate) enum Received {
    /// Media to route. `source` is the main SSRC (the rewriter's segment key).
    Media {
        packet: MediaPacket,
        source: u32,
        /// The NACK generator gave up on repairing this stream: ask for a keyframe.
        keyframe_needed: bool,
    },
    /// A padding-only packet of the main stream: nothing to forward, but its slot in the
    /// sequence must be closed for subscribers (`StreamRewriter::skip`).
    Padding {
        track: TrackId,
        layer: LayerIndex,
        source: u32,
        seq: u64,
    },
    /// A packet whose codec payload header (a VP9 descriptor, RED's block headers) is
    /// malformed: counted as a drop (`DropReason::RtpPayloadMalformed`) and its slot closed
    /// like padding's. It was received (no NACK upstream); subscribers see no gap for it, and
    /// a frame it belonged to is incomplete, which their decoders answer with a keyframe
    /// request (audio: their decoder conceals the 20 ms).
    Malformed {
        track: TrackId,
        layer: LayerIndex,
        source: u32,
        seq: u64,
    },
    /// Nothing to do (RTX padding, a bandwidth probe).
    Nothing,
}

/// The video codec of a str0m codec, for keyframe detection.
pub(crate) fn video_codec(codec: str0m::format::Codec) -> Option<VideoCodec> {
    match codec {
        str0m::format::Codec::Vp8 => Some(VideoCodec::Vp8),
        str0m::format::Codec::Vp9 => Some(VideoCodec::Vp9),
        str0m::format::Codec::H264 => Some(VideoCodec::H264),
        str0m::format::Codec::Av1 => Some(VideoCodec::Av1),
        _ => None,
    }
}

impl Peer {
    /// One RTP packet, `ext_seq` its SRTP extended sequence number.
    pub(crate) fn receive_rtp(
        &mut self,
        now: Instant,
        pkt: &[u8],
        ext_seq: u64,
    ) -> Result<Received, DropReason> {
        let header = RtpHeader::parse(pkt).map_err(|_| DropReason::RtpUndecodable)?;
        let tp = self.transport.as_mut().ok_or(DropReason::NoSrtpKeys)?;
        // A malformed extension block loses the extensions, not the packet.
        let ext = read_extensions(pkt, &header, &tp.ext_in).unwrap_or_default();
        if let Some(seq) = ext.transport_cc {
            tp.twcc_in.on_packet(seq, now);
            if tp.next_twcc_feedback.is_none() {
                tp.next_twcc_feedback = Some(now + crate::transport::TWCC_FEEDBACK_INTERVAL);
            }
        }
        let ssrc = header.ssrc;
        if !tp.rx.contains_key(&ssrc) {
            self.learn_stream(ssrc, &ext, header.payload_type)?;
        }
        let tp = self.transport.as_mut().ok_or(DropReason::NoSrtpKeys)?;
        let stream = tp.rx.get(&ssrc).ok_or(DropReason::RtpUnknownSsrc)?;
        let (track, layer) = (stream.track, stream.layer);
        let payload = header.payload(pkt);
        let (source, ext_seq, pt, payload, retransmit) = match stream.kind {
            RxKind::Main(_) => (ssrc, ext_seq, header.payload_type, payload, false),
            RxKind::Rtx { main } => {
                let Ok((osn, original)) = read_rtx_original_seq(payload) else {
                    return Ok(Received::Nothing); // RTX padding: a probe
                };
                let highest = match tp.rx.get(&main).map(|s| &s.kind) {
                    Some(RxKind::Main(m)) => m.stats.highest_ext_seq(),
                    _ => None,
                }
                .ok_or(DropReason::RtpUnknownSsrc)?;
                let apt = self
                    .rtx_apt(header.payload_type)
                    .ok_or(DropReason::RtpUnknownSsrc)?;
                (main, extend_near(highest, osn), apt, original, true)
            }
        };
        let (codec, red_of) = self
            .format_of(Pt::from(pt))
            .ok_or(DropReason::RtpUnknownPayloadType)?;
        // RED (RFC 2198): its blocks are cut apart per subscriber, so a payload whose blocks
        // do not add up, or carry another codec, is not routed (see `Received::Malformed`).
        let red = match red_of {
            Some(primary) if !payload.is_empty() => {
                crate::forward::red::parse(payload, primary).map(Some)
            }
            _ => Ok(None),
        };
        // A VP9 descriptor steers the layer filter and is rewritten: a malformed one is not
        // routed (see `Received::Malformed`).
        let (keyframe, malformed) = match video_codec(codec.codec) {
            Some(VideoCodec::Vp9) if !payload.is_empty() => {
                match is_keyframe(VideoCodec::Vp9, payload) {
                    Ok(k) => (k, false),
                    Err(_) => (false, true),
                }
            }
            Some(c) => (is_keyframe(c, payload).unwrap_or(false), false),
            None => (false, red.is_err()),
        };
        let tp = self.transport.as_mut().ok_or(DropReason::NoSrtpKeys)?;
        let mut keyframe_needed = false;
        let mut av1 = None;
        if let Some(RxKind::Main(m)) = tp.rx.get_mut(&source).map(|s| &mut s.kind) {
            m.stats
                .on_packet(ext_seq, header.timestamp, now, retransmit);
            if let Some(nack) = m.nack.as_mut() {
                if nack.on_packet(ext_seq, keyframe, now) == Arrival::Duplicate {
                    return Err(DropReason::RtpDuplicate);
                }
                keyframe_needed = nack.take_keyframe_needed();
            }
            if let (str0m::format::Codec::Av1, Some(dd)) = (codec.codec, ext.dependency_descriptor)
            {
                av1 = m.av1.get_or_insert_with(Default::default).on_descriptor(dd);
            }
        }
        if malformed {
            return Ok(Received::Malformed {
                track,
                layer,
                source,
                seq: ext_seq,
            });
        }
        if payload.is_empty() {
            return Ok(Received::Padding {
                track,
                layer,
                source,
                seq: ext_seq,
            });
        }
        let audio_level = ext.audio_level;
        Ok(Received::Media {
            packet: MediaPacket {
                track,
                layer,
                codec,
                seq: ext_seq,
                timestamp: header.timestamp,
                marker: header.marker,
                keyframe,
                red: red.ok().flatten(),
                audio_level: audio_level.map(|a| -(a.level.min(127) as i8)),
                voice_activity: audio_level.map(|a| a.voice),
                av1,
                arrival: now,
                payload: Arc::from(payload),
            },
            source,
            keyframe_needed,
        })
    }

    /// Learn which track and layer a new incoming SSRC carries: from its mid and rid (or
    /// repaired-rid) header extensions (RFC 8852), else from the SSRCs the offer signalled
    /// (`a=ssrc`, `a=ssrc-group:FID`, which str0m keeps as receive streams), else — when the
    /// peer publishes one single-layer m-line of the payload type's kind — that one.
    fn learn_stream(&mut self, ssrc: u32, ext: &Extensions<'_>, pt: u8) -> Result<(), DropReason> {
        let unknown = DropReason::RtpUnknownSsrc;
        if self
            .transport
            .as_ref()
            .is_some_and(|t| t.rx.len() >= MAX_RX_STREAMS)
        {
            return Err(unknown);
        }
        let is_rtx = self.rtx_apt(pt).is_some();
        let (track, layer, rtx_main) = if let Some(mid) = ext.mid.and_then(mid_of) {
            let rid = ext.repaired_rid.or(ext.rid);
            let (track, layer) = self.published_layer(mid, rid).ok_or(unknown)?;
            let rtx = is_rtx || ext.repaired_rid.is_some();
            (track, layer, rtx.then(|| self.main_ssrc_of(track, layer)))
        } else if let Some((mid, rid, main)) = self.signalled(ssrc) {
            let (track, layer) = self
                .published_layer(mid, rid.as_deref().map(|r| r.as_bytes()))
                .ok_or(unknown)?;
            (track, layer, main.map(Some))
        } else {
            let main_pt = self.rtx_apt(pt).unwrap_or(pt);
            let kind = self
                .codec_of(Pt::from(main_pt))
                .map(|c| MediaKind::from(c.codec.kind()))
                .ok_or(unknown)?;
            let track = self.only_single_layer_track(kind).ok_or(unknown)?;
            (track, 0, is_rtx.then(|| self.main_ssrc_of(track, 0)))
        };
        let kind = match rtx_main {
            // An RTX stream before its main stream's first packet: wait for the main one
            // (the OSN can only be extended against it).
            Some(main) => RxKind::Rtx {
                main: main.ok_or(unknown)?,
            },
            None => RxKind::Main(self.main_rx(track, ssrc).ok_or(unknown)?),
        };
        let tp = self.transport.as_mut().ok_or(unknown)?;
        tracing::debug!(ssrc, %track, layer, rtx = matches!(kind, RxKind::Rtx { .. }), "incoming stream");
        tp.rx.insert(ssrc, RxStream { track, layer, kind });
        Ok(())
    }

    /// The learned main SSRC of a track's layer.
    fn main_ssrc_of(&self, track: TrackId, layer: LayerIndex) -> Option<u32> {
        self.transport.as_ref()?.rx.iter().find_map(|(s, r)| {
            (r.track == track && r.layer == layer && matches!(r.kind, RxKind::Main(_)))
                .then_some(*s)
        })
    }

    /// (mid, rid, and for an RTX SSRC its main SSRC) of an SSRC the offer signalled.
    fn signalled(&mut self, ssrc: u32) -> Option<(Mid, Option<Rid>, Option<u32>)> {
        let mut api = self.rtc.direct_api();
        if let Some(rx) = api.stream_rx(&ssrc.into()) {
            return Some((rx.mid(), rx.rid(), None));
        }
        for m in self.published.iter() {
            let rids: smallvec::SmallVec<[Option<Rid>; 3]> = if m.rids.is_empty() {
                smallvec::smallvec![None]
            } else {
                m.rids.iter().copied().map(Some).collect()
            };
            for rid in rids {
                if let Some(rx) = api.stream_rx_by_mid(m.mid, rid) {
                    if rx.rtx().map(|s| *s) == Some(ssrc) {
                        return Some((m.mid, rid, Some(*rx.ssrc())));
                    }
                }
            }
        }
        None
    }

    /// The one single-layer track of `kind` this peer publishes, if there is exactly one.
    fn only_single_layer_track(&self, kind: MediaKind) -> Option<TrackId> {
        let mut found = self.published.iter().filter(|m| {
            m.rids.is_empty()
                && self
                    .rtc
                    .media(m.mid)
                    .is_some_and(|media| MediaKind::from(media.kind()) == kind)
        });
        let only = found.next()?;
        found.next().is_none().then_some(only.track)
    }

    /// Receive state for a new main stream of `track` (NACKs for video only).
    fn main_rx(&self, track: TrackId, ssrc: u32) -> Option<Box<MainRx>> {
        let mid = self.published.iter().find(|m| m.track == track)?.mid;
        let video = MediaKind::from(self.rtc.media(mid)?.kind()) == MediaKind::Video;
        let clock_rate = if video { 90_000 } else { 48_000 };
        Some(Box::new(MainRx {
            stats: ReceiveStats::new(ssrc, clock_rate),
            nack: video.then(NackGenerator::new),
            av1: None,
        }))
    }
}

/// A mid from its header extension bytes (RFC 8843: an RTP stream id token).
fn mid_of(bytes: &[u8]) -> Option<Mid> {
    std::str::from_utf8(bytes).ok().map(Mid::from)
}
