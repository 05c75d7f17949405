//! Soak: a scenario (typically one with churn) run for minutes or hours against a server this
//! harness started, while a sampler reads the server's resources every few seconds: resident
//! memory, open file descriptors, threads, the embedded store's bytes on disk, and the gauges
//! of its `/metrics` (peers, subscriptions, tracks, demux entries, rooms and timer entries of
//! the shards, signaling rooms, participants and WebSockets). After a warm-up nothing may
//! grow: each series' median over its last samples is compared with its median over the
//! first samples after the warm-up.
//!
//! Owns the sampler thread and the verdict; the load itself is `run::orchestrate::run`.
//! Never asserts on speed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::procstat;
use crate::run::orchestrate::{self, RunOptions};
use crate::run::server::{Server, ServerSpec};
use crate::run::setup::Credentials;

/// Gauges read from the server's `/metrics` (summed over their labels, e.g. shards).
pub const GAUGES: &[&str] = &[
    "shardcast_peers",
    "shardcast_subscriptions",
    "shardcast_tracks",
    "shardcast_demux_entries",
    "shardcast_signaling_rooms",
    "shardcast_signaling_participants",
    "shardcast_signaling_websockets_open",
    "shardcast_rooms",
    "shardcast_timers",
];

/// How many samples each end of the comparison takes the median of.
const ENDS: usize = 5;

#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The load; `target`, `credentials`, `server_pid` and `floor` are set by `soak`.
    pub run: RunOptions,
    pub sample_every: Duration,
    /// Samples before this are not compared (caches, pools and the allocator settle).
    pub warmup: Duration,
    /// Allowed growth of each series, as a fraction of its value after the warm-up.
    pub max_growth: f64,
}

/// One reading of the server.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SoakSample {
    pub t_s: f64,
    pub values: BTreeMap<String, f64>,
}

/// One series' verdict.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Growth {
    pub series: String,
    /// Median of the first samples after the warm-up.
    pub after_warmup: f64,
    /// Median of the last samples.
    pub end: f64,
    /// (end - after_warmup) / after_warmup (0 when both are 0).
    pub growth: f64,
    /// Counts (peers, fds) may move by this much whatever the fraction: a churning room
    /// has a participant or two in flight at any sample.
    pub slack: f64,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakReport {
    pub scenario: String,
    pub minutes: f64,
    pub sample_every_s: f64,
    pub warmup_s: f64,
    pub max_growth: f64,
    pub joins: u64,
    pub failed_joins: u64,
    pub growth: Vec<Growth>,
    pub passed: bool,
    pub warnings: Vec<String>,
    pub samples: Vec<SoakSample>,
}

