//! The client pool: hundreds of simulated WebRTC participants (shardcast-client, real
//! ICE/DTLS-SRTP over loopback UDP) on a few harness threads, joined through the server's
//! WebSocket signaling or WHIP/WHEP.
//!
//! Shape:
//! - I/O threads ([`io_thread`]): each owns a set of participants — one non-blocking UDP
//!   socket and one sans-IO `Client` each — and runs one loop: mio poll over its sockets and a
//!   waker, recv until `WouldBlock`, feed the client, drain its output with `send_to`, fire due
//!   timers from a min-heap, sleep until the earliest deadline. A participant lives on thread
//!   `id % threads` for its whole life; nothing about it is shared.
//! - Signaling ([`signal`], [`ws`], [`whip`]): one current-thread tokio runtime on its own
//!   thread, one task per participant. SDP is made and applied only on the owning I/O thread;
//!   the task carries it to and from the server ([`signal::Command`] in, [`signal::ToSignal`]
//!   out).
//!
//! Count-only participants (`JoinSpec::verify == false`): str0m decrypts every SRTP packet in
//! RTP mode whatever we do, so what they skip is the payload parse, the byte-by-byte content
//! check, frame tracking and the latency histogram; they count packets, bytes and sequence
//! gaps only (and so report no layer switches). Verify participants do all of it.
//!
//! Errors (server refuses, ICE never connects, the socket closes, str0m fails) set
//! [`ParticipantState::Failed`] on that participant; the pool never panics on them.
//! Never: touch an address outside loopback by itself (the caller picks `bind_ip` and the
//! server URL), or hold a lock on the packet path (the only locks are on join/leave).

mod io_thread;
mod participant;
mod signal;
mod whip;
mod ws;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use shardcast_client::TimeBase;

use crate::scenario::VideoKind;
pub use participant::new_latency_histogram;
use signal::{Command, ThreadHandle, ToSignal};

/// How the pool's threads run.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Harness I/O threads (at least 1).
    pub threads: usize,
    /// Pin the I/O threads round-robin to these CPUs (the signaling thread too, to the first).
    pub cpus: Option<Vec<usize>>,
    /// Local address of every participant's UDP socket (ephemeral port), e.g. 127.0.0.1.
    pub bind_ip: IpAddr,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            threads: 1,
            cpus: None,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
        }
    }
}

/// How a participant reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signaling {
    /// `/v1/rtc` (docs/PROTOCOL.md): publishes what the spec says and receives every other
    /// participant's tracks through server offers.
    WebSocket,
    /// WHIP (`POST /whip/{room}`) when the spec publishes audio or video, else WHEP
    /// (`POST /whep/{room}`: one recvonly audio + one video m-line, which take the room's
    /// tracks as they are published; an older server's `404 no_publisher` is retried for
    /// 20 s).
    WhipWhep,
}

/// One participant to join.
#[derive(Debug, Clone)]
pub struct JoinSpec {
    /// The scenario group, copied into snapshots.
    pub group: String,
    /// The server, e.g. `http://127.0.0.1:7880`.
    pub base_url: String,
    pub room: String,
    /// An access token for this participant (role and grants decide what it may do).
    pub token: String,
    /// The room password (WebSocket join only; WHIP/WHEP refuse password rooms).
    pub password: Option<String>,
    pub audio: bool,
    pub video: VideoKind,
    /// Count (and with `verify`, check) received media.
    pub subscribe: bool,
    /// Highest simulcast layer asked for on every received video track (WebSocket only).
    pub max_layer: Option<u8>,
    /// Check every payload and record latency; else count only (see the module doc).
    pub verify: bool,
    pub signaling: Signaling,
    /// Negotiate transport-cc (see `scenario::Group::transport_cc`).
    pub transport_cc: bool,
}

/// A participant's handle; stable for the pool's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

/// Where a participant is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantState {
    /// Signaling or ICE/DTLS still in progress.
    Joining,
    /// DTLS connected: media flows.
    Connected,
    /// Stopped by an error (the server refused, ICE never connected, the socket closed...).
    Failed(String),
    /// Left through [`Pool::leave`] or [`Pool::shutdown`].
    Left,
}

/// One participant at one moment. Counters are cumulative since the join.
#[derive(Debug, Clone)]
pub struct ParticipantSnapshot {
    pub id: ParticipantId,
    pub group: String,
    pub state: ParticipantState,
    /// When [`Pool::join`] was called; join time = `first_media - join_started`.
    pub join_started: Instant,
    /// First RTP packet received (subscribers) or DTLS connected (pure publishers).
    pub first_media: Option<Instant>,
    /// RTP packets delivered by str0m (repairs included), all received tracks.
    pub packets_received: u64,
    /// RTP payload bytes of those packets.
    pub bytes_received: u64,
    /// RTP packets this participant's sources sent (audio + every video layer).
    pub packets_sent: u64,
    /// Sequence holes never filled by NACK/RTX, summed over received streams.
    pub lost_after_repair: u64,
    /// Distinct sequence numbers that should have arrived: received (without duplicates)
    /// plus `lost_after_repair`.
    pub expected: u64,
    /// Changes of the received layer (verify participants only: the layer is in the payload).
    pub layer_switches: u64,
    /// One-way latency send → receive in µs on the pool's shared `TimeBase` (verify only).
    pub latency_us: Option<hdrhistogram::Histogram<u64>>,
    /// Received audio / video RTP packets.
    pub audio_packets_received: u64,
    pub video_packets_received: u64,
    /// Received video packets per simulcast layer (verify participants only).
    pub video_packets_per_layer: [u64; 4],
    /// Received video tracks (m-lines that delivered media or were added by the server).
    pub video_tracks: usize,
    /// UDP datagrams and bytes on the wire (STUN, DTLS, SRTP, SRTCP), both ways.
    pub datagrams_received: u64,
    pub datagram_bytes_received: u64,
    pub datagrams_sent: u64,
    pub datagram_bytes_sent: u64,
    /// Datagrams the socket refused to send (buffer full).
    pub send_drops: u64,
}

