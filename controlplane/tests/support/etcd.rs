//! A real etcd for tests: `/usr/bin/etcd` on free loopback ports with a temporary data dir,
//! killed by PID when dropped. A missing binary fails the test: these tests never skip.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shardcast_controlplane::store::EtcdStore;

use super::ports::free_tcp_port;

pub const ETCD_BINARY: &str = "/usr/bin/etcd";

pub struct EtcdProcess {
    child: Child,
    pub endpoint: String,
    data: tempfile::TempDir,
}

impl EtcdProcess {
    /// Starts etcd and waits until it answers. Panics (fails the test) if it cannot.
    pub async fn start() -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let client = free_tcp_port();
        let peer = free_tcp_port();
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(data.path().join("etcd.log")).expect("log file");
        let child = Command::new(ETCD_BINARY)
            .arg("--data-dir")
            .arg(data.path().join("etcd"))
            .args(["--name", "default"])
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {ETCD_BINARY} (install etcd-server): {e}"));
        let mut process = Self {
            child,
            endpoint,
            data,
        };
        process.wait_healthy().await;
        process
    }

    async fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.data.path().join("etcd.log"));
                let log = log.unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                panic!(
                    "etcd exited during start-up: {status}; log tail:\n{}",
                    tail.join("\n")
                );
            }
            if let Ok(store) = EtcdStore::connect(std::slice::from_ref(&self.endpoint)).await {
                if store.status_revision().await.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn store(&self) -> EtcdStore {
        EtcdStore::connect(std::slice::from_ref(&self.endpoint))
            .await
            .expect("connect to test etcd")
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        // Child::kill signals exactly this PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
