//! Simulcast layer choice.
//!
//! - [`LayerMonitor`], one per published video track: per-layer bitrate and liveness, measured
//!   from the packets that arrive (a layer silent for `dead_after` is not arriving).
//! - [`LayerSelector`], one per video subscription: picks a target layer from the preference,
//!   the subscription's bandwidth budget and the arriving layers, and filters packets; it
//!   switches only on a keyframe of the target layer and says when it needs one.
//! - [`LayerAllocator`], one call per subscriber when its estimate changes: splits the
//!   downlink estimate across its video subscriptions into per-subscription budgets.
//!
//! "Audio first": audio is never layer-filtered and never goes through a selector. The
//! allocator subtracts the subscriber's audio bitrate from the estimate before any video is
//! placed, so congestion takes video down a layer (or to its lowest) before audio suffers.
//!
//! SVC streams (one SSRC, layers inside) use the same selector and allocator: `vp9.rs` maps a
//! layer choice to a (spatial, temporal) ceiling, the monitor then prices a choice cumulatively
//! and the filter reports the choice it reached (`LayerSelector::set_current`).
//!
//! Layer 0 is the lowest quality. Owns: the switching policy and its hysteresis. Must never:
//! read the clock, allocate on the per-packet path, or forward two layers of one track to one
//! subscription.

use std::time::{Duration, Instant};

/// Most simulcast layers a track can have.
pub const MAX_LAYERS: usize = 3;

/// What the subscriber asked for (highest layer, hidden = paused): the node API's type.
pub use crate::api::LayerPreference;

/// Switching policy knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerConfig {
    /// A layer whose last packet is older than this is not arriving.
    pub dead_after: Duration,
    /// Bitrate measurement window.
    pub window: Duration,
    /// Keep the current layer while budget >= bitrate * down_headroom / 100; below, go down
    /// at once.
    pub down_headroom_pct: u32,
    /// Go up only when budget >= bitrate(next) * up_margin / 100 ...
    pub up_margin_pct: u32,
    /// ... continuously for this long.
    pub up_hold: Duration,
    /// The lowest layer is not paused while budget >= its bitrate * keep_lowest / 100.
    pub keep_lowest_pct: u32,
}

