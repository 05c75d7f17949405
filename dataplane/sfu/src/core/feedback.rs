//! RTCP, both ways, on each peer's transport.
//!
//! In (`on_rtcp`): from a subscriber — report blocks (loss, RTT) and transport-cc or REMB
//! into its downlink estimate, NACKs answered from the history (`egress.rs`), PLI/FIR into
//! the track's keyframe coalescing; from a publisher — sender reports (its clock, for ours).
//! Out (`transport_timeout`, `request_keyframe`): transport-cc feedback and NACKs to
//! publishers, receiver reports, sender reports mapped from the publisher's clock, PLIs,
//! and the estimator's probes.
//!
//! Every compound we send starts with a report (an RR from the transport's own RTCP SSRC),
//! as RFC 3550 asks, so clients that do not negotiate reduced-size RTCP accept it.
//! Must never act on an SSRC that is not this peer's, or let a client's count or sequence
//! number make it loop or allocate without bound.

use std::time::{Duration, Instant};

use shardcast_rtp::bwe::PacketResult;
use shardcast_rtp::recv::ntp;
use shardcast_rtp::report::ReportBlock;
use shardcast_rtp::rtcp::{
    parse_compound, write_bye, write_nack, write_pli, write_rr, write_sdes_cname, write_sr,
    RtcpPacket, SenderInfo,
};
use shardcast_rtp::srtp::SEAL_SLACK;
use smallvec::SmallVec;
use tracing::trace;

use super::ShardCore;
use crate::api::{LayerClock, LayerIndex, MediaKind, Output, ShardMessage};
use crate::ids::{PeerId, TrackId};
use crate::stats::DropReason;
use crate::transport::{RxKind, REPORT_INTERVAL};

/// Largest RTCP compound we build before sealing (fits any path MTU we send on).
const MAX_COMPOUND: usize = 1200;
/// Packets of one transport-cc feedback handed to the estimator (a feedback may claim 65 535).
const MAX_TWCC_RESULTS: usize = 4096;
/// NACKed sequence numbers sent per stream per turn.
const MAX_NACKS: usize = 64;
/// Report blocks per RR (the 5-bit count).
const MAX_BLOCKS: usize = 31;

impl ShardCore {
    /// One opened compound RTCP packet from peer `id`.
    pub(crate) fn on_rtcp(&mut self, now: Instant, id: PeerId, compound: &[u8]) {
        self.stats.rtcp_in += 1;
        let mut blocks: SmallVec<[ReportBlock; 8]> = SmallVec::new();
        let mut estimate_changed = false;
        for packet in parse_compound(compound) {
            let packet = match packet {
                Ok(p) => p,
                Err(e) => {
                    trace!(peer = %id, "rtcp: {e}");
                    self.stats.drop(DropReason::RtcpMalformed);
                    break;
                }
            };
            match packet {
                RtcpPacket::SenderReport {
                    ssrc,
                    ntp,
                    rtp_ts,
                    reports,
                    ..
                } => {
                    self.on_sender_report(now, id, ssrc, ntp, rtp_ts);
                    blocks.extend(reports.take(MAX_BLOCKS));
                }
                RtcpPacket::ReceiverReport { reports, .. } => {
                    blocks.extend(reports.take(MAX_BLOCKS));
                }
                RtcpPacket::Nack {
                    media_ssrc, lost, ..
                } => {
                    let Some(track) = self.subscription_of(id, media_ssrc) else {
                        continue;
                    };
                    for seq in lost.take(MAX_NACKS * 4) {
                        if self.resend(now, id, track, seq) {
                            self.stats.rtx_sent += 1;
                        } else {
                            self.stats.nack_misses += 1;
                        }
                    }
                }
                RtcpPacket::Pli { media_ssrc, .. } => self.on_keyframe_request(now, id, media_ssrc),
                RtcpPacket::Fir { entries, .. } => {
                    for (ssrc, _) in entries.take(8) {
                        self.on_keyframe_request(now, id, ssrc);
                    }
                }
                RtcpPacket::Remb { bitrate_bps, .. } => {
                    trace!(peer = %id, bitrate_bps, "remb");
                    if let Some(bwe) = self.transport_mut(id).and_then(|t| t.bwe.as_mut()) {
                        bwe.on_remb(now, bitrate_bps);
                        estimate_changed = true;
                    }
                }
                RtcpPacket::TransportCc(fb) => {
                    let mut results = std::mem::take(&mut self.twcc_results);
                    results.clear();
                    if let Some(tp) = self.transport_mut(id) {
                        let last_sent = tp.twcc_out.saturating_sub(1);
                        let base = fb.reference_time_us();
                        for p in fb.packets().take(MAX_TWCC_RESULTS) {
                            results.push(PacketResult {
                                transport_seq: crate::transport::extend_near(last_sent, p.seq),
                                arrival: p.arrival_us.map(|us| {
                                    Duration::from_micros(base.saturating_add(us).max(0) as u64)
                                }),
                            });
                        }
                        if let Some(bwe) = tp.bwe.as_mut() {
                            bwe.on_transport_feedback(now, &results);
                            estimate_changed = true;
                        }
                    }
                    self.twcc_results = results;
                }
                RtcpPacket::Sdes(_) | RtcpPacket::Bye { .. } | RtcpPacket::Other { .. } => {}
            }
        }
        if !blocks.is_empty() {
            self.on_report_blocks(now, id, &blocks);
            estimate_changed = true;
        }
        if estimate_changed {
            self.refresh_estimate(now, id);
        }
    }

