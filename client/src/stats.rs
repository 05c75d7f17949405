//! Receive statistics: what a viewer would notice — loss, layer changes, broken pictures,
//! latency — computed from RTP headers and the synthetic payload.
//!
//! Owns per-track and per-SSRC receive state. It must never talk to str0m or keep unbounded
//! state: every map and sample buffer here is capped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::config::VideoCodec;
use crate::payload::{H264Info, SyntheticHeader, TrackKind, Vp8Info};

/// Frames older than the decoded head by more than this are forgotten (and counted lost).
const FRAME_WINDOW: u32 = 64;
/// Sequence holes remembered for repair accounting, per SSRC.
const MAX_TRACKED_HOLES: usize = 2048;
/// Layers counted separately; higher layer numbers share the last slot.
pub const MAX_LAYERS: usize = 4;

/// Layer changes kept per track.
const MAX_LAYER_CHANGES: usize = 256;

/// One change of the received layer on a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerChange {
    /// Receive time in µs on the run's shared clock ([`crate::TimeBase`]).
    pub at_us: u64,
    /// Layer before.
    pub from: u8,
    /// Layer after.
    pub to: u8,
}

/// Latency samples (receive time minus the payload's send time, µs on the shared clock).
#[derive(Debug, Clone, Default)]
pub struct LatencyStats {
    /// The first `cap` samples, in arrival order.
    pub samples: Vec<u32>,
    /// Samples kept at most.
    pub cap: usize,
    /// All samples seen, kept or not.
    pub count: u64,
    /// Sum of all samples seen.
    pub sum_us: u64,
    /// Smallest sample seen.
    pub min_us: u64,
    /// Largest sample seen.
    pub max_us: u64,
}

impl LatencyStats {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            min_us: u64::MAX,
            ..Default::default()
        }
    }

    fn record(&mut self, us: u64) {
        if self.samples.len() < self.cap {
            self.samples.push(us.min(u64::from(u32::MAX)) as u32);
        }
        self.count += 1;
        self.sum_us += us;
        self.min_us = self.min_us.min(us);
        self.max_us = self.max_us.max(us);
    }

    /// The `q` quantile (0.0..=1.0) of the kept samples, `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<u32> {
        if self.samples.is_empty() {
            return None;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let idx = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        Some(sorted[idx])
    }

    /// Mean of all samples seen.
    pub fn mean_us(&self) -> Option<u64> {
        self.sum_us.checked_div(self.count)
    }
}

/// Statistics of one received track (one m-line).
#[derive(Debug, Clone)]
pub struct TrackStats {
    /// The m-line's mid.
    pub mid: String,
    /// The msid track id the sender declared, if any.
    pub track_id: Option<String>,
    /// Audio or video, from the m-line.
    pub kind: TrackKind,
    /// RTP packets delivered by str0m (repairs included, duplicates excluded by str0m).
    pub packets: u64,
    /// RTP payload bytes.
    pub bytes: u64,
    /// Audio packets (same as `packets` on an audio track).
    pub audio_packets: u64,
    /// Distinct SSRCs that delivered media (1 through an SFU; one per layer peer to peer).
    pub ssrcs: BTreeSet<u32>,
    /// Sequence numbers skipped on arrival (holes), summed over SSRCs.
    pub missing: u64,
    /// Forward jumps of the sequence number by more than one.
    pub gaps: u64,
    /// Largest single forward jump minus one.
    pub max_gap: u64,
    /// Holes later filled (a retransmission or a reordered packet).
    pub repaired: u64,
    /// Packets at or behind the head that filled no known hole.
    pub duplicates: u64,
    /// Packets per layer (from the payload).
    pub packets_per_layer: [u64; MAX_LAYERS],
    /// Layer of the most recent packet.
    pub current_layer: Option<u8>,
    /// Times the layer of consecutive packets on one SSRC changed.
    pub layer_switches: u64,
    /// The first layer changes, with their receive time (so a test can tell how long a
    /// forwarder took to react).
    pub layer_changes: Vec<LayerChange>,
    /// Complete keyframes.
    pub keyframes: u64,
    /// Frames whose every packet arrived.
    pub frames_complete: u64,
    /// Complete frames a decoder could show: a keyframe, or the next frame of the same layer
    /// after a decodable one.
    pub frames_decodable: u64,
    /// `frames_decodable` per layer.
    pub decodable_per_layer: [u64; MAX_LAYERS],
    /// Frames dropped from reassembly before all their packets arrived.
    pub frames_incomplete: u64,
    /// VP8 picture ids that jumped (not +0/+1) between packets adjacent in sequence on one
    /// SSRC: a forwarder broke picture-id continuity (e.g. across a layer switch).
    pub picture_id_violations: u64,
    /// Same as `picture_id_violations` for TL0PICIDX.
    pub tl0_violations: u64,
    /// Payloads that failed to parse or verify.
    pub payload_errors: u64,
    /// Source ids (publishers) seen in payloads.
    pub source_ids: BTreeSet<u32>,
    /// The last RFC 6464 audio level (-dBov, 0 = loudest) received.
    pub last_audio_level: Option<i8>,
    /// Latency of this track's packets.
    pub latency: LatencyStats,
    streams: BTreeMap<u32, StreamState>,
}

