//! Independent WebRTC stacks as WHIP publishers and WHEP players against a real
//! `shardcast serve`: the scripts in `tests/interop/` (GStreamer webrtcbin through Debian's
//! python3, aiortc through the venv of `scripts/install-python`), each a child process whose
//! JSON-lines report (one `tick` a second: frames decoded or sent, connection states) the
//! test reads from its log; aiortc also as a signaling room member with only data channels
//! ([`StackPeer::aiortc_room_data`]); and what a test needs around them (dev tokens, a
//! WHIP/WHEP POST, the server's /metrics).
//!
//! Never: skip when a stack is missing (a missing package or venv is an error naming the
//! install step), or let a client reach anything but 127.0.0.1 (the scripts gather loopback
//! candidates only and use no STUN server).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::process::ChildGuard;
use crate::repo_root;

/// Which client implementation a script drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// GStreamer 1.22 `webrtcbin` (Debian), `tests/interop/gst_whip.py`, max-bundle.
    Gstreamer,
    /// aiortc (PyPI), `tests/interop/aiortc_whip.py`, with aiortc's default bundle policy.
    AiortcBalanced,
    /// aiortc with `bundlePolicy = max-bundle`.
    AiortcMaxBundle,
}

/// The interpreter and script for `stack`.
fn command_for(stack: Stack) -> anyhow::Result<Command> {
    let dir = repo_root().join("tests").join("interop");
    let (python, script) = match stack {
        Stack::Gstreamer => (PathBuf::from("/usr/bin/python3"), dir.join("gst_whip.py")),
        Stack::AiortcBalanced | Stack::AiortcMaxBundle => {
            (venv_python()?, dir.join("aiortc_whip.py"))
        }
    };
    if !python.exists() {
        bail!(
            "{} is missing: run ./scripts/install-packages",
            python.display()
        );
    }
    let mut cmd = Command::new(python);
    // Unbuffered, so the log has every line when the test reads it.
    cmd.arg("-u").arg(script);
    Ok(cmd)
}

/// The venv's python (`$SHARDCAST_INTEROP_VENV` or `tests/interop/.venv`).
pub fn venv_python() -> anyhow::Result<PathBuf> {
    let venv = std::env::var_os("SHARDCAST_INTEROP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests").join("interop").join(".venv"));
    let python = venv.join("bin").join("python");
    if !python.exists() {
        bail!(
            "{} is missing: run ./scripts/install-python (or ./scripts/install-packages)",
            python.display()
        );
    }
    Ok(python)
}

/// One line of a script's report.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    /// Seconds since the answer was applied.
    pub t: f64,
    /// Video frames decoded (player) or handed to the encoder (publisher), so far.
    pub frames: u64,
    /// Audio frames or buffers decoded (player) or produced (publisher), so far.
    pub audio: u64,
    /// ICE connection state and peer connection state, as the stack names them.
    pub ice: String,
    pub pc: String,
}

/// A running publisher or player script; stopped by PID when dropped.
pub struct StackPeer {
    pub name: String,
    process: ChildGuard,
    log: PathBuf,
}

impl StackPeer {
    /// Starts `stack` as a WHIP publisher (`publish`) or WHEP player (`play`) on `url` for
    /// `seconds` of media after the answer.
    pub fn start(
        stack: Stack,
        mode: &str,
        url: &str,
        token: &str,
        seconds: u64,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let name = format!("{stack:?} {mode}");
        let mut cmd = command_for(stack)?;
        cmd.args([mode, url, token, &seconds.to_string()]);
        match stack {
            Stack::Gstreamer => {}
            Stack::AiortcBalanced => {
                cmd.arg("balanced");
            }
            Stack::AiortcMaxBundle => {
                cmd.arg("max-bundle");
            }
        }
        let log = dir.join(format!("{stack:?}-{mode}.log"));
        let process = ChildGuard::spawn(&name, cmd, &log)?;
        Ok(Self { name, process, log })
    }

