//! Report pieces shared by the floor and the harness: latency percentiles and per-second
//! samples (what the SVG plot draws). Plain serde data; the schema is in docs/PERFORMANCE.md.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::sinks::Slot;

/// Latency percentiles in µs (0 when nothing was sampled).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub samples: u64,
}

impl Percentiles {
    pub fn from_histogram(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            samples: h.len(),
        }
    }
}

/// One second of a run: throughput and latency, for the plot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PerSecond {
    pub second: usize,
    pub packets: u64,
    pub mbps: f64,
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
}

impl PerSecond {
    pub fn from_slot(second: usize, slot: &Slot) -> PerSecond {
        let p = Percentiles::from_histogram(&slot.latency_us);
        PerSecond {
            second,
            packets: slot.packets,
            mbps: slot.bytes as f64 * 8.0 / 1e6,
            latency_p50_us: p.p50,
            latency_p99_us: p.p99,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = crate::sinks::new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::from_histogram(&h);
        assert_eq!(p.samples, 1000);
        assert!((499..=501).contains(&p.p50), "{p:?}");
        assert!((989..=991).contains(&p.p99), "{p:?}");
        assert!((998..=1000).contains(&p.p999), "{p:?}");
        assert_eq!(
            Percentiles::from_histogram(&crate::sinks::new_histogram()),
            Percentiles::default()
        );
    }
}
