//! `shardcast serve` as a child process on loopback (one shard, portable driver, a temp data
//! dir the caller owns), stopped by its PID when the guard drops.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_shardcast");

/// Kills and reaps the server on drop.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        // Stop the process we started, by its pid.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with `args` and `env`, reads its start-up lines up to the one starting
/// with `ready` and returns the guard, the rest of that line and the metrics base URL if the
/// process printed one (it comes first).
pub fn spawn(args: &[&str], env: &[(&str, &str)], ready: &str) -> (Server, String, Option<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        // Under `cargo test --workspace` BIN is linked with str0m's test DTLS (shardcast-rtp's
        // dev-dependency feature is unified into the build), which the server refuses
        // unless told this is a test (src/cli/guard.rs); built on its own it ignores this.
        .env("SHARDCAST_ALLOW_TEST_DTLS", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut metrics = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(m) = line.strip_prefix("shardcast: metrics on ") {
            metrics = Some(m.to_string());
        } else if let Some(rest) = line.strip_prefix(ready) {
            return (server, rest.to_string(), metrics);
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    panic!("the process exited before {ready:?}");
}

/// Starts `shardcast serve --dev` (one shard, portable driver; `/dev/token` on) with `extra`
/// flags and returns it with its base URL.
pub fn serve(data: &Path, extra: &[&str]) -> (Server, String) {
    serve_args(data, &[&["--dev"], extra].concat())
}

/// Like `serve` without `--dev`.
pub fn serve_args(data: &Path, extra: &[&str]) -> (Server, String) {
    let data = data.to_str().unwrap();
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--shards", "1"];
    args.extend(["--io-backend", "portable"]);
    args.extend(extra);
    args.extend(["--data-dir", data]);
    let (server, url, _) = spawn(&args, &[], "shardcast: listening on ");
    (server, url)
}
