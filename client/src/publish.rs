//! Synthetic media sources: an Opus-like audio stream and a VP8 simulcast video stream,
//! producing ready-to-write RTP payloads on a fixed schedule.
//!
//! Owns timing, sequence numbers, picture ids and keyframe decisions per layer. It must never
//! touch str0m: the client turns each [`OutPacket`] into an `RtpWrite`.

use std::time::{Duration, Instant};

use crate::config::{TimeBase, VideoCodec, VideoSpec};
use crate::payload::{
    H264Info, SyntheticHeader, TrackKind, Vp8Info, HEADER_LEN, VP8_DESCRIPTOR_LEN,
    VP8_KEY_HEADER_LEN,
};

/// Bytes of RTP payload per video packet at most (leaves room for SRTP and extensions).
pub const VIDEO_PACKET_BYTES: usize = 1100;
/// Audio packets are sent every 20 ms.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// Falling further behind than this many intervals skips ahead instead of bursting.
const MAX_CATCH_UP: u32 = 5;

/// One RTP packet to write.
#[derive(Debug, Clone)]
pub(crate) struct OutPacket {
    /// Index of the simulcast layer (0 for audio and single-layer video).
    pub layer: usize,
    /// Extended RTP sequence number for this stream.
    pub seq: u64,
    /// RTP timestamp.
    pub rtp_time: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
    /// RFC 6464 level (audio only): -dBov, 0 loudest, 127 silence.
    pub audio_level: Option<(i8, bool)>,
}

/// Sequence-number start below 2^15 so the first packet never needs ROC signalling.
fn start_seq(rng: &mut fastrand::Rng) -> u64 {
    rng.u64(1..30_000)
}

/// 50 packets/s of Opus-like audio with a level that rises and falls while speaking.
#[derive(Debug)]
pub(crate) struct AudioSource {
    rng: fastrand::Rng,
    source_id: u32,
    next_at: Option<Instant>,
    seq: u64,
    rtp_time: u32,
    packets: u64,
    speaking: bool,
    was_speaking: bool,
    loudness: i8,
}

impl AudioSource {
    pub fn new(seed: u64, source_id: u32) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0xA0D1_0000);
        Self {
            seq: start_seq(&mut rng),
            rtp_time: rng.u32(..),
            rng,
            source_id,
            next_at: None,
            packets: 0,
            speaking: true,
            was_speaking: false,
            loudness: 20,
        }
    }

    pub fn set_speaking(&mut self, speaking: bool) {
        self.speaking = speaking;
    }

    /// Sets the speaking level in dB below full scale (0 loudest, 127 silence).
    pub fn set_loudness(&mut self, dbov: u8) {
        self.loudness = dbov.min(127) as i8;
    }

    pub fn next_at(&self) -> Option<Instant> {
        self.next_at
    }

    /// Starts the schedule (on connect).
    pub fn start(&mut self, now: Instant) {
        self.next_at.get_or_insert(now);
    }

    /// Packets due at `now`.
    pub fn poll(&mut self, now: Instant, time: &TimeBase, out: &mut Vec<OutPacket>) {
        let Some(mut at) = self.next_at else { return };
        if now.saturating_duration_since(at) > AUDIO_INTERVAL * MAX_CATCH_UP {
            at = now;
        }
        while at <= now {
            out.push(self.packet(now, time));
            at += AUDIO_INTERVAL;
            self.rtp_time = self.rtp_time.wrapping_add(960); // 20 ms at 48 kHz
        }
        self.next_at = Some(at);
    }

    fn packet(&mut self, now: Instant, time: &TimeBase) -> OutPacket {
        // Speech: the loudness (dB below full scale) plus a slow 0..15 dB wobble; silence:
        // near the floor.
        let (level, size) = if self.speaking {
            let phase = (self.packets % 50) as i8;
            let wobble = (phase - 25).abs() / 2 + self.rng.i8(0..3);
            (self.loudness.saturating_add(wobble), 120)
        } else {
            (self.rng.i8(100..120), HEADER_LEN)
        };
        let header = SyntheticHeader {
            kind: TrackKind::Audio,
            layer: 0,
            keyframe: false,
            source_id: self.source_id,
            frame: self.packets as u32,
            packet_index: 0,
            packets_in_frame: 1,
            send_time_us: time.micros(now),
            stream_seq: self.packets,
        };
        let mut payload = Vec::with_capacity(size);
        header.write(&mut payload, size);
        let marker = self.speaking && !self.was_speaking;
        self.was_speaking = self.speaking;
        let p = OutPacket {
            layer: 0,
            seq: self.seq,
            rtp_time: self.rtp_time,
            marker,
            payload,
            audio_level: Some((level, self.speaking)),
        };
        self.seq += 1;
        self.packets += 1;
        p
    }
}