/// One received packet as the stats need it.
pub(crate) struct Received<'a> {
    pub ssrc: u32,
    pub seq: u64,
    pub payload: &'a [u8],
    pub audio_level: Option<i8>,
    pub now_us: u64,
    /// The video codec from the payload type; `None` on audio or an unknown type.
    pub codec: Option<VideoCodec>,
}

impl TrackStats {
    pub(crate) fn new(mid: String, track_id: Option<String>, kind: TrackKind, cap: usize) -> Self {
        Self {
            mid,
            track_id,
            kind,
            packets: 0,
            bytes: 0,
            audio_packets: 0,
            ssrcs: BTreeSet::new(),
            missing: 0,
            gaps: 0,
            max_gap: 0,
            repaired: 0,
            duplicates: 0,
            packets_per_layer: [0; MAX_LAYERS],
            current_layer: None,
            layer_switches: 0,
            layer_changes: Vec::new(),
            keyframes: 0,
            frames_complete: 0,
            frames_decodable: 0,
            decodable_per_layer: [0; MAX_LAYERS],
            frames_incomplete: 0,
            picture_id_violations: 0,
            tl0_violations: 0,
            payload_errors: 0,
            source_ids: BTreeSet::new(),
            last_audio_level: None,
            latency: LatencyStats::new(cap),
            streams: BTreeMap::new(),
        }
    }

    /// Holes not (yet) repaired.
    pub fn unrepaired(&self) -> u64 {
        self.missing.saturating_sub(self.repaired)
    }

    /// Records one packet. Returns true when the video stream it belongs to is stalled
    /// (complete frames wait on a broken chain) and a keyframe would help.
    /// Without `verify` only packets, bytes, SSRCs, sequence accounting and audio levels are
    /// recorded; with it the payload is parsed and every byte checked.
    pub(crate) fn record(&mut self, rx: Received<'_>, verify: bool) -> bool {
        self.packets += 1;
        self.bytes += rx.payload.len() as u64;
        self.ssrcs.insert(rx.ssrc);
        let stream = self.streams.entry(rx.ssrc).or_default();
        let seq = stream.seq.record(rx.seq);
        self.missing += seq.missing;
        self.gaps += u64::from(seq.missing > 0);
        self.max_gap = self.max_gap.max(seq.missing);
        self.repaired += u64::from(seq.repaired);
        self.duplicates += u64::from(seq.duplicate);

        if self.kind == TrackKind::Audio {
            self.audio_packets += 1;
            self.last_audio_level = rx.audio_level.or(self.last_audio_level);
        }
        if !verify {
            return false; // count only: the cheap mode for large load runs
        }
        let (vp8, body) = match self.kind {
            TrackKind::Audio => (None, rx.payload),
            TrackKind::Video => {
                let parsed = match rx.codec {
                    Some(VideoCodec::H264) => H264Info::parse(rx.payload).map(|(_, at)| (None, at)),
                    Some(VideoCodec::Vp8) => {
                        Vp8Info::parse(rx.payload).map(|(info, at)| (Some(info), at))
                    }
                    None => None,
                };
                match parsed {
                    Some((info, at)) => (info, &rx.payload[at..]),
                    None => {
                        self.payload_errors += 1;
                        return false;
                    }
                }
            }
        };
        let Some(header) = SyntheticHeader::parse(body) else {
            self.payload_errors += 1;
            return false;
        };
        if header.kind != self.kind || (verify && !header.padding_ok(body)) {
            self.payload_errors += 1;
            return false;
        }
        self.source_ids.insert(header.source_id);
        self.latency
            .record(rx.now_us.saturating_sub(header.send_time_us));
        let layer = header.layer.min(MAX_LAYERS as u8 - 1);
        self.packets_per_layer[usize::from(layer)] += 1;
        self.current_layer = Some(header.layer);
        if !seq.repaired && !seq.duplicate {
            if let Some(from) = stream.layer.filter(|l| *l != header.layer) {
                self.layer_switches += 1;
                if self.layer_changes.len() < MAX_LAYER_CHANGES {
                    self.layer_changes.push(LayerChange {
                        at_us: rx.now_us,
                        from,
                        to: header.layer,
                    });
                }
            }
            stream.layer = Some(header.layer);
        }
        if let Some(vp8) = vp8 {
            // Only a packet that directly follows its predecessor in sequence can be judged:
            // after a hole the frames in between may be the ones missing.
            let judge = seq.missing == 0 && !seq.repaired && !seq.duplicate;
            self.picture_id_violations +=
                u64::from(stream.picture_id.advance(vp8.picture_id, judge));
            self.tl0_violations += u64::from(stream.tl0.advance(u16::from(vp8.tl0_pic_idx), judge));
        }
        let out = stream.frames.add(&header);
        self.frames_incomplete += out.incomplete;
        if let Some(done) = out.completed {
            self.frames_complete += 1;
            self.keyframes += u64::from(done.keyframe);
        }
        for layer in out.decoded_layers {
            self.frames_decodable += 1;
            self.decodable_per_layer[usize::from(layer.min(MAX_LAYERS as u8 - 1))] += 1;
        }
        stream.frames.stalled()
    }
}