    /// The subscription a subscriber's RTCP names by our SSRC.
    fn subscription_of(&self, id: PeerId, ssrc: u32) -> Option<TrackId> {
        self.peers.get(&id)?.sub_by_ssrc.get(&ssrc).copied()
    }

    fn transport_mut(&mut self, id: PeerId) -> Option<&mut crate::transport::Transport> {
        self.peers.get_mut(&id)?.transport.as_mut()
    }

    /// A subscriber asks for a keyframe of what we send it on `ssrc`.
    fn on_keyframe_request(&mut self, now: Instant, id: PeerId, ssrc: u32) {
        let Some(track) = self.subscription_of(id, ssrc) else {
            return;
        };
        let layer = self
            .subs
            .get(&(id, track))
            .and_then(|s| s.forwarded_layer())
            .unwrap_or(0);
        self.request_keyframe(now, track, layer, false);
    }

    /// Report blocks from peer `id` about streams we send it: RTT and loss.
    fn on_report_blocks(&mut self, now: Instant, id: PeerId, blocks: &[ReportBlock]) {
        let our_ntp = self.ntp.ntp(now);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let ours: SmallVec<[ReportBlock; 8]> = blocks
            .iter()
            .filter(|b| peer.sub_by_ssrc.contains_key(&b.ssrc))
            .copied()
            .collect();
        let Some(tp) = peer.transport.as_mut() else {
            return;
        };
        let rtt = ours
            .iter()
            .filter_map(|b| ntp::rtt(our_ntp, b.last_sr, b.delay_since_last_sr))
            .min();
        if rtt.is_some() {
            tp.rtt = rtt;
        }
        if let Some(bwe) = tp.bwe.as_mut() {
            if !ours.is_empty() || rtt.is_some() {
                bwe.on_receiver_report(now, &ours, rtt);
            }
        }
    }

    /// A sender report from publisher `id` about its stream `ssrc`: remember its clock for
    /// the LSR/DLSR of our reports, and map it onto ours for the sender reports subscribers
    /// get (here and on the other shards).
    fn on_sender_report(
        &mut self,
        now: Instant,
        id: PeerId,
        ssrc: u32,
        their_ntp: u64,
        rtp_ts: u32,
    ) {
        let our_ntp = self.ntp.ntp(now);
        let Some(tp) = self.transport_mut(id) else {
            return;
        };
        let Some(stream) = tp.rx.get_mut(&ssrc) else {
            return;
        };
        let (track, layer) = (stream.track, stream.layer);
        if let RxKind::Main(m) = &mut stream.kind {
            m.stats.on_sender_report(their_ntp, rtp_ts, now);
        } else {
            return;
        }
        tp.update_clock_offset(our_ntp, their_ntp);
        let Some(offset) = tp.clock_offset else {
            return;
        };
        let clock = LayerClock {
            ntp: (i128::from(their_ntp) + offset).clamp(0, i128::from(u64::MAX)) as u64,
            rtp_ts,
        };
        self.set_clock(track, layer, clock);
    }

