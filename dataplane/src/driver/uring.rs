//! The io_uring backend: one ring per shard thread, owned by it and never shared.
//!
//! Receive: one multishot RecvMsg on a provided-buffer ring; each completion names the
//! buffer the kernel filled, which goes back to the ring once the shard has handled it.
//! When the ring runs dry the kernel ends the multishot with ENOBUFS; we recycle and re-arm.
//! Send: queued datagrams are copied into a `SendBatch` (grouped for UDP GSO) and pushed as
//! SendMsg SQEs; a batch is reused only when all its sends completed.
//! Wake-up: a Read on the shard's eventfd stays armed in the ring.
//! Each loop turn ends in exactly one `io_uring_enter` (submit + wait with the deadline),
//! except when the submission queue fills up mid-turn (counted as `extra_submits`).
//! Must never be touched from another thread (SINGLE_ISSUER).

use std::alloc::{self, Layout};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

use super::send::{SendBatch, MAX_DATAGRAM};
use super::sockaddr::{self, NAME_LEN};
use super::{DriverConfig, DriverStats};

const TAG_RECV: u64 = 1;
const TAG_WAKE: u64 = 2;
const TAG_SEND: u64 = 3;
const TAG_CANCEL: u64 = 4;
const TAG_WATCH: u64 = 5;
const BUFFER_GROUP: u16 = 0;
/// Room in each provided buffer for the `io_uring_recvmsg_out` header and the source name.
const RECV_HEADROOM: usize = 64;
const RECV_BUF_SIZE: usize = MAX_DATAGRAM + RECV_HEADROOM;
const SQ_ENTRIES: u32 = 1024;
const CQ_ENTRIES: u32 = 8192;
/// Send batches that may be in flight at once. When all are, `send` reaps the send
/// completions (`reap_sends`) before it drops anything: a turn may fan a whole frame out
/// to hundreds of subscribers (congestion control off: no pacer), and 8 batches without
/// reaping dropped ~0.4% of a 200-viewer webinar. Batches are allocated when first needed
/// (`send_batch` × 2 KiB each).
const MAX_BATCHES: usize = 32;

fn send_user_data(batch: usize, message: usize) -> u64 {
    TAG_SEND | (batch as u64) << 8 | (message as u64) << 32
}

/// The provided-buffer ring: page-aligned ring entries shared with the kernel, plus the
/// buffers they point to.
struct BufRing {
    entries: *mut BufRingEntry,
    layout: Layout,
    count: u16,
    tail: u16,
    buffers: Vec<u8>,
}

impl BufRing {
    fn new(count: u16) -> io::Result<Self> {
        let layout = Layout::from_size_align(count as usize * 16, 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a non-zero size (count >= 1) and a valid alignment.
        let entries = unsafe { alloc::alloc_zeroed(layout) } as *mut BufRingEntry;
        if entries.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut ring = BufRing {
            entries,
            layout,
            count,
            tail: 0,
            buffers: vec![0u8; count as usize * RECV_BUF_SIZE],
        };
        for bid in 0..count {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Offers buffer `bid` to the kernel again (visible after `publish`).
    fn push(&mut self, bid: u16) {
        let slot = (self.tail & (self.count - 1)) as usize;
        let addr = self.buffers[bid as usize * RECV_BUF_SIZE..].as_ptr() as u64;
        // SAFETY: `slot < count`, so the entry lies inside the allocation; the kernel only
        // reads entries between its head and our published tail, and this slot is past the
        // tail until `publish`.
        let entry = unsafe { &mut *self.entries.add(slot) };
        entry.set_addr(addr);
        entry.set_len(RECV_BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: `entries` is the ring base; the tail field overlays entry 0's `resv`, which
        // the kernel reads as the ring tail. It is only written here, as a u16 atomic store
        // with Release so the entries written before are visible first.
        unsafe {
            let tail = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * RECV_BUF_SIZE;
        &self.buffers[start..start + len.min(RECV_BUF_SIZE)]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the driver unregisters the ring from
        // the kernel before dropping it.
        unsafe { alloc::dealloc(self.entries as *mut u8, self.layout) };
    }
}

pub(crate) struct UringDriver {
    ring: IoUring,
    socket: UdpSocket,
    wake_fd: RawFd,
    gso: bool,
    pub(crate) stats: DriverStats,
    bufs: BufRing,
    /// Template for the multishot receive: only name and control lengths matter.
    recv_msghdr: Box<libc::msghdr>,
    recv_armed: bool,
    wake_buf: Box<u64>,
    wake_armed: bool,
    /// A descriptor the shard watches for readability besides the socket (its ICE-TCP
    /// epoll instance): a one-shot PollAdd, re-armed after each completion, so readiness
    /// is level-triggered like poll(2).
    watch_fd: Option<RawFd>,
    watch_armed: bool,
    watch_ready: bool,
    batches: Vec<SendBatch>,
    free_batches: Vec<usize>,
    filling: Option<usize>,
    send_batch: usize,
    completions: Vec<(u64, i32, u32)>,
    /// Receive and wake completions taken off the queue by `reap_sends` in the middle of a
    /// turn; `recv` handles them first, in order.
    deferred: Vec<(u64, i32, u32)>,
}

fn build_ring() -> io::Result<IoUring> {
    // The shard thread is the only submitter: SINGLE_ISSUER + DEFER_TASKRUN let the kernel
    // run completions only when we enter, on our CPU. Older kernels refuse the flags.
    let ring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES);
    match ring {
        Ok(r) => Ok(r),
        Err(_) => IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .build(SQ_ENTRIES),
    }
}

/// Checks that this kernel and process allow everything the driver uses.
pub(crate) fn probe() -> io::Result<()> {
    let ring = IoUring::new(8)?;
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "io_uring without EXT_ARG (kernel < 5.11)",
        ));
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::RecvMsgMulti::CODE, "RecvMsg"),
        (opcode::SendMsg::CODE, "SendMsg"),
        (opcode::Read::CODE, "Read"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring lacks {name}"),
            ));
        }
    }
    let bufs = BufRing::new(1)?;
    // SAFETY: `bufs` outlives the registration: it is unregistered right below.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.entries as u64, 1, BUFFER_GROUP, 0)?
    };
    ring.submitter().unregister_buf_ring(BUFFER_GROUP)?;
    Ok(())
}

