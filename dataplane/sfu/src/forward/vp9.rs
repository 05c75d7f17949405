//! VP9 (RFC 9628): the payload descriptor, its in-place picture-id / TL0PICIDX rewrite, and
//! SVC forwarding — one SSRC carrying spatial layers (SID) and temporal layers (TID), of
//! which each subscription gets the layers at and below its own (spatial, temporal) target.
//!
//! - [`Vp9Descriptor`]: every descriptor field (I/P/L/F/B/E/V/Z, 7/15-bit picture id,
//!   TID/U/SID/D, TL0PICIDX, P_DIFFs, the scalability structure). Malformed input is an
//!   `Err(CodecError)` the caller counts and drops.
//! - [`SvcTrack`], one per published VP9 track without simulcast: learns how many spatial
//!   and temporal layers the publisher sends and summarises each packet as an [`SvcPacket`]
//!   (once per packet, for every subscription of the fan-out).
//! - [`SvcFilter`], one per subscription: turns the `LayerSelector`'s layer choice into a
//!   (spatial, temporal) ceiling and moves the ceiling only where the stream stays decodable:
//!   spatial up at a keyframe, temporal up after a switching-up point (U), down at the next
//!   picture. It also says where the picture now ends (the marker bit).
//!
//! The layer choice of an SVC track: with several spatial layers, choice `l` is spatial layer
//! `l` with every temporal layer (L3T3, L3T3_KEY); with one spatial layer, choice `l` is
//! temporal layer `l` (L1T3). The track's `LayerMonitor` counts each packet under the choice
//! that first includes it and reports cumulative bitrates, so the selector and the allocator
//! price a choice as everything it forwards.
//!
//! Why a spatial switch waits for a keyframe even in full SVC, where a layer frame with P=0
//! would do: the ceiling of a picture must be fixed at its first packet, because the last
//! packet of the top forwarded layer carries the end-of-picture marker, and that packet
//! (spatial layer below) is gone before the upper layer frame shows its P bit. A pending
//! spatial up-switch asks for a keyframe, which every mode makes a switching point.
//!
//! Must never: allocate, panic on any input, or reassemble frames.

use super::codec::{CodecError, PictureIdWidth};
use super::layer::{LayerSelector, LayerView, Verdict, MAX_LAYERS};

/// Most spatial layers the scalability structure can announce (N_S is 3 bits).
pub const MAX_SPATIAL: usize = 8;
/// Most references a flexible-mode layer frame may list (RFC 9628 §4.2).
pub const MAX_REFS: usize = 3;

/// Layer indices (L bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9LayerIds {
    /// TID: temporal layer.
    pub tid: u8,
    /// U: switching up point — pictures after this one with a TID above this one's do not
    /// depend on pictures before it with a TID above this one's.
    pub switch_up: bool,
    /// SID: spatial layer.
    pub sid: u8,
    /// D: depends on the spatial layer below in the same picture.
    pub inter_layer_dependent: bool,
}

/// The scalability structure (V bit), sent with keyframes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScalabilityStructure {
    /// N_S + 1.
    pub spatial_layers: u8,
    /// Width and height per spatial layer, when Y is set.
    pub resolutions: Option<[(u16, u16); MAX_SPATIAL]>,
    /// N_G: pictures in the group of frames (0 without G).
    pub gof_len: u8,
    /// Highest TID in the group of frames + 1 (0 without one).
    pub temporal_layers: u8,
}

