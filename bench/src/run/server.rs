//! The server under test: `shardcast serve` started as a child process in a scratch data
//! directory, on an ephemeral HTTP port, with the chosen I/O backend and shard count, pinned
//! to `--server-cpus` with `taskset` (which execs the server, so the PID we hold is the
//! server's). Its log goes to a file in the scratch directory.
//!
//! Owns: the child (stopped by PID through `ChildGuard`), the scratch directory (removed on
//! drop), the credentials the server writes. Must never: signal any other process, or listen
//! anywhere but loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;

use super::measure::ServerReading;
use crate::child::ChildGuard;
use crate::procstat;

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub bin: PathBuf,
    /// `auto`, `io_uring` or `portable`.
    pub io_backend: String,
    pub shards: usize,
    /// More arguments after the ones `start` gives (later flags win with clap).
    pub extra_args: Vec<String>,
    /// A CPU list for `taskset -c` (e.g. `0` or `0-1`); None = not pinned.
    pub cpus: Option<String>,
    /// The server's log filter (`SHARDCAST_LOG`); None = `info`. Tests raise str0m to debug
    /// to read the negotiated SRTP profile; a measured run never should (it costs CPU).
    pub log_filter: Option<String>,
    /// More environment for the server (tests: `SHARDCAST_ALLOW_TEST_DTLS=1`, see
    /// controlplane/src/cli/guard.rs); `run` passes none.
    pub env: Vec<(String, String)>,
}

/// The default tenant's API key, as `shardcast serve` writes it (default_tenant.json).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiKey {
    pub tenant: String,
    pub api_key: String,
    pub api_secret: String,
}

pub struct Server {
    guard: ChildGuard,
    pub base_url: String,
    /// The `/metrics` listener's base URL, when `--metrics-listen` was among the arguments.
    pub metrics_url: Option<String>,
    pub api_key: ApiKey,
    log: PathBuf,
    // Dropped last: the server must be gone before its data directory is.
    dir: ScratchDir,
}

/// Where the `shardcast` binary is: `explicit`, else next to this executable (the same
/// target directory and profile), or in the sibling `release` directory with `release`.
pub fn locate_binary(explicit: Option<&Path>, release: bool) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        anyhow::ensure!(p.is_file(), "--server-bin {}: no such file", p.display());
        return Ok(p.to_path_buf());
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut dir = exe
        .parent()
        .context("this executable has no directory")?
        .to_path_buf();
    // Test binaries live in target/<profile>/deps; the server is in target/<profile>.
    if dir.ends_with("deps") {
        dir.pop();
    }
    if release {
        dir = dir
            .parent()
            .context("no target directory above this executable")?
            .join("release");
    }
    let bin = dir.join("shardcast");
    anyhow::ensure!(
        bin.is_file(),
        "{} not found: build it (cargo build {}-p shardcast-controlplane --bin shardcast) or pass --server-bin",
        bin.display(),
        if release { "--release " } else { "" }
    );
    Ok(bin)
}

