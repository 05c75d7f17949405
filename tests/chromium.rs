//! Headless Debian Chromium with a fake camera and microphone, one fresh profile per
//! instance, driven over the DevTools protocol.
//!
//! The DevTools port is chosen by Chromium (`--remote-debugging-port=0`) and read back from
//! `DevToolsActivePort` in the profile directory, so parallel browsers never collide.
//! A browser may run inside a network namespace ([`Browser::launch_in`]). Chromium's
//! headless mode binds DevTools to loopback whatever `--remote-debugging-address` says, and
//! the namespace's loopback is out of the host's reach: a `socat` relay (Debian package
//! `socat`) inside the namespace forwards the namespace's veth address to it.
//! Never: download a browser, or fall back to skipping when Chromium is missing.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::cdp::Cdp;
use crate::netns::NetNs;
use crate::process::ChildGuard;
use crate::wait_for;

/// The Chromium binary: `$SHARDCAST_CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium_path() -> anyhow::Result<PathBuf> {
    let p = std::env::var_os("SHARDCAST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !p.exists() {
        bail!(
            "Chromium not found at {} (install the Debian package `chromium`, \
             or set SHARDCAST_CHROMIUM); the browser tests do not skip",
            p.display()
        );
    }
    Ok(p)
}

/// The flags measured to run WebRTC headless here (docs: /work/shared/DESIGN.md).
pub fn chromium_flags(profile: &std::path::Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        // getDisplayMedia picks the (fake) screen, with sound, without asking.
        "--auto-select-desktop-capture-source=Entire",
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
        // Hidden or background pages must keep decoding: the tests read their stats.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        "--window-size=1280,800",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(std::iter::once(format!(
        "--user-data-dir={}",
        profile.display()
    )))
    .collect()
}

/// Inside `ns`, relays `<namespace address>:port` to Chromium's DevTools on the namespace's
/// loopback, same port.
fn devtools_relay(
    ns: &NetNs,
    port: u16,
    profile: &tempfile::TempDir,
) -> anyhow::Result<ChildGuard> {
    let socat = PathBuf::from("/usr/bin/socat");
    if !socat.exists() {
        bail!(
            "socat not found at {}: install the Debian package `socat` (DevTools of a browser \
             in a network namespace); the tests do not skip",
            socat.display()
        );
    }
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()])
        .arg(socat)
        .arg(format!(
            "TCP-LISTEN:{port},bind={},fork,reuseaddr",
            ns.ns_ip()
        ))
        .arg(format!("TCP:127.0.0.1:{port}"));
    let log = profile.path().join("devtools-relay.log");
    ChildGuard::spawn("devtools relay", cmd, &log)
}

/// One Chromium process showing one page. Dropping it stops the browser (by its PID's
/// process group) and removes its profile.
pub struct Browser {
    pub name: String,
    pub page: Cdp,
    _relay: Option<ChildGuard>,
    // Field order matters: the process stops before its profile directory is removed.
    process: ChildGuard,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium on `url` and attaches to the page.
    pub fn launch(name: &str, url: &str) -> anyhow::Result<Self> {
        Self::start(name, url, None)
    }

    /// As [`Browser::launch`], inside the network namespace `ns` (`ip netns exec`).
    pub fn launch_in(name: &str, url: &str, ns: &NetNs) -> anyhow::Result<Self> {
        Self::start(name, url, Some(ns))
    }

    fn start(name: &str, url: &str, ns: Option<&NetNs>) -> anyhow::Result<Self> {
        let exe = chromium_path()?;
        let profile = tempfile::Builder::new()
            .prefix("shardcast-chromium-")
            .tempdir()?;
        let mut cmd = match ns {
            // `ip netns exec` enters the namespace and execs Chromium: same PID, same group.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name()]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        cmd.args(chromium_flags(profile.path()));
        // A page served from an address other than loopback is not a secure context, and
        // the demo page needs one (getUserMedia): a test server is trusted by its origin.
        let origin: String = url.split('/').take(3).collect::<Vec<_>>().join("/");
        let loopback = ["http://127.0.0.1:", "http://localhost:"];
        if origin.starts_with("http://") && !loopback.iter().any(|l| origin.starts_with(l)) {
            cmd.arg(format!(
                "--unsafely-treat-insecure-origin-as-secure={origin}"
            ));
        }
        cmd.arg(url);
        let log = profile.path().join("chromium.log");
        let mut process = ChildGuard::spawn(&format!("chromium {name}"), cmd, &log)?;

        let port_file = profile.path().join("DevToolsActivePort");
        let port: u16 = wait_for("Chromium DevTools port", Duration::from_secs(30), || {
            process.check_running()?;
            let Ok(text) = std::fs::read_to_string(&port_file) else {
                return Ok(None);
            };
            Ok(text.lines().next().and_then(|l| l.trim().parse().ok()))
        })?;

        let (devtools_ip, relay) = match ns {
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), None),
            Some(ns) => (
                IpAddr::V4(ns.ns_ip()),
                Some(devtools_relay(ns, port, &profile)?),
            ),
        };
        let list_url = format!("http://{devtools_ip}:{port}/json/list");
        let ws_url = wait_for("the page target", Duration::from_secs(20), || {
            let targets: Value = reqwest::blocking::get(&list_url)?.json()?;
            Ok(targets.as_array().and_then(|ts| {
                ts.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                    .map(str::to_string)
            }))
        })?;
        let page = Cdp::connect(&ws_url).context("attach to the page")?;
        let mut browser = Self {
            name: name.to_string(),
            page,
            _relay: relay,
            process,
            _profile: profile,
        };
        // The target exists before the navigation to `url` has committed: wait for the
        // document itself, so the first evaluation runs in the page and not in about:blank.
        let check = "location.href !== 'about:blank' && document.readyState === 'complete'";
        wait_for("the page to load", Duration::from_secs(30), || {
            Ok((browser.eval(check)? == Value::Bool(true)).then_some(()))
        })?;
        Ok(browser)
    }

    /// Evaluates JavaScript in the page; see [`Cdp::evaluate`].
    pub fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        self.process.check_running()?;
        self.page.evaluate(expression)
    }

    /// The page's `window.shardcastStats()` summary.
    pub fn stats(&mut self) -> anyhow::Result<Value> {
        self.eval("window.shardcastStats()")
    }

    /// Polls the page's stats until `pred` accepts them.
    pub fn wait_stats(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let name = self.name.clone();
        let mut last = Value::Null;
        let r = wait_for(&format!("{name}: {what}"), timeout, || {
            let s = self.stats()?;
            let ok = pred(&s);
            last = s.clone();
            Ok(ok.then_some(s))
        });
        r.with_context(|| format!("{name}'s last stats: {last}"))
    }

    /// What the page and the browser said, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "--- {} exceptions:\n{}\n--- console (last 30):\n{}\n--- chromium log (last 30):\n{}",
            self.name,
            self.page.exceptions.join("\n"),
            self.page.console[self.page.console.len().saturating_sub(30)..].join("\n"),
            self.process.log_tail(30)
        )
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

/// Video frames a demo page decoded from participant `who`, from its `shardcastStats()`.
pub fn frames_decoded(stats: &Value, who: &str) -> f64 {
    stats["remote"][who]["video"]["framesDecoded"]
        .as_f64()
        .unwrap_or(0.0)
}
