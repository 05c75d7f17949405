//! AV1's dependency descriptor (the AV1 RTP specification, appendix A): the header extension
//! that says which spatial and temporal layer a packet's frame belongs to, so an AV1 SVC
//! stream (L1T3, L3T3) is layered per subscriber by the same [`super::vp9::SvcFilter`] as
//! VP9's.
//!
//! A packet names a frame template by id; the templates (their layers and their decode
//! target indications) come in a template dependency structure, sent with keyframes. So a
//! stream keeps the last structure ([`Av1Stream`]) and reads each packet against it:
//! [`Av1Stream::on_descriptor`] gives the packet's [`FrameLayers`], or `None` while no
//! structure is known (a packet before the first keyframe) or the descriptor is malformed.
//!
//! Read: the mandatory fields, and of a structure its template id offset, decode target
//! count, template layers and template DTIs; the rest (frame diffs, chains, resolutions) is
//! not needed to filter layers and is not parsed. Per-frame custom DTIs override nothing
//! here: the template's DTIs decide where an up-switch may happen.
//!
//! Must never: allocate, or panic on any input.

/// Most templates a structure can hold (`template_id` is 6 bits).
const MAX_TEMPLATES: usize = 64;
/// Most decode targets (`dt_cnt_minus_one` is 5 bits).
const MAX_DECODE_TARGETS: usize = 32;
/// Decode target indication "switch": decoding of the target may start at this frame.
const DTI_SWITCH: u8 = 2;

/// What the filter needs to know about one packet's frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayers {
    pub sid: u8,
    pub tid: u8,
    /// A decode target with a higher temporal layer may be switched to from the next frame
    /// on (VP9's U bit).
    pub switch_up: bool,
    pub end_of_frame: bool,
    /// Layers in the structure: spatial, temporal (each at least 1).
    pub spatial_layers: u8,
    pub temporal_layers: u8,
}

#[derive(Debug, Clone, Copy, Default)]
struct Template {
    sid: u8,
    tid: u8,
    switch_up: bool,
}

/// One AV1 stream's last template dependency structure.
#[derive(Debug, Clone)]
pub struct Av1Stream {
    offset: u8,
    count: u8,
    templates: [Template; MAX_TEMPLATES],
    spatial_layers: u8,
    temporal_layers: u8,
}

impl Default for Av1Stream {
    fn default() -> Self {
        Self {
            offset: 0,
            count: 0,
            templates: [Template::default(); MAX_TEMPLATES],
            spatial_layers: 1,
            temporal_layers: 1,
        }
    }
}

/// MSB-first bit reader over a byte slice; reading past the end is `None`.
struct Bits<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.at / 8)?;
            let bit = (byte >> (7 - (self.at % 8))) & 1;
            v = (v << 1) | u32::from(bit);
            self.at += 1;
        }
        Some(v)
    }
}

impl Av1Stream {
    /// Reads one packet's descriptor; a structure in it replaces the stream's.
    pub fn on_descriptor(&mut self, dd: &[u8]) -> Option<FrameLayers> {
        let mut b = Bits { data: dd, at: 0 };
        let _start_of_frame = b.read(1)?;
        let end_of_frame = b.read(1)? == 1;
        let template_id = b.read(6)? as u8;
        let _frame_number = b.read(16)?;
        if dd.len() > 3 {
            let structure_present = b.read(1)? == 1;
            let _active_targets_present = b.read(1)?;
            let _custom_dtis = b.read(1)?;
            let _custom_fdiffs = b.read(1)?;
            let _custom_chains = b.read(1)?;
            if structure_present {
                self.read_structure(&mut b)?;
            }
        }
        if self.count == 0 {
            return None;
        }
        let index = usize::from(template_id.wrapping_sub(self.offset) % MAX_TEMPLATES as u8);
        if index >= usize::from(self.count) {
            return None;
        }
        let t = self.templates[index];
        Some(FrameLayers {
            sid: t.sid,
            tid: t.tid,
            switch_up: t.switch_up,
            end_of_frame,
            spatial_layers: self.spatial_layers,
            temporal_layers: self.temporal_layers,
        })
    }

