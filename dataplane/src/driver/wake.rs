//! The eventfd a shard's driver watches, so other threads can wake its loop.
//!
//! Writers (other shards, the node API) push onto a shard's queue and then call `wake`.
//! `pending` collapses many wakes between two turns into one eventfd write. Protocol: the
//! shard consumes the eventfd inside its wait, then calls `clear` before draining its queues;
//! a writer that finds `pending` already set knows a write after the last `clear` is still
//! unconsumed, so the next wait returns.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Waker {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is checked and then owned by `OwnedFd`.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker {
            fd,
            pending: AtomicBool::new(false),
        })
    }

    /// Wakes the shard's wait (cheap when a wake is already pending).
    pub fn wake(&self) {
        if !self.pending.swap(true, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd; a full counter (EAGAIN)
            // means a wake is pending anyway.
            let _ = unsafe {
                libc::write(
                    self.fd.as_raw_fd(),
                    &one as *const u64 as *const libc::c_void,
                    8,
                )
            };
        }
    }

    /// Called by the shard after its wait consumed the eventfd, before it drains queues.
    pub fn clear(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