/// Per-SSRC receive state.
#[derive(Debug, Clone, Default)]
struct StreamState {
    seq: SeqTracker,
    layer: Option<u8>,
    picture_id: Continuity<0x7FFF>,
    tl0: Continuity<0xFF>,
    frames: FrameTracker,
}

#[derive(Debug, Default)]
struct SeqOutcome {
    missing: u64,
    repaired: bool,
    duplicate: bool,
}

/// Sequence accounting on extended (64-bit) sequence numbers from str0m.
#[derive(Debug, Clone, Default)]
struct SeqTracker {
    highest: Option<u64>,
    holes: BTreeSet<u64>,
}

impl SeqTracker {
    fn record(&mut self, seq: u64) -> SeqOutcome {
        let mut out = SeqOutcome::default();
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return out;
        };
        if seq > highest {
            out.missing = seq - highest - 1;
            // Remember the newest holes only; an older hole that is later filled counts as a
            // duplicate, which keeps this bounded on a long outage.
            for hole in (highest + 1).max(seq.saturating_sub(MAX_TRACKED_HOLES as u64))..seq {
                self.holes.insert(hole);
            }
            while self.holes.len() > MAX_TRACKED_HOLES {
                self.holes.pop_first();
            }
            self.highest = Some(seq);
        } else if self.holes.remove(&seq) {
            out.repaired = true;
        } else {
            out.duplicate = true;
        }
        out
    }
}

/// Checks that a wrapping counter (picture id, TL0PICIDX) steps by one per frame.
#[derive(Debug, Clone, Default)]
struct Continuity<const MASK: u16> {
    last: Option<u16>,
}

impl<const MASK: u16> Continuity<MASK> {
    /// Returns true on a violation (only when `judge`). Older values (reordering, repairs)
    /// are ignored; without `judge` a newer value is taken as is.
    fn advance(&mut self, value: u16, judge: bool) -> bool {
        let value = value & MASK;
        let Some(last) = self.last else {
            self.last = Some(value);
            return false;
        };
        let diff = value.wrapping_sub(last) & MASK;
        if diff == 0 || diff > MASK / 2 {
            return false;
        }
        self.last = Some(value);
        judge && diff != 1
    }
}

#[derive(Debug, Clone)]
struct Assembly {
    layer: u8,
    keyframe: bool,
    received: Vec<bool>,
    count: u16,
}

#[derive(Debug, Clone, Copy)]
struct CompleteFrame {
    layer: u8,
    keyframe: bool,
}

#[derive(Debug, Default)]
struct FrameOutcome {
    completed: Option<CompleteFrame>,
    decoded_layers: Vec<u8>,
    incomplete: u64,
}

