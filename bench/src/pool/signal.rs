//! The seam between the pool's I/O threads and its signaling runtime: the messages each way,
//! the handle that wakes an I/O thread, and the runtime thread itself (one current-thread
//! tokio runtime, one task per participant, one shared HTTP client).
//!
//! Owns no participant state. Never: make or apply SDP here (only the owning I/O thread
//! touches a participant's `Client`), or block the runtime thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::{JoinSpec, ParticipantSnapshot, Signaling};

/// Signaling (or the pool's caller) → the participant's I/O thread.
pub(crate) enum Command {
    /// Create the socket and client, make the first offer and send it back as
    /// [`ToSignal::Offer`].
    Join {
        id: u64,
        spec: Box<JoinSpec>,
        started: Instant,
        to_signal: UnboundedSender<ToSignal>,
    },
    /// The server's answer to our offer.
    Answer { id: u64, sdp: String },
    /// An offer from the server; answer it with [`ToSignal::Answer`].
    RemoteOffer { id: u64, sdp: String },
    /// The server dropped our offer (glare): offer again what is still unanswered.
    Reoffer { id: u64 },
    /// Signaling gave up on this participant.
    Fail { id: u64, reason: String },
    /// Stop media and keep the final counters.
    Leave { id: u64 },
    /// Reply with every participant of the thread.
    Snapshot {
        reply: mpsc::Sender<Vec<ParticipantSnapshot>>,
    },
    /// End the thread.
    Stop,
}

/// An I/O thread → its participant's signaling task.
#[derive(Debug)]
pub(crate) enum ToSignal {
    Offer(String),
    Answer(String),
    /// Say goodbye to the server (WS `leave`, WHIP/WHEP `DELETE`) and end the task.
    Leave,
}

/// A way to reach one I/O thread from any thread.
#[derive(Clone)]
pub(crate) struct ThreadHandle {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) waker: Arc<mio::Waker>,
    pub(crate) tid: u32,
}

impl ThreadHandle {
    /// Queues `cmd` and wakes the thread. A stopped thread drops it.
    pub(crate) fn send(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }

    pub(crate) fn tid(&self) -> u32 {
        self.tid
    }
}

/// The calling thread's kernel id, from the /proc/thread-self link ("PID/task/TID").
pub(crate) fn current_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// user + sys CPU of one thread of this process so far (zero when unreadable).
pub(crate) fn thread_cpu(tid: u32) -> Duration {
    crate::procstat::cpu_of_thread(tid)
        .map(|c| c.total())
        .unwrap_or_default()
}

/// The signaling thread: a current-thread tokio runtime blocked on a stop signal, running the
/// participants' tasks meanwhile.
pub(crate) struct SignalRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<JoinHandle<()>>,
    tid: u32,
    live_tasks: Arc<AtomicUsize>,
    http: reqwest::Client,
}

impl SignalRuntime {
    pub(crate) fn start(cpu: Option<usize>) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let join = std::thread::Builder::new()
            .name("pool-signal".into())
            .spawn(move || {
                if let Some(cpu) = cpu {
                    crate::pin::pin_current_thread(cpu);
                }
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((rt.handle().clone(), current_tid())));
                let _ = rt.block_on(stopped);
                // Dropping the runtime cancels tasks still running (after the leave grace).
            })
            .context("spawn the signaling thread")?;
        let (handle, tid) = ready_rx
            .recv()
            .context("signaling thread ended at start")?
            .map_err(anyhow::Error::msg)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .context("build the HTTP client")?;
        Ok(Self {
            handle,
            stop: Some(stop),
            join: Some(join),
            tid,
            live_tasks: Arc::new(AtomicUsize::new(0)),
            http,
        })
    }

    pub(crate) fn tid(&self) -> u32 {
        self.tid
    }

    /// Runs one participant's signaling until it leaves or fails; a failure is reported to
    /// its I/O thread as [`Command::Fail`].
    pub(crate) fn spawn_participant(
        &self,
        id: u64,
        spec: JoinSpec,
        from_pool: UnboundedReceiver<ToSignal>,
        thread: ThreadHandle,
    ) {
        let live = self.live_tasks.clone();
        live.fetch_add(1, Ordering::SeqCst);
        let http = self.http.clone();
        self.handle.spawn(async move {
            let link = Link {
                id,
                thread: thread.clone(),
                from_pool,
            };
            let result = match spec.signaling {
                Signaling::WebSocket => super::ws::run(&spec, link).await,
                Signaling::WhipWhep => super::whip::run(&spec, &http, link).await,
            };
            if let Err(reason) = result {
                tracing::debug!(participant = id, %reason, "signaling failed");
                thread.send(Command::Fail { id, reason });
            }
            live.fetch_sub(1, Ordering::SeqCst);
        });
    }

    /// Waits until every participant task has ended, at most `grace`.
    pub(crate) fn wait_idle(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.live_tasks.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SignalRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

/// What a signaling task holds: its id, its I/O thread and the messages from it.
pub(crate) struct Link {
    pub(crate) id: u64,
    pub(crate) thread: ThreadHandle,
    pub(crate) from_pool: UnboundedReceiver<ToSignal>,
}