/// The parsed VP9 payload descriptor. Offsets point into the payload so the ids can be
/// rewritten in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Descriptor {
    /// Bytes of descriptor before the VP9 payload proper.
    pub header_len: usize,
    /// P: the layer frame uses inter-picture prediction.
    pub inter_picture_predicted: bool,
    /// F: flexible mode (references as P_DIFFs, no TL0PICIDX).
    pub flexible: bool,
    /// B: first packet of a layer frame.
    pub begins_frame: bool,
    /// E: last packet of a layer frame.
    pub ends_frame: bool,
    /// Z: not a reference for the spatial layers above.
    pub not_upper_reference: bool,
    /// Picture id, its width and its byte offset.
    pub picture_id: Option<(u16, PictureIdWidth, usize)>,
    pub layers: Option<Vp9LayerIds>,
    /// TL0PICIDX and its byte offset (non-flexible mode with L).
    pub tl0_pic_idx: Option<(u8, usize)>,
    /// Flexible mode with P: the picture id differences of the references.
    pub ref_diffs: [u8; MAX_REFS],
    pub ref_count: u8,
    pub scalability: Option<ScalabilityStructure>,
}

fn byte(p: &[u8], i: usize) -> Result<u8, CodecError> {
    p.get(i).copied().ok_or(CodecError::Truncated)
}

impl Vp9Descriptor {
    /// Parse the descriptor at the start of `payload`.
    pub fn parse(payload: &[u8]) -> Result<Self, CodecError> {
        let b0 = *payload.first().ok_or(CodecError::Empty)?;
        let has_i = b0 & 0x80 != 0;
        let has_l = b0 & 0x20 != 0;
        let has_v = b0 & 0x02 != 0;
        let mut d = Vp9Descriptor {
            inter_picture_predicted: b0 & 0x40 != 0,
            flexible: b0 & 0x10 != 0,
            begins_frame: b0 & 0x08 != 0,
            ends_frame: b0 & 0x04 != 0,
            not_upper_reference: b0 & 0x01 != 0,
            ..Default::default()
        };
        if d.flexible && !has_i {
            // References are picture id differences: meaningless without a picture id.
            return Err(CodecError::Invalid);
        }
        let mut i = 1;
        if has_i {
            let p0 = byte(payload, i)?;
            if p0 & 0x80 != 0 {
                let p1 = byte(payload, i + 1)?;
                let id = (u16::from(p0 & 0x7f) << 8) | u16::from(p1);
                d.picture_id = Some((id, PictureIdWidth::Bits15, i));
                i += 2;
            } else {
                d.picture_id = Some((u16::from(p0), PictureIdWidth::Bits7, i));
                i += 1;
            }
        }
        if has_l {
            let v = byte(payload, i)?;
            d.layers = Some(Vp9LayerIds {
                tid: v >> 5,
                switch_up: v & 0x10 != 0,
                sid: (v >> 1) & 0x07,
                inter_layer_dependent: v & 0x01 != 0,
            });
            i += 1;
            if !d.flexible {
                d.tl0_pic_idx = Some((byte(payload, i)?, i));
                i += 1;
            }
        }
        if d.flexible && d.inter_picture_predicted {
            loop {
                let v = byte(payload, i)?;
                i += 1;
                if usize::from(d.ref_count) == MAX_REFS || v >> 1 == 0 {
                    return Err(CodecError::Invalid);
                }
                d.ref_diffs[usize::from(d.ref_count)] = v >> 1;
                d.ref_count += 1;
                if v & 0x01 == 0 {
                    break;
                }
            }
        }
        if has_v {
            let (ss, len) = parse_ss(payload.get(i..).unwrap_or(&[]))?;
            d.scalability = Some(ss);
            i += len;
        }
        d.header_len = i;
        Ok(d)
    }

    /// The first packet of a keyframe: not inter-picture predicted, beginning the frame of
    /// the base spatial layer. It opens every layer: each layer frame of a keyframe picture
    /// depends at most on the one below.
    pub fn is_keyframe(&self) -> bool {
        !self.inter_picture_predicted && self.begins_frame && self.layers.is_none_or(|l| l.sid == 0)
    }
}