/// Reassembles frames from packet indices and follows the decode chain.
#[derive(Debug, Clone, Default)]
struct FrameTracker {
    assembling: BTreeMap<u32, Assembly>,
    /// Complete frames waiting for their predecessor.
    waiting: BTreeMap<u32, CompleteFrame>,
    /// The last decoded frame: (frame number, layer).
    decoded: Option<(u32, u8)>,
    newest_complete: Option<u32>,
}

impl FrameTracker {
    fn add(&mut self, h: &SyntheticHeader) -> FrameOutcome {
        let mut out = FrameOutcome::default();
        if h.packets_in_frame == 0 || h.packet_index >= h.packets_in_frame {
            return out;
        }
        if self.decoded.is_some_and(|(f, _)| h.frame <= f) {
            return out; // behind the decoder: useless, and already counted or forgotten
        }
        let asm = self.assembling.entry(h.frame).or_insert_with(|| Assembly {
            layer: h.layer,
            keyframe: h.keyframe,
            received: vec![false; usize::from(h.packets_in_frame)],
            count: 0,
        });
        if asm.layer != h.layer || asm.received.len() != usize::from(h.packets_in_frame) {
            // A different layer for the same frame number (a switch mid-frame): start over.
            *asm = Assembly {
                layer: h.layer,
                keyframe: h.keyframe,
                received: vec![false; usize::from(h.packets_in_frame)],
                count: 0,
            };
        }
        let slot = &mut asm.received[usize::from(h.packet_index)];
        if !*slot {
            *slot = true;
            asm.count += 1;
        }
        if asm.count == h.packets_in_frame {
            let frame = CompleteFrame {
                layer: asm.layer,
                keyframe: asm.keyframe,
            };
            self.assembling.remove(&h.frame);
            out.completed = Some(frame);
            self.newest_complete = Some(self.newest_complete.unwrap_or(0).max(h.frame));
            self.waiting.insert(h.frame, frame);
            self.drain_decodable(&mut out);
        }
        self.prune(h.frame, &mut out);
        out
    }

    fn decodable(&self, frame: u32, c: CompleteFrame) -> bool {
        c.keyframe || self.decoded == Some((frame.wrapping_sub(1), c.layer))
    }

    fn drain_decodable(&mut self, out: &mut FrameOutcome) {
        // Ascending order: chain successors go first; a keyframe restarts the chain and
        // makes every older waiting frame useless.
        loop {
            let next = self
                .waiting
                .iter()
                .find(|(f, c)| self.decodable(**f, **c))
                .map(|(f, _)| *f);
            let Some(frame) = next else { break };
            let Some(c) = self.waiting.remove(&frame) else {
                break;
            };
            self.decoded = Some((frame, c.layer));
            out.decoded_layers.push(c.layer);
            self.waiting = self.waiting.split_off(&frame.saturating_add(1));
            let stale: Vec<u32> = self.assembling.range(..=frame).map(|(f, _)| *f).collect();
            for f in stale {
                self.assembling.remove(&f);
                out.incomplete += 1;
            }
        }
    }

    fn prune(&mut self, newest: u32, out: &mut FrameOutcome) {
        let floor = newest.saturating_sub(FRAME_WINDOW);
        let keep = self.assembling.split_off(&floor);
        out.incomplete += std::mem::replace(&mut self.assembling, keep).len() as u64;
        self.waiting = self.waiting.split_off(&floor);
    }

    /// Complete frames wait while the chain is broken: a keyframe is needed.
    fn stalled(&self) -> bool {
        let head = self.decoded.map(|(f, _)| f);
        match (self.newest_complete, head) {
            (Some(newest), Some(head)) => newest > head.saturating_add(3),
            (Some(_), None) => self.waiting.len() >= 3,
            _ => false,
        }
    }
}

/// Per-layer sending counters of a publisher.
#[derive(Debug, Clone, Default)]
pub struct PublishStats {
    /// Audio packets written.
    pub audio_packets: u64,
    /// Video packets written per layer.
    pub video_packets: [u64; MAX_LAYERS],
    /// Video frames written per layer.
    pub video_frames: [u64; MAX_LAYERS],
    /// Keyframes written per layer.
    pub keyframes: [u64; MAX_LAYERS],
    /// Keyframe requests (PLI/FIR) received from the remote.
    pub keyframe_requests: u64,
}

