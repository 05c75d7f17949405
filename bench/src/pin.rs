//! CPU lists (`0`, `0,2`, `0-3`) and pinning the calling thread, so the server (or the floor)
//! and the harness can be kept on separate CPUs of a small machine.

use std::collections::BTreeSet;

/// Parses a Linux-style CPU list: comma-separated ids and inclusive ranges.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list {text:?}: {part:?} is not an id or a range");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().map_err(|_| bad())?;
                let b: usize = b.trim().parse().map_err(|_| bad())?;
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => {
                cpus.insert(part.parse().map_err(|_| bad())?);
            }
        }
    }
    if cpus.is_empty() {
        return Err(format!("bad CPU list {text:?}: empty"));
    }
    Ok(cpus.into_iter().collect())
}

/// Pins the calling thread to `cpu`; false when the CPU does not exist or pinning failed.
pub fn pin_current_thread(cpu: usize) -> bool {
    // Check first: core_affinity indexes a fixed-size CPU set and would panic past its end.
    let known = core_affinity::get_core_ids().unwrap_or_default();
    known.iter().any(|c| c.id == cpu)
        && core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_ranges() {
        assert_eq!(parse_cpu_list("0").unwrap(), vec![0]);
        assert_eq!(parse_cpu_list("3,1-2, 1").unwrap(), vec![1, 2, 3]);
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("a").is_err());
    }

    #[test]
    fn pins_to_cpu_zero_and_refuses_a_missing_cpu() {
        std::thread::spawn(|| {
            assert!(pin_current_thread(0));
            assert!(!pin_current_thread(100_000));
        })
        .join()
        .unwrap();
    }
}
