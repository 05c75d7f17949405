//! One pool I/O thread: owns its participants (socket + client each) and runs the loop
//! poll → recv until `WouldBlock` → feed the client → drain its output with `send_to` → fire
//! due timers → sleep until the earliest deadline (or a command's wake-up).
//!
//! Timers are a min-heap of (deadline, slot, id); a participant's entry is pushed only when
//! its deadline changes and stale entries are skipped when popped. Reads are edge-triggered
//! (mio), so a socket is read until `WouldBlock`; one that still has data after
//! `READ_BUDGET` datagrams is revisited next turn so a busy socket cannot starve the rest.
//! Per packet the loop allocates nothing itself (one receive buffer per thread); the
//! `Vec` of each outgoing datagram is the client's (str0m's `Transmit`).
//! Never: block on anything but the poll, or panic on a participant's error (it fails alone).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::ErrorKind;
use std::net::IpAddr;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use shardcast_client::{ClientError, ClientOutput, TimeBase};

use super::participant::{failed_at_join, Participant};
use super::signal::{current_tid, Command, ThreadHandle, ToSignal};
use super::{ParticipantSnapshot, ParticipantState};

const WAKER: Token = Token(usize::MAX);
/// Datagrams read from one socket per turn before moving on.
const READ_BUDGET: usize = 64;
/// Latency drain and join-timeout checks run this often.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// A participant not DTLS-connected this long after its join fails.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Larger than any datagram WebRTC sends on loopback (MTU-sized), so nothing is truncated.
const RECV_BUFFER: usize = 4096;

/// Starts I/O thread `index`, pinned to `cpu` when given.
pub(crate) fn spawn(
    index: usize,
    cpu: Option<usize>,
    bind_ip: IpAddr,
    time_base: TimeBase,
) -> std::io::Result<(ThreadHandle, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    let join = std::thread::Builder::new()
        .name(format!("pool-io-{index}"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                if !crate::pin::pin_current_thread(cpu) {
                    tracing::warn!(cpu, "could not pin pool I/O thread");
                }
            }
            let _ = tid_tx.send(current_tid());
            IoThread::new(poll, rx, bind_ip, time_base).run();
        })?;
    let tid = tid_rx.recv().unwrap_or(0);
    Ok((ThreadHandle { tx, waker, tid }, join))
}

struct IoThread {
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    bind_ip: IpAddr,
    time_base: TimeBase,
    slots: Vec<Option<Participant>>,
    free: Vec<usize>,
    by_id: HashMap<u64, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Left and failed participants, with their final counters.
    finished: Vec<ParticipantSnapshot>,
    buf: Vec<u8>,
    /// Sockets with data left after their read budget.
    again: Vec<usize>,
    /// Reused per turn: slots whose timer fired.
    due: Vec<usize>,
    next_housekeeping: Instant,
}

impl IoThread {
    fn new(
        poll: Poll,
        commands: mpsc::Receiver<Command>,
        bind_ip: IpAddr,
        time_base: TimeBase,
    ) -> Self {
        Self {
            poll,
            commands,
            bind_ip,
            time_base,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            timers: BinaryHeap::new(),
            finished: Vec::new(),
            buf: vec![0; RECV_BUFFER],
            again: Vec::new(),
            due: Vec::new(),
            next_housekeeping: Instant::now() + HOUSEKEEPING,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut revisit = Vec::new();
        loop {
            let now = Instant::now();
            let next = self
                .timers
                .peek()
                .map_or(self.next_housekeeping, |Reverse((at, ..))| *at)
                .min(self.next_housekeeping);
            let timeout = if self.again.is_empty() {
                next.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::warn!(error = %e, "pool poll failed");
                    std::thread::sleep(Duration::from_millis(1));
                }
                continue;
            }
            let now = Instant::now();
            std::mem::swap(&mut revisit, &mut self.again);
            for slot in revisit.drain(..) {
                self.read(slot, now);
            }
            for event in events.iter() {
                if event.token() != WAKER {
                    self.read(event.token().0, now);
                }
            }
            // Commands are checked every turn: the waker only shortens the sleep.
            if self.handle_commands(now) {
                return;
            }
            self.fire_timers(now);
            if now >= self.next_housekeeping {
                self.housekeeping(now);
                self.next_housekeeping = now + HOUSEKEEPING;
            }
        }
    }

