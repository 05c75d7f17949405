//! `shardcast serve` as a child process: free HTTP port, ephemeral media ports on loopback,
//! a temporary data directory, the demo page served from the working tree.
//!
//! Finding the binary: `CARGO_BIN_EXE_*` only exists for a crate's own binaries, so the
//! harness runs `cargo build -p shardcast-controlplane --bin shardcast` once per test
//! process into the same target directory and profile as the running test (a no-op when it
//! is up to date), then uses `<target>/<profile>/shardcast`. `$SHARDCAST_BIN` overrides
//! this (e.g. to test a release build). Never: pick up a stale binary from another tree.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::process::ChildGuard;
use crate::{free_tcp_port_on, repo_root, wait_for, web_dir};

/// The `shardcast` binary, built on first use.
pub fn shardcast_bin() -> anyhow::Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| locate_or_build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn locate_or_build() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SHARDCAST_BIN") {
        return Ok(PathBuf::from(p));
    }
    // The test binary is <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("test binary is not in <target>/<profile>/deps")?;
    let target_dir = profile_dir.parent().context("no target dir")?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("profile dir name")?;
    // `cargo` from PATH (as scripts/test runs it), not $CARGO, and without the variables the
    // test runner sets for *this* test (CARGO_*, NEXTEST_*, LD_LIBRARY_PATH, RUSTUP_*): they
    // change build-script fingerprints and would rebuild half the dependency tree.
    let mut cmd = Command::new("cargo");
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        let runner_set = (k.starts_with("CARGO") && k != "CARGO_HOME")
            || k.starts_with("NEXTEST")
            || k.starts_with("RUSTUP_TOOLCHAIN")
            || k == "RUST_RECURSION_COUNT"
            || k == "LD_LIBRARY_PATH";
        if runner_set {
            cmd.env_remove(&key);
        }
    }
    cmd.current_dir(repo_root())
        .args([
            "build",
            "-p",
            "shardcast-controlplane",
            "--bin",
            "shardcast",
        ])
        .env("CARGO_TARGET_DIR", target_dir);
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let status = cmd.status().context("run cargo build for shardcast")?;
    if !status.success() {
        bail!("cargo build -p shardcast-controlplane --bin shardcast failed: {status}");
    }
    let bin = profile_dir.join("shardcast");
    if !bin.exists() {
        bail!("built shardcast but {} does not exist", bin.display());
    }
    Ok(bin)
}

/// A running `shardcast serve`; stopped by PID when dropped.
pub struct Server {
    /// `http://IP:PORT`, IP being 127.0.0.1 unless started with [`Server::start_on`].
    pub base_url: String,
    // Field order: stop the process before removing its data directory.
    process: ChildGuard,
    _data: tempfile::TempDir,
}

