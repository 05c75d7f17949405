//! The worker thread of one recording: receives until stopped, holds the first packets
//! until the layout (which streams, which codecs) is known, then feeds the pipeline; finishes
//! the file however the receiving ends.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shardcast_dataplane::node::MediaKind;

use str0m::format::Codec;

use super::pipeline::{Layout, Pipeline, PipelineError, Target, HLS_SEGMENT_SECS};
use super::receiver::{self, Packet};
use super::{Egress, EgressKind, EgressSettings, EgressState};
use crate::webhooks::event::EventKind;

/// How long a recording waits for a stream the participant publishes before it starts
/// without it.
/// (A video stream starts at a keyframe, asked for once a second meanwhile: a loaded
/// publisher may take seconds to send one.)
const LAYOUT_WAIT: Duration = Duration::from_secs(5);
/// Packets held while the layout is decided (the first keyframe is among them).
const HOLD_MAX: usize = 4096;

/// Where a recording's packets go: held until the layout is known, then into the pipeline.
enum Sink {
    Holding {
        packets: Vec<Packet>,
        first_at: Option<Instant>,
    },
    Recording(Pipeline),
    Failed(String),
}

/// The worker thread: receives until stopped, records into `file` (its extension added once
/// the codecs are known; for HLS, the directory of the stream), finishes the file.
/// `expected`: (video, audio) the subject publishes.
pub(super) fn record(
    running: receiver::Running,
    egress: &Egress,
    settings: &EgressSettings,
    file: PathBuf,
    expected: (bool, bool),
) -> Result<(), String> {
    let mut sink = Sink::Holding {
        packets: Vec::new(),
        first_at: None,
    };
    let kind = egress.view.lock().unwrap().kind;
    let want_keyframe = std::cell::Cell::new(false);
    // Held without the video the subject publishes: ask for a keyframe until it comes.
    let video_missing = std::cell::Cell::new(expected.0);
    let passthrough = std::cell::Cell::new(false);
    let mut last_keyframe: Option<Instant> = None;
    let mut pushed = 0u64;
    let start = |packets: &[Packet]| -> Result<Pipeline, PipelineError> {
        let codec = |kind| packets.iter().find(|p| p.kind == kind).map(|p| p.codec);
        let layout = Layout {
            video: codec(MediaKind::Video),
            audio: codec(MediaKind::Audio),
        };
        let (target, dir) = match kind {
            EgressKind::Record => {
                let path = file.with_extension(layout.container()?.extension());
                let dir = path.parent().map(PathBuf::from).unwrap_or_default();
                (Target::File(path), dir)
            }
            EgressKind::Hls => (Target::Hls(file.clone()), file.clone()),
        };
        std::fs::create_dir_all(&dir).map_err(|e| PipelineError::Failed(e.to_string()))?;
        let p = Pipeline::start(
            &settings.gst_launch,
            layout,
            &target,
            egress.dropped.clone(),
        )?;
        // H.264 passes through to HLS: its segments start at the publisher's keyframes,
        // asked for once a segment.
        passthrough.set(kind == EgressKind::Hls && layout.video == Some(Codec::H264));
        egress.set(|v| {
            let (Target::File(path) | Target::Hls(path)) = &target;
            v.file = Some(path.display().to_string());
            if kind == EgressKind::Hls {
                v.playlist = Some(format!("/hls/{}/{}/index.m3u8", v.id, egress.key));
            }
            if v.state == EgressState::Starting {
                v.state = EgressState::Active;
            }
        });
        egress.announce(|egress| EventKind::EgressUpdated { egress });
        for packet in packets {
            p.push(packet);
        }
        Ok(p)
    };
    let received = running.run(
        &egress.stop,
        |packet| {
            if let Sink::Holding { packets, first_at } = &mut sink {
                let now = Instant::now();
                let first = *first_at.get_or_insert(now);
                if packets.len() < HOLD_MAX {
                    packets.push(packet);
                }
                let has = |k| packets.iter().any(|p| p.kind == k);
                video_missing.set(expected.0 && !has(MediaKind::Video));
                let all_there = !video_missing.get() && (!expected.1 || has(MediaKind::Audio));
                if all_there || now.duration_since(first) >= LAYOUT_WAIT {
                    sink = match start(packets) {
                        Ok(p) => {
                            video_missing.set(false);
                            want_keyframe.set(true);
                            Sink::Recording(p)
                        }
                        Err(e) => Sink::Failed(e.to_string()),
                    };
                }
                return;
            }
            if let Sink::Recording(p) = &mut sink {
                p.push(&packet);
                pushed += 1;
                if pushed.is_multiple_of(64) {
                    if let Some(e) = p.exited() {
                        egress.stop.store(true, Ordering::Relaxed);
                        sink = Sink::Failed(e);
                    }
                }
            }
        },
        || {
            let due = passthrough.get()
                && last_keyframe.is_none_or(|t| t.elapsed().as_secs() >= HLS_SEGMENT_SECS.into());
            if want_keyframe.replace(false) || due || video_missing.get() {
                last_keyframe = Some(Instant::now());
                return true;
            }
            false
        },
    );
    // Stopped before the layout was decided: record what arrived.
    if let Sink::Holding { packets, .. } = &sink {
        sink = match start(packets) {
            Ok(p) => Sink::Recording(p),
            Err(e) => Sink::Failed(e.to_string()),
        };
    }
    let finished = match sink {
        Sink::Recording(p) => p.finish(settings.finish_timeout).map_err(|e| e.to_string()),
        Sink::Failed(e) => Err(e),
        Sink::Holding { .. } => unreachable!("decided above"),
    };
    match (received, finished) {
        (Ok(()), f) => f,
        // The connection failed; the file has what came before (finished above).
        (Err(e), Ok(())) => Err(format!("recorded until: {e}")),
        (Err(e), Err(f)) => Err(format!("{e}; {f}")),
    }
}