/// Everything a [`crate::Client`] measured.
#[derive(Debug, Clone, Default)]
pub struct ClientStats {
    /// Received tracks by mid.
    pub tracks: BTreeMap<String, TrackStats>,
    /// What this client sent.
    pub published: PublishStats,
    /// Datagrams str0m could not parse or rejected.
    pub datagrams_rejected: u64,
    /// RTP packets whose SSRC maps to no known m-line.
    pub unknown_packets: u64,
    /// PLIs this client sent (stalled streams and [`crate::Client::request_keyframes`]).
    pub keyframe_requests_sent: u64,
    /// When ICE and DTLS first completed.
    pub connected_at: Option<Instant>,
    /// When the first media packet arrived (join time = this minus the join request).
    pub first_media_at: Option<Instant>,
    /// Consent checks (STUN binding requests) not sent because
    /// [`crate::ClientConfig::consent_checks`] is off.
    pub consent_checks_dropped: u64,
    /// When str0m's ICE agent last reported the connection `Disconnected` (consent lost).
    pub ice_disconnected_at: Option<Instant>,
}

impl ClientStats {
    /// Received video tracks.
    pub fn video_tracks(&self) -> impl Iterator<Item = &TrackStats> {
        self.tracks.values().filter(|t| t.kind == TrackKind::Video)
    }

    /// Received audio tracks.
    pub fn audio_tracks(&self) -> impl Iterator<Item = &TrackStats> {
        self.tracks.values().filter(|t| t.kind == TrackKind::Audio)
    }

    /// The received track whose sender declared msid track id `track_id`.
    pub fn track_by_id(&self, track_id: &str) -> Option<&TrackStats> {
        self.tracks
            .values()
            .find(|t| t.track_id.as_deref() == Some(track_id))
    }

    /// Received tracks carrying payloads from publisher `source_id`
    /// ([`crate::ClientConfig::source_id`]).
    pub fn tracks_from(&self, source_id: u32) -> impl Iterator<Item = &TrackStats> {
        self.tracks
            .values()
            .filter(move |t| t.source_ids.contains(&source_id))
    }

