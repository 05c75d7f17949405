//! A real coturn (Debian `coturn`, `/usr/bin/turnserver`) on a free loopback port with
//! TURN REST API credentials (`use-auth-secret`), stopped by PID when dropped. It relays to
//! loopback peers (the media node is on 127.0.0.1 in tests). A missing binary is an error,
//! never a skip.

use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use crate::process::ChildGuard;
use crate::{free_tcp_port, wait_for};

pub const TURN_BINARY: &str = "/usr/bin/turnserver";

pub struct Coturn {
    /// The port it listens on, UDP and TCP (on 127.0.0.1 unless started with `start_on`).
    pub port: u16,
    pub secret: String,
    // Field order: stop the process before removing its directory.
    process: ChildGuard,
    dir: tempfile::TempDir,
}

impl Coturn {
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST)
    }

    /// As [`Coturn::start`], listening on `ip` (e.g. the host end of a namespace's link),
    /// still relaying to peers on the host's loopback.
    pub fn start_on(ip: std::net::Ipv4Addr) -> anyhow::Result<Self> {
        if !std::path::Path::new(TURN_BINARY).exists() {
            anyhow::bail!(
                "{TURN_BINARY} not found: install the Debian package `coturn` (.ci/packages); \
                 the TURN tests do not skip"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("shardcast-coturn-")
            .tempdir()?;
        // A port free for both TCP and UDP.
        let port = loop {
            let p = free_tcp_port();
            if UdpSocket::bind((ip, p)).is_ok() {
                break p;
            }
        };
        let secret = format!("coturn-test-secret-{port}");
        let mut cmd = Command::new(TURN_BINARY);
        cmd.args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log"])
            .args(["--listening-ip", &ip.to_string(), "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &port.to_string()])
            .args(["--min-port", "49152", "--max-port", "65535"])
            .args(["--use-auth-secret", "--static-auth-secret", &secret])
            .args(["--realm", "shardcast.test"])
            .arg("--allow-loopback-peers")
            .arg("--log-file=stdout")
            .arg("--pidfile")
            .arg(dir.path().join("turnserver.pid"))
            .arg("--userdb")
            .arg(dir.path().join("turndb"));
        let mut process = ChildGuard::spawn("coturn", cmd, &dir.path().join("coturn.log"))?;
        wait_for("coturn to listen", Duration::from_secs(10), || {
            process.check_running()?;
            Ok(TcpStream::connect((ip, port)).ok().map(|_| ()))
        })?;
        Ok(Self {
            port,
            secret,
            process,
            dir,
        })
    }

    /// The last `lines` lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
