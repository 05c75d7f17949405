//! Process accounting from /proc: CPU time (user + sys, all threads) and resident memory.
//!
//! This is how every figure "CPU µs per packet" in the reports is made: the delta of a
//! process's utime + stime over a measured window, divided by the packets in that window.
//! Reads only; never signals or changes the processes it watches.

use std::fs;
use std::time::Duration;

/// CPU time a process has used so far, all threads, user + system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// CPU used between `earlier` and `self` (saturating: never negative).
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions and only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// Parses utime and stime (fields 14 and 15) from the text of /proc/PID/stat.
/// The command name (field 2) may hold spaces and parentheses, so fields are counted
/// after its last ')'.
pub fn parse_stat(text: &str, ticks_per_second: u64) -> Option<CpuTime> {
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    // After the name: state(3) ppid(4) ... utime is field 14, i.e. the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let tick = |t: u64| Duration::from_micros(t * 1_000_000 / ticks_per_second);
    Some(CpuTime {
        user: tick(utime),
        system: tick(stime),
    })
}

/// CPU time of process `pid` (all its threads).
pub fn cpu_of(pid: u32) -> Option<CpuTime> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text, clock_ticks_per_second())
}

/// CPU time of one thread of this process, by its kernel thread id.
pub fn cpu_of_thread(tid: u32) -> Option<CpuTime> {
    let text = fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    parse_stat(&text, clock_ticks_per_second())
}

/// CPU time of this process, at microsecond resolution (getrusage rather than /proc ticks,
/// because the harness measures itself over short windows too).
pub fn cpu_of_self() -> CpuTime {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage into the pointer we own; RUSAGE_SELF is valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return CpuTime::default();
    }
    // SAFETY: rc == 0 means the kernel filled the struct.
    let usage = unsafe { usage.assume_init() };
    let tv =
        |t: libc::timeval| Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64);
    CpuTime {
        user: tv(usage.ru_utime),
        system: tv(usage.ru_stime),
    }
}

/// Parses VmRSS (resident set size) from the text of /proc/PID/status, in bytes.
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resident memory of process `pid` in bytes.
pub fn rss_of(pid: u32) -> Option<u64> {
    parse_rss(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Open file descriptors of process `pid` (entries of /proc/PID/fd; needs the same user or
/// root).
pub fn fds_of(pid: u32) -> Option<u64> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// Threads of process `pid` (the `Threads:` line of /proc/PID/status).
pub fn threads_of(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// Bytes of the regular files under `dir`, recursively (a store's size on disk).
pub fn dir_bytes(dir: &std::path::Path) -> Option<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let meta = entry.metadata().ok()?;
        if meta.is_dir() {
            total += dir_bytes(&entry.path()).unwrap_or(0);
        } else {
            total += meta.len();
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_name() {
        let text =
            "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 3 0 1 2 3";
        let cpu = parse_stat(text, 100).unwrap();
        assert_eq!(cpu.user, Duration::from_millis(2500));
        assert_eq!(cpu.system, Duration::from_millis(1300));
        assert_eq!(cpu.total(), Duration::from_millis(3800));
    }

    #[test]
    fn rejects_truncated_stat() {
        assert_eq!(parse_stat("12 (x) S 1 2", 100), None);
        assert_eq!(parse_stat("no parenthesis", 100), None);
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        // Burn a little CPU so the counters are not all zero on a fast machine.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(cpu_of(pid).is_some());
        assert!(cpu_of_self().total() > Duration::ZERO);
        assert!(
            rss_of(pid).unwrap() > 1024 * 1024,
            "a test binary uses over 1 MiB"
        );
    }

    #[test]
    fn counts_own_fds_threads_and_dir_bytes() {
        let pid = std::process::id();
        let fds = fds_of(pid).unwrap();
        let file = tempfile::tempfile().unwrap();
        assert_eq!(
            fds_of(pid).unwrap(),
            fds + 1,
            "one more open file is one more fd"
        );
        drop(file);
        assert!(threads_of(pid).unwrap() >= 1);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 23]).unwrap();
        assert_eq!(dir_bytes(dir.path()), Some(123));
        assert_eq!(dir_bytes(&dir.path().join("missing")), None);
    }

    #[test]
    fn parses_rss() {
        let status = "Name:\tx\nVmPeak:\t  2000 kB\nVmRSS:\t  1536 kB\nThreads:\t1\n";
        assert_eq!(parse_rss(status), Some(1536 * 1024));
        assert_eq!(parse_rss("Name:\tx\n"), None);
    }
}
