//! Delay and reordering on the UDP traffic between a test's network namespace and the host:
//! a stand-in for `tc qdisc … netem delay D reorder P%`, which this kernel lacks
//! (CONFIG_NET_SCH_NETEM is off). iptables (its nftables backend, with the xt `NFQUEUE`
//! target: this kernel has no nftables `queue` expression either) hands every UDP packet
//! the namespace sends to or receives from the host end to a netlink queue; a thread of the
//! test process, moved into the namespace with setns(2), holds each packet for the delay and
//! then lets it go. A packet chosen for reordering (each one independently, at random) is held
//! [`REORDER_EXTRA`] longer, so the packets sent after it overtake it. Both directions are
//! delayed: a round trip through the link grows by twice the delay.
//!
//! Needs root and the Debian package `iptables` (`iptables-nft`). The rules live in the
//! namespace (they go with it); [`Delay`] removes them when it drops, then lets every held
//! packet go and stops its thread.

use std::collections::BinaryHeap;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How much longer than the delay a packet chosen for reordering is held.
pub const REORDER_EXTRA: Duration = Duration::from_millis(25);

/// The netlink queue the rules send packets to (queues are per namespace).
const QUEUE: u16 = 0;

/// How many packets may wait in the kernel's queue: several hundred milliseconds of a
/// browser call's packets; past it the kernel drops, as a full router queue does.
const QUEUE_MAX: u32 = 4096;

/// What the stand-in did so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct DelayCounts {
    /// Packets held for the delay (both directions).
    pub delayed: u64,
    /// Of those, packets held longer so that later ones overtook them.
    pub reordered: u64,
}

/// Delay (and reordering) on a namespace's UDP link with the host, while it lives.
pub struct Delay {
    ns: String,
    rules: Vec<Vec<String>>,
    stop: Arc<AtomicBool>,
    delayed: Arc<AtomicU64>,
    reordered: Arc<AtomicU64>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Delay {
    /// Starts delaying the UDP packets between namespace `ns` and `host` by `one_way` in each
    /// direction, `reorder_percent` % of them by [`REORDER_EXTRA`] more.
    pub fn start(
        ns: &str,
        host: std::net::Ipv4Addr,
        one_way: Duration,
        reorder_percent: u32,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(reorder_percent <= 100, "reordering {reorder_percent} %");
        let stop = Arc::new(AtomicBool::new(false));
        let delayed = Arc::new(AtomicU64::new(0));
        let reordered = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (ns, stop) = (ns.to_string(), stop.clone());
            let (delayed, reordered) = (delayed.clone(), reordered.clone());
            std::thread::Builder::new()
                .name("netem-stand-in".into())
                .spawn(move || {
                    let queue = match open_queue_in(&ns) {
                        Ok(q) => {
                            let _ = ready_tx.send(Ok(()));
                            q
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return Ok(());
                        }
                    };
                    let hold = Hold {
                        one_way,
                        reorder_percent,
                        stop,
                        delayed,
                        reordered,
                    };
                    hold.run(queue)
                })?
        };
        let mut delay = Self {
            ns: ns.to_string(),
            rules: Vec::new(),
            stop,
            delayed,
            reordered,
            thread: Some(thread),
        };
        ready_rx
            .recv()
            .context("the delay thread ended before it opened its queue")??;
        // Only once the queue is bound: a rule with no listener drops every packet.
        let host = host.to_string();
        let queue = QUEUE.to_string();
        for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
            let rule: Vec<String> = [
                chain,
                dir,
                &host,
                "-p",
                "udp",
                "-j",
                "NFQUEUE",
                "--queue-num",
                &queue,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            iptables(&delay.ns, "-A", &rule)?;
            delay.rules.push(rule);
        }
        Ok(delay)
    }

    /// What the stand-in did so far.
    pub fn counts(&self) -> DelayCounts {
        DelayCounts {
            delayed: self.delayed.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        // Rules first, so nothing new is queued; then the thread lets the held packets go.
        for rule in self.rules.drain(..) {
            if let Err(e) = iptables(&self.ns, "-D", &rule) {
                eprintln!("delay: {e:#}");
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Err(e)) => eprintln!("delay: the queue thread failed: {e:#}"),
                Err(_) => eprintln!("delay: the queue thread panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

/// Moves this thread into namespace `ns` and binds the netlink queue there.
fn open_queue_in(ns: &str) -> anyhow::Result<nfq::Queue> {
    let path = format!("/run/netns/{ns}");
    let file = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
    // Only this thread changes namespace (allowed for CLONE_NEWNET in a threaded process).
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    let mut queue = nfq::Queue::open().context("open a netfilter queue socket")?;
    queue.bind(QUEUE).context("bind the netfilter queue")?;
    // Metadata only: the verdict needs the packet's id, not its bytes.
    queue.set_copy_range(QUEUE, 0)?;
    queue.set_queue_max_len(QUEUE, QUEUE_MAX)?;
    queue.set_nonblocking(true);
    Ok(queue)
}

/// The queue thread's settings and counters.
struct Hold {
    one_way: Duration,
    reorder_percent: u32,
    stop: Arc<AtomicBool>,
    delayed: Arc<AtomicU64>,
    reordered: Arc<AtomicU64>,
}

/// A packet waiting for its time; the heap pops the earliest release first.
struct Held {
    release: Instant,
    /// Arrival order, so that packets released at the same instant keep their order.
    seq: u64,
    msg: nfq::Message,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.release, self.seq) == (other.release, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: BinaryHeap is a max-heap.
        (other.release, other.seq).cmp(&(self.release, self.seq))
    }
}

impl Hold {
    fn run(self, mut queue: nfq::Queue) -> anyhow::Result<()> {
        let mut held: BinaryHeap<Held> = BinaryHeap::new();
        let mut seq = 0u64;
        let mut rng = fastrand::Rng::with_seed(0x5eed_de1a);
        while !self.stop.load(Ordering::Relaxed) {
            // Everything queued right now.
            loop {
                match queue.recv() {
                    Ok(msg) => {
                        let mut wait = self.one_way;
                        if rng.u32(0..100) < self.reorder_percent {
                            wait += REORDER_EXTRA;
                            self.reordered.fetch_add(1, Ordering::Relaxed);
                        }
                        self.delayed.fetch_add(1, Ordering::Relaxed);
                        seq += 1;
                        held.push(Held {
                            release: Instant::now() + wait,
                            seq,
                            msg,
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).context("receive from the netfilter queue"),
                }
            }
            let now = Instant::now();
            while held.peek().is_some_and(|h| h.release <= now) {
                let mut h = held.pop().expect("peeked");
                h.msg.set_verdict(nfq::Verdict::Accept);
                queue.verdict(h.msg).context("accept a held packet")?;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // The rules are gone: let whatever is still held go now.
        while let Some(mut h) = held.pop() {
            h.msg.set_verdict(nfq::Verdict::Accept);
            queue.verdict(h.msg)?;
        }
        queue.unbind(QUEUE)?;
        Ok(())
    }
}

/// `ip netns exec NS iptables-nft ACTION RULE…`.
fn iptables(ns: &str, action: &str, rule: &[String]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "iptables-nft", "-w", action])
        .args(rule)
        .output()
        .context("run iptables-nft (Debian package iptables)")?;
    if !out.status.success() {
        bail!(
            "iptables-nft {action} {}: {}",
            rule.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