    /// aiortc as a room member on the signaling WebSocket `ws_url` whose peer connection
    /// carries only the `shardcast` data channel (`tests/interop/aiortc_room_data.py`): it
    /// sends `text` once the channel opens and reports every room-data message it gets
    /// (`{"event": "data", "from", "text", "binary"}`), for `seconds`.
    pub fn aiortc_room_data(
        ws_url: &str,
        token: &str,
        seconds: u64,
        text: &str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let name = "aiortc room data".to_string();
        let script = repo_root()
            .join("tests")
            .join("interop")
            .join("aiortc_room_data.py");
        let mut cmd = Command::new(venv_python()?);
        cmd.arg("-u")
            .arg(script)
            .args([ws_url, token, &seconds.to_string(), text]);
        let log = dir.join("aiortc-room-data.log");
        let process = ChildGuard::spawn(&name, cmd, &log)?;
        Ok(Self { name, process, log })
    }

    /// Every JSON report line so far (other output, such as GLib warnings, is skipped).
    pub fn reports(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// The `tick` lines so far.
    pub fn ticks(&self) -> Vec<Tick> {
        self.reports()
            .iter()
            .filter(|r| r["event"] == "tick")
            .map(|r| Tick {
                t: r["t"].as_f64().unwrap_or(0.0),
                frames: r["frames"].as_u64().unwrap_or(0),
                audio: r["audio"].as_u64().unwrap_or(0),
                ice: r["ice"].as_str().unwrap_or("").to_string(),
                pc: r["pc"].as_str().unwrap_or("").to_string(),
            })
            .collect()
    }

    /// `Err` with the log tail if the script has ended.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.process.check_running()
    }

    /// Waits for the script to end by itself; its exit code (`None`: killed by a signal).
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        self.process.wait_timeout(timeout)
    }

    /// The last `lines` lines of the script's output, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        format!("--- {} ---\n{}", self.name, self.process.log_tail(lines))
    }
}

/// A host token for `identity` in `room` from the dev endpoint (creates the room).
pub fn dev_token(base_url: &str, room: &str, identity: &str) -> anyhow::Result<String> {
    let v: Value = reqwest::blocking::get(format!(
        "{base_url}/dev/token?room={room}&identity={identity}"
    ))?
    .error_for_status()?
    .json()?;
    Ok(v["token"]
        .as_str()
        .context("token in /dev/token")?
        .to_string())
}

/// POSTs an SDP offer to a WHIP or WHEP endpoint; the status, the `Location` and the body.
pub fn post_offer(url: &str, token: &str, sdp: &str) -> anyhow::Result<(u16, String, String)> {
    let r = reqwest::blocking::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(sdp.to_string())
        .send()?;
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((status, location, r.text()?))
}

