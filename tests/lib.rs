//! Process harness for the end-to-end tests: real processes on loopback, each stopped by
//! its PID when its guard drops.
//!
//! - [`server::Server`]: `shardcast serve` on free ports with a temporary data directory.
//! - [`chromium::Browser`]: headless Debian Chromium with a fake camera and microphone, a
//!   fresh profile, driven over the DevTools protocol ([`cdp::Cdp`]).
//! - [`static_site::StaticSite`]: a tiny HTTP server for a directory (tests of the demo page
//!   and of the browser harness that need no Shardcast server).
//! - [`etcd::Etcd`], [`cluster::ControlPlane`], [`cluster::MediaNodeProcess`]: a distributed
//!   deployment as separate processes; [`cluster::Rest`] drives its REST API;
//!   [`cluster_call::ClusterCall`] is one call in such a cluster, as the fault tests start it.
//! - [`participant::Participant`]: a native client (shardcast-client over UDP) signaled over
//!   the WebSocket API.
//! - [`webhook_receiver::Receiver`]: an HTTP server on loopback that records the webhooks it
//!   gets and answers 200, 500 or nothing.
//! - [`netns::NetNs`]: a network namespace behind a veth pair whose downlink a test shapes
//!   with `tc`, for a browser on a thin link ([`chromium::Browser::launch_in`]).
//! - [`delay::Delay`]: delay and reordering on a namespace's UDP link (a stand-in for `tc netem`,
//!   which this kernel lacks), through NFQUEUE.
//! - [`layers`]: a Chromium viewer's simulcast layer read from getStats, for the tests that
//!   shape its link.
//! - [`interop::StackPeer`]: an independent WebRTC stack (GStreamer webrtcbin, aiortc) as a
//!   WHIP publisher or WHEP player script from `tests/interop/`.
//!
//! Never: skip a test because a component is missing (a missing Chromium or binary is an
//! error), or talk to anything but 127.0.0.1 and the private veth links the tests create.

pub mod cdp;
pub mod chromium;
pub mod cluster;
pub mod cluster_call;
pub mod cluster_pages;
pub mod delay;
pub mod etcd;
pub mod interop;
pub mod layers;
pub mod netns;
pub mod participant;
pub mod process;
pub mod server;
pub mod static_site;
pub mod turn;
pub mod webhook_receiver;

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The repository root (this crate lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The demo page's static files, as served by the control plane at `/`.
pub fn web_dir() -> PathBuf {
    repo_root().join("controlplane").join("web")
}

/// A TCP port that was free a moment ago on 127.0.0.1; see [`free_tcp_port_on`].
pub fn free_tcp_port() -> u16 {
    free_tcp_port_on(std::net::Ipv4Addr::LOCALHOST.into()).expect("a free loopback TCP port")
}

/// A UDP port that was free a moment ago on 127.0.0.1; see [`free_tcp_port_on`].
pub fn free_udp_port() -> u16 {
    port_below_ephemeral(|p| std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok())
        .expect("a free loopback UDP port")
}

/// A TCP port that was free a moment ago on `ip`, for a process the test starts next.
///
/// Drawn at random from 20000–32767, below the kernel's ephemeral range (32768–60999 on
/// Debian): a port from `bind(0)` lies in that range, where any outgoing connection or
/// another test's `bind(0)` may take it before the process meant for it binds it — CI saw
/// an etcd exit at start-up that way.
pub fn free_tcp_port_on(ip: std::net::IpAddr) -> anyhow::Result<u16> {
    port_below_ephemeral(|p| std::net::TcpListener::bind((ip, p)).is_ok())
        .ok_or_else(|| anyhow::anyhow!("no free TCP port on {ip} in 20000-32767"))
}

fn port_below_ephemeral(free: impl Fn(u16) -> bool) -> Option<u16> {
    use std::hash::{BuildHasher, Hasher};
    const FIRST: u16 = 20_000;
    const COUNT: u64 = 12_768;
    // RandomState is seeded afresh per call: parallel test processes draw different ports.
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (0..2_000u64)
        .map(|i| FIRST + (start.wrapping_add(i * 7_919) % COUNT) as u16)
        .find(|&p| free(p))
}

/// Polls `probe` every 100 ms until it yields `Some`, or fails after `timeout` with the
/// last error it reported (so a failing test says what it last saw).
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "condition not met yet".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