impl Default for LayerConfig {
    fn default() -> Self {
        LayerConfig {
            dead_after: Duration::from_secs(1),
            window: Duration::from_millis(500),
            // A congested downlink's TWCC estimate lags above what it carries (a 400 kbit/s
            // link read ~600 kbit/s while a 500 kbit/s layer overflowed it in the simulated
            // call): keep 15% headroom so the current layer is left before it saturates.
            down_headroom_pct: 115,
            up_margin_pct: 125,
            up_hold: Duration::from_secs(1),
            // After every decrease a GCC estimate sits at 0.85x what got through, so a link
            // that carries the lowest layer and audio with little to spare reads as an
            // estimate up to 15% under their sum (tests/e2e/downlink.rs: a 360 kbit/s cap,
            // the quarter layer with RED audio, estimates of 240-270 kbit/s). Pausing at
            // 100% froze a video that link carried (CI, 2026-12-07). A link that cannot
            // carry the layer keeps overusing, its estimate falls further, and the pause
            // follows.
            keep_lowest_pct: 85,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct LayerStat {
    last_seen: Option<Instant>,
    window_start: Option<Instant>,
    window_bytes: u64,
    bitrate_bps: u64,
}

/// Per published track: what each layer costs and whether it is arriving.
#[derive(Debug, Clone)]
pub struct LayerMonitor {
    cfg: LayerConfig,
    layers: [LayerStat; MAX_LAYERS],
    /// SVC: layer `l` is forwarded with every layer below it, so it costs their sum.
    cumulative: bool,
}

impl LayerMonitor {
    pub fn new(cfg: LayerConfig) -> Self {
        LayerMonitor {
            cfg,
            layers: [LayerStat::default(); MAX_LAYERS],
            cumulative: false,
        }
    }

    /// Count one received packet (payload plus header bytes) of `layer`.
    pub fn on_packet(&mut self, now: Instant, layer: u8, bytes: usize) {
        let Some(l) = self.layers.get_mut(usize::from(layer)) else {
            return;
        };
        l.last_seen = Some(now);
        let start = *l.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= self.cfg.window * 2 {
            // The layer paused: a window spanning the gap would under-report it. Start over
            // and keep the last rate until a full window is measured.
            l.window_start = Some(now);
            l.window_bytes = 0;
        } else if elapsed >= self.cfg.window {
            let us = elapsed.as_micros().max(1) as u64;
            l.bitrate_bps = l.window_bytes.saturating_mul(8_000_000) / us;
            l.window_start = Some(now);
            l.window_bytes = 0;
        }
        l.window_bytes = l.window_bytes.saturating_add(bytes as u64);
    }

    /// Set a layer's bitrate directly (e.g. from the publisher's signalled encodings), for the
    /// first window before measurements exist; until then a layer costs 0 and fits any budget.
    pub fn set_bitrate(&mut self, layer: u8, bps: u64) {
        if let Some(l) = self.layers.get_mut(usize::from(layer)) {
            l.bitrate_bps = bps;
        }
    }

    /// The track is SVC (one stream, `on_packet` counts each packet under the lowest layer
    /// choice that includes it): a layer's bitrate is then its own plus every one below.
    pub fn set_cumulative(&mut self, cumulative: bool) {
        self.cumulative = cumulative;
    }

    /// Last measured bitrate of `layer` (0 when unknown), with the layers below in SVC.
    pub fn bitrate(&self, layer: u8) -> u64 {
        let Some(own) = self.layers.get(usize::from(layer)) else {
            return 0;
        };
        // Unmeasured stays unknown (0) in SVC too, so a choice is not priced by its lower
        // layers alone before its own packets were counted.
        if !self.cumulative || own.bitrate_bps == 0 {
            return own.bitrate_bps;
        }
        self.layers[..=usize::from(layer)]
            .iter()
            .map(|l| l.bitrate_bps)
            .sum()
    }

    pub fn is_arriving(&self, now: Instant, layer: u8) -> bool {
        self.layers.get(usize::from(layer)).is_some_and(|l| {
            l.last_seen
                .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.dead_after)
        })
    }

    /// The layers as the selectors see them at `now`.
    pub fn view(&self, now: Instant) -> LayerView {
        let mut v = LayerView::default();
        for i in 0..MAX_LAYERS {
            v.arriving[i] = self.is_arriving(now, i as u8);
            v.bitrate_bps[i] = self.bitrate(i as u8);
        }
        v
    }
}

/// What a selector reads of a track's layers at one instant (arriving, bitrate), taken once
/// per packet and shared by every subscription of the fan-out, so that hundreds of copies do
/// not each re-read the monitor and compare its clocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerView {
    arriving: [bool; MAX_LAYERS],
    bitrate_bps: [u64; MAX_LAYERS],
}

impl LayerView {
    fn is_arriving(&self, layer: u8) -> bool {
        self.arriving
            .get(usize::from(layer))
            .copied()
            .unwrap_or(false)
    }

    fn bitrate(&self, layer: u8) -> u64 {
        self.bitrate_bps
            .get(usize::from(layer))
            .copied()
            .unwrap_or(0)
    }
}

/// What to do with one packet of the subscribed track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Forward,
    /// Forward, and it is the first packet of a new layer or of a resume: start a new
    /// rewrite segment (`StreamRewriter::rewrite(.., switch = true)`).
    ForwardSwitched,
}