    /// Reads one participant's socket until `WouldBlock` (or the budget), then flushes.
    fn read(&mut self, slot: usize, now: Instant) {
        let Some(p) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let mut failure = None;
        let mut n = 0;
        loop {
            match p.socket.recv_from(&mut self.buf) {
                Ok((len, source)) => {
                    p.wire.datagrams_in += 1;
                    p.wire.bytes_in += len as u64;
                    p.client
                        .handle_datagram(now, source, p.local, &self.buf[..len]);
                    n += 1;
                    if n == READ_BUDGET {
                        self.again.push(slot);
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // An ICMP port-unreachable from an earlier send (the server went away):
                // consent checks decide whether the call is over.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(format!("UDP receive: {e}"));
                    break;
                }
            }
        }
        match failure {
            Some(reason) => self.finish(slot, ParticipantState::Failed(reason)),
            None => self.flush(slot),
        }
    }

    /// Sends everything the client has to send and re-arms its timer.
    fn flush(&mut self, slot: usize) {
        let Some(p) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        loop {
            match p.client.poll_output() {
                ClientOutput::Transmit {
                    destination,
                    contents,
                    ..
                } => match p.socket.send_to(&contents, destination) {
                    Ok(n) => {
                        p.wire.datagrams_out += 1;
                        p.wire.bytes_out += n as u64;
                    }
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
                    // A full socket buffer (or any send error) loses this datagram, as the
                    // network would; the stats on both ends show it.
                    Err(_) => p.wire.send_drops += 1,
                },
                ClientOutput::Timeout(at) => {
                    if at != p.deadline {
                        p.deadline = at;
                        self.timers.push(Reverse((at, slot, p.id)));
                    }
                    break;
                }
            }
        }
        if let Some(e) = p.client.error() {
            let reason = format!("webrtc: {e}");
            self.finish(slot, ParticipantState::Failed(reason));
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        while let Some(Reverse((at, slot, id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let live = self.slots.get(slot).and_then(Option::as_ref);
            if live.is_some_and(|p| p.id == id && p.deadline == at) {
                due.push(slot);
            }
        }
        // Collected first: a client that asks to be woken at `now` again waits for the next
        // turn instead of spinning here.
        for slot in due.drain(..) {
            if let Some(p) = self.slots.get_mut(slot).and_then(Option::as_mut) {
                p.client.handle_timeout(now);
                self.flush(slot);
            }
        }
        self.due = due;
    }

    /// Returns true on `Stop`.
    fn handle_commands(&mut self, now: Instant) -> bool {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Join {
                    id,
                    spec,
                    started,
                    to_signal,
                } => self.join(id, &spec, started, to_signal, now),
                Command::Answer { id, sdp } => self.with(id, |p| {
                    p.client
                        .accept_answer(now, &sdp)
                        .map_err(|e| format!("answer: {e}"))
                }),
                Command::RemoteOffer { id, sdp } => self.with(id, |p| {
                    let answer = p
                        .client
                        .accept_offer(now, &sdp)
                        .map_err(|e| format!("server offer: {e}"))?;
                    let _ = p.to_signal.send(ToSignal::Answer(answer));
                    Ok(())
                }),
                Command::Reoffer { id } => self.with(id, |p| match p.client.create_offer(now) {
                    Ok(sdp) => {
                        let _ = p.to_signal.send(ToSignal::Offer(sdp));
                        Ok(())
                    }
                    Err(ClientError::NothingToOffer) => Ok(()),
                    Err(e) => Err(format!("offer: {e}")),
                }),
                Command::Fail { id, reason } => {
                    if let Some(&slot) = self.by_id.get(&id) {
                        self.finish(slot, ParticipantState::Failed(reason));
                    }
                }
                Command::Leave { id } => {
                    if let Some(&slot) = self.by_id.get(&id) {
                        self.finish(slot, ParticipantState::Left);
                    }
                }
                Command::Snapshot { reply } => {
                    let mut all = self.finished.clone();
                    for p in self.slots.iter_mut().flatten() {
                        let state = p.state();
                        all.push(p.snapshot(state));
                    }
                    let _ = reply.send(all);
                }
                Command::Stop => return true,
            }
        }
        false
    }

    /// Applies `f` to live participant `id`, flushes it, and fails it on `Err`.
    fn with(&mut self, id: u64, f: impl FnOnce(&mut Participant) -> Result<(), String>) {
        let Some(&slot) = self.by_id.get(&id) else {
            return; // already left or failed: late signaling is ignored
        };
        let Some(p) = self.slots[slot].as_mut() else {
            return;
        };
        match f(p) {
            Ok(()) => self.flush(slot),
            Err(reason) => self.finish(slot, ParticipantState::Failed(reason)),
        }
    }

    fn join(
        &mut self,
        id: u64,
        spec: &super::JoinSpec,
        started: std::time::Instant,
        to_signal: tokio::sync::mpsc::UnboundedSender<ToSignal>,
        now: Instant,
    ) {
        let fail = |reason: String, to_signal: &tokio::sync::mpsc::UnboundedSender<ToSignal>| {
            let _ = to_signal.send(ToSignal::Leave);
            failed_at_join(id, spec, started, reason)
        };
        let created = Participant::new(
            id,
            spec,
            started,
            to_signal.clone(),
            self.bind_ip,
            self.time_base,
            now,
        );
        let mut p = match created {
            Ok(p) => p,
            Err(reason) => {
                self.finished.push(fail(reason, &to_signal));
                return;
            }
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut p.socket, Token(slot), Interest::READABLE)
        {
            self.free.push(slot);
            let reason = format!("register socket: {e}");
            self.finished.push(fail(reason, &to_signal));
            return;
        }
        let offer = p.client.create_offer(now);
        self.slots[slot] = Some(p);
        self.by_id.insert(id, slot);
        match offer {
            Ok(sdp) => {
                let _ = to_signal.send(ToSignal::Offer(sdp));
                self.flush(slot);
            }
            Err(e) => self.finish(slot, ParticipantState::Failed(format!("offer: {e}"))),
        }
    }

    /// Ends a live participant: stops its media, keeps its final counters, and tells its
    /// signaling to say goodbye (a no-op when signaling already ended).
    fn finish(&mut self, slot: usize, state: ParticipantState) {
        let Some(mut p) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut p.socket);
        self.by_id.remove(&p.id);
        self.free.push(slot);
        if let ParticipantState::Failed(reason) = &state {
            tracing::debug!(participant = p.id, %reason, "participant failed");
        }
        let _ = p.to_signal.send(ToSignal::Leave);
        self.finished.push(p.snapshot(state));
    }

    fn housekeeping(&mut self, now: Instant) {
        let mut late = Vec::new();
        for (slot, p) in self.slots.iter_mut().enumerate() {
            let Some(p) = p else { continue };
            p.drain_latency();
            let waited = now.saturating_duration_since(p.join_started);
            if !p.client.is_connected() && waited > JOIN_TIMEOUT {
                late.push(slot);
            }
        }
        for slot in late {
            let reason = format!("not connected {} s after join", JOIN_TIMEOUT.as_secs());
            self.finish(slot, ParticipantState::Failed(reason));
        }
        // Stale timer entries pile up when deadlines move; rebuild from the live ones.
        let live = self.by_id.len();
        if self.timers.len() > 8 * live + 1024 {
            self.timers = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(slot, p)| p.as_ref().map(|p| Reverse((p.deadline, slot, p.id))))
                .collect();
        }
    }
}
