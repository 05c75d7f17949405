//! `--io-backend auto` for real: the media node is started from a thread whose seccomp
//! filter makes `io_uring_setup` fail with ENOSYS (as in a filtered container). Shard
//! threads are spawned from that thread and inherit the filter. The node must fall back to
//! the portable driver with one warning, and a call must flow through it.
//!
//! The filter is per thread (no TSYNC): only the starter thread and its children see it.

mod call;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use call::{node, Call};
use shardcast_dataplane::driver::IoBackend;

/// Installs a filter on the calling thread: io_uring_setup → ENOSYS, everything else allowed
/// (x86_64 and aarch64 share syscall number 425; other architectures are allowed through).
fn deny_io_uring_setup() {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u16, k: u32, jt: u8, jf: u8| libc::sock_filter { code, jt, jf, k };
    let ld_w_abs = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let mut filter = [
        stmt(ld_w_abs, 4), // seccomp_data.arch
        jump(jeq, AUDIT_ARCH_X86_64, 1, 0),
        jump(jeq, AUDIT_ARCH_AARCH64, 0, 3),
        stmt(ld_w_abs, 0), // seccomp_data.nr
        jump(jeq, libc::SYS_io_uring_setup as u32, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls on this thread; `prog` points at `filter`, alive for the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog
            ),
            0,
            "seccomp filter installed: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn auto_falls_back_to_portable_when_io_uring_setup_is_filtered() {
    let log = Captured::default();
    let writer = log.clone();
    let node = std::thread::spawn(move || {
        deny_io_uring_setup();
        // The filter really is in place on this thread.
        let mut params = [0u8; 120];
        // SAFETY: io_uring_setup with a zeroed params block; the filter answers first.
        let r = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
        let errno = std::io::Error::last_os_error().raw_os_error();
        assert_eq!(
            (r, errno),
            (-1, Some(libc::ENOSYS)),
            "io_uring_setup is denied"
        );
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::with_default(subscriber, || node(IoBackend::Auto, 2, 2))
    })
    .join()
    .expect("starter thread");
    assert_eq!(node.backend(), IoBackend::Portable, "auto fell back");
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text.matches("io_uring unavailable").count(),
        1,
        "one warning for the node, not one per shard:\n{text}"
    );

    // A call flows through the portable shards (which inherited the filter).
    let mut c = Call::new(node);
    let alice = c.join("room", "alice", 1, true);
    let bob = c.join("room", "bob", 2, false);
    let connected = c.run_until(Duration::from_secs(10), |c| {
        c.peers.iter().all(|p| p.client.is_connected()) && c.published(alice).len() == 2
    });
    assert!(connected, "peers connect through the portable driver");
    c.subscribe_all(bob, alice);
    let flowing = c.run_until(Duration::from_secs(15), |c| {
        let (video, audio) = c.received(bob, alice);
        video >= 10 && audio >= 25
    });
    assert!(flowing, "media flows: {:?}", c.received(bob, alice));
}