/// The scalability structure at the start of `b`, and its length.
fn parse_ss(b: &[u8]) -> Result<(ScalabilityStructure, usize), CodecError> {
    let v = byte(b, 0)?;
    let mut ss = ScalabilityStructure {
        spatial_layers: (v >> 5) + 1,
        ..Default::default()
    };
    let (has_y, has_g) = (v & 0x10 != 0, v & 0x08 != 0);
    let mut i = 1;
    if has_y {
        let mut res = [(0u16, 0u16); MAX_SPATIAL];
        for r in res.iter_mut().take(usize::from(ss.spatial_layers)) {
            let w = u16::from_be_bytes([byte(b, i)?, byte(b, i + 1)?]);
            let h = u16::from_be_bytes([byte(b, i + 2)?, byte(b, i + 3)?]);
            *r = (w, h);
            i += 4;
        }
        ss.resolutions = Some(res);
    }
    if has_g {
        ss.gof_len = byte(b, i)?;
        i += 1;
        for _ in 0..ss.gof_len {
            let g = byte(b, i)?;
            i += 1;
            ss.temporal_layers = ss.temporal_layers.max((g >> 5) + 1);
            let refs = usize::from((g >> 2) & 0x03);
            for _ in 0..refs {
                byte(b, i)?;
                i += 1;
            }
        }
    }
    Ok((ss, i))
}

/// Write `picture_id` (kept to the packet's own width) and `tl0_pic_idx` into a payload whose
/// descriptor `d` was parsed from it. Fields absent from the packet are left alone.
pub fn vp9_write(payload: &mut [u8], d: &Vp9Descriptor, picture_id: u16, tl0_pic_idx: u8) {
    if let Some((_, width, off)) = d.picture_id {
        super::codec::write_picture_id(payload, width, off, picture_id);
    }
    if let Some((_, off)) = d.tl0_pic_idx {
        if let Some(b) = payload.get_mut(off) {
            *b = tl0_pic_idx;
        }
    }
}

/// Per published track: what the publisher's layering looks like, learned from the packets.
#[derive(Debug, Clone, Copy, Default)]
pub struct SvcTrack {
    spatial: u8,
    temporal: u8,
}

/// The layering of an SVC stream as far as the filter needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SvcShape {
    /// Spatial layers seen (at least 1).
    pub spatial: u8,
    /// Temporal layers seen (at least 1).
    pub temporal: u8,
}

impl SvcShape {
    /// The (spatial, temporal) ceiling of layer choice `choice`.
    pub fn ceiling(self, choice: u8) -> (u8, u8) {
        if self.spatial > 1 {
            (choice.min(self.spatial - 1), self.temporal.max(1) - 1)
        } else {
            (0, choice.min(self.temporal.max(1) - 1))
        }
    }

    /// The choice that first includes a layer frame (sid, tid): the monitor counts it there.
    pub fn choice_of(self, sid: u8, tid: u8) -> u8 {
        let top = MAX_LAYERS as u8 - 1;
        if self.spatial > 1 {
            sid.min(top)
        } else {
            tid.min(top)
        }
    }

    /// The choice a (spatial, temporal) ceiling is.
    fn choice_at(self, (s, t): (u8, u8)) -> u8 {
        self.choice_of(s, t)
    }

    /// Layer choices the shape offers (what the allocator may pick among).
    pub fn choices(self) -> usize {
        let n = if self.spatial > 1 {
            self.spatial
        } else {
            self.temporal
        };
        usize::from(n).clamp(1, MAX_LAYERS)
    }
}

/// One packet of an SVC stream, as every subscription's filter reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcPacket {
    pub sid: u8,
    pub tid: u8,
    pub switch_up: bool,
    pub ends_frame: bool,
    /// First packet of a keyframe picture.
    pub keyframe: bool,
    /// The RTP timestamp: every layer frame of a picture shares it.
    pub timestamp: u32,
    pub shape: SvcShape,
    /// The layer choice that first includes this packet (for the track's monitor).
    pub choice: u8,
}

