//! A real etcd (Debian etcd-server, `/usr/bin/etcd`) on free loopback ports with a temporary
//! data directory, stopped by PID when dropped. A missing binary is an error, never a skip.

use std::process::Command;
use std::time::Duration;

use crate::process::ChildGuard;
use crate::{free_tcp_port, wait_for};

pub const ETCD_BINARY: &str = "/usr/bin/etcd";

pub struct Etcd {
    /// `http://127.0.0.1:PORT`, the client URL.
    pub endpoint: String,
    peer: String,
    // Field order: stop the process before removing its data directory.
    process: Option<ChildGuard>,
    data: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd and waits until `/health` says so.
    pub fn start() -> anyhow::Result<Self> {
        let data = tempfile::Builder::new()
            .prefix("shardcast-etcd-")
            .tempdir()?;
        let mut etcd = Self {
            endpoint: format!("http://127.0.0.1:{}", free_tcp_port()),
            peer: format!("http://127.0.0.1:{}", free_tcp_port()),
            process: None,
            data,
        };
        etcd.spawn()?;
        Ok(etcd)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let (endpoint, peer) = (&self.endpoint, &self.peer);
        let mut cmd = Command::new(ETCD_BINARY);
        cmd.arg("--data-dir")
            .arg(self.data.path().join("etcd"))
            .args(["--name", "default"])
            .args(["--listen-client-urls", endpoint])
            .args(["--advertise-client-urls", endpoint])
            .args(["--listen-peer-urls", peer])
            .args(["--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("default={peer}")]);
        let log = self.data.path().join("etcd.log");
        let mut process = ChildGuard::spawn("etcd", cmd, &log)?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        wait_for("etcd to be healthy", Duration::from_secs(30), || {
            process.check_running()?;
            let r = http.get(format!("{endpoint}/health")).send();
            Ok(r.ok()
                .and_then(|r| r.json::<serde_json::Value>().ok())
                .filter(|v| v["health"] == "true")
                .map(|_| ()))
        })?;
        self.process = Some(process);
        Ok(())
    }

    /// Stops etcd (SIGTERM, then SIGKILL after 3 s), keeping its data: an outage.
    pub fn stop(&mut self) {
        drop(self.process.take());
    }

    /// Starts etcd again on the same ports and data after [`Etcd::stop`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.process.is_none(), "etcd is running");
        self.spawn()
    }

    /// Freezes etcd (SIGSTOP): its port still accepts TCP and its open connections stay up,
    /// but no request gets an answer — a hung etcd rather than a dead one. Dropping the
    /// guard (or [`Etcd::stop`]) continues and stops it, so no frozen process is left behind.
    pub fn freeze(&self) {
        if let Some(p) = &self.process {
            p.freeze();
        }
    }

    /// Continues etcd (SIGCONT) after [`Etcd::freeze`].
    pub fn thaw(&self) {
        if let Some(p) = &self.process {
            p.thaw();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildGuard::pid)
    }

    /// etcd's revision now: it grows by one per write (put, delete, transaction that writes),
    /// so the difference of two readings counts the writes in between. Read through etcd's
    /// JSON gateway, with the mod revision of `key` (0 when absent) in the same reading.
    pub fn revision_and(&self, key: &str) -> anyhow::Result<(u64, u64)> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let v: serde_json::Value = http
            .post(format!("{}/v3/kv/range", self.endpoint))
            .json(&serde_json::json!({ "key": base64(key.as_bytes()) }))
            .send()?
            .error_for_status()?
            .json()?;
        let num = |v: &serde_json::Value| -> u64 {
            v.as_str()
                .and_then(|s| s.parse().ok())
                .or_else(|| v.as_u64())
                .unwrap_or(0)
        };
        let rev = num(&v["header"]["revision"]);
        anyhow::ensure!(rev > 0, "no revision in {v}");
        Ok((rev, num(&v["kvs"][0]["mod_revision"])))
    }
}

/// Standard base64 with padding (etcd's gateway takes keys so).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
