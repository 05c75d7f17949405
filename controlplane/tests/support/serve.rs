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

/// Starts `shardcast serve` with `extra` flags and returns it with its base URL, read from
/// the first line it prints.
pub fn serve(data: &Path, extra: &[&str]) -> (Server, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--io-backend",
            "portable",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("shardcast: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (server, url)
}