impl SvcTrack {
    /// Learn from one parsed packet; `None` when it carries no layer indices (then it is not
    /// layer-filtered: forwarded as the stream's only layer).
    pub fn on_packet(&mut self, d: &Vp9Descriptor, timestamp: u32) -> Option<SvcPacket> {
        if let Some(ss) = d.scalability {
            // The structure is authoritative: a publisher that dropped a layer says so here.
            self.spatial = ss.spatial_layers;
            self.temporal = self.temporal.max(ss.temporal_layers);
        }
        let l = d.layers?;
        self.spatial = self.spatial.max(l.sid + 1);
        self.temporal = self.temporal.max(l.tid + 1);
        let shape = self.shape();
        Some(SvcPacket {
            sid: l.sid,
            tid: l.tid,
            switch_up: l.switch_up,
            ends_frame: d.ends_frame,
            keyframe: d.is_keyframe(),
            timestamp,
            shape,
            choice: shape.choice_of(l.sid, l.tid),
        })
    }

    /// Learn from one AV1 packet's layers (its dependency descriptor, `forward::av1`); the
    /// descriptor's structure is authoritative for the layering. `None` for a stream of one
    /// layer (then it is not layer-filtered).
    pub fn on_av1(
        &mut self,
        l: &super::av1::FrameLayers,
        keyframe: bool,
        timestamp: u32,
    ) -> Option<SvcPacket> {
        self.spatial = l.spatial_layers;
        self.temporal = l.temporal_layers;
        if !self.is_layered() {
            return None;
        }
        let shape = self.shape();
        Some(SvcPacket {
            sid: l.sid,
            tid: l.tid,
            switch_up: l.switch_up,
            ends_frame: l.end_of_frame,
            keyframe,
            timestamp,
            shape,
            choice: shape.choice_of(l.sid, l.tid),
        })
    }

    pub fn shape(&self) -> SvcShape {
        SvcShape {
            spatial: self.spatial.max(1),
            temporal: self.temporal.max(1),
        }
    }

    /// Whether packets with layer indices have been seen: the track is layer-filtered as SVC.
    pub fn is_layered(&self) -> bool {
        self.spatial > 1 || self.temporal > 1
    }
}

/// The ceiling decided for one picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Picture {
    timestamp: u32,
    ceiling: (u8, u8),
}

/// What to do with one SVC packet for one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcVerdict {
    pub verdict: Verdict,
    /// The marker bit to send (end of the picture as forwarded).
    pub marker: bool,
    /// The ceiling of the packet's picture (a late packet keeps its picture's, which may be
    /// above the current one).
    pub ceiling: (u8, u8),
}

/// Per subscription to an SVC track. See the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct SvcFilter {
    /// The ceiling being forwarded; `None` = waiting for a keyframe.
    ceiling: Option<(u8, u8)>,
    /// The newest picture and the one before (a late packet of it keeps its decision).
    picture: Option<Picture>,
    previous: Option<Picture>,
    /// The newest picture was forwarded and is a switching-up point for the temporal layers
    /// above its own: the next picture may raise the temporal ceiling.
    up_next: bool,
    /// A new picture sends its first packet as a new rewrite segment.
    switched: bool,
    /// Pictures since a temporal up-switch became due without a switching-up point.
    waiting_up: u16,
    shape: SvcShape,
}

/// Pictures a temporal up-switch waits for a U picture before it asks for a keyframe (a
/// publisher that never marks U, or marks it as libwebrtc's non-flexible GOF does, on the
/// upper layers' own frames).
const UP_SWITCH_PATIENCE: u16 = 16;

