//! A child process that is stopped when its guard drops.
//!
//! Each child gets its own process group (pgid = its PID), so stopping it also stops the
//! helpers it forked (Chromium's renderer and GPU processes). Output goes to a log file that
//! failing tests print. Never: kill by name, or signal anything but the group we created.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` in a new process group with stdout and stderr appended to `log`.
    ///
    /// The command runs under `setpriv --pdeathsig KILL` (util-linux): if the test process
    /// is killed (a timeout, Ctrl-C) no Drop runs, and the parent-death signal is what
    /// keeps a browser or server from outliving it.
    pub fn spawn(name: &str, cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let mut cmd = with_parent_death_signal(&cmd);
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL to the group and reap it now (a crash, as far as the process can tell).
    pub fn kill(&mut self) {
        self.signal_group("KILL");
        let _ = self.child.wait();
    }

    /// SIGTERM to the group: what systemd sends on `stop`. The process may take its time.
    pub fn terminate(&self) {
        self.signal_group("TERM");
    }

    /// SIGSTOP to the group: the process is frozen, its sockets stay open and the kernel
    /// still accepts connections for it, but it answers nothing (a hung process).
    pub fn freeze(&self) {
        self.signal_group("STOP");
    }

    /// SIGCONT to the group after [`ChildGuard::freeze`].
    pub fn thaw(&self) {
        self.signal_group("CONT");
    }

    /// `Err` with the exit status if the process has already ended.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "{} exited early with {status}; log tail:\n{}",
                self.name,
                self.log_tail(40)
            ),
        }
    }

    /// Waits up to `timeout` for the process to end by itself; its exit code (`None` if a
    /// signal ended it). `Err` if it is still running then.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "{} still running after {timeout:?}; log tail:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Signals our child's process group through kill(1): no `unsafe` outside the I/O
    /// driver, and the group id is the PID we spawned, never a name.
    fn signal_group(&self, sig: &str) {
        let _ = Command::new("kill")
            .args(["-s", sig, "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn with_parent_death_signal(inner: &Command) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--"])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (key, value) in inner.get_envs() {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    if let Some(dir) = inner.get_current_dir() {
        cmd.current_dir(dir);
    }
    cmd
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            // The leader is gone; its group may still hold children.
            self.signal_group("KILL");
            return;
        }
        self.signal_group("TERM");
        // A frozen process (`freeze`) would hold the TERM pending until the KILL: continue it
        // so it stops as usual. Harmless for a running one.
        self.signal_group("CONT");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal_group("KILL");
        let _ = self.child.wait();
    }
}