    /// `template_dependency_structure()` up to the template DTIs. Leaves the stream as it
    /// was when the structure is malformed.
    fn read_structure(&mut self, b: &mut Bits<'_>) -> Option<()> {
        let offset = b.read(6)? as u8;
        let dt_count = b.read(5)? as usize + 1;
        let mut templates = [Template::default(); MAX_TEMPLATES];
        let (mut count, mut sid, mut tid) = (0usize, 0u8, 0u8);
        loop {
            if count == MAX_TEMPLATES {
                return None;
            }
            templates[count] = Template {
                sid,
                tid,
                switch_up: false,
            };
            count += 1;
            match b.read(2)? {
                0 => {}
                1 => tid = tid.checked_add(1)?,
                2 => {
                    tid = 0;
                    sid = sid.checked_add(1)?;
                }
                _ => break,
            }
        }
        // Each decode target's top temporal layer: the highest of the templates it uses.
        let mut dtis = [[0u8; MAX_DECODE_TARGETS]; MAX_TEMPLATES];
        let mut dt_tid = [0u8; MAX_DECODE_TARGETS];
        for (t, row) in templates.iter().zip(dtis.iter_mut()).take(count) {
            for (dt, dti) in row.iter_mut().enumerate().take(dt_count) {
                *dti = b.read(2)? as u8;
                if *dti != 0 {
                    dt_tid[dt] = dt_tid[dt].max(t.tid);
                }
            }
        }
        for (t, row) in templates.iter_mut().zip(dtis.iter()).take(count) {
            t.switch_up = (0..dt_count).any(|dt| dt_tid[dt] > t.tid && row[dt] == DTI_SWITCH);
        }
        let top = |f: fn(&Template) -> u8| templates[..count].iter().map(f).max().unwrap_or(0);
        self.spatial_layers = top(|t| t.sid) + 1;
        self.temporal_layers = top(|t| t.tid) + 1;
        self.offset = offset;
        self.count = count as u8;
        self.templates = templates;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MSB-first bit writer for building descriptors.
    #[derive(Default)]
    struct W {
        bytes: Vec<u8>,
        bits: usize,
    }

    impl W {
        fn put(&mut self, n: u32, v: u32) -> &mut Self {
            for i in (0..n).rev() {
                if self.bits.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let bit = ((v >> i) & 1) as u8;
                *self.bytes.last_mut().unwrap() |= bit << (7 - self.bits % 8);
                self.bits += 1;
            }
            self
        }
    }

    /// libwebrtc's L1T3 structure: templates T0, T0, T1, T2, T2 with DTIs (decode targets
    /// T0, T0-1, T0-2) SSS, SSS, -DS, --D, --D.
    fn l1t3_keyframe(template_id: u32) -> Vec<u8> {
        let mut w = W::default();
        w.put(1, 1).put(1, 1).put(6, template_id).put(16, 100);
        w.put(1, 1).put(1, 0).put(1, 0).put(1, 0).put(1, 0); // structure present
                                                             // Offset 0, 3 decode targets; layers T0, T0, (next temporal) T1, (next temporal) T2,
                                                             // T2, end.
        w.put(6, 0).put(5, 2);
        w.put(2, 0).put(2, 1).put(2, 1).put(2, 0).put(2, 3);
        for dtis in [[2, 2, 2], [2, 2, 2], [0, 1, 2], [0, 0, 1], [0, 0, 1]] {
            for d in dtis {
                w.put(2, d);
            }
        }
        w.put(8, 0); // fdiffs, chains, … not read
        w.bytes
    }

    fn frame(template_id: u32, start: bool, end: bool) -> Vec<u8> {
        let mut w = W::default();
        w.put(1, start as u32)
            .put(1, end as u32)
            .put(6, template_id)
            .put(16, 7);
        w.bytes
    }

    #[test]
    fn l1t3_frames_get_their_temporal_layer_and_switching_points() {
        let mut s = Av1Stream::default();
        assert_eq!(
            s.on_descriptor(&frame(2, true, true)),
            None,
            "no structure yet"
        );
        let key = s.on_descriptor(&l1t3_keyframe(0)).unwrap();
        assert_eq!((key.sid, key.tid, key.switch_up), (0, 0, true));
        assert_eq!((key.spatial_layers, key.temporal_layers), (1, 3));
        let t1 = s.on_descriptor(&frame(2, true, false)).unwrap();
        assert_eq!((t1.tid, t1.switch_up, t1.end_of_frame), (1, true, false));
        let t2 = s.on_descriptor(&frame(3, false, true)).unwrap();
        assert_eq!((t2.tid, t2.switch_up, t2.end_of_frame), (2, false, true));
        assert_eq!(s.on_descriptor(&frame(4, true, true)).unwrap().tid, 2);
        assert_eq!(s.on_descriptor(&frame(1, true, true)).unwrap().tid, 0);
        // A template the structure does not have.
        assert_eq!(s.on_descriptor(&frame(9, true, true)), None);
    }

    #[test]
    fn truncated_or_random_descriptors_never_panic_or_break_the_stream() {
        let mut s = Av1Stream::default();
        s.on_descriptor(&l1t3_keyframe(0)).unwrap();
        let key = l1t3_keyframe(0);
        for cut in 0..key.len() {
            let _ = s.on_descriptor(&key[..cut]);
        }
        assert_eq!(s.on_descriptor(&frame(2, true, true)).unwrap().tid, 1);
        let mut rng = fastrand::Rng::with_seed(3);
        let mut buf = [0u8; 40];
        for _ in 0..100_000 {
            let len = rng.usize(0..buf.len());
            rng.fill(&mut buf[..len]);
            if let Some(f) = s.on_descriptor(&buf[..len]) {
                assert!(f.sid < f.spatial_layers && f.tid < f.temporal_layers);
            }
        }
    }
}