/// Per video subscription. See the module docs.
#[derive(Debug, Clone)]
pub struct LayerSelector {
    cfg: LayerConfig,
    pref: LayerPreference,
    budget_bps: Option<u64>,
    current: Option<u8>,
    target: Option<u8>,
    /// Since when some higher layer has been affordable with margin.
    up_since: Option<Instant>,
    /// The budget cannot carry even the lowest arriving layer: video is paused (audio goes
    /// on) until it can again, with margin, for `up_hold`.
    bandwidth_paused: bool,
    /// Since when the lowest layer has been affordable with margin again, while paused.
    resume_since: Option<Instant>,
    /// Since when the budget has been below the lowest layer, while not paused: a dip
    /// shorter than `up_hold` (a probe's overshoot, one lossy report) does not pause.
    below_since: Option<Instant>,
    /// Whether the budget may pause the video (see `set_may_pause`).
    may_pause: bool,
}

impl LayerSelector {
    pub fn new(cfg: LayerConfig) -> Self {
        LayerSelector {
            cfg,
            pref: LayerPreference::default(),
            budget_bps: None,
            current: None,
            target: None,
            up_since: None,
            bandwidth_paused: false,
            resume_since: None,
            below_since: None,
            may_pause: true,
        }
    }

    /// Whether a budget below the lowest layer may pause the video. Only when the budget
    /// comes from an estimate that can recover while nothing is sent (transport-cc feedback,
    /// which the padding probes feed): a receiver-side estimate (REMB) or a loss-based one
    /// only moves while packets flow, so pausing on it could never end. Without it the
    /// lowest layer flows whatever the budget says.
    pub fn set_may_pause(&mut self, may: bool) {
        self.may_pause = may;
        if !may {
            self.bandwidth_paused = false;
            self.below_since = None;
            self.resume_since = None;
        }
    }

    /// Video is paused because the budget cannot carry the lowest layer.
    pub fn paused_for_bandwidth(&self) -> bool {
        self.bandwidth_paused
    }

    pub fn set_preference(&mut self, pref: LayerPreference) {
        self.pref = pref;
    }

    /// Forget the forwarded layer (a new outgoing stream, an unmute): the next packet that
    /// passes is a keyframe of the target and starts a new segment.
    pub fn restart(&mut self) {
        self.current = None;
        self.up_since = None;
    }

    /// Video budget for this subscription (the allocator's share, or the whole estimate minus
    /// audio); `None` = no estimate yet, no constraint.
    pub fn set_budget(&mut self, bps: Option<u64>) {
        self.budget_bps = bps;
    }

    /// The layer being forwarded (`None` = nothing yet, or paused).
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    pub fn target(&self) -> Option<u8> {
        self.target
    }

    /// SVC (`vp9::SvcFilter`): the layers of one stream are not switched by this selector's
    /// verdict but by the filter, at the stream's own switching points; it reports here the
    /// layer choice it now forwards, so targets, hysteresis and keyframe requests go on.
    pub fn set_current(&mut self, layer: Option<u8>) {
        self.current = layer;
    }

    /// The layer a keyframe is needed on, while a switch is pending. Ask every time a packet
    /// arrives or a timer fires; the `KeyframeRequestCoalescer` keeps the rate down.
    pub fn keyframe_needed(&self) -> Option<u8> {
        match self.target {
            Some(t) if self.current != Some(t) => Some(t),
            _ => None,
        }
    }

    /// Re-evaluate the target (call on budget or preference changes and on a timer; it is
    /// also done on every packet).
    pub fn update(&mut self, now: Instant, mon: &LayerMonitor) {
        self.update_with(now, &mon.view(now));
    }

