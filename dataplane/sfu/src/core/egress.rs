//! Egress, the last stage of the packet path: one forwarded copy for one subscription gets
//! its header (the subscriber's SSRC, payload type, rewritten sequence number and timestamp,
//! the header extensions it negotiated: transport-wide sequence number, abs-send-time, mid,
//! audio level), the VP8/VP9 picture ids patched, and is sealed with the subscriber's SRTP
//! straight into the shard's `TxQueue`. Also retransmissions (RTX, RFC 4588, or a plain
//! resend where RTX is not negotiated) rebuilt from the track's history and the sent ring,
//! and padding for bandwidth probes.
//!
//! Must never allocate per copy, copy a payload except to patch a VP8/VP9 descriptor (into the
//! core's scratch), or send without recording the packet for the estimator and the NACKs.

use std::time::Instant;

use shardcast_rtp::bwe::ProbeClusterId;
use shardcast_rtp::rtp::{
    abs_send_time, write_header, write_padding_packet, write_rtx_original_seq, AudioLevel,
    HeaderFields, OutExtensions, RtpHeader,
};
use shardcast_rtp::srtp::SEAL_SLACK;
use str0m::format::{Codec, CodecSpec};
use str0m::media::{Mid, Pt};

use super::route::Fwd;
use super::ShardCore;
use crate::forward::codec::{renumber, renumbered, PictureIds};
use crate::forward::rewrite::Rewritten;
use crate::ids::{PeerId, TrackId};
use crate::peer::video_codec;
use crate::peer::Peer;
use crate::track::{Egress, MidWire, OutFormat, Subscription};
use crate::transport::sent::Sent;
use crate::transport::Transport;
use crate::tx_queue::TxQueue;

/// Room for a header with every extension we write.
const MAX_HEADER: usize = 96;

/// One packet to write: the fixed fields and the values only we decide.
struct Out<'a> {
    fields: HeaderFields,
    /// The outgoing stream's rollover counter for `fields.seq`.
    roc: u32,
    payload: &'a [u8],
    audio_level: Option<AudioLevel>,
    /// Repeat these instead of taking new ones (a plain retransmission).
    twcc: Option<u16>,
    abs_send_time: Option<u32>,
    probe: Option<ProbeClusterId>,
}

/// What a written packet carried, for the sent ring.
struct Written {
    twcc: Option<u16>,
    abs_send_time: Option<u32>,
}

/// Write and seal one forwarded packet for subscription `sub` of `peer`, mapped by the
/// rewriter to `out`. Returns whether a datagram was queued.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send_media(
    now: Instant,
    epoch: Instant,
    tx: &mut TxQueue,
    payload_scratch: &mut Vec<u8>,
    peer: &mut Peer,
    sub: &mut Subscription,
    fwd: &Fwd<'_>,
    format: OutFormat,
    out: Rewritten,
) -> bool {
    let pt = format.pt();
    let out_seq = sub.extend_out_seq(out.seq);
    let (ids, payload) = match (format, fwd.red) {
        // RED cut to its primary block: the payload's tail, no copy.
        (OutFormat::Primary(_), Some(red)) => (PictureIds::NONE, red.primary(fwd.payload)),
        // RED kept: its blocks name the subscriber's payload type (a copy only if it differs).
        (OutFormat::Red { blocks, .. }, Some(red)) => (
            PictureIds::NONE,
            red.with_block_pt(fwd.payload, blocks, payload_scratch),
        ),
        // VP8/VP9: picture id and TL0PICIDX continue across layer switches for this
        // subscriber.
        _ => renumber(
            video_codec(fwd.codec.codec),
            &mut sub.pictures,
            fwd.payload,
            out.new_segment,
            payload_scratch,
        ),
    };
    let picture_ids = (ids.picture_id, ids.tl0_pic_idx);
    let (Some(dest), Some(tp), Some(egress)) =
        (peer.remote, peer.transport.as_mut(), sub.egress.as_mut())
    else {
        return false;
    };
    let audio_level = fwd.audio_level.map(|l| AudioLevel {
        voice: fwd.voice_activity.unwrap_or(false),
        level: l.unsigned_abs().min(127),
    });
    let o = Out {
        fields: HeaderFields {
            marker: fwd.marker,
            payload_type: pt,
            seq: out.seq,
            timestamp: out.ts,
            ssrc: egress.ssrc,
        },
        roc: (out_seq >> 16) as u32,
        payload,
        audio_level,
        twcc: None,
        abs_send_time: None,
        probe: None,
    };
    let Some(written) = write_sealed(now, epoch, tx, dest, tp, egress, sub.mid_wire, &o) else {
        return false;
    };
    egress.packets = egress.packets.wrapping_add(1);
    egress.octets = egress.octets.wrapping_add(payload.len() as u32);
    egress.last = Some((out.ts, now));
    if let Some(sent) = egress.sent.as_mut() {
        sent.record(Sent {
            out_seq,
            layer: fwd.layer,
            in_seq: fwd.seq,
            timestamp: out.ts,
            marker: fwd.marker,
            payload_type: pt,
            picture_id: picture_ids.0,
            tl0_pic_idx: picture_ids.1,
            twcc: written.twcc,
            abs_send_time: written.abs_send_time,
        });
    }
    true
}