/// One scrape of a Prometheus endpoint: the sum of every sample of `family` whose labels
/// include each of `labels` (`key="value"` as written in the exposition).
pub fn metric_sum(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET {metrics_base}/metrics` as text.
pub fn scrape(metrics_base: &str) -> anyhow::Result<String> {
    Ok(reqwest::blocking::get(format!("{metrics_base}/metrics"))?
        .error_for_status()?
        .text()?)
}

/// The media node's peer gauges summed over shards: (open peers, peers closed so far).
pub fn peers(metrics_base: &str) -> anyhow::Result<(f64, f64)> {
    let text = scrape(metrics_base)?;
    Ok((
        metric_sum(&text, "shardcast_peers", &[]),
        metric_sum(&text, "shardcast_peers_closed_total", &[]),
    ))
}

/// Seconds of media the player must decode, and over which both peers must stay connected.
pub const MEDIA_SECS: u64 = 60;

/// The interop scenario of `tests/e2e/interop_*.rs`: `shardcast serve` on loopback with
/// /metrics; `stack` publishes audio + video over WHIP, and once that is connected `stack`
/// plays it over WHEP for [`MEDIA_SECS`]. Fails unless the player decoded video and audio in
/// every 10 s of those 60 s (not only at the start), both stacks report their connection
/// connected on every tick, and the server kept both peers open all along (no peer closed,
/// from its own metrics, sampled every second).
pub fn publish_and_play(stack: Stack) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("shardcast-interop-")
        .tempdir()?;
    let metrics_addr = format!("127.0.0.1:{}", crate::free_tcp_port());
    let server =
        crate::server::Server::start_with_args(&["--metrics-listen", metrics_addr.as_str()])?;
    let metrics = format!("http://{metrics_addr}");
    let base = server.base_url.clone();
    let room = "interop";
    let mut publisher = StackPeer::start(
        stack,
        "publish",
        &format!("{base}/whip/{room}"),
        &dev_token(&base, room, "publisher")?,
        MEDIA_SECS + 30,
        dir.path(),
    )?;
    let fail = |what: String, peers: &[&StackPeer]| -> anyhow::Error {
        let tails: Vec<String> = peers.iter().map(|p| p.log_tail(30)).collect();
        anyhow::anyhow!(
            "{what}\n{}\n--- server ---\n{}",
            tails.join("\n"),
            server.log_tail(30)
        )
    };
    crate::wait_for("the publisher to connect", Duration::from_secs(30), || {
        publisher.check_running()?;
        Ok(publisher
            .ticks()
            .last()
            .filter(|t| t.pc == "connected")
            .map(|_| ()))
    })
    .map_err(|e| fail(format!("{e:#}"), &[&publisher]))?;

    let mut player = StackPeer::start(
        stack,
        "play",
        &format!("{base}/whep/{room}"),
        &dev_token(&base, room, "player")?,
        MEDIA_SECS,
        dir.path(),
    )?;
    crate::wait_for("the player to connect", Duration::from_secs(30), || {
        player.check_running()?;
        Ok(player
            .ticks()
            .last()
            .filter(|t| t.pc == "connected")
            .map(|_| ()))
    })
    .map_err(|e| fail(format!("{e:#}"), &[&publisher, &player]))?;

    // While the player plays: both peers open on the server, none closed. The last seconds
    // are not sampled: the player then closes its connection itself.
    let mut samples = 0;
    loop {
        let t = player.ticks().last().map_or(0.0, |t| t.t);
        if t >= (MEDIA_SECS - 3) as f64 {
            break;
        }
        if let Err(e) = player.check_running() {
            return Err(fail(format!("{e:#}"), &[&publisher, &player]));
        }
        if let Err(e) = publisher.check_running() {
            return Err(fail(format!("{e:#}"), &[&publisher, &player]));
        }
        let (open, closed) = peers(&metrics)?;
        if open != 2.0 || closed != 0.0 {
            return Err(fail(
                format!("at {t} s of play the server has {open} peers open, {closed} closed"),
                &[&publisher, &player],
            ));
        }
        samples += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    let code = player
        .wait(Duration::from_secs(30))
        .map_err(|e| fail(format!("{e:#}"), &[&publisher, &player]))?;
    if code != Some(0) {
        return Err(fail(
            format!("player exited with {code:?}"),
            &[&publisher, &player],
        ));
    }
    publisher
        .check_running()
        .map_err(|e| fail(format!("{e:#}"), &[&publisher, &player]))?;

    let ticks = player.ticks();
    let check = || -> anyhow::Result<()> {
        anyhow::ensure!(samples >= 40, "only {samples} metrics samples during play");
        let last = ticks.last().context("no tick")?;
        anyhow::ensure!(last.t >= MEDIA_SECS as f64, "played {} s", last.t);
        for t in ticks.iter().chain(publisher.ticks().iter()) {
            anyhow::ensure!(
                t.pc == "connected" && matches!(t.ice.as_str(), "connected" | "completed"),
                "a tick not connected: {t:?}"
            );
        }
        // Frames decoded in each 10 s of the play, so a stall anywhere shows: at least 10 of
        // the 30 per second (5 in the first 10 s, which include waiting for a keyframe).
        let at = |s: f64| ticks.iter().rev().find(|t| t.t <= s).cloned();
        for k in 0..MEDIA_SECS / 10 {
            let (from, to) = ((k * 10) as f64, ((k + 1) * 10) as f64);
            let a = at(from.max(1.0)).context("tick at window start")?;
            let b = at(to).context("tick at window end")?;
            let least = if k == 0 { 50 } else { 100 };
            anyhow::ensure!(
                b.frames >= a.frames + least,
                "video stalled between {from} and {to} s: {a:?} -> {b:?}"
            );
            anyhow::ensure!(
                b.audio >= a.audio + 100,
                "audio stalled between {from} and {to} s: {a:?} -> {b:?}"
            );
        }
        Ok(())
    };
    check().map_err(|e| fail(format!("{e:#}"), &[&publisher, &player]))
}