    /// [`LayerSelector::update`] on a view taken at `now`.
    pub fn update_with(&mut self, now: Instant, mon: &LayerView) {
        if !self.pref.visible {
            // Pausing needs no keyframe: stop at once.
            self.target = None;
            self.current = None;
            self.up_since = None;
            return;
        }
        let top = MAX_LAYERS as u8 - 1;
        let cap = self.pref.max_layer.map_or(top, |m| m.min(top));
        let arriving = |l: u8| mon.is_arriving(l);
        // Under a budget a layer not measured yet does not fit (the lowest arriving layer is
        // taken anyway): start low and go up once its cost is known, as the allocator does.
        let fits = |l: u8, pct: u32| match self.budget_bps {
            None => true,
            Some(b) => {
                let bps = mon.bitrate(l);
                bps > 0 && u128::from(bps) * u128::from(pct) <= u128::from(b) * 100
            }
        };
        let Some(lowest) = (0..=cap).find(|&l| arriving(l)) else {
            // Nothing arriving: keep what we have; we switch when something comes back.
            self.up_since = None;
            return;
        };
        // Not even the lowest layer fits (a measured layer, the whole budget, with
        // `keep_lowest_pct`) for `up_hold`:
        // pause the video rather than overflow the link; resume once it fits with margin for
        // `up_hold` again.
        if self.bandwidth_paused {
            if fits(lowest, self.cfg.up_margin_pct) {
                let since = *self.resume_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= self.cfg.up_hold {
                    self.bandwidth_paused = false;
                    self.resume_since = None;
                    self.current = None;
                    self.target = Some(lowest);
                }
            } else {
                self.resume_since = None;
            }
            if self.bandwidth_paused {
                self.target = None;
                self.current = None;
                return;
            }
        } else if self.may_pause
            && mon.bitrate(lowest) > 0
            && !fits(lowest, self.cfg.keep_lowest_pct)
        {
            let since = *self.below_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= self.cfg.up_hold {
                self.bandwidth_paused = true;
                self.below_since = None;
                self.resume_since = None;
                self.target = None;
                self.current = None;
                self.up_since = None;
                return;
            }
        } else {
            self.below_since = None;
        }
        // Best affordable layer at or below `max` (the lowest arriving if none is).
        let best_below = |max: u8| {
            (lowest..=max)
                .rev()
                .find(|&l| arriving(l) && fits(l, self.cfg.down_headroom_pct))
                .unwrap_or(lowest)
        };
        let current = match self.current {
            Some(c) if c <= cap && arriving(c) => c,
            // Start, resume, cap lowered, or the current layer stopped: best one now.
            _ => {
                self.target = Some(best_below(cap));
                self.up_since = None;
                return;
            }
        };
        if !fits(current, self.cfg.down_headroom_pct) {
            // Down promptly.
            self.target = Some(best_below(current.saturating_sub(1).max(lowest)));
            self.up_since = None;
            return;
        }
        let up = (current + 1..=cap)
            .rev()
            .find(|&l| arriving(l) && fits(l, self.cfg.up_margin_pct));
        match up {
            Some(u) => {
                let since = *self.up_since.get_or_insert(now);
                let held = now.saturating_duration_since(since) >= self.cfg.up_hold;
                self.target = Some(if held { u } else { current });
            }
            None => {
                // Also cancels a pending up-switch that is no longer affordable.
                self.up_since = None;
                self.target = Some(current);
            }
        }
    }

    /// Decide for one packet of `layer`; `keyframe` = it starts a keyframe of that layer.
    pub fn on_packet(
        &mut self,
        now: Instant,
        mon: &LayerMonitor,
        layer: u8,
        keyframe: bool,
    ) -> Verdict {
        self.on_packet_with(now, &mon.view(now), layer, keyframe)
    }

    /// [`LayerSelector::on_packet`] on a view of the track's layers taken at `now` (once for
    /// the whole fan-out of the packet).
    pub fn on_packet_with(
        &mut self,
        now: Instant,
        mon: &LayerView,
        layer: u8,
        keyframe: bool,
    ) -> Verdict {
        self.update_with(now, mon);
        let Some(target) = self.target else {
            return Verdict::Drop;
        };
        if self.current == Some(target) {
            return if layer == target {
                Verdict::Forward
            } else {
                Verdict::Drop
            };
        }
        if layer == target && keyframe {
            self.current = Some(target);
            return Verdict::ForwardSwitched;
        }
        // Keep sending the current layer until the target's keyframe shows up.
        if self.current == Some(layer) {
            Verdict::Forward
        } else {
            Verdict::Drop
        }
    }
}