impl ShardCore {
    /// Resend what subscription (`sub_id`, `track`) sent with outgoing sequence number
    /// `lost` (16 bits, from its NACK): as RTX when negotiated, else the original bytes.
    /// Returns whether it was resent.
    pub(crate) fn resend(
        &mut self,
        now: Instant,
        sub_id: PeerId,
        track: TrackId,
        lost: u16,
    ) -> bool {
        let ShardCore {
            peers,
            subs,
            tracks,
            tx,
            payload_scratch,
            epoch,
            ..
        } = self;
        let (Some(peer), Some(sub), Some(t)) = (
            peers.get_mut(&sub_id),
            subs.get_mut(&(sub_id, track)),
            tracks.get(&track),
        ) else {
            return false;
        };
        let Some(highest) = sub.out_seq else {
            return false;
        };
        let out_seq = crate::transport::extend_near(highest, lost);
        let Some(egress) = sub.egress.as_mut() else {
            return false;
        };
        let Some(sent) = egress.sent.as_ref().and_then(|r| r.get(out_seq)).copied() else {
            return false;
        };
        let Some(original) = t
            .history
            .as_ref()
            .and_then(|h| h.get(usize::from(sent.layer)))
            .and_then(|h| h.get(sent.in_seq))
            .cloned()
        else {
            return false;
        };
        let ids = PictureIds {
            picture_id: sent.picture_id,
            tl0_pic_idx: sent.tl0_pic_idx,
        };
        let codec = t.codec.and_then(|c| video_codec(c.codec));
        let payload = renumbered(codec, &original, ids, payload_scratch);
        let rtx_pt = egress
            .rtx_ssrc
            .and_then(|_| rtx_pt_for(peer, sent.payload_type));
        let (Some(dest), Some(tp)) = (peer.remote, peer.transport.as_mut()) else {
            return false;
        };
        let written = match (egress.rtx_ssrc, rtx_pt) {
            (Some(rtx_ssrc), Some(rtx_pt)) => {
                // RFC 4588: the original sequence number, then the original payload.
                let mut rtx_payload = [0u8; crate::tx_queue::MAX_TX_DATAGRAM];
                let Some(body) = rtx_payload.get_mut(2..2 + payload.len()) else {
                    return false;
                };
                body.copy_from_slice(payload);
                if write_rtx_original_seq(&mut rtx_payload, out_seq as u16).is_err() {
                    return false;
                }
                let (seq, roc) = egress.next_rtx();
                let o = Out {
                    fields: HeaderFields {
                        marker: sent.marker,
                        payload_type: rtx_pt,
                        seq,
                        timestamp: sent.timestamp,
                        ssrc: rtx_ssrc,
                    },
                    roc,
                    payload: &rtx_payload[..2 + payload.len()],
                    audio_level: None,
                    twcc: None,
                    abs_send_time: None,
                    probe: None,
                };
                write_sealed(now, *epoch, tx, dest, tp, egress, sub.mid_wire, &o)
            }
            _ => {
                let o = Out {
                    fields: HeaderFields {
                        marker: sent.marker,
                        payload_type: sent.payload_type,
                        seq: out_seq as u16,
                        timestamp: sent.timestamp,
                        ssrc: egress.ssrc,
                    },
                    roc: (out_seq >> 16) as u32,
                    payload,
                    audio_level: None,
                    twcc: sent.twcc,
                    abs_send_time: sent.abs_send_time,
                    probe: None,
                };
                write_sealed(now, *epoch, tx, dest, tp, egress, sub.mid_wire, &o)
            }
        };
        written.is_some()
    }