impl UringDriver {
    pub(crate) fn new(
        socket: UdpSocket,
        wake_fd: RawFd,
        config: &DriverConfig,
        gso: bool,
    ) -> io::Result<Self> {
        // io_uring issues socket operations with MSG_DONTWAIT and polls internally; a
        // blocking-mode socket keeps it on that path instead of handing us EAGAIN.
        socket.set_nonblocking(false)?;
        let ring = build_ring()?;
        let count = config.recv_buffers.clamp(1, 32768).next_power_of_two();
        let bufs = BufRing::new(count)?;
        // SAFETY: the ring entries live in `bufs`, owned by the driver and unregistered in
        // `Drop` before they are freed.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                bufs.entries as u64,
                count,
                BUFFER_GROUP,
                0,
            )?
        };
        // SAFETY: an all-zero msghdr is a valid value (null pointers, zero lengths).
        let mut recv_msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_msghdr.msg_namelen = NAME_LEN as u32;
        let mut d = UringDriver {
            ring,
            socket,
            wake_fd,
            gso,
            stats: DriverStats::default(),
            bufs,
            recv_msghdr,
            recv_armed: false,
            wake_buf: Box::new(0),
            wake_armed: false,
            watch_fd: None,
            watch_armed: false,
            watch_ready: false,
            batches: Vec::with_capacity(MAX_BATCHES),
            free_batches: Vec::with_capacity(MAX_BATCHES),
            filling: None,
            send_batch: config.send_batch.max(1),
            completions: Vec::with_capacity(CQ_ENTRIES as usize),
            deferred: Vec::new(),
        };
        d.arm_recv();
        d.arm_wake();
        Ok(d)
    }

    fn push_sqe(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: every SQE we build points at memory owned by the driver that stays
            // valid until its completion (recv msghdr and buffer ring: for the driver's life;
            // wake buffer: boxed; send msghdrs: the batch, reset only at zero in-flight).
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return;
            }
            // Submission queue full: hand it to the kernel now.
            self.stats.extra_submits += 1;
            if let Err(e) = self.ring.submit() {
                tracing::warn!(error = %e, "io_uring submit failed");
                return;
            }
        }
    }

    fn arm_recv(&mut self) {
        let sqe = opcode::RecvMsgMulti::new(
            Fd(self.socket.as_raw_fd()),
            &*self.recv_msghdr as *const libc::msghdr,
            BUFFER_GROUP,
        )
        .build()
        .user_data(TAG_RECV);
        self.push_sqe(&sqe);
        self.recv_armed = true;
    }

    fn arm_wake(&mut self) {
        let sqe = opcode::Read::new(
            Fd(self.wake_fd),
            &mut *self.wake_buf as *mut u64 as *mut u8,
            8,
        )
        .build()
        .user_data(TAG_WAKE);
        self.push_sqe(&sqe);
        self.wake_armed = true;
    }

    /// Also wait for `fd` to become readable (see `Driver::watch`).
    pub(crate) fn watch(&mut self, fd: RawFd) {
        self.watch_fd = Some(fd);
        if !self.watch_armed {
            self.arm_watch();
        }
    }

    fn arm_watch(&mut self) {
        let Some(fd) = self.watch_fd else {
            return;
        };
        let sqe = opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(TAG_WATCH);
        self.push_sqe(&sqe);
        self.watch_armed = true;
    }

    /// Whether the watched descriptor fired since the last call.
    pub(crate) fn take_watch_ready(&mut self) -> bool {
        std::mem::take(&mut self.watch_ready)
    }

    pub(crate) fn recv(&mut self, on_datagram: &mut dyn FnMut(SocketAddr, &[u8])) -> bool {
        let mut completions = std::mem::take(&mut self.completions);
        completions.clear();
        completions.append(&mut self.deferred);
        completions.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let mut woken = false;
        let mut recycled = false;
        for &(user_data, result, flags) in &completions {
            match user_data & 0xff {
                TAG_RECV => {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        if result >= 0 {
                            self.deliver(bid, result as usize, on_datagram);
                        }
                        self.bufs.push(bid);
                        recycled = true;
                    } else if result == -libc::ENOBUFS {
                        self.stats.rx_no_buffers += 1;
                    } else if result < 0 && result != -libc::ECANCELED {
                        self.stats.rx_errors += 1;
                    }
                    if !cqueue::more(flags) {
                        self.recv_armed = false;
                    }
                }
                TAG_WAKE => {
                    self.wake_armed = false;
                    if result > 0 {
                        woken = true;
                        self.stats.wakeups += 1;
                    }
                }
                TAG_WATCH => {
                    self.watch_armed = false;
                    // An error is reported as ready too: the owner's non-blocking poll of
                    // the descriptor finds out, and the re-arm below tries again.
                    self.watch_ready = true;
                }
                TAG_SEND => self.send_completed(user_data, result),
                _ => {}
            }
        }
        self.completions = completions;
        if recycled {
            self.bufs.publish();
        }
        if !self.recv_armed {
            // The multishot ended (ENOBUFS when the ring ran dry, or an error): the buffers
            // are back, so re-arm; whatever queued in the socket meanwhile is still there.
            self.stats.rx_rearms += 1;
            self.arm_recv();
        }
        if !self.wake_armed {
            self.arm_wake();
        }
        if !self.watch_armed && self.watch_fd.is_some() {
            self.arm_watch();
        }
        woken
    }

    fn deliver(&mut self, bid: u16, len: usize, on_datagram: &mut dyn FnMut(SocketAddr, &[u8])) {
        let buffer = self.bufs.buffer(bid, len);
        let Ok(msg) = RecvMsgOut::parse(buffer, &self.recv_msghdr) else {
            self.stats.rx_errors += 1;
            return;
        };
        if msg.is_payload_truncated() {
            self.stats.rx_truncated += 1;
            return;
        }
        let name = msg.name_data();
        let name = &name[..(msg.incoming_name_len() as usize).min(name.len())];
        let Some(source) = sockaddr::decode(name) else {
            self.stats.rx_errors += 1;
            return;
        };
        let payload = msg.payload_data();
        self.stats.rx_datagrams += 1;
        self.stats.rx_bytes += payload.len() as u64;
        on_datagram(source, payload);
    }

    fn send_completed(&mut self, user_data: u64, result: i32) {
        let batch_index = ((user_data >> 8) & 0xff_ffff) as usize;
        let message = (user_data >> 32) as usize;
        let Some(batch) = self.batches.get_mut(batch_index) else {
            return;
        };
        let m = batch.messages[message];
        if result >= 0 {
            self.stats.tx_datagrams += m.datagrams as u64;
            self.stats.tx_bytes += m.bytes as u64;
            if m.datagrams > 1 {
                self.stats.tx_gso_messages += 1;
            }
        } else {
            self.stats.tx_errors += 1;
            self.stats.tx_dropped += m.datagrams as u64;
            if m.datagrams > 1 && (result == -libc::EIO || result == -libc::EINVAL) {
                // The route's device cannot segment: stop using GSO on this socket.
                tracing::warn!(errno = -result, "UDP GSO send failed; disabling GSO");
                self.gso = false;
            }
        }
        batch.in_flight -= 1;
        if batch.in_flight == 0 {
            batch.reset();
            self.free_batches.push(batch_index);
        }
    }

    pub(crate) fn send(&mut self, destination: SocketAddr, payload: &[u8]) {
        if payload.len() > MAX_DATAGRAM {
            self.stats.tx_dropped += 1;
            return;
        }
        if let Some(i) = self.filling {
            if self.batches[i].is_full() {
                self.seal_batch();
                // A full batch goes to the kernel now, not with the turn's wait: in a turn
                // that fans a frame out to hundreds of subscribers the first copies would
                // otherwise wait until the last one was built (the whole fan-out's time).
                self.stats.extra_submits += 1;
                if let Err(e) = self.ring.submit() {
                    tracing::warn!(error = %e, "io_uring submit failed");
                }
            }
        }
        let index = match self.filling {
            Some(i) => i,
            None => match self.free_batches.pop() {
                Some(i) => i,
                None if self.batches.len() < MAX_BATCHES => {
                    self.batches.push(SendBatch::new(self.send_batch));
                    self.batches.len() - 1
                }
                None => match self.reap_sends() {
                    Some(i) => i,
                    None => {
                        // Every batch is still in the kernel: the socket is not draining.
                        self.stats.tx_dropped += 1;
                        return;
                    }
                },
            },
        };
        self.filling = Some(index);
        self.batches[index].push(destination, payload);
    }

    /// Mid-turn: handles the send completions already posted (loopback and uncongested
    /// sockets complete at submit), deferring every other completion to the next `recv`.
    /// Returns a batch that became free. Nothing needs submitting first: every sealed batch
    /// was submitted when it filled up, or by the last turn's wait.
    fn reap_sends(&mut self) -> Option<usize> {
        let mut completions = std::mem::take(&mut self.completions);
        completions.clear();
        completions.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(user_data, result, flags) in &completions {
            if user_data & 0xff == TAG_SEND {
                self.send_completed(user_data, result);
            } else {
                self.deferred.push((user_data, result, flags));
            }
        }
        self.completions = completions;
        self.free_batches.pop()
    }

    /// Turns the batch being filled into SendMsg SQEs (submitted with the turn's enter).
    fn seal_batch(&mut self) {
        let Some(index) = self.filling.take() else {
            return;
        };
        let gso = self.gso;
        let batch = &mut self.batches[index];
        batch.build(gso);
        let count = batch.msghdrs.len();
        batch.in_flight = count;
        if count == 0 {
            batch.reset();
            self.free_batches.push(index);
            return;
        }
        let fd = Fd(self.socket.as_raw_fd());
        for k in 0..count {
            let sqe = opcode::SendMsg::new(fd, &self.batches[index].msghdrs[k])
                .build()
                .user_data(send_user_data(index, k));
            self.push_sqe(&sqe);
        }
    }

    pub(crate) fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.seal_batch();
        let submitter = self.ring.submitter();
        let result = match timeout {
            Some(d) if d.is_zero() => submitter.submit(),
            None => submitter.submit_and_wait(1),
            Some(d) => {
                let ts = Timespec::from(d);
                let args = SubmitArgs::new().timespec(&ts);
                submitter.submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        // Cancel the armed operations and wait (bounded) for every SQE that points into our
        // memory to complete before the buffer ring and batches are freed.
        for target in [TAG_RECV, TAG_WAKE, TAG_WATCH] {
            let sqe = opcode::AsyncCancel::new(target)
                .build()
                .user_data(TAG_CANCEL);
            self.push_sqe(&sqe);
        }
        self.filling = None;
        for _ in 0..100 {
            let busy = self.recv_armed
                || self.wake_armed
                || self.watch_armed
                || self.batches.iter().any(|b| b.in_flight > 0);
            if !busy {
                break;
            }
            let ts = Timespec::new().nsec(10_000_000);
            let args = SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let done: Vec<(u64, i32, u32)> = self
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags()))
                .collect();
            for (user_data, result, flags) in done {
                match user_data & 0xff {
                    TAG_RECV if !cqueue::more(flags) => self.recv_armed = false,
                    TAG_WAKE => self.wake_armed = false,
                    TAG_WATCH => self.watch_armed = false,
                    TAG_SEND => self.send_completed(user_data, result),
                    _ => {}
                }
            }
        }
        let _ = self.ring.submitter().unregister_buf_ring(BUFFER_GROUP);
    }
}