/// One video subscription of a subscriber, as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoDemand {
    pub pref: LayerPreference,
    /// Bitrate per layer, 0 for a layer that is not arriving.
    pub layer_bps: [u64; MAX_LAYERS],
}

/// Splits one subscriber's downlink estimate across its video subscriptions.
#[derive(Debug, Clone, Copy)]
pub struct LayerAllocator {
    /// Must match the selectors' `up_margin_pct` so a granted layer is also one they take.
    pub margin_pct: u32,
}

impl Default for LayerAllocator {
    fn default() -> Self {
        LayerAllocator {
            margin_pct: LayerConfig::default().up_margin_pct,
        }
    }
}

impl LayerAllocator {
    /// Write each demand's budget into `out` (same length as `demands`). Audio is taken off
    /// the top. Visible subscriptions are served in preference order (a higher `max_layer`
    /// first, then the order given): everyone gets its lowest arriving layer before anyone
    /// goes up, then layers are added one step at a time, round robin. Leftover budget is
    /// shared evenly so selectors keep headroom. Hidden ones get 0. Not on the packet path.
    pub fn allocate(
        &self,
        estimate_bps: u64,
        audio_bps: u64,
        demands: &[VideoDemand],
        out: &mut [u64],
    ) {
        let n = demands.len().min(out.len());
        out[..n].fill(0);
        let mut avail = estimate_bps.saturating_sub(audio_bps);
        let cost = |bps: u64| bps.saturating_mul(u64::from(self.margin_pct)) / 100;
        let mut order: Vec<usize> = (0..n).filter(|&i| demands[i].pref.visible).collect();
        let rank = |i: usize| demands[i].pref.max_layer.map_or(u16::MAX, u16::from);
        order.sort_by_key(|&i| std::cmp::Reverse(rank(i)));
        let cap = |d: &VideoDemand| {
            d.pref
                .max_layer
                .map_or(MAX_LAYERS - 1, |m| usize::from(m).min(MAX_LAYERS - 1))
        };
        let mut level: Vec<Option<usize>> = vec![None; n];
        loop {
            let mut progressed = false;
            for &i in &order {
                let d = &demands[i];
                let from = level[i].map_or(0, |l| l + 1);
                let Some(next) = (from..=cap(d)).find(|&l| d.layer_bps[l] > 0) else {
                    continue;
                };
                let have = level[i].map_or(0, |l| cost(d.layer_bps[l]));
                let extra = cost(d.layer_bps[next]).saturating_sub(have);
                if extra <= avail {
                    avail -= extra;
                    level[i] = Some(next);
                    out[i] = cost(d.layer_bps[next]);
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        if !order.is_empty() {
            let share = avail / order.len() as u64;
            for &i in &order {
                out[i] += share;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_millis(20);
    /// Typical 3-layer simulcast: 150 kbps, 500 kbps, 1.5 Mbps.
    const RATES: [u64; 3] = [150_000, 500_000, 1_500_000];

    /// A virtual publisher: every 20 ms one packet per arriving layer, a keyframe on a layer
    /// when someone asked for it (the next packet of that layer).
    struct Sim {
        now: Instant,
        mon: LayerMonitor,
        sel: LayerSelector,
        arriving: [bool; 3],
        forwarded: Vec<(u8, Verdict)>,
    }

    impl Sim {
        fn new() -> Self {
            Sim {
                now: Instant::now(),
                mon: LayerMonitor::new(LayerConfig::default()),
                sel: LayerSelector::new(LayerConfig::default()),
                arriving: [true; 3],
                forwarded: Vec::new(),
            }
        }

        fn run(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.now += STEP;
                let wanted = self.sel.keyframe_needed();
                for l in 0..3u8 {
                    if !self.arriving[l as usize] {
                        continue;
                    }
                    let bytes = (RATES[l as usize] / 8 / 50) as usize;
                    self.mon.on_packet(self.now, l, bytes);
                    let v = self
                        .sel
                        .on_packet(self.now, &self.mon, l, wanted == Some(l));
                    if v != Verdict::Drop {
                        self.forwarded.push((l, v));
                    }
                }
            }
        }

        /// Layers of the last 5 forwarded packets (100 ms).
        fn recent_layers(&self) -> Vec<u8> {
            let mut v: Vec<u8> = self.forwarded.iter().rev().take(5).map(|f| f.0).collect();
            v.dedup();
            v
        }
    }

    #[test]
    fn monitor_measures_bitrate_and_liveness() {
        let mut s = Sim::new();
        s.run(Duration::from_secs(2));
        for l in 0..3u8 {
            let b = s.mon.bitrate(l);
            assert!(
                b * 100 / RATES[l as usize] >= 95 && b * 100 / RATES[l as usize] <= 105,
                "{b}"
            );
            assert!(s.mon.is_arriving(s.now, l));
        }
        assert!(!s.mon.is_arriving(s.now + Duration::from_millis(1100), 0));
        // A layer back after a pause keeps its rate instead of reporting the gap as a trickle.
        s.arriving = [false, false, true];
        s.run(Duration::from_secs(3));
        s.arriving = [true; 3];
        s.run(Duration::from_millis(200));
        let b = s.mon.bitrate(0);
        assert!(b * 100 / RATES[0] >= 95 && b * 100 / RATES[0] <= 105, "{b}");
        assert!(!s.mon.is_arriving(s.now, 7));
    }

    #[test]
    fn starts_on_a_keyframe_of_the_best_layer_and_forwards_only_it() {
        let mut s = Sim::new();
        s.run(STEP);
        assert_eq!(s.sel.target(), Some(2));
        s.run(Duration::from_secs(1));
        assert_eq!(s.forwarded[0], (2, Verdict::ForwardSwitched));
        assert!(s.forwarded[1..].iter().all(|f| *f == (2, Verdict::Forward)));
        assert_eq!(s.sel.keyframe_needed(), None);
    }

    #[test]
    fn bandwidth_drop_switches_down_promptly_and_recovery_waits_for_hold() {
        let mut s = Sim::new();
        s.run(Duration::from_secs(2));
        assert_eq!(s.sel.current(), Some(2));
        s.sel.set_budget(Some(600_000));
        let drop_at = s.now;
        s.run(STEP);
        assert_eq!(s.sel.target(), Some(1));
        s.run(Duration::from_millis(200));
        assert_eq!(s.sel.current(), Some(1));
        assert!(s.now - drop_at < Duration::from_secs(1));
        assert_eq!(s.recent_layers(), vec![1]);
        // Exactly one switch packet, and the old layer until then.
        let n = s
            .forwarded
            .iter()
            .filter(|f| f.1 == Verdict::ForwardSwitched)
            .count();
        assert_eq!(n, 2);
        // Recovery: the estimate is back, but the switch up waits for the hold time.
        s.sel.set_budget(Some(3_000_000));
        s.run(Duration::from_millis(600));
        assert_eq!(s.sel.current(), Some(1));
        s.run(Duration::from_millis(600));
        assert_eq!(s.sel.current(), Some(2));
        assert_eq!(s.recent_layers(), vec![2]);
    }

    #[test]
    fn a_flapping_estimate_does_not_oscillate() {
        let mut s = Sim::new();
        s.sel.set_budget(Some(700_000));
        s.run(Duration::from_secs(2));
        assert_eq!(s.sel.current(), Some(1));
        s.forwarded.clear();
        // Above the next layer for 500 ms, below for 100 ms, repeatedly: never held 1 s.
        for _ in 0..10 {
            s.sel.set_budget(Some(2_000_000));
            s.run(Duration::from_millis(500));
            s.sel.set_budget(Some(700_000));
            s.run(Duration::from_millis(100));
        }
        assert!(s.forwarded.iter().all(|f| f.0 == 1));
        // Just above the layer's bitrate but under the margin: no up-switch either.
        s.sel.set_budget(Some(1_700_000));
        s.run(Duration::from_secs(3));
        assert_eq!(s.sel.current(), Some(1));
    }

    #[test]
    fn a_layer_that_stops_is_replaced_at_the_next_keyframe() {
        let mut s = Sim::new();
        s.run(Duration::from_secs(1));
        assert_eq!(s.sel.current(), Some(2));
        s.arriving[2] = false;
        s.run(Duration::from_millis(900));
        assert_eq!(s.sel.current(), Some(2), "not yet declared dead");
        s.run(Duration::from_millis(300));
        assert_eq!(s.sel.current(), Some(1));
        assert_eq!(s.recent_layers(), vec![1]);
        // It comes back: up again after the hold, on its keyframe.
        s.arriving[2] = true;
        s.run(Duration::from_millis(1500));
        assert_eq!(s.sel.current(), Some(2));
    }

    #[test]
    fn hidden_pauses_at_once_and_resume_restarts_on_a_keyframe() {
        let mut s = Sim::new();
        s.run(Duration::from_secs(1));
        s.sel.set_preference(LayerPreference {
            max_layer: Some(1),
            visible: false,
        });
        let before = s.forwarded.len();
        s.run(Duration::from_secs(1));
        assert_eq!(s.forwarded.len(), before);
        assert_eq!(s.sel.keyframe_needed(), None);
        s.sel.set_preference(LayerPreference {
            max_layer: Some(1),
            visible: true,
        });
        s.run(Duration::from_millis(100));
        assert_eq!(s.forwarded[before], (1, Verdict::ForwardSwitched));
        assert!(s.forwarded[before + 1..]
            .iter()
            .all(|f| *f == (1, Verdict::Forward)));
    }

    #[test]
    fn max_layer_caps_and_an_unaffordable_lowest_layer_pauses_until_it_fits() {
        let mut s = Sim::new();
        s.sel.set_preference(LayerPreference {
            max_layer: Some(0),
            visible: true,
        });
        s.sel.set_budget(Some(1_000_000));
        s.run(Duration::from_secs(2));
        assert_eq!(s.recent_layers(), vec![0], "capped at the lowest layer");
        // 10% under the lowest layer (150 kbps) keeps it: a GCC estimate sits up to 15%
        // under what the link carries.
        s.sel.set_budget(Some(135_000));
        s.run(Duration::from_secs(3));
        assert!(!s.sel.paused_for_bandwidth(), "within keep_lowest_pct");
        assert_eq!(s.sel.current(), Some(0));
        // The budget cannot carry even the lowest layer (150 kbps): video goes on for a
        // moment (a dip may pass), then pauses.
        s.sel.set_budget(Some(100_000));
        s.run(Duration::from_millis(500));
        assert!(!s.sel.paused_for_bandwidth(), "not on a short dip");
        assert_eq!(s.sel.current(), Some(0));
        s.run(Duration::from_secs(1));
        assert!(s.sel.paused_for_bandwidth());
        assert_eq!(s.sel.current(), None);
        let before = s.forwarded.len();
        s.run(Duration::from_secs(2));
        assert_eq!(s.forwarded.len(), before, "nothing forwarded while paused");
        // Just enough is not enough: resuming needs the up margin (125%) ...
        s.sel.set_budget(Some(160_000));
        s.run(Duration::from_secs(2));
        assert!(s.sel.paused_for_bandwidth());
        // ... held for `up_hold`; then it resumes on a keyframe, in a new segment.
        s.sel.set_budget(Some(200_000));
        s.run(Duration::from_millis(500));
        assert!(s.sel.paused_for_bandwidth(), "not before the hold");
        s.run(Duration::from_secs(1));
        assert!(!s.sel.paused_for_bandwidth());
        assert_eq!(
            s.forwarded.get(before).copied(),
            Some((0, Verdict::ForwardSwitched))
        );
        assert_eq!(s.sel.current(), Some(0));
    }

    #[test]
    fn without_a_recoverable_estimate_the_lowest_layer_flows_whatever_the_budget() {
        // A REMB-only or loss-only budget cannot grow while nothing is sent: never pause on it.
        let mut s = Sim::new();
        s.sel.set_may_pause(false);
        s.sel.set_budget(Some(30_000));
        s.run(Duration::from_secs(3));
        assert!(!s.sel.paused_for_bandwidth());
        assert_eq!(s.recent_layers(), vec![0], "the lowest layer, not nothing");
        // Allowed again (transport-cc appeared): the same budget pauses after the hold ...
        s.sel.set_may_pause(true);
        s.run(Duration::from_secs(2));
        assert!(s.sel.paused_for_bandwidth());
        // ... and taking the permission away resumes at once.
        s.sel.set_may_pause(false);
        s.run(Duration::from_millis(200));
        assert!(!s.sel.paused_for_bandwidth());
    }

    #[test]
    fn under_a_budget_unmeasured_layers_wait_and_restart_waits_for_a_keyframe() {
        let mut s = Sim::new();
        s.sel.set_budget(Some(10_000_000));
        s.run(STEP);
        // Nothing measured yet: however large the budget, start on the lowest layer ...
        assert_eq!(s.sel.target(), Some(0));
        s.run(STEP);
        assert_eq!(s.forwarded[0], (0, Verdict::ForwardSwitched));
        // ... and climb once the costs are known and the hold has passed.
        s.run(Duration::from_secs(2));
        assert_eq!(s.sel.current(), Some(2));
        // A restart (new outgoing stream, unmute) forwards nothing until a keyframe of the
        // target, which then opens a new segment.
        s.sel.restart();
        assert_eq!(s.sel.current(), None);
        assert_eq!(s.sel.keyframe_needed(), Some(2));
        let v = s.sel.on_packet(s.now, &s.mon, 2, false);
        assert_eq!(v, Verdict::Drop);
        let v = s.sel.on_packet(s.now, &s.mon, 2, true);
        assert_eq!(v, Verdict::ForwardSwitched);
        assert_eq!(s.sel.keyframe_needed(), None);
    }

    #[test]
    fn allocator_serves_audio_first_then_preference_order() {
        let a = LayerAllocator::default();
        let d = |max: Option<u8>, visible| VideoDemand {
            pref: LayerPreference {
                max_layer: max,
                visible,
            },
            layer_bps: RATES,
        };
        let demands = [d(Some(0), true), d(None, true), d(Some(2), false)];
        let mut out = [0u64; 3];
        // Plenty: the big tile gets the top layer, the thumbnail its cap, hidden nothing.
        a.allocate(10_000_000, 64_000, &demands, &mut out);
        assert!(out[1] >= RATES[2] * 125 / 100, "{out:?}");
        assert!(out[0] >= RATES[0] * 125 / 100);
        assert_eq!(out[2], 0);
        assert!(out.iter().sum::<u64>() <= 10_000_000 - 64_000);
        // Tight: audio comes off first; the 1st preference gets the step up before the 2nd.
        let demands = [d(Some(1), true), d(None, true)];
        let mut out = [0u64; 2];
        let budget = 74_000 + 2 * RATES[0] * 125 / 100 + (RATES[1] - RATES[0]) * 125 / 100;
        a.allocate(budget, 64_000, &demands, &mut out);
        assert!(out[1] >= RATES[1] * 125 / 100, "{out:?}");
        assert!(out[0] < RATES[1] * 125 / 100, "{out:?}");
        // Budgets feed selectors that then pick the allocated layers.
        for (i, want) in [(0usize, 0u8), (1, 1)] {
            let mut s = Sim::new();
            s.sel.set_preference(demands[i].pref);
            s.sel.set_budget(Some(out[i]));
            s.run(Duration::from_secs(3));
            assert_eq!(s.sel.current(), Some(want));
        }
    }
}