    /// One padding packet of `bytes` (at most 255) to probe `sub_id`'s downlink, on the RTX
    /// stream of one of its video subscriptions (padding on a media SSRC would take sequence
    /// numbers the subscriber then waits for). Returns how many were sent (0 or 1).
    pub(crate) fn send_padding(
        &mut self,
        now: Instant,
        sub_id: PeerId,
        bytes: usize,
        probe: Option<ProbeClusterId>,
    ) -> usize {
        let ShardCore {
            peers,
            subs,
            tx,
            epoch,
            ..
        } = self;
        let Some(peer) = peers.get_mut(&sub_id) else {
            return 0;
        };
        let Some(track) = peer.subscriptions.iter().copied().find(|t| {
            subs.get(&(sub_id, *t))
                .and_then(|s| s.egress.as_ref())
                .is_some_and(|e| e.rtx_ssrc.is_some() && e.last.is_some())
        }) else {
            return 0;
        };
        let Some(sub) = subs.get_mut(&(sub_id, track)) else {
            return 0;
        };
        let Some(pt) = sub.pt_map.first().map(|(_, f)| f.pt()) else {
            return 0;
        };
        let Some(rtx_pt) = rtx_pt_for(peer, pt) else {
            return 0;
        };
        let (Some(dest), Some(tp), Some(egress)) =
            (peer.remote, peer.transport.as_mut(), sub.egress.as_mut())
        else {
            return 0;
        };
        let (Some(rtx_ssrc), Some((ts, _))) = (egress.rtx_ssrc, egress.last) else {
            return 0;
        };
        let (seq, roc) = egress.next_rtx();
        let fields = HeaderFields {
            marker: false,
            payload_type: rtx_pt,
            seq,
            timestamp: ts,
            ssrc: rtx_ssrc,
        };
        let counted = tp.next_twcc();
        let ext = OutExtensions {
            transport_cc: egress.ext.transport_cc.map(|_| counted as u16),
            abs_send_time: egress
                .ext
                .abs_send_time
                .map(|_| abs_send_time(now.saturating_duration_since(*epoch))),
            ..OutExtensions::default()
        };
        let mut packet = [0u8; MAX_HEADER + crate::transport::MAX_PADDING];
        let padding = bytes.clamp(1, crate::transport::MAX_PADDING) as u8;
        let Ok(len) = write_padding_packet(&mut packet, &fields, &ext, &egress.ext, padding) else {
            return 0;
        };
        let Ok(hlen) = RtpHeader::parse(&packet[..len]).map(|h| h.header_len) else {
            return 0;
        };
        let sealer = &mut tp.srtp.sealer;
        let max = len + sealer.profile().rtp_overhead() + SEAL_SLACK;
        let n = tx.push_with(dest, max, |buf| {
            sealer
                .seal_rtp(&packet[..hlen], &packet[hlen..len], roc, buf)
                .unwrap_or(0)
        });
        if n == 0 {
            return 0;
        }
        if let Some(bwe) = tp.bwe.as_mut() {
            bwe.on_packet_sent(now, counted, n, probe);
        }
        1
    }
}