impl SvcFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The (spatial, temporal) ceiling being forwarded.
    pub fn ceiling(&self) -> Option<(u8, u8)> {
        self.ceiling
    }

    /// Whether this subscription has been filtering an SVC stream.
    pub fn is_active(&self) -> bool {
        self.shape.spatial > 0
    }

    /// Whether a keyframe is needed to reach the selector's target: to start, or to go up a
    /// spatial layer. A temporal up-switch waits for a switching-up point instead.
    pub fn keyframe_needed(&self, sel: &LayerSelector) -> bool {
        let Some(target) = sel.target() else {
            return false;
        };
        match self.ceiling {
            None => true,
            Some((s, _)) => {
                self.shape.ceiling(target).0 > s || self.waiting_up >= UP_SWITCH_PATIENCE
            }
        }
    }

    /// Decide for one packet: the selector (on `view`) picks the layer choice, the filter
    /// moves the ceiling toward it at switching points and filters by the ceiling.
    pub fn on_packet(
        &mut self,
        now: std::time::Instant,
        sel: &mut LayerSelector,
        view: &LayerView,
        p: &SvcPacket,
    ) -> SvcVerdict {
        self.shape = p.shape;
        sel.update_with(now, view);
        let drop = SvcVerdict {
            verdict: Verdict::Drop,
            marker: false,
            ceiling: (0, 0),
        };
        let target = sel.target();
        if sel.current().is_none() || target.is_none() {
            // A pause, a restart or the start: the next picture we forward is a keyframe, and
            // no late packet of a picture decided before passes.
            self.ceiling = None;
            self.picture = None;
            self.previous = None;
            self.up_next = false;
        }
        let Some(target) = target else {
            return drop;
        };
        let newer = self
            .picture
            .is_none_or(|pic| (p.timestamp.wrapping_sub(pic.timestamp) as i32) > 0);
        let ceiling = if newer {
            let c = self.next_picture(p, self.shape.ceiling(target));
            if let Some(c) = c {
                sel.set_current(Some(self.shape.choice_at(c)));
            }
            self.previous = self.picture;
            self.picture = c.map(|ceiling| Picture {
                timestamp: p.timestamp,
                ceiling,
            });
            c
        } else {
            // A packet of a picture already started: its decision stands.
            let of = |pic: Option<Picture>| pic.filter(|x| x.timestamp == p.timestamp);
            of(self.picture).or(of(self.previous)).map(|x| x.ceiling)
        };
        let Some((s, t)) = ceiling else {
            return drop;
        };
        if p.sid > s || p.tid > t {
            return drop;
        }
        let verdict = if std::mem::take(&mut self.switched) {
            Verdict::ForwardSwitched
        } else {
            Verdict::Forward
        };
        SvcVerdict {
            verdict,
            marker: p.ends_frame && p.sid == s,
            ceiling: (s, t),
        }
    }

    /// The ceiling of a new picture whose first packet is `p`, toward `target`.
    fn next_picture(&mut self, p: &SvcPacket, target: (u8, u8)) -> Option<(u8, u8)> {
        let up_next = std::mem::take(&mut self.up_next);
        let next = match self.ceiling {
            None if p.keyframe => {
                self.switched = true;
                target
            }
            None => return None,
            // A keyframe opens every layer.
            Some(_) if p.keyframe => target,
            Some((s, t)) => {
                let t = if target.1 > t && up_next {
                    target.1
                } else {
                    t.min(target.1)
                };
                (s.min(target.0), t)
            }
        };
        self.ceiling = Some(next);
        self.up_next = p.switch_up && p.tid <= next.1;
        self.waiting_up = if target.1 > next.1 {
            self.waiting_up.saturating_add(1)
        } else {
            0
        };
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_non_flexible_with_layers_and_ss() {
        // I, L, B, V; 15-bit id 0x1234; TID 2 U SID 1 D; TL0PICIDX 9; SS: 3 layers, Y, G(1).
        let p = [
            0xAA, 0x92, 0x34, 0x53, 9, 0x58, 0, 160, 0, 90, 1, 64, 0, 180, 2, 128, 1, 104, 1, 0x04,
            0x01, 0xEE,
        ];
        let d = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(d.picture_id, Some((0x1234, PictureIdWidth::Bits15, 1)));
        assert_eq!(
            d.layers,
            Some(Vp9LayerIds {
                tid: 2,
                switch_up: true,
                sid: 1,
                inter_layer_dependent: true
            })
        );
        assert_eq!(d.tl0_pic_idx, Some((9, 4)));
        let ss = d.scalability.unwrap();
        assert_eq!(ss.spatial_layers, 3);
        assert_eq!(ss.resolutions.unwrap()[2], (640, 360));
        assert_eq!((ss.gof_len, ss.temporal_layers), (1, 1));
        assert_eq!(d.header_len, p.len() - 1);
        assert!(d.begins_frame && !d.ends_frame && !d.flexible);
    }

    #[test]
    fn descriptor_flexible_with_references() {
        // I (7-bit 5), P, L, F, E; TID 1 SID 0; two P_DIFFs 1 and 2.
        let p = [0xF4, 5, 0x20, 0x03, 0x04, 0xAB];
        let d = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(d.picture_id, Some((5, PictureIdWidth::Bits7, 1)));
        assert_eq!(d.tl0_pic_idx, None);
        assert_eq!((d.ref_count, &d.ref_diffs[..2]), (2, &[1, 2][..]));
        assert_eq!(d.header_len, 5);
        assert!(!d.is_keyframe());
    }

    #[test]
    fn malformed_descriptors_are_errors() {
        assert_eq!(Vp9Descriptor::parse(&[]), Err(CodecError::Empty));
        // I with a 15-bit id cut short; L without its byte; TL0PICIDX missing.
        assert_eq!(
            Vp9Descriptor::parse(&[0x80, 0x81]),
            Err(CodecError::Truncated)
        );
        assert_eq!(Vp9Descriptor::parse(&[0xA0, 1]), Err(CodecError::Truncated));
        assert_eq!(
            Vp9Descriptor::parse(&[0xA0, 1, 0]),
            Err(CodecError::Truncated)
        );
        // Flexible without a picture id; a fourth reference; a zero difference.
        assert_eq!(Vp9Descriptor::parse(&[0x10, 0]), Err(CodecError::Invalid));
        assert_eq!(
            Vp9Descriptor::parse(&[0xD0, 1, 3, 3, 3, 2]),
            Err(CodecError::Invalid)
        );
        assert_eq!(
            Vp9Descriptor::parse(&[0xD0, 1, 0]),
            Err(CodecError::Invalid)
        );
        // P_DIFF chain running off the end; SS resolutions cut short; GOF cut short.
        assert_eq!(
            Vp9Descriptor::parse(&[0xD0, 1, 3]),
            Err(CodecError::Truncated)
        );
        assert_eq!(
            Vp9Descriptor::parse(&[0x02, 0x30, 0, 1]),
            Err(CodecError::Truncated)
        );
        assert_eq!(
            Vp9Descriptor::parse(&[0x02, 0x08, 2, 0x04]),
            Err(CodecError::Truncated)
        );
    }

    #[test]
    fn write_keeps_the_shape() {
        let mut p = [0xA8, 0x80, 0x05, 0x00, 7, 0xEE];
        let d = Vp9Descriptor::parse(&p).unwrap();
        vp9_write(&mut p, &d, 0x7ffe, 200);
        let again = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(again.picture_id.unwrap().0, 0x7ffe);
        assert_eq!(again.tl0_pic_idx.unwrap().0, 200);
        assert_eq!(again.header_len, d.header_len);
        assert_eq!(p[5], 0xEE);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(9);
        let mut buf = [0u8; 40];
        let mut track = SvcTrack::default();
        for _ in 0..200_000 {
            let len = rng.usize(0..buf.len());
            rng.fill(&mut buf[..len]);
            let p = &mut buf[..len];
            if let Ok(d) = Vp9Descriptor::parse(p) {
                assert!(d.header_len <= p.len());
                vp9_write(p, &d, rng.u16(..), rng.u8(..));
                assert_eq!(
                    Vp9Descriptor::parse(p).map(|x| x.header_len),
                    Ok(d.header_len)
                );
                if let Some(sp) = track.on_packet(&d, rng.u32(..)) {
                    assert!(usize::from(sp.choice) < MAX_LAYERS);
                    assert!(sp.shape.choices() <= MAX_LAYERS);
                }
            }
        }
    }

    /// An L3T3 picture's packets (one per layer frame): (sid, tid, U, E, keyframe).
    fn picture(ts: u32, tid: u8, key: bool) -> Vec<SvcPacket> {
        let shape = SvcShape {
            spatial: 3,
            temporal: 3,
        };
        (0..3)
            .map(|sid| SvcPacket {
                sid,
                tid,
                switch_up: tid < 2,
                ends_frame: true,
                keyframe: key && sid == 0,
                timestamp: ts,
                shape,
                choice: shape.choice_of(sid, tid),
            })
            .collect()
    }

    #[test]
    fn filter_switches_spatial_up_at_keyframes_and_down_at_the_next_picture() {
        use super::super::layer::{LayerConfig, LayerMonitor, LayerPreference};
        let t0 = std::time::Instant::now();
        let mut mon = LayerMonitor::new(LayerConfig::default());
        mon.set_cumulative(true);
        let mut sel = LayerSelector::new(LayerConfig::default());
        let mut f = SvcFilter::new();
        let cap = |sel: &mut LayerSelector, max| {
            sel.set_preference(LayerPreference {
                max_layer: Some(max),
                visible: true,
            })
        };
        cap(&mut sel, 1);
        // (picture index, forwarded (sid, marker) per packet)
        let mut run = |sel: &mut LayerSelector, f: &mut SvcFilter, from: u32, n: u32, key_at| {
            let mut out = Vec::new();
            for i in from..from + n {
                let now = t0 + std::time::Duration::from_millis(u64::from(i) * 33);
                let tid = [0, 2, 1, 2][(i % 4) as usize];
                for p in picture(i * 3000, tid, Some(i) == key_at) {
                    mon.on_packet(now, p.choice, 500);
                    let v = f.on_packet(now, sel, &mon.view(now), &p);
                    if v.verdict != Verdict::Drop {
                        out.push((i, p.sid, v.marker, v.verdict));
                    }
                }
            }
            out
        };
        // Nothing before a keyframe; then S0+S1 with the marker on S1.
        let out = run(&mut sel, &mut f, 0, 4, None);
        assert!(out.is_empty());
        assert!(f.keyframe_needed(&sel));
        let out = run(&mut sel, &mut f, 4, 4, Some(4));
        assert_eq!(out[0], (4, 0, false, Verdict::ForwardSwitched));
        assert_eq!(out[1], (4, 1, true, Verdict::Forward));
        assert!(out.iter().all(|o| o.1 <= 1 && o.2 == (o.1 == 1)));
        assert_eq!(f.ceiling(), Some((1, 2)));
        // Cap lowered mid-picture: the change waits for the next picture.
        cap(&mut sel, 0);
        let out = run(&mut sel, &mut f, 8, 2, None);
        assert!(
            out.iter().all(|o| o.1 == 0 && o.2),
            "S0 only, each its picture's end"
        );
        // Raised again: after the selector's hold (1 s), S1 and S2 wait for a keyframe,
        // which is asked for.
        cap(&mut sel, 2);
        let out = run(&mut sel, &mut f, 10, 40, None);
        assert!(out.iter().all(|o| o.1 == 0));
        assert!(f.keyframe_needed(&sel));
        let out = run(&mut sel, &mut f, 50, 2, Some(50));
        assert_eq!(
            out.iter()
                .filter(|o| o.0 == 50)
                .map(|o| (o.1, o.2))
                .collect::<Vec<_>>(),
            vec![(0, false), (1, false), (2, true)]
        );
        assert!(!f.keyframe_needed(&sel));
    }

    #[test]
    fn filter_raises_the_frame_rate_after_a_switching_up_point() {
        use super::super::layer::{LayerConfig, LayerMonitor, LayerPreference};
        let t0 = std::time::Instant::now();
        let shape = SvcShape {
            spatial: 1,
            temporal: 3,
        };
        let mut mon = LayerMonitor::new(LayerConfig::default());
        mon.set_cumulative(true);
        let mut sel = LayerSelector::new(LayerConfig::default());
        let mut f = SvcFilter::new();
        let mut tids = Vec::new();
        let mut asked = false;
        for i in 0..80u32 {
            let now = t0 + std::time::Duration::from_millis(u64::from(i) * 33);
            let max = if i < 8 { 0 } else { 2 };
            sel.set_preference(LayerPreference {
                max_layer: Some(max),
                visible: true,
            });
            let tid = [0, 2, 1, 2][(i % 4) as usize];
            // U on T0 only from picture 64 on: until then no switching point.
            let p = SvcPacket {
                sid: 0,
                tid,
                switch_up: tid == 0 && i >= 64,
                ends_frame: true,
                keyframe: i == 0,
                timestamp: i * 3000,
                shape,
                choice: shape.choice_of(0, tid),
            };
            mon.on_packet(now, p.choice, 500);
            if f.on_packet(now, &mut sel, &mon.view(now), &p).verdict != Verdict::Drop {
                tids.push((i, tid));
            }
            asked |= i < 64 && f.keyframe_needed(&sel);
        }
        // T0 only until the picture after the U picture 64 (the hold has long passed; waiting
        // that long asks for a keyframe); everything from 65 on.
        assert!(tids.iter().filter(|t| t.0 <= 64).all(|t| t.1 == 0));
        assert!((65..80).all(|i| tids.iter().any(|t| t.0 == i)));
        assert!(
            asked,
            "a keyframe asked for after waiting for a switching point"
        );
    }

    #[test]
    fn after_a_pause_no_late_packet_of_an_earlier_picture_passes() {
        use super::super::layer::{LayerConfig, LayerMonitor, LayerPreference};
        let now = std::time::Instant::now();
        let mut mon = LayerMonitor::new(LayerConfig::default());
        mon.set_cumulative(true);
        let mut sel = LayerSelector::new(LayerConfig::default());
        let mut f = SvcFilter::new();
        let key = picture(3000, 0, true);
        for p in &key {
            mon.on_packet(now, p.choice, 500);
        }
        let v = f.on_packet(now, &mut sel, &mon.view(now), &key[0]);
        assert_eq!(v.verdict, Verdict::ForwardSwitched);
        // Hidden, then visible again before the picture's other layers arrive: they belong to
        // the stream before the pause and must not pass; the next keyframe starts anew.
        for visible in [false, true] {
            sel.set_preference(LayerPreference {
                max_layer: None,
                visible,
            });
            sel.update(now, &mon);
        }
        for p in &key[1..] {
            let v = f.on_packet(now, &mut sel, &mon.view(now), p);
            assert_eq!(v.verdict, Verdict::Drop);
        }
        assert!(f.keyframe_needed(&sel));
    }

    #[test]
    fn shape_maps_choices() {
        let l3t3 = SvcShape {
            spatial: 3,
            temporal: 3,
        };
        assert_eq!(l3t3.ceiling(0), (0, 2));
        assert_eq!(l3t3.ceiling(2), (2, 2));
        assert_eq!(l3t3.choice_of(1, 2), 1);
        let l1t3 = SvcShape {
            spatial: 1,
            temporal: 3,
        };
        assert_eq!(l1t3.ceiling(1), (0, 1));
        assert_eq!(l1t3.choice_of(0, 2), 2);
        assert_eq!(l1t3.choices(), 3);
        let l2t1 = SvcShape {
            spatial: 2,
            temporal: 1,
        };
        assert_eq!(l2t1.ceiling(2), (1, 0));
    }
}