/// All participants (live, failed and left) and the harness's own CPU.
#[derive(Debug, Clone)]
pub struct PoolSnapshot {
    pub at: Instant,
    pub participants: Vec<ParticipantSnapshot>,
    /// user + sys CPU of the pool's threads (I/O and signaling) since they started, from
    /// /proc/self/task/<tid>/stat.
    pub harness_cpu: Duration,
}

/// The running pool. Dropping it without [`Pool::shutdown`] still stops its threads.
pub struct Pool {
    threads: Vec<ThreadHandle>,
    joins: Vec<JoinHandle<()>>,
    runtime: signal::SignalRuntime,
    tasks: Mutex<HashMap<u64, tokio::sync::mpsc::UnboundedSender<ToSignal>>>,
    next_id: AtomicU64,
    time_base: TimeBase,
}

/// A thread that misses this answering a snapshot is left out of it (and counted as stuck).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);
/// How long `shutdown` lets signaling tasks say goodbye (WS `leave`, WHIP `DELETE`).
const LEAVE_GRACE: Duration = Duration::from_secs(3);

impl Pool {
    /// Starts the I/O threads and the signaling runtime.
    pub fn start(cfg: PoolConfig) -> anyhow::Result<Pool> {
        let n = cfg.threads.max(1);
        let time_base = TimeBase::real();
        let mut threads = Vec::with_capacity(n);
        let mut joins = Vec::with_capacity(n);
        for i in 0..n {
            let cpu = cfg
                .cpus
                .as_ref()
                .filter(|c| !c.is_empty())
                .map(|c| c[i % c.len()]);
            let (handle, join) = io_thread::spawn(i, cpu, cfg.bind_ip, time_base)
                .with_context(|| format!("start pool I/O thread {i}"))?;
            threads.push(handle);
            joins.push(join);
        }
        let cpu = cfg.cpus.as_ref().and_then(|c| c.first().copied());
        let runtime = signal::SignalRuntime::start(cpu).context("start the signaling runtime")?;
        Ok(Pool {
            threads,
            joins,
            runtime,
            tasks: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            time_base,
        })
    }

    /// The clock every participant's send timestamps and latencies are on.
    pub fn time_base(&self) -> TimeBase {
        self.time_base
    }

    /// Starts joining; returns at once. Signaling runs on the pool's runtime, media on the
    /// participant's I/O thread; progress shows in [`Pool::snapshot`].
    pub fn join(&self, spec: JoinSpec) -> ParticipantId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let thread = self.threads[(id as usize) % self.threads.len()].clone();
        let (to_signal, from_pool) = tokio::sync::mpsc::unbounded_channel();
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, to_signal.clone());
        self.runtime
            .spawn_participant(id, spec.clone(), from_pool, thread.clone());
        thread.send(Command::Join {
            id,
            spec: Box::new(spec),
            started: Instant::now(),
            to_signal,
        });
        ParticipantId(id)
    }

    /// Leaves: the WebSocket says `leave` and closes, a WHIP/WHEP session is DELETEd; media
    /// stops at once. The participant stays in snapshots as [`ParticipantState::Left`].
    pub fn leave(&self, id: ParticipantId) {
        let task = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id.0);
        if let Some(task) = task {
            let _ = task.send(ToSignal::Leave);
        }
        self.threads[(id.0 as usize) % self.threads.len()].send(Command::Leave { id: id.0 });
    }

    /// Every participant as it is now, plus the harness's CPU so far.
    pub fn snapshot(&self) -> PoolSnapshot {
        let (tx, rx) = mpsc::channel();
        for t in &self.threads {
            t.send(Command::Snapshot { reply: tx.clone() });
        }
        drop(tx);
        let deadline = Instant::now() + SNAPSHOT_WAIT;
        let mut participants = Vec::new();
        let mut cpu = signal::thread_cpu(self.runtime.tid());
        for t in &self.threads {
            cpu += signal::thread_cpu(t.tid());
        }
        for _ in 0..self.threads.len() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let Ok(part) = rx.recv_timeout(wait) else {
                tracing::warn!("a pool thread did not answer the snapshot in time");
                break;
            };
            participants.extend(part);
        }
        participants.sort_by_key(|p| p.id);
        PoolSnapshot {
            at: Instant::now(),
            participants,
            harness_cpu: cpu,
        }
    }

    /// Leaves everyone, waits for the goodbyes (bounded), stops the threads and returns the
    /// final snapshot.
    pub fn shutdown(mut self) -> PoolSnapshot {
        let ids: Vec<u64> = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect();
        for id in ids {
            self.leave(ParticipantId(id));
        }
        self.runtime.wait_idle(LEAVE_GRACE);
        let snapshot = self.snapshot();
        self.stop_threads();
        snapshot
    }

    fn stop_threads(&mut self) {
        for t in &self.threads {
            t.send(Command::Stop);
        }
        for j in self.joins.drain(..) {
            let _ = j.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop_threads();
    }
}
