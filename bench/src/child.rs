//! A child process the harness started (the floor, or `shardcast serve`), stopped by its own
//! PID when dropped. Never signals any process it did not start.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// Owns a running child; its stdin is a pipe the child treats as "keep running".
pub struct ChildGuard {
    child: Option<Child>,
    lines: Option<Lines<BufReader<ChildStdout>>>,
    name: String,
}

impl ChildGuard {
    /// Starts `command` with piped stdin and stdout (stderr is inherited, for its logs).
    pub fn spawn(name: &str, mut command: Command) -> std::io::Result<ChildGuard> {
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = command.spawn()?;
        let lines = child.stdout.take().map(|out| BufReader::new(out).lines());
        Ok(ChildGuard {
            child: Some(child),
            lines,
            name: name.to_string(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The next line the child printed, or None at end of output.
    pub fn next_line(&mut self) -> Option<String> {
        self.lines.as_mut()?.next()?.ok()
    }

    /// Closes the child's stdin (its cue to stop), collects what it still prints and waits up
    /// to `grace` before killing it. Returns the remaining output lines.
    pub fn finish(&mut self, grace: Duration) -> Vec<String> {
        let Some(mut child) = self.child.take() else {
            return Vec::new();
        };
        drop(child.stdin.take());
        let rest: Vec<String> = match self.lines.take() {
            // Reading to EOF ends when the child exits (or closes stdout).
            Some(lines) => {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(lines.map_while(Result::ok).collect::<Vec<_>>());
                });
                rx.recv_timeout(grace).unwrap_or_default()
            }
            None => Vec::new(),
        };
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    tracing::warn!(child = %self.name, pid = child.id(), "did not stop; killing");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        rest
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Child::kill signals exactly this PID.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reads_output_and_stops_on_stdin_close() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo ready; cat >/dev/null; echo bye"]);
        let mut child = ChildGuard::spawn("sh", cmd).unwrap();
        assert!(child.pid() > 0);
        assert_eq!(child.next_line().as_deref(), Some("ready"));
        assert_eq!(
            child.finish(Duration::from_secs(5)),
            vec!["bye".to_string()]
        );
    }

    #[test]
    fn drop_kills_a_child_that_ignores_stdin() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let child = ChildGuard::spawn("sleep", cmd).unwrap();
        let pid = child.pid();
        drop(child);
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Reaped (gone) — or at worst a zombie that is no longer running.
        assert!(state.is_empty() || state.contains(") Z"), "{state}");
    }
}
