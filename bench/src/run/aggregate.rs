//! `--repeat N`: N whole runs (fresh server and floor each) folded into one report. The
//! machine is shared and noisy, so one run is not a figure: each top-level figure becomes the
//! median over the runs (even N: the mean of the two middle values; runs where a figure is
//! null are left out of its median), its min and max go to `spread`, and every run's full
//! report to `runs`. `ratio_to_floor` is the median of the per-run ratios, not the ratio of
//! the medians. Everything that is not a figure (the window, steps, floor, per-second
//! series, what the SVG draws) is the median run's: the run whose forwarded packets/s is the
//! median (even N: the lower of the two middle runs).
//!
//! Pure arithmetic over finished reports; never measures anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::summary::RunReport;

/// One figure across the runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Runs that had the figure (it is null in the others).
    pub runs: usize,
}

/// The median of `values` (even count: the mean of the two middle ones); None when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The spread of one figure; None when no run had it.
pub fn spread(values: &[Option<f64>]) -> Option<Spread> {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    Some(Spread {
        median: median(&present)?,
        min: present.iter().copied().fold(f64::INFINITY, f64::min),
        max: present.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        runs: present.len(),
    })
}

type Get = fn(&RunReport) -> Option<f64>;
type Set = fn(&mut RunReport, f64);

/// The figures folded into medians: name (as in `spread`), how to read and write it.
fn figures() -> Vec<(&'static str, Get, Set)> {
    fn round(v: f64) -> u64 {
        v.round().max(0.0) as u64
    }
    // Closures coerce to fn pointers as arguments, not as array elements.
    fn fig(name: &'static str, get: Get, set: Set) -> (&'static str, Get, Set) {
        (name, get, set)
    }
    vec![
        fig(
            "forwarded_pps",
            |r| Some(r.forwarded_pps),
            |r, v| r.forwarded_pps = v,
        ),
        fig(
            "forwarded_mbps",
            |r| Some(r.forwarded_mbps),
            |r, v| r.forwarded_mbps = v,
        ),
        fig(
            "published_pps",
            |r| Some(r.published_pps),
            |r, v| r.published_pps = v,
        ),
        fig(
            "cpu_us_per_forwarded_packet",
            |r| r.cpu_us_per_forwarded_packet,
            |r, v| r.cpu_us_per_forwarded_packet = Some(v),
        ),
        fig(
            "server_cpu_percent",
            |r| r.server_cpu_percent,
            |r, v| r.server_cpu_percent = Some(v),
        ),
        fig(
            "floor_cpu_us_per_packet",
            |r| r.floor_cpu_us_per_packet,
            |r, v| r.floor_cpu_us_per_packet = Some(v),
        ),
        fig(
            "ratio_to_floor",
            |r| r.ratio_to_floor,
            |r, v| r.ratio_to_floor = Some(v),
        ),
        fig(
            "latency_us.p50",
            |r| (r.latency_us.samples > 0).then_some(r.latency_us.p50 as f64),
            |r, v| r.latency_us.p50 = round(v),
        ),
        fig(
            "latency_us.p99",
            |r| (r.latency_us.samples > 0).then_some(r.latency_us.p99 as f64),
            |r, v| r.latency_us.p99 = round(v),
        ),
        fig(
            "latency_us.p999",
            |r| (r.latency_us.samples > 0).then_some(r.latency_us.p999 as f64),
            |r, v| r.latency_us.p999 = round(v),
        ),
        fig(
            "latency_us.samples",
            |r| Some(r.latency_us.samples as f64),
            |r, v| r.latency_us.samples = round(v),
        ),
        fig(
            "loss_ratio",
            |r| Some(r.loss_ratio),
            |r, v| r.loss_ratio = v,
        ),
        fig(
            "join_ms.p50",
            |r| (r.join_ms.joined > 0).then_some(r.join_ms.p50 as f64),
            |r, v| r.join_ms.p50 = round(v),
        ),
        fig(
            "join_ms.p99",
            |r| (r.join_ms.joined > 0).then_some(r.join_ms.p99 as f64),
            |r, v| r.join_ms.p99 = round(v),
        ),
        fig(
            "join_ms.max",
            |r| (r.join_ms.joined > 0).then_some(r.join_ms.max as f64),
            |r, v| r.join_ms.max = round(v),
        ),
        fig(
            "server_rss_bytes",
            |r| r.server_rss_bytes.map(|b| b as f64),
            |r, v| r.server_rss_bytes = Some(round(v)),
        ),
        fig(
            "rss_bytes_per_participant",
            |r| r.rss_bytes_per_participant,
            |r, v| r.rss_bytes_per_participant = Some(v),
        ),
        fig(
            "layer_switches",
            |r| Some(r.layer_switches as f64),
            |r, v| r.layer_switches = round(v),
        ),
        fig(
            "harness_cpu_share",
            |r| Some(r.harness_cpu_share),
            |r, v| r.harness_cpu_share = v,
        ),
        fig("settle_s", |r| Some(r.settle_s), |r, v| r.settle_s = v),
    ]
}

/// Index of the median run by forwarded packets/s (even count: the lower middle one).
pub fn median_run(runs: &[RunReport]) -> Option<usize> {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| runs[a].forwarded_pps.total_cmp(&runs[b].forwarded_pps));
    order.get(runs.len().saturating_sub(1) / 2).copied()
}