impl Server {
    pub fn start(spec: &ServerSpec) -> anyhow::Result<Server> {
        let dir = ScratchDir::new("shardcast-bench-server")?;
        let log = dir.path.join("server.log");
        let mut cmd = match &spec.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&spec.bin);
                c
            }
            None => Command::new(&spec.bin),
        };
        let backend = match spec.io_backend.as_str() {
            "io_uring" | "io-uring" => "io-uring",
            "portable" => "portable",
            "auto" => "auto",
            other => anyhow::bail!("--io-backend {other}: expected io_uring, portable or auto"),
        };
        // `--dev`: without `--api-key` the bench takes its tokens from `GET /dev/token`.
        cmd.arg("serve")
            .arg("--dev")
            .arg("--data-dir")
            .arg(dir.path.join("data"))
            .args(["--listen", "127.0.0.1:0", "--media-ip", "127.0.0.1"])
            .args(["--shards", &spec.shards.to_string()])
            .args(["--io-backend", backend])
            .args(&spec.extra_args)
            .env_remove("SHARDCAST_CONFIG")
            .env_remove("RUST_LOG")
            .env_remove("SHARDCAST_ADMIN_KEY")
            .env(
                "SHARDCAST_LOG",
                spec.log_filter.as_deref().unwrap_or("info"),
            )
            // Plain log lines: `backend_from_log` reads one.
            .env("NO_COLOR", "1")
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stderr(Stdio::from(
                std::fs::File::create(&log).context("creating the server log")?,
            ));
        let mut guard = ChildGuard::spawn("shardcast serve", cmd)
            .with_context(|| format!("starting {}", spec.bin.display()))?;
        let mut metrics_url = None;
        let base_url = loop {
            let Some(line) = guard.next_line() else {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                anyhow::bail!(
                    "the server exited before listening; its log:\n{}",
                    last_lines(&tail, 20)
                );
            };
            if let Some(url) = line.strip_prefix("shardcast: metrics on ") {
                metrics_url = Some(url.trim().to_string());
            }
            if let Some(url) = line.strip_prefix("shardcast: listening on ") {
                break url.trim().to_string();
            }
        };
        wait_healthy(&base_url)?;
        let file = dir.path.join("data").join("default_tenant.json");
        let api_key: ApiKey = serde_json::from_str(
            &std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?,
        )
        .with_context(|| format!("parsing {}", file.display()))?;
        Ok(Server {
            guard,
            base_url,
            metrics_url,
            api_key,
            log,
            dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// The server's `--data-dir` (the embedded store's files).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path.join("data")
    }

    pub fn reading(&self) -> ServerReading {
        reading_of(self.pid())
    }

    /// The backend the media node really uses (`auto` resolved), from its start-up log line.
    pub fn backend(&self) -> Option<String> {
        backend_from_log(&std::fs::read_to_string(&self.log).ok()?)
    }

    /// The server's whole log so far.
    pub fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// The last lines of the server's log (for error messages).
    pub fn log_tail(&self, lines: usize) -> String {
        last_lines(
            &std::fs::read_to_string(&self.log).unwrap_or_default(),
            lines,
        )
    }
}

/// CPU and RSS of a process by PID (a server we did not start: `--server-pid`).
pub fn reading_of(pid: u32) -> ServerReading {
    ServerReading {
        cpu: procstat::cpu_of(pid),
        rss_bytes: procstat::rss_of(pid),
    }
}

fn wait_healthy(base_url: &str) -> anyhow::Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.get(format!("{base_url}/v1/openapi.json")).send() {
            Ok(r) if r.status().is_success() => return Ok(()),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Ok(r) => anyhow::bail!("server at {base_url} not healthy: HTTP {}", r.status()),
            Err(e) => anyhow::bail!("server at {base_url} not healthy: {e}"),
        }
    }
}

/// Parses `backend=IoUring` (tracing's Debug form) from the "media node started" line.
pub fn backend_from_log(log: &str) -> Option<String> {
    let line = log.lines().find(|l| l.contains("media node started"))?;
    let line = strip_ansi(line);
    let value = line.split("backend=").nth(1)?.split_whitespace().next()?;
    Some(
        match value {
            "IoUring" => "io_uring",
            "Portable" => "portable",
            other => other,
        }
        .to_string(),
    )
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn new(prefix: &str) -> anyhow::Result<ScratchDir> {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_resolved_backend_from_the_log() {
        let log = "2026-11-22T08:00:00Z  INFO shardcast::cli::serve: media node started \
                   addrs=[127.0.0.1:40000] backend=IoUring\nother line backend=Portable\n";
        assert_eq!(backend_from_log(log).as_deref(), Some("io_uring"));
        assert_eq!(backend_from_log("nothing here"), None);
        let coloured = "media node started \u{1b}[3mbackend\u{1b}[0m\u{1b}[2m=\u{1b}[0mPortable";
        assert_eq!(backend_from_log(coloured).as_deref(), Some("portable"));
    }

    #[test]
    fn scratch_dir_is_removed_on_drop() {
        let dir = ScratchDir::new("benchrun-test").unwrap();
        let path = dir.path.clone();
        std::fs::write(path.join("f"), "x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn missing_server_binary_is_a_clear_error() {
        let err = locate_binary(Some(Path::new("/nonexistent/shardcast")), false).unwrap_err();
        assert!(err.to_string().contains("--server-bin"), "{err}");
    }
}