/// The slack of a series: counts get a few units, bytes none.
fn slack_of(series: &str) -> f64 {
    match series {
        "rss_bytes" | "store_bytes" => 0.0,
        "fds" => 8.0,
        // The runtime's blocking pool (store transactions) starts threads on demand and
        // retires them after 10 s idle: a few come and go with the load.
        "threads" => 8.0,
        _ => 3.0,
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Each series' growth between the first `ENDS` samples at or after `warmup_s` and the last
/// `ENDS` samples. A series absent from the samples is not judged.
pub fn judge(samples: &[SoakSample], warmup_s: f64, max_growth: f64) -> Vec<Growth> {
    let after: Vec<&SoakSample> = samples.iter().filter(|s| s.t_s >= warmup_s).collect();
    let mut names: Vec<&String> = after.iter().flat_map(|s| s.values.keys()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    if after.len() < 2 * ENDS {
        return out;
    }
    for name in names {
        let series = |part: &[&SoakSample]| {
            median(
                part.iter()
                    .filter_map(|s| s.values.get(name).copied())
                    .collect(),
            )
        };
        let (Some(first), Some(end)) =
            (series(&after[..ENDS]), series(&after[after.len() - ENDS..]))
        else {
            continue;
        };
        let slack = slack_of(name);
        let growth = if first > 0.0 {
            (end - first) / first
        } else if end > 0.0 {
            f64::INFINITY
        } else {
            0.0
        };
        out.push(Growth {
            series: name.clone(),
            after_warmup: first,
            end,
            growth,
            slack,
            ok: end <= first * (1.0 + max_growth) + slack,
        });
    }
    out
}

/// Sums each wanted gauge over its label sets in Prometheus text.
pub fn parse_gauges(text: &str, wanted: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let (name_labels, value) = match line.rsplit_once(' ') {
            Some(p) => p,
            None => continue,
        };
        let name = name_labels.split('{').next().unwrap_or(name_labels);
        if !wanted.contains(&name) {
            continue;
        }
        if let Ok(v) = value.trim().parse::<f64>() {
            *out.entry(name.to_string()).or_insert(0.0) += v;
        }
    }
    out
}

/// One reading: /proc of `pid`, the store directory, and the gauges at `metrics_url`.
fn read(
    pid: u32,
    data_dir: &std::path::Path,
    metrics_url: Option<&str>,
    http: &reqwest::blocking::Client,
) -> BTreeMap<String, f64> {
    let mut values = BTreeMap::new();
    let mut put = |k: &str, v: Option<u64>| {
        if let Some(v) = v {
            values.insert(k.to_string(), v as f64);
        }
    };
    put("rss_bytes", procstat::rss_of(pid));
    put("fds", procstat::fds_of(pid));
    put("threads", procstat::threads_of(pid));
    put("store_bytes", procstat::dir_bytes(data_dir));
    if let Some(url) = metrics_url {
        if let Ok(text) = http
            .get(format!("{url}/metrics"))
            .send()
            .and_then(|r| r.text())
        {
            values.extend(parse_gauges(&text, GAUGES));
        }
    }
    values
}

/// Starts the server, samples it on a thread while the scenario runs, and judges growth.
pub fn soak(opts: &SoakOptions, spec: &ServerSpec) -> anyhow::Result<SoakReport> {
    let mut spec = spec.clone();
    spec.extra_args
        .extend(["--metrics-listen".to_string(), "127.0.0.1:0".to_string()]);
    let srv = Server::start(&spec)?;
    let mut run = opts.run.clone();
    run.target = Some(srv.base_url.clone());
    run.credentials = Some(Credentials::ApiKey {
        id: srv.api_key.api_key.clone(),
        secret: srv.api_key.api_secret.clone(),
    });
    run.server_pid = Some(srv.pid());
    run.floor = false;

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let pid = srv.pid();
        let data_dir: PathBuf = srv.data_dir();
        let metrics_url = srv.metrics_url.clone();
        let every = opts.sample_every;
        std::thread::Builder::new()
            .name("soak-sampler".into())
            .spawn(move || {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .expect("an HTTP client without TLS settings builds");
                let start = Instant::now();
                let mut samples = Vec::new();
                let mut next = start;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now >= next {
                        samples.push(SoakSample {
                            t_s: now.duration_since(start).as_secs_f64(),
                            values: read(pid, &data_dir, metrics_url.as_deref(), &http),
                        });
                        next += every;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                samples
            })?
    };
    let result = orchestrate::run(&run);
    stop.store(true, Ordering::Relaxed);
    let samples = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the soak sampler panicked"))?;
    let report = result?;
    let mut warnings = report.warnings.clone();
    if srv.metrics_url.is_none() {
        warnings.push("the server printed no metrics address: gauges not sampled".into());
    }
    drop(srv);
    let warmup_s = opts.warmup.as_secs_f64();
    let growth = judge(&samples, warmup_s, opts.max_growth);
    if growth.is_empty() {
        warnings.push(format!(
            "fewer than {} samples after the warm-up: nothing judged",
            2 * ENDS
        ));
    }
    let passed = !growth.is_empty() && growth.iter().all(|g| g.ok) && report.join_ms.failed == 0;
    Ok(SoakReport {
        scenario: report.scenario.clone(),
        minutes: run.duration.as_secs_f64() / 60.0,
        sample_every_s: opts.sample_every.as_secs_f64(),
        warmup_s,
        max_growth: opts.max_growth,
        joins: report.join_ms.joined,
        failed_joins: report.join_ms.failed,
        growth,
        passed,
        warnings,
        samples,
    })
}

impl SoakReport {
    /// The verdict table for a terminal.
    pub fn table(&self) -> String {
        let mut s = format!(
            "soak {}: {:.0} min, {} joins ({} failed), samples every {:.0} s after {:.0} s warm-up\n",
            self.scenario,
            self.minutes,
            self.joins,
            self.failed_joins,
            self.sample_every_s,
            self.warmup_s
        );
        s.push_str(&format!(
            "{:<36} {:>14} {:>14} {:>8}  ok\n",
            "series", "after warm-up", "end", "growth"
        ));
        for g in &self.growth {
            s.push_str(&format!(
                "{:<36} {:>14.0} {:>14.0} {:>7.1}%  {}\n",
                g.series,
                g.after_warmup,
                g.end,
                g.growth * 100.0,
                if g.ok { "yes" } else { "NO" }
            ));
        }
        for w in &self.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        s.push_str(if self.passed { "PASSED\n" } else { "FAILED\n" });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, rss: f64, peers: f64) -> SoakSample {
        let mut values = BTreeMap::new();
        values.insert("rss_bytes".to_string(), rss);
        values.insert("shardcast_peers".to_string(), peers);
        SoakSample { t_s: t, values }
    }

    #[test]
    fn flat_series_pass_and_growing_ones_fail() {
        // 20 samples after a 10 s warm-up; RSS grows 10% over the run, peers hover at 16.
        let samples: Vec<SoakSample> = (0..30)
            .map(|i| {
                let t = i as f64;
                let rss = if t < 10.0 {
                    50.0e6
                } else {
                    100.0e6 * (1.0 + 0.1 * (t - 10.0) / 19.0)
                };
                let peers = 16.0 + (i % 3) as f64 - 1.0;
                sample(t, rss, peers)
            })
            .collect();
        let g = judge(&samples, 10.0, 0.05);
        let rss = g.iter().find(|g| g.series == "rss_bytes").unwrap();
        assert!(!rss.ok, "10% RSS growth is over a 5% limit: {rss:?}");
        assert!(rss.growth > 0.07 && rss.growth < 0.11, "{rss:?}");
        let peers = g.iter().find(|g| g.series == "shardcast_peers").unwrap();
        assert!(peers.ok, "{peers:?}");
        // The warm-up's lower RSS is not the baseline.
        assert!(rss.after_warmup >= 100.0e6);
    }

    #[test]
    fn too_few_samples_judge_nothing() {
        let samples: Vec<SoakSample> = (0..8).map(|i| sample(i as f64, 1.0, 1.0)).collect();
        assert!(judge(&samples, 0.0, 0.05).is_empty());
    }

    #[test]
    fn gauges_sum_over_labels_and_skip_others() {
        let text = "# HELP shardcast_peers Peers.\n# TYPE shardcast_peers gauge\n\
                    shardcast_peers{shard=\"0\"} 3\nshardcast_peers{shard=\"1\"} 4\n\
                    shardcast_peers_closed_total{shard=\"0\"} 99\nshardcast_tracks 2\n";
        let g = parse_gauges(text, GAUGES);
        assert_eq!(g.get("shardcast_peers"), Some(&7.0));
        assert_eq!(g.get("shardcast_tracks"), Some(&2.0));
        assert!(!g.contains_key("shardcast_peers_closed_total"));
    }
}