/// Folds finished runs into one report (see the module docs); None for no runs.
pub fn combine(runs: Vec<RunReport>) -> Option<RunReport> {
    let base = median_run(&runs)?;
    let mut out = runs[base].clone();
    out.runs = Vec::new();
    out.spread = BTreeMap::new();
    for (name, get, set) in figures() {
        let values: Vec<Option<f64>> = runs.iter().map(get).collect();
        match spread(&values) {
            Some(mut s) => {
                set(&mut out, s.median);
                // Counts are rounded when set (two runs of 1 and 2 switches: 2): the spread
                // states the median the report carries.
                if let Some(v) = get(&out) {
                    s.median = v;
                }
                out.spread.insert(name.to_string(), s);
            }
            None => {
                // No run had it: null (or 0 for plain numbers) stays as the base run has it.
            }
        }
    }
    // Judgements: one bad run taints the set.
    out.harness_saturated = runs.iter().any(|r| r.harness_saturated);
    out.settled = runs.iter().all(|r| r.settled);
    out.join_ms.failed = runs.iter().map(|r| r.join_ms.failed).max().unwrap_or(0);
    if runs.len() > 1 {
        out.warnings = Vec::new();
        for (i, r) in runs.iter().enumerate() {
            for w in &r.warnings {
                out.warnings.push(format!("run {}: {w}", i + 1));
            }
        }
    }
    out.repeat = runs.len();
    out.median_run = base;
    out.runs = runs;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::summary::tests::report;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(
            spread(&[None, Some(5.0), Some(1.0), None]),
            Some(Spread {
                median: 3.0,
                min: 1.0,
                max: 5.0,
                runs: 2
            })
        );
        assert_eq!(spread(&[None, None]), None);
    }

    #[test]
    fn three_runs_fold_into_medians_with_min_and_max() {
        let mut runs: Vec<RunReport> = [28_000.0, 47_000.0, 40_000.0]
            .iter()
            .map(|&pps| report(pps))
            .collect();
        runs[0].cpu_us_per_forwarded_packet = Some(6.0);
        runs[1].cpu_us_per_forwarded_packet = Some(4.0);
        runs[2].cpu_us_per_forwarded_packet = Some(5.0);
        // Ratios per run: 6/2, 4/1, 5/4 → median 3.0 (the ratio of the medians would be 2.5).
        runs[0].floor_cpu_us_per_packet = Some(2.0);
        runs[1].floor_cpu_us_per_packet = Some(1.0);
        runs[2].floor_cpu_us_per_packet = Some(4.0);
        for r in &mut runs {
            r.ratio_to_floor = r
                .cpu_us_per_forwarded_packet
                .zip(r.floor_cpu_us_per_packet)
                .map(|(a, b)| a / b);
        }
        runs[1].harness_saturated = true;
        runs[2].settled = false;
        runs[0].warnings = vec!["slow".into()];
        let out = combine(runs).unwrap();
        assert_eq!(out.repeat, 3);
        assert_eq!(out.runs.len(), 3);
        assert_eq!(out.forwarded_pps, 40_000.0);
        let s = out.spread["forwarded_pps"];
        assert_eq!(
            (s.min, s.median, s.max, s.runs),
            (28_000.0, 40_000.0, 47_000.0, 3)
        );
        assert_eq!(out.cpu_us_per_forwarded_packet, Some(5.0));
        assert_eq!(out.floor_cpu_us_per_packet, Some(2.0));
        assert_eq!(out.ratio_to_floor, Some(3.0), "median of per-run ratios");
        // The median run (40 k) provides the series and window.
        assert_eq!(out.median_run, 2);
        assert_eq!(out.window.forwarded_pps, 40_000.0);
        assert!(out.harness_saturated && !out.settled);
        assert_eq!(out.warnings, vec!["run 1: slow".to_string()]);
        for (name, s) in &out.spread {
            assert!(s.min <= s.median && s.median <= s.max, "{name}: {s:?}");
        }
    }

    #[test]
    fn even_runs_and_null_figures() {
        let mut runs: Vec<RunReport> = [10.0, 40.0, 20.0, 30.0]
            .iter()
            .map(|&pps| report(pps))
            .collect();
        for r in &mut runs {
            r.cpu_us_per_forwarded_packet = None;
            r.ratio_to_floor = None;
            r.floor_cpu_us_per_packet = None;
        }
        // Only two runs have a floor (the others: the floor failed or nothing forwarded).
        runs[0].floor_cpu_us_per_packet = Some(3.0);
        runs[3].floor_cpu_us_per_packet = Some(5.0);
        runs[1].latency_us.p99 = 900;
        let out = combine(runs).unwrap();
        assert_eq!(out.forwarded_pps, 25.0, "mean of the two middle runs");
        assert_eq!(
            out.median_run, 2,
            "the lower middle run by forwarded pps (20)"
        );
        assert_eq!(out.window.forwarded_pps, 20.0);
        assert_eq!(out.floor_cpu_us_per_packet, Some(4.0));
        assert_eq!(out.spread["floor_cpu_us_per_packet"].runs, 2);
        assert_eq!(out.cpu_us_per_forwarded_packet, None);
        assert_eq!(out.ratio_to_floor, None);
        assert!(!out.spread.contains_key("ratio_to_floor"));
        // p99 of 100, 900, 100, 100 → 100.
        assert_eq!(out.latency_us.p99, 100);
        assert_eq!(out.spread["latency_us.p99"].max, 900.0);
        // A single run is its own median.
        let one = combine(vec![report(7.0)]).unwrap();
        assert_eq!((one.repeat, one.runs.len(), one.forwarded_pps), (1, 1, 7.0));
        assert!(combine(Vec::new()).is_none());
    }
}