/// Write the header for `o` (with the extensions the subscriber negotiated), seal header and
/// payload into the queue for `dest`, and tell the estimator. `None` when nothing was queued.
#[allow(clippy::too_many_arguments)]
fn write_sealed(
    now: Instant,
    epoch: Instant,
    tx: &mut TxQueue,
    dest: crate::tx_queue::Remote,
    tp: &mut Transport,
    egress: &Egress,
    mid: Option<MidWire>,
    o: &Out<'_>,
) -> Option<Written> {
    // Every new packet gets a transport-wide number (the estimator counts what was sent
    // even without transport-cc); it goes on the wire only where negotiated. A plain
    // retransmission repeats the original's.
    let (counted, twcc) = match o.twcc {
        Some(repeat) => (None, Some(repeat)),
        None => {
            let seq = tp.next_twcc();
            (Some(seq), egress.ext.transport_cc.map(|_| seq as u16))
        }
    };
    let abs = match (o.abs_send_time, egress.ext.abs_send_time) {
        (Some(repeat), _) => Some(repeat),
        (None, Some(_)) => Some(abs_send_time(now.saturating_duration_since(epoch))),
        (None, None) => None,
    };
    let mid_bytes = mid.as_ref().map(MidWire::as_bytes);
    let ext = OutExtensions {
        mid: mid_bytes,
        transport_cc: twcc,
        abs_send_time: abs,
        audio_level: o.audio_level,
        ..OutExtensions::default()
    };
    let mut header = [0u8; MAX_HEADER];
    let hlen = write_header(&mut header, &o.fields, &ext, &egress.ext).ok()?;
    let sealer = &mut tp.srtp.sealer;
    let max = hlen + o.payload.len() + sealer.profile().rtp_overhead() + SEAL_SLACK;
    let n = tx.push_with(dest, max, |buf| {
        sealer
            .seal_rtp(&header[..hlen], o.payload, o.roc, buf)
            .unwrap_or(0)
    });
    if n == 0 {
        return None;
    }
    if let (Some(seq), Some(bwe)) = (counted, tp.bwe.as_mut()) {
        bwe.on_packet_sent(now, seq, n, o.probe);
    }
    Some(Written {
        twcc,
        abs_send_time: abs,
    })
}

/// How a publisher's packets of `codec` (`red`: as RFC 2198 RED) go out on subscription
/// `sub` of `peer`, cached per subscription: RED stays RED where the subscriber negotiated
/// it on this m-line, else its primary block goes out as plain `codec`; anything else under
/// the subscriber's payload type for `codec`. `None`: the subscriber has no such codec.
pub(crate) fn out_format(
    peer: &Peer,
    sub: &mut Subscription,
    codec: &CodecSpec,
    red: bool,
) -> Option<OutFormat> {
    let key = format_key(codec, red);
    if let Some((_, f)) = sub.pt_map.iter().find(|(k, _)| *k == key) {
        return Some(*f);
    }
    let pt = *subscriber_pt(peer, sub.mid, codec)?;
    let format = match (red, sub.mid.and_then(|mid| peer.red_pt(mid, pt))) {
        (false, _) => OutFormat::Plain(pt),
        (true, Some(red_pt)) => OutFormat::Red {
            pt: red_pt,
            blocks: pt,
        },
        (true, None) => OutFormat::Primary(pt),
    };
    sub.pt_map.push((key, format));
    Some(format)
}

/// Format identity used to map a publisher's payload type onto the subscriber's.
fn format_key(spec: &CodecSpec, red: bool) -> Pt {
    // The codec enum identifies it well enough; pack it and RED in a Pt-sized key.
    let c = match spec.codec {
        Codec::Opus => 1,
        Codec::Vp8 => 2,
        Codec::Vp9 => 3,
        Codec::H264 => 4,
        Codec::Av1 => 6,
        _ => 5,
    };
    Pt::from(if red { c | 0x40 } else { c })
}

/// The subscriber's payload type for `codec` on m-line `mid`.
fn subscriber_pt(p: &Peer, mid: Option<Mid>, codec: &CodecSpec) -> Option<Pt> {
    let mid = mid?;
    let media = p.rtc.media(mid)?;
    let remote: smallvec::SmallVec<[Pt; 8]> = media.remote_pts().iter().copied().collect();
    let params = p.rtc.codec_config().find(|params| {
        let s = params.spec();
        s.codec == codec.codec
            && (remote.is_empty() || remote.contains(&params.pt()))
            && (codec.codec != Codec::H264
                || s.format.profile_level_id == codec.format.profile_level_id)
    });
    let params = params.or_else(|| {
        p.rtc
            .codec_config()
            .find(|params| params.spec().codec == codec.codec && remote.contains(&params.pt()))
    })?;
    Some(params.pt())
}

/// The RTX payload type that repairs `pt` in the peer's negotiated codecs.
fn rtx_pt_for(peer: &Peer, pt: u8) -> Option<u8> {
    peer.rtc
        .codec_config()
        .find(|p| *p.pt() == pt)
        .and_then(|p| p.resend())
        .map(|r| *r)
}
