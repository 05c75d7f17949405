//! The standard process metrics (`process_*`, as the Prometheus client libraries name them)
//! read from /proc/self on Linux, so dashboards made for any Prometheus-instrumented
//! process work unchanged.
//!
//! Owns: parsing /proc/self/{stat,status,fd,limits} and /proc/stat. Must never: fail a
//! scrape — a file that cannot be read leaves its family without a sample.

use super::text::{Encoder, Kind};

/// Clock ticks per second of the times in /proc (USER_HZ). It is part of the kernel's
/// user-space ABI and is 100 on every architecture we build for (x86_64, aarch64); reading
/// it with sysconf would need `unsafe`, which this crate does not use.
const USER_HZ: f64 = 100.0;

/// What one read of /proc/self gives.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
}

/// Fields of /proc/self/stat after the command name: (utime, stime, threads, starttime,
/// vsize) — fields 14, 15, 20, 22 and 23 of proc(5). The name is in parentheses and may
/// itself contain spaces and parentheses, hence the split at the last `)`.
fn parse_stat(stat: &str) -> Option<(u64, u64, u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state).
    let at = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some((at(14)?, at(15)?, at(20)?, at(22)?, at(23)?))
}

/// `VmRSS:     1234 kB` in /proc/self/status, in bytes.
fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `btime <seconds>` in /proc/stat: when the machine booted, in Unix seconds.
fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit on `Max open files` in /proc/self/limits.
fn parse_max_fds(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn read() -> ProcessStats {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let mut s = ProcessStats::default();
    if let Some((utime, stime, threads, start, vsize)) =
        read("/proc/self/stat").as_deref().and_then(parse_stat)
    {
        s.cpu_seconds = Some((utime + stime) as f64 / USER_HZ);
        s.threads = Some(threads);
        s.virtual_bytes = Some(vsize);
        if let Some(boot) = read("/proc/stat").as_deref().and_then(parse_btime) {
            s.start_time_seconds = Some(boot as f64 + start as f64 / USER_HZ);
        }
    }
    s.resident_bytes = read("/proc/self/status").as_deref().and_then(parse_rss);
    s.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    s.max_fds = read("/proc/self/limits").as_deref().and_then(parse_max_fds);
    s
}

pub fn encode(e: &mut Encoder, s: &ProcessStats) {
    let mut f = e.family(
        "process_cpu_seconds_total",
        Kind::Counter,
        "Total user and system CPU time spent in seconds.",
    );
    if let Some(v) = s.cpu_seconds {
        f.float(&[], v);
    }
    let gauges: [(&str, &str, Option<f64>); 6] = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            s.resident_bytes.map(|v| v as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            s.virtual_bytes.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            s.start_time_seconds,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            s.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            s.max_fds.map(|v| v as f64),
        ),
        (
            "process_threads",
            "Number of OS threads in the process.",
            s.threads.map(|v| v as f64),
        ),
    ];
    for (name, help, value) in gauges {
        let mut f = e.family(name, Kind::Gauge, help);
        if let Some(v) = value {
            f.float(&[], v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_hostile_command_name() {
        // Fields 3.. of a real line; the name holds spaces and a `)`.
        let line = "4242 (shard cast) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 7 0 123456 987654321 2048 18446744073709551615";
        assert_eq!(parse_stat(line), Some((250, 50, 7, 123456, 987654321)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_limits_and_btime() {
        assert_eq!(
            parse_rss("Name:\tx\nVmRSS:\t    1500 kB\nThreads: 3\n"),
            Some(1_536_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(
            parse_btime("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_reads() {
        let s = read();
        assert!(s.cpu_seconds.is_some() && s.resident_bytes.unwrap() > 0);
        assert!(s.open_fds.unwrap() >= 3 && s.threads.unwrap() >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = s.start_time_seconds.unwrap();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0,
            "{start} vs {now}"
        );
    }
}
