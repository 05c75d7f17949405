//! How far behind the newest packet reordered packets of one stream arrive: the last
//! REORDER_SAMPLES distances in REORDER_BUCKETS buckets (the far ones share the last), as
//! libwebrtc's NackRequester keeps them, so [`super::NackGenerator`] can hold a new gap for
//! about as many packets as this stream's reordering needs. Fixed arrays; never allocates.

const REORDER_BUCKETS: usize = 10;
const REORDER_SAMPLES: usize = 128;

#[derive(Debug, Clone)]
pub(crate) struct ReorderHistogram {
    buckets: [u16; REORDER_BUCKETS],
    samples: [u8; REORDER_SAMPLES],
    len: usize,
    next: usize,
}

impl Default for ReorderHistogram {
    fn default() -> Self {
        ReorderHistogram {
            buckets: [0; REORDER_BUCKETS],
            samples: [0; REORDER_SAMPLES],
            len: 0,
            next: 0,
        }
    }
}

impl ReorderHistogram {
    pub(crate) fn add(&mut self, distance: u64) {
        let bucket = distance.min(REORDER_BUCKETS as u64 - 1) as u8;
        if self.len == REORDER_SAMPLES {
            if let Some(old) = self.samples.get(self.next) {
                if let Some(count) = self.buckets.get_mut(usize::from(*old)) {
                    *count -= 1;
                }
            }
        } else {
            self.len += 1;
        }
        if let Some(slot) = self.samples.get_mut(self.next) {
            *slot = bucket;
        }
        if let Some(count) = self.buckets.get_mut(usize::from(bucket)) {
            *count += 1;
        }
        self.next = (self.next + 1) % REORDER_SAMPLES;
    }

    /// Newer packets to wait for so that at least half of the recent reorderings would have
    /// filled in: one more than the median distance (0 with no reordering seen).
    pub(crate) fn wait_packets(&self) -> u8 {
        let mut covered = 0usize;
        let mut wait = 0u8;
        for &count in &self.buckets {
            if covered * 2 >= self.len {
                break;
            }
            covered += usize::from(count);
            wait += 1;
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_waits_one_past_the_median_distance() {
        let mut h = ReorderHistogram::default();
        assert_eq!(h.wait_packets(), 0, "no reordering seen: do not wait");
        h.add(1);
        assert_eq!(
            h.wait_packets(),
            2,
            "a swap of neighbours: the gap fills one packet later"
        );
        h.add(3);
        h.add(3);
        assert_eq!(h.wait_packets(), 4);
        h.add(500);
        h.add(500);
        h.add(500);
        assert_eq!(h.wait_packets(), 4, "3 of 6 are covered by distance 3");
        h.add(500);
        assert_eq!(h.wait_packets(), 10, "the far ones share the last bucket");
    }

    #[test]
    fn histogram_forgets_all_but_the_recent_samples() {
        let mut h = ReorderHistogram::default();
        for _ in 0..REORDER_SAMPLES {
            h.add(9);
        }
        assert_eq!(h.wait_packets(), 10);
        for _ in 0..REORDER_SAMPLES {
            h.add(1);
        }
        assert_eq!(h.wait_packets(), 2);
        assert_eq!(
            h.buckets.iter().map(|&c| usize::from(c)).sum::<usize>(),
            REORDER_SAMPLES
        );
    }
}