    fn set_clock(&mut self, track: TrackId, layer: LayerIndex, clock: LayerClock) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if let Some(slot) = t.clocks.get_mut(usize::from(layer)) {
            *slot = Some(clock);
        }
        for shard in t.remote_shards.clone() {
            self.out.push_back(Output::ToShard {
                shard,
                msg: ShardMessage::SenderClock {
                    track,
                    layer,
                    clock,
                },
            });
        }
    }

    /// Take the transport's estimate as the subscriber's downlink and re-choose its layers.
    pub(crate) fn refresh_estimate(&mut self, now: Instant, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let estimate = peer
            .transport
            .as_ref()
            .and_then(|t| t.bwe.as_ref())
            .and_then(|b| b.estimate())
            .map(str0m::bwe::Bitrate::bps);
        if estimate != peer.downlink_estimate {
            peer.downlink_estimate = estimate;
            self.update_layers_of(now, id);
        }
    }

    /// The transport's own timers for peer `id`: transport-cc feedback and NACKs to a
    /// publisher, reports, and the estimator's probes.
    pub(crate) fn transport_timeout(&mut self, now: Instant, id: PeerId) {
        let mut buf = [0u8; MAX_COMPOUND];
        // Transport-cc feedback: one packet per call while arrivals wait.
        let due = self
            .transport_mut(id)
            .and_then(|t| t.next_twcc_feedback)
            .is_some_and(|at| at <= now);
        if due {
            let mut compounds: SmallVec<[(usize, [u8; MAX_COMPOUND]); 2]> = SmallVec::new();
            if let Some(tp) = self.transport_mut(id) {
                tp.next_twcc_feedback = None;
                let media = tp.rx.keys().next().copied().unwrap_or(0);
                for _ in 0..8 {
                    let mut packet = [0u8; MAX_COMPOUND];
                    match tp.twcc_in.build_feedback(tp.rtcp_ssrc, media, &mut packet) {
                        Some(n) => compounds.push((n, packet)),
                        None => break,
                    }
                }
            }
            for (n, packet) in compounds {
                self.send_rtcp(id, &packet[..n]);
            }
        }
        // NACKs, per video stream, each in its own compound.
        let mut nacks: SmallVec<[(u32, SmallVec<[u16; MAX_NACKS]>); 4]> = SmallVec::new();
        let mut rtcp_ssrc = 0;
        if let Some(tp) = self.transport_mut(id) {
            rtcp_ssrc = tp.rtcp_ssrc;
            let rtt = tp.rtt.unwrap_or(Duration::from_millis(100));
            for (ssrc, s) in tp.rx.iter_mut() {
                let RxKind::Main(m) = &mut s.kind else {
                    continue;
                };
                let Some(nack) = m.nack.as_mut() else {
                    continue;
                };
                if nack.next_due().is_some_and(|at| at <= now) {
                    let mut seqs = [0u16; MAX_NACKS];
                    let n = nack.poll(now, rtt, &mut seqs);
                    if n > 0 {
                        nacks.push((*ssrc, seqs[..n].iter().copied().collect()));
                    }
                }
            }
        }
        for (ssrc, seqs) in nacks {
            let Ok(rr) = write_rr(&mut buf, rtcp_ssrc, &[]) else {
                continue;
            };
            let Ok(n) = write_nack(&mut buf[rr..], rtcp_ssrc, ssrc, &seqs) else {
                continue;
            };
            self.stats.nacks_sent += seqs.len() as u64;
            self.send_rtcp(id, &buf[..rr + n]);
        }
        // Reports.
        if self.transport_mut(id).is_some_and(|t| t.next_report <= now) {
            self.send_reports(now, id);
        }
        // Probes for a subscriber held below what it could use: `per_step` padding packets
        // at each step of the probe's duration.
        if let Some(tp) = self.transport_mut(id) {
            if tp.probe.is_none() {
                if let Some(cluster) = tp.bwe.as_mut().and_then(|b| b.poll_probe(now)) {
                    tp.probe = Some(crate::transport::ActiveProbe::new(&cluster, now));
                }
            }
        }
        while let Some(p) = self
            .transport_mut(id)
            .and_then(|t| t.probe)
            .filter(|p| p.next_at <= now)
        {
            let mut sent = 0;
            for _ in 0..p.per_step {
                sent += self.send_padding(now, id, p.bytes_each, Some(p.id));
            }
            self.stats.probe_packets += sent as u64;
            if let Some(tp) = self.transport_mut(id) {
                if sent == 0 && !p.started {
                    // No video with RTX has reached this subscriber yet: nothing can carry
                    // the padding. The estimator asks again once it can be sent.
                    if let Some(bwe) = tp.bwe.as_mut() {
                        bwe.abandon_probe(now, p.id);
                    }
                }
                tp.probe = (sent > 0 && p.left > 1).then_some(crate::transport::ActiveProbe {
                    left: p.left - 1,
                    next_at: p.next_at + p.every,
                    started: true,
                    ..p
                });
            }
        }
        self.refresh_estimate(now, id);
    }

    /// Receiver reports about what peer `id` sends us, and sender reports for what we send
    /// it, as one or more compounds.
    fn send_reports(&mut self, now: Instant, id: PeerId) {
        let our_ntp = self.ntp.ntp(now);
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(tp) = peer.transport.as_mut() else {
            return;
        };
        tp.next_report = now + REPORT_INTERVAL;
        let rtcp_ssrc = tp.rtcp_ssrc;
        let mut blocks: SmallVec<[ReportBlock; 8]> = SmallVec::new();
        for s in tp.rx.values_mut() {
            if let RxKind::Main(m) = &mut s.kind {
                if m.stats.packets_received() > 0 && blocks.len() < MAX_BLOCKS {
                    blocks.push(m.stats.report_block(now));
                }
            }
        }
        let subscriptions = peer.subscriptions.clone();
        let mut senders: SmallVec<[SenderInfo; 8]> = SmallVec::new();
        for track in subscriptions {
            if let Some(info) = self.sender_info(now, our_ntp, id, track) {
                senders.push(info);
            }
        }
        let mut buf = [0u8; MAX_COMPOUND];
        let mut at = match write_rr(&mut buf, rtcp_ssrc, &blocks) {
            Ok(n) => n,
            Err(_) => return,
        };
        for info in senders {
            if at + 28 + 24 > MAX_COMPOUND {
                // Full: close this compound with our CNAME and start another.
                at += write_sdes_cname(&mut buf[at..], rtcp_ssrc, b"shardcast").unwrap_or(0);
                self.send_rtcp(id, &buf[..at]);
                at = write_rr(&mut buf, rtcp_ssrc, &[]).unwrap_or(0);
            }
            at += write_sr(&mut buf[at..], &info, &[]).unwrap_or(0);
        }
        at += write_sdes_cname(&mut buf[at..], rtcp_ssrc, b"shardcast").unwrap_or(0);
        self.send_rtcp(id, &buf[..at]);
    }

    /// A sender report for subscription (`id`, `track`): our NTP time now and the RTP time
    /// of the outgoing stream at that instant, mapped from the publisher's capture clock
    /// (its sender reports, translated once per publisher onto our clock) through this
    /// subscription's timestamp rewrite, so a subscriber keeps the publisher's audio and
    /// video in sync whichever layer it gets. Until the publisher's first report, from the
    /// last packet sent.
    fn sender_info(
        &self,
        now: Instant,
        our_ntp: u64,
        id: PeerId,
        track: TrackId,
    ) -> Option<SenderInfo> {
        let sub = self.subs.get(&(id, track))?;
        let egress = sub.egress.as_ref()?;
        let (last_ts, last_at) = egress.last?;
        let t = self.tracks.get(&track)?;
        let rate = u64::from(t.codec?.clock_rate.get());
        let layer = sub.forwarded_layer().unwrap_or(0);
        let clock = t.clocks.get(usize::from(layer)).copied().flatten();
        let offset = sub.rewriter.as_ref().and_then(|r| r.ts_offset());
        let rtp_ts = match (clock, offset) {
            (Some(clock), Some(offset)) => {
                // The publisher's RTP time now, through this subscription's rewrite.
                let elapsed = i128::from(our_ntp) - i128::from(clock.ntp);
                let ticks = (elapsed * i128::from(rate)) >> 32;
                (i128::from(clock.rtp_ts) + ticks) as u32
            }
            .wrapping_add(offset),
            _ => {
                let since = now.saturating_duration_since(last_at);
                last_ts.wrapping_add((since.as_micros() as u64 * rate / 1_000_000) as u32)
            }
        };
        Some(SenderInfo {
            ssrc: egress.ssrc,
            ntp: our_ntp,
            rtp_ts,
            packet_count: egress.packets,
            octet_count: egress.octets,
        })
    }

    /// Seal a compound RTCP packet for peer `id` and queue it.
    pub(crate) fn send_rtcp(&mut self, id: PeerId, compound: &[u8]) {
        let ShardCore {
            peers, tx, stats, ..
        } = self;
        let Some(peer) = peers.get_mut(&id) else {
            return;
        };
        let (Some(dest), Some(tp)) = (peer.remote, peer.transport.as_mut()) else {
            return;
        };
        let sealer = &mut tp.srtp.sealer;
        let max = compound.len() + sealer.profile().rtcp_overhead() + SEAL_SLACK;
        let n = tx.push_with(dest, max, |buf| {
            sealer.seal_rtcp(compound, buf).unwrap_or(0)
        });
        if n > 0 {
            stats.rtcp_out += 1;
        }
    }

    /// RTCP BYE for every SSRC we send peer `id` on, before we close it.
    pub(crate) fn send_bye(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get(&id) else {
            return;
        };
        let Some(tp) = peer.transport.as_ref() else {
            return;
        };
        let mut ssrcs: SmallVec<[u32; 16]> = peer.sub_by_ssrc.keys().copied().take(30).collect();
        ssrcs.push(tp.rtcp_ssrc);
        let rtcp_ssrc = tp.rtcp_ssrc;
        let mut buf = [0u8; MAX_COMPOUND];
        let Ok(rr) = write_rr(&mut buf, rtcp_ssrc, &[]) else {
            return;
        };
        let Ok(n) = write_bye(&mut buf[rr..], &ssrcs) else {
            return;
        };
        self.send_rtcp(id, &buf[..rr + n]);
    }

    /// Ask the publisher of `track` for a keyframe of `layer`, at most once per layer per
    /// `keyframe_request_interval` whoever asks (local subscriptions and other shards go
    /// through the track's `KeyframeRequestCoalescer`; a keyframe arriving reopens the
    /// layer). `force` bypasses the coalescing (a new subscriber must not wait).
    pub(crate) fn request_keyframe(
        &mut self,
        now: Instant,
        track: TrackId,
        layer: LayerIndex,
        force: bool,
    ) {
        let interval = self.config.keyframe_request_interval;
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if t.info.kind != MediaKind::Video {
            return;
        }
        if usize::from(layer) >= t.layer_count() {
            return;
        }
        // A forced request still starts an interval, so the askers right behind it wait.
        let due = t.keyframe_requests(interval).should_send(now, layer);
        if !due && !force {
            return;
        }
        self.stats.keyframe_requests_sent += 1;
        let Some(publisher) = t.publisher else {
            self.out.push_back(Output::ToShard {
                shard: track.shard(),
                msg: ShardMessage::KeyframeRequest { track, layer },
            });
            return;
        };
        // The publisher's SSRC of that layer, once its first packet taught us.
        let Some(tp) = self.transport_mut(publisher) else {
            return;
        };
        let media = tp.rx.iter().find_map(|(ssrc, s)| {
            (s.track == track && s.layer == layer && matches!(s.kind, RxKind::Main(_)))
                .then_some(*ssrc)
        });
        let Some(media) = media else {
            return;
        };
        let rtcp_ssrc = tp.rtcp_ssrc;
        let mut buf = [0u8; 64];
        let Ok(rr) = write_rr(&mut buf, rtcp_ssrc, &[]) else {
            return;
        };
        let Ok(n) = write_pli(&mut buf[rr..], rtcp_ssrc, media) else {
            return;
        };
        self.send_rtcp(publisher, &buf[..rr + n]);
    }
}
