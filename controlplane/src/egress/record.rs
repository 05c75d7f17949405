//! The worker thread of one recording: receives until stopped, holds the first packets
//! until the layout (which streams, which codecs) is known, then feeds the pipeline; finishes
//! the file however the receiving ends.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shardcast_dataplane::node::MediaKind;

use super::pipeline::{Layout, Pipeline, PipelineError};
use super::receiver::{self, Packet};
use super::{Egress, EgressSettings, EgressState};

/// How long a recording waits for a stream the participant publishes before it starts
/// without it.
const LAYOUT_WAIT: Duration = Duration::from_secs(3);
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
/// the codecs are known), finishes the file. `expected`: (video, audio) the participant
/// publishes.
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
    let want_keyframe = std::cell::Cell::new(false);
    let mut pushed = 0u64;
    let start = |packets: &[Packet]| -> Result<Pipeline, PipelineError> {
        let codec = |kind| packets.iter().find(|p| p.kind == kind).map(|p| p.codec);
        let layout = Layout {
            video: codec(MediaKind::Video),
            audio: codec(MediaKind::Audio),
        };
        let path = file.with_extension(layout.container()?.extension());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| PipelineError::Failed(e.to_string()))?;
        }
        let p = Pipeline::start(&settings.gst_launch, layout, &path, egress.dropped.clone())?;
        egress.set(|v| {
            v.file = Some(path.display().to_string());
            if v.state == EgressState::Starting {
                v.state = EgressState::Active;
            }
        });
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
                let all_there = (!expected.0 || has(MediaKind::Video))
                    && (!expected.1 || has(MediaKind::Audio));
                if all_there || now.duration_since(first) >= LAYOUT_WAIT {
                    sink = match start(packets) {
                        Ok(p) => {
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
        || want_keyframe.replace(false),
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