impl Server {
    /// Starts `shardcast serve` with dev mode on and waits until it answers HTTP.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with_args(&[])
    }

    /// As [`Server::start`], with extra command-line flags (before `serve`).
    pub fn start_with_args(extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), extra)
    }

    /// As [`Server::start_with_args`], with HTTP and the media shards (their ICE host
    /// candidate) on `ip` instead of loopback: a browser in another network namespace
    /// reaches the server at the host end of its veth link.
    pub fn start_on(ip: IpAddr, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_split(ip, ip, extra)
    }

    /// As [`Server::start_on`], with HTTP on `http_ip` and the media shards on `media_ip`:
    /// a browser in a namespace can load the page and signal, but has no direct path to the
    /// media (e.g. media on the host's loopback), as behind a firewall that allows only
    /// the web and a TURN server.
    pub fn start_split(http_ip: IpAddr, media_ip: IpAddr, extra: &[&str]) -> anyhow::Result<Self> {
        let ip = http_ip;
        let bin = shardcast_bin()?;
        let mut data = tempfile::Builder::new()
            .prefix("shardcast-data-")
            .tempdir()?;
        // `SHARDCAST_TEST_KEEP_DATA=1` keeps the data directory (and its server.log) of
        // every server a test starts, passing or not, for reading a run's log afterwards.
        if std::env::var_os("SHARDCAST_TEST_KEEP_DATA").is_some() {
            data.disable_cleanup(true);
            eprintln!("server data kept in {}", data.path().display());
        }
        let port = free_tcp_port_on(ip)?;
        let listen = SocketAddr::new(ip, port);
        let media_ip = media_ip.to_string();
        let mut cmd = Command::new(&bin);
        cmd.env_remove("SHARDCAST_CONFIG")
            .arg("--data-dir")
            .arg(data.path())
            .arg("--listen")
            .arg(listen.to_string())
            .arg("--web-dir")
            .arg(web_dir())
            .args(["--dev", "--media-ip", &media_ip, "--media-port", "0"])
            // `SHARDCAST_TEST_LOG` overrides the filter when debugging a test (e.g.
            // `info,shardcast_rtp::bwe=debug`); the log is in the failure report.
            .arg("--log")
            .arg(std::env::var("SHARDCAST_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .args(extra)
            .arg("serve");
        let log = data.path().join("server.log");
        let mut process = ChildGuard::spawn("shardcast serve", cmd, &log)?;
        let base_url = format!("http://{listen}");
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        wait_for(
            "shardcast serve to answer HTTP",
            Duration::from_secs(60),
            || {
                process.check_running()?;
                let r = client.get(format!("{base_url}/")).send();
                Ok(r.ok().filter(|r| r.status().is_success()).map(|_| ()))
            },
        )?;
        Ok(Self {
            base_url,
            process,
            _data: data,
        })
    }

    /// The demo page URL for one participant who joins automatically.
    pub fn page_url(&self, room: &str, identity: &str, name: &str) -> String {
        format!(
            "{}/?room={room}&identity={identity}&name={name}&autojoin=1&width=960&height=540",
            self.base_url
        )
    }

    /// The server's output so far (last `lines` lines), for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGTERM by PID, as systemd stops the service.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// The exit code once the process ended by itself within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        self.process.wait_timeout(timeout)
    }

    /// `GET path` on the REST API as the default tenant (the key pair `serve` wrote into its
    /// data directory); the JSON body of a 2xx answer.
    pub fn tenant_get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.tenant_request(reqwest::Method::GET, path, None)
    }

    /// `method path` with a JSON `body` on the REST API as the default tenant; the JSON body
    /// of a 2xx answer.
    pub fn tenant_request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let (status, body) = self.tenant_call(method.clone(), path, body)?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "{method} {path}: HTTP {status} {body}"
        );
        Ok(body)
    }

    /// As [`Server::tenant_request`], whatever the status: `(status, JSON body)` (an error's
    /// `{code, message}`).
    pub fn tenant_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let file = self._data.path().join("default_tenant.json");
        let creds: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
        let (key, secret) = (
            creds["api_key"].as_str().context("api_key")?,
            creds["api_secret"].as_str().context("api_secret")?,
        );
        let mut request = reqwest::blocking::Client::new()
            .request(method, format!("{}{path}", self.base_url))
            .basic_auth(key, Some(secret));
        if let Some(body) = body {
            request = request.json(&body);
        }
        // Long enough for a DELETE that waits for a recording's file to be finished.
        let response = request.timeout(Duration::from_secs(30)).send()?;
        let status = response.status().as_u16();
        Ok((status, response.json()?))
    }

    /// A host token for `identity` in `room` from `/dev/token` (dev mode; creates the room).
    pub fn dev_token(&self, room: &str, identity: &str) -> anyhow::Result<String> {
        let v: serde_json::Value = reqwest::blocking::get(format!(
            "{}/dev/token?room={room}&identity={identity}",
            self.base_url
        ))?
        .error_for_status()?
        .json()?;
        Ok(v["token"].as_str().context("token field")?.to_string())
    }
}
