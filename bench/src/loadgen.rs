//! The floor's load generator: one SRTP stream at a fixed packet rate, paced in 1 ms ticks
//! and sent with sendmmsg. With `frames` set, part of the rate arrives as video does from a
//! real encoder: a frame's packets back to back, `fps` times a second (a forwarder fanning a
//! burst out to many subscribers makes the burst's last packets wait for its first ones; an
//! evenly paced input would hide that), the rest (audio) evenly paced. Each payload carries a probe (send time, sequence). Records what it
//! sent per second and how far it fell behind its schedule (a sign the harness, not the
//! forwarder, is the bottleneck).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shardcast_rtp::rtp::{write_header, ExtIds, HeaderFields, OutExtensions, FIXED_HEADER_LEN};
use shardcast_rtp::srtp::SEAL_SLACK;

use crate::probe;
use crate::srtp::{self, End, Profile};
use crate::udp::{self, SendBatch};

/// What the generator is asked to do.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub target: SocketAddrV4,
    pub rate_pps: u64,
    pub payload: usize,
    pub profile: Profile,
    pub ssrc: u32,
    /// Send `fps * packets` of the rate as bursts of one frame; None: all evenly paced.
    pub frames: Option<Frames>,
}

/// Video-like input: `fps` bursts a second of `packets` packets each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frames {
    pub fps: u32,
    pub packets: u32,
}

/// Packets due `elapsed_us` after the start: whole frames (a frame is due all at once at
/// its start) plus the evenly paced rest of `rate_pps`.
pub fn due_packets(elapsed_us: u64, rate_pps: u64, frames: Option<Frames>) -> u64 {
    match frames {
        None => elapsed_us * rate_pps / 1_000_000,
        Some(f) => {
            let video_pps = u64::from(f.fps) * u64::from(f.packets);
            let rest = rate_pps.saturating_sub(video_pps);
            let frames_due = elapsed_us * u64::from(f.fps) / 1_000_000 + 1;
            frames_due * u64::from(f.packets) + elapsed_us * rest / 1_000_000
        }
    }
}

/// What it did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Packets handed to the kernel per second since the epoch.
    pub sent_per_second: Vec<u64>,
    pub sent: u64,
    /// Packets the kernel refused (counted, not retried).
    pub refused: u64,
    /// Largest shortfall against the schedule, in packets.
    pub max_lag: u64,
}

pub struct LoadGen {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<std::io::Result<LoadReport>>>,
}

impl LoadGen {
    pub fn start(spec: LoadSpec, epoch: Instant, cpu: Option<usize>) -> std::io::Result<LoadGen> {
        let stop = Arc::new(AtomicBool::new(false));
        let socket = udp::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None)?;
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("loadgen".into())
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        crate::pin::pin_current_thread(cpu);
                    }
                    run(&socket, &spec, epoch, &stop)
                })?
        };
        Ok(LoadGen {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) -> std::io::Result<LoadReport> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(report)) => report,
            _ => Err(std::io::Error::other("load generator thread panicked")),
        }
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run(
    socket: &std::net::UdpSocket,
    spec: &LoadSpec,
    epoch: Instant,
    stop: &AtomicBool,
) -> std::io::Result<LoadReport> {
    // The publisher's end: sealed into the send batch, as the floor seals its copies.
    let mut sealer = srtp::session(spec.profile, End::Peer).sealer;
    let mut report = LoadReport::default();
    let mut payload = vec![0x5au8; spec.payload.max(probe::PROBE_LEN)];
    let mut batch = SendBatch::new(256);
    let start = Instant::now();
    let tick = Duration::from_millis(1);
    let mut next_tick = start;
    let mut index: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let due = due_packets((now - start).as_micros() as u64, spec.rate_pps, spec.frames);
        let behind = due.saturating_sub(report.sent + report.refused);
        let frame = spec.frames.map_or(1, |f| u64::from(f.packets));
        // A frame is one burst by design, not lag.
        report.max_lag = report.max_lag.max(behind.saturating_sub(frame));
        // Never burst more than 50 ms worth (or one frame) at once: a stalled harness must
        // not flood.
        let burst = behind.min((spec.rate_pps / 20).max(frame));
        for _ in 0..burst {
            // A bare 12-byte header: the floor reads no extension of its input.
            let fields = HeaderFields {
                marker: false,
                payload_type: 96,
                seq: index as u16,
                timestamp: (index * 3000) as u32,
                ssrc: spec.ssrc,
            };
            let mut header = [0u8; FIXED_HEADER_LEN];
            let no_ext = (OutExtensions::default(), ExtIds::default());
            write_header(&mut header, &fields, &no_ext.0, &no_ext.1)
                .map_err(std::io::Error::other)?;
            probe::write_probe(&mut payload, Instant::now() - epoch, index);
            let max = header.len() + payload.len() + spec.profile.overhead() + SEAL_SLACK;
            let roc = (index >> 16) as u32;
            let sealed = batch.push_with(spec.target, max, |buf| {
                sealer.seal_rtp(&header, &payload, roc, buf).unwrap_or(0)
            });
            if sealed == 0 {
                return Err(std::io::Error::other("the load generator could not seal"));
            }
            index += 1;
            if batch.is_full() {
                flush(&mut batch, socket, epoch, &mut report)?;
            }
        }
        if !batch.is_empty() {
            flush(&mut batch, socket, epoch, &mut report)?;
        }
        next_tick += tick;
        let now = Instant::now();
        if next_tick > now {
            std::thread::sleep(next_tick - now);
        } else {
            next_tick = now;
        }
    }
    Ok(report)
}

fn flush(
    batch: &mut SendBatch,
    socket: &std::net::UdpSocket,
    epoch: Instant,
    report: &mut LoadReport,
) -> std::io::Result<()> {
    let queued = batch.len() as u64;
    let sent = batch.flush(socket)? as u64;
    let second = epoch.elapsed().as_secs() as usize;
    if report.sent_per_second.len() <= second {
        report.sent_per_second.resize(second + 1, 0);
    }
    report.sent_per_second[second] += sent;
    report.sent += sent;
    report.refused += queued - sent;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_paced_without_frames() {
        assert_eq!(due_packets(0, 1000, None), 0);
        assert_eq!(due_packets(1_500, 1000, None), 1);
        assert_eq!(due_packets(1_000_000, 1000, None), 1000);
    }

    #[test]
    fn frames_come_whole_and_the_rest_evenly() {
        let f = Some(Frames {
            fps: 30,
            packets: 6,
        });
        // 230 pps = 30 frames of 6 (180) + 50 evenly paced.
        assert_eq!(due_packets(0, 230, f), 6, "the first frame at once");
        assert_eq!(
            due_packets(33_000, 230, f),
            6 + 1,
            "still one frame, one audio"
        );
        assert_eq!(
            due_packets(33_334, 230, f),
            12 + 1,
            "the second frame whole"
        );
        assert_eq!(due_packets(999_999, 230, f), 30 * 6 + 49);
        // A rate below the frames' own is all frames.
        assert_eq!(due_packets(500_000, 100, f), 16 * 6);
    }
}