    /// Packets received over all tracks.
    pub fn packets_received(&self) -> u64 {
        self.tracks.values().map(|t| t.packets).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(frame: u32, layer: u8, key: bool, idx: u16, n: u16) -> SyntheticHeader {
        SyntheticHeader {
            kind: TrackKind::Video,
            layer,
            keyframe: key,
            source_id: 1,
            frame,
            packet_index: idx,
            packets_in_frame: n,
            send_time_us: 0,
            stream_seq: 0,
        }
    }

    /// One VP8 packet of a one-packet frame as a forwarder would deliver it.
    fn vp8_packet(frame: u32, layer: u8, key: bool, pid: u16) -> Vec<u8> {
        let mut buf = Vec::new();
        Vp8Info {
            start_of_frame: true,
            picture_id: pid,
            tl0_pic_idx: pid as u8,
            keyframe: key,
        }
        .write(&mut buf, 320, 180);
        let mut h = hdr(frame, layer, key, 0, 1);
        h.send_time_us = 1_000;
        h.write(&mut buf, 100);
        buf
    }

    fn feed(t: &mut TrackStats, seq: u64, payload: &[u8]) {
        t.record(
            Received {
                ssrc: 7,
                seq,
                payload,
                audio_level: None,
                now_us: 1_500,
                codec: Some(VideoCodec::Vp8),
            },
            true,
        );
    }

    #[test]
    fn a_forwarded_layer_switch_at_a_keyframe_is_seamless() {
        let mut t = TrackStats::new("0".into(), None, TrackKind::Video, 16);
        for f in 0..10u32 {
            feed(
                &mut t,
                100 + u64::from(f),
                &vp8_packet(f, 0, f == 0, 500 + f as u16),
            );
        }
        // The forwarder switches to layer 2 at its keyframe, rewriting seq and picture id.
        for f in 10..20u32 {
            feed(
                &mut t,
                100 + u64::from(f),
                &vp8_packet(f, 2, f == 10, 500 + f as u16),
            );
        }
        assert_eq!(t.layer_switches, 1);
        assert_eq!(
            t.layer_changes,
            vec![LayerChange {
                at_us: 1_500,
                from: 0,
                to: 2
            }]
        );
        assert_eq!(t.current_layer, Some(2));
        assert_eq!(t.frames_decodable, 20);
        assert_eq!(t.decodable_per_layer, [10, 0, 10, 0]);
        assert_eq!(t.keyframes, 2);
        assert_eq!(
            (t.missing, t.picture_id_violations, t.tl0_violations),
            (0, 0, 0)
        );
        assert_eq!(t.latency.min_us, 500);
    }

    #[test]
    fn a_switch_to_a_delta_frame_and_a_picture_id_jump_are_caught() {
        let mut t = TrackStats::new("0".into(), None, TrackKind::Video, 16);
        for f in 0..5u32 {
            feed(&mut t, u64::from(f), &vp8_packet(f, 0, f == 0, f as u16));
        }
        // Switch without waiting for a keyframe and without rewriting the picture id.
        for f in 5..8u32 {
            feed(
                &mut t,
                u64::from(f),
                &vp8_packet(f, 1, false, 100 + f as u16),
            );
        }
        assert_eq!(t.layer_switches, 1);
        assert_eq!(
            t.frames_decodable, 5,
            "delta frames of the new layer are undecodable"
        );
        assert_eq!(t.frames_complete, 8);
        assert_eq!(t.picture_id_violations, 1);
        assert_eq!(t.tl0_violations, 1);
    }

    #[test]
    fn garbage_payloads_are_counted_not_trusted() {
        let mut t = TrackStats::new("0".into(), None, TrackKind::Video, 16);
        feed(&mut t, 1, &[]);
        feed(&mut t, 2, &[0x90, 0x80]);
        let mut corrupt = vp8_packet(0, 0, true, 1);
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xFF;
        feed(&mut t, 3, &corrupt);
        assert_eq!(t.payload_errors, 3);
        assert_eq!(t.packets, 3);
        assert_eq!(t.frames_complete, 0);
    }

    #[test]
    fn seq_tracker_counts_holes_repairs_and_duplicates() {
        let mut s = SeqTracker::default();
        assert_eq!(s.record(10).missing, 0);
        assert_eq!(s.record(11).missing, 0);
        assert_eq!(s.record(15).missing, 3);
        assert!(s.record(13).repaired);
        assert!(s.record(13).duplicate);
        assert!(s.record(11).duplicate);
        assert_eq!(s.holes.len(), 2);
    }

    #[test]
    fn continuity_flags_jumps_but_not_wraps_or_reorders() {
        let mut c = Continuity::<0x7FFF>::default();
        assert!(!c.advance(0x7FFE, true));
        assert!(!c.advance(0x7FFF, true));
        assert!(!c.advance(0x7FFF, true), "same frame");
        assert!(!c.advance(0, true));
        assert!(!c.advance(0x7FFF, true), "older value is a reorder");
        assert!(c.advance(5, true));
        assert!(!c.advance(6, true));
        assert!(!c.advance(9, false), "after a hole: resync");
        assert!(!c.advance(10, true));
    }

    #[test]
    fn frames_decode_in_chain_and_wait_for_a_late_packet() {
        let mut t = FrameTracker::default();
        let decoded = |o: FrameOutcome| o.decoded_layers.len();
        assert_eq!(decoded(t.add(&hdr(0, 1, true, 0, 2))), 0);
        assert_eq!(decoded(t.add(&hdr(0, 1, true, 1, 2))), 1);
        // Frame 1 loses packet 0 for now; frame 2 completes but must wait.
        assert_eq!(decoded(t.add(&hdr(1, 1, false, 1, 2))), 0);
        assert_eq!(decoded(t.add(&hdr(2, 1, false, 0, 1))), 0);
        // The repair of frame 1 releases frames 1 and 2.
        assert_eq!(decoded(t.add(&hdr(1, 1, false, 0, 2))), 2);
        // A delta frame of another layer is not decodable; its keyframe is.
        assert_eq!(decoded(t.add(&hdr(3, 2, false, 0, 1))), 0);
        assert_eq!(decoded(t.add(&hdr(4, 2, true, 0, 1))), 1);
        assert_eq!(decoded(t.add(&hdr(5, 2, false, 0, 1))), 1);
    }

    #[test]
    fn a_lost_frame_stalls_the_chain_until_a_keyframe() {
        let mut t = FrameTracker::default();
        t.add(&hdr(0, 0, true, 0, 1));
        // Frame 1 never arrives.
        for f in 2..7 {
            assert!(t.add(&hdr(f, 0, false, 0, 1)).decoded_layers.is_empty());
        }
        assert!(t.stalled());
        assert_eq!(t.add(&hdr(7, 0, true, 0, 1)).decoded_layers, vec![0]);
        assert!(!t.stalled());
        assert!(
            t.waiting.is_empty(),
            "frames behind the keyframe are dropped"
        );
    }
}