#[derive(Debug)]
struct LayerState {
    active: bool,
    seq: u64,
    stream_seq: u64,
    picture_id: u16,
    tl0: u8,
    keyframe_due: bool,
    last_keyframe: Option<Instant>,
}

/// Counters a caller reads after [`VideoSource::poll`].
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FrameSent {
    pub layer: usize,
    pub keyframe: bool,
}

/// VP8 video, one frame per layer per tick, with per-layer picture ids and keyframes.
#[derive(Debug)]
pub(crate) struct VideoSource {
    spec: VideoSpec,
    source_id: u32,
    layers: Vec<LayerState>,
    next_at: Option<Instant>,
    interval: Duration,
    frame: u32,
    rtp_time: u32,
}

impl VideoSource {
    pub fn new(spec: VideoSpec, seed: u64, source_id: u32) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x71DE_0000);
        let layers = spec
            .layers
            .iter()
            .map(|_| LayerState {
                active: true,
                seq: start_seq(&mut rng),
                stream_seq: 0,
                picture_id: rng.u16(..0x7FFF),
                tl0: rng.u8(..),
                keyframe_due: true,
                last_keyframe: None,
            })
            .collect();
        let fps = spec.fps.max(1);
        Self {
            interval: Duration::from_secs(1) / fps,
            rtp_time: rng.u32(..),
            spec,
            source_id,
            layers,
            next_at: None,
            frame: 0,
        }
    }

    pub fn spec(&self) -> &VideoSpec {
        &self.spec
    }

    pub fn next_at(&self) -> Option<Instant> {
        self.next_at
    }

    pub fn start(&mut self, now: Instant) {
        self.next_at.get_or_insert(now);
    }

    /// Stops or resumes sending one layer. A resumed layer starts with a keyframe.
    pub fn set_layer_active(&mut self, layer: usize, active: bool) {
        if let Some(l) = self.layers.get_mut(layer) {
            if active && !l.active {
                l.keyframe_due = true;
            }
            l.active = active;
        }
    }

    /// The next frame of `layer` is a keyframe (on PLI/FIR).
    pub fn request_keyframe(&mut self, layer: usize) {
        if let Some(l) = self.layers.get_mut(layer) {
            l.keyframe_due = true;
        }
    }

    /// Packets due at `now`, and what frames they made.
    pub fn poll(
        &mut self,
        now: Instant,
        time: &TimeBase,
        out: &mut Vec<OutPacket>,
        sent: &mut Vec<FrameSent>,
    ) {
        let Some(mut at) = self.next_at else { return };
        if now.saturating_duration_since(at) > self.interval * MAX_CATCH_UP {
            at = now;
        }
        let ticks_per_frame = 90_000 / self.spec.fps.max(1);
        while at <= now {
            for layer in 0..self.layers.len() {
                if self.layers[layer].active {
                    sent.push(self.frame_for(layer, now, time, out));
                }
            }
            self.frame = self.frame.wrapping_add(1);
            self.rtp_time = self.rtp_time.wrapping_add(ticks_per_frame);
            at += self.interval;
        }
        self.next_at = Some(at);
    }

    fn frame_for(
        &mut self,
        layer: usize,
        now: Instant,
        time: &TimeBase,
        out: &mut Vec<OutPacket>,
    ) -> FrameSent {
        let spec = &self.spec.layers[layer];
        let state = &mut self.layers[layer];
        let keyframe = state.keyframe_due
            || state
                .last_keyframe
                .is_none_or(|t| now.saturating_duration_since(t) >= self.spec.keyframe_interval);
        if keyframe {
            state.keyframe_due = false;
            state.last_keyframe = Some(now);
        }
        let factor = if keyframe {
            self.spec.keyframe_size_factor.max(1)
        } else {
            1
        };
        let frame_bytes = (spec.bitrate_bps / 8 / self.spec.fps.max(1) * factor) as usize;
        let packets = frame_bytes
            .div_ceil(VIDEO_PACKET_BYTES)
            .clamp(1, usize::from(u16::MAX));
        let body_len = (frame_bytes / packets)
            .saturating_sub(VP8_DESCRIPTOR_LEN + VP8_KEY_HEADER_LEN)
            .max(HEADER_LEN);
        state.picture_id = state.picture_id.wrapping_add(1) & 0x7FFF;
        // Every frame is temporal layer 0 here, so TL0PICIDX steps with the picture id.
        state.tl0 = state.tl0.wrapping_add(1);
        let send_time_us = time.micros(now);
        for index in 0..packets {
            let header = SyntheticHeader {
                kind: TrackKind::Video,
                layer: layer as u8,
                keyframe,
                source_id: self.source_id,
                frame: self.frame,
                packet_index: index as u16,
                packets_in_frame: packets as u16,
                send_time_us,
                stream_seq: state.stream_seq,
            };
            let mut payload =
                Vec::with_capacity(VP8_DESCRIPTOR_LEN + VP8_KEY_HEADER_LEN + body_len);
            match self.spec.codec {
                VideoCodec::Vp8 => Vp8Info {
                    start_of_frame: index == 0,
                    picture_id: state.picture_id,
                    tl0_pic_idx: state.tl0,
                    keyframe,
                }
                .write(&mut payload, spec.width, spec.height),
                VideoCodec::H264 => H264Info {
                    keyframe,
                    start: index == 0,
                    end: index + 1 == packets,
                }
                .write(&mut payload),
            }
            header.write(&mut payload, body_len);
            out.push(OutPacket {
                layer,
                seq: state.seq,
                rtp_time: self.rtp_time,
                marker: index + 1 == packets,
                payload,
                audio_level: None,
            });
            state.seq += 1;
            state.stream_seq += 1;
        }
        FrameSent { layer, keyframe }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VideoSpec;

    #[test]
    fn video_sizes_follow_the_layer_bitrates_and_keyframes_recur() {
        let start = Instant::now();
        let time = TimeBase::virtual_at(start);
        let mut v = VideoSource::new(VideoSpec::simulcast3(), 7, 1);
        v.start(start);
        let (mut out, mut sent) = (Vec::new(), Vec::new());
        let mut now = start;
        for _ in 0..(30 * 4) {
            v.poll(now, &time, &mut out, &mut sent);
            now += Duration::from_secs(1) / 30;
        }
        assert_eq!(sent.len(), 3 * 30 * 4, "one frame per layer per tick");
        for layer in 0..3 {
            let bytes: usize = out
                .iter()
                .filter(|p| p.layer == layer)
                .map(|p| p.payload.len())
                .sum();
            let kbps = bytes * 8 / 4 / 1000;
            let target = VideoSpec::simulcast3().layers[layer].bitrate_bps as usize / 1000;
            assert!(
                kbps * 100 >= target * 95 && kbps < target * 3 / 2,
                "layer {layer}: {kbps} kbps"
            );
            let keys = sent
                .iter()
                .filter(|s| s.layer == layer && s.keyframe)
                .count();
            assert_eq!(keys, 2, "a keyframe every 2 s on layer {layer}");
        }
        assert!(out
            .iter()
            .all(|p| p.payload.len() <= VIDEO_PACKET_BYTES + 20));
    }

    #[test]
    fn audio_sends_fifty_packets_a_second_and_silence_is_quieter() {
        let start = Instant::now();
        let time = TimeBase::virtual_at(start);
        let mut a = AudioSource::new(1, 1);
        a.start(start);
        let mut out = Vec::new();
        let mut now = start;
        while now < start + Duration::from_millis(999) {
            a.poll(now, &time, &mut out);
            now += Duration::from_millis(5);
        }
        assert_eq!(out.len(), 50);
        let loud = out.iter().map(|p| p.audio_level.unwrap().0).max().unwrap();
        a.set_speaking(false);
        out.clear();
        a.poll(now + Duration::from_millis(20), &time, &mut out);
        assert!(out.iter().all(|p| p.audio_level.unwrap().0 > loud));
    }
}
