//! A room on this shard: its local members and its active-speaker state.
//! Must never own peers (the core does) or route media.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::ids::{PeerId, RoomId};

pub struct Room {
    pub id: RoomId,
    pub members: Vec<PeerId>,
    pub speaker: SpeakerTracker,
}

impl Room {
    pub fn new(id: RoomId, now: Instant) -> Self {
        Room {
            id,
            members: Vec::new(),
            speaker: SpeakerTracker::new(now),
        }
    }
}

/// Loudness per participant from RFC 6464 levels (0 = loudest, 127 = silence), averaged
/// over a window; the dominant speaker changes only when another participant is louder for
/// a whole window (hysteresis, so it does not flap between two talkers).
pub struct SpeakerTracker {
    window: Duration,
    window_start: Instant,
    /// peer → (sum of loudness, packets) in the current window. Loudness = 127 - level.
    acc: HashMap<PeerId, (u64, u32)>,
    current: Option<PeerId>,
}

impl SpeakerTracker {
    pub fn new(now: Instant) -> Self {
        SpeakerTracker {
            window: Duration::from_millis(500),
            window_start: now,
            acc: HashMap::new(),
            current: None,
        }
    }

    /// One audio packet's level (-dBov, 0..=127) from `peer`.
    pub fn feed(&mut self, peer: PeerId, level: i8, voice: Option<bool>) {
        let level = level.clamp(0, 127) as u64;
        let loud = if voice == Some(false) { 0 } else { 127 - level };
        let e = self.acc.entry(peer).or_insert((0, 0));
        e.0 += loud;
        e.1 += 1;
    }

    pub fn remove(&mut self, peer: PeerId) {
        self.acc.remove(&peer);
        if self.current == Some(peer) {
            self.current = None;
        }
    }

    /// The new dominant speaker when it changed at the end of a window.
    pub fn poll(&mut self, now: Instant) -> Option<PeerId> {
        if now.saturating_duration_since(self.window_start) < self.window {
            return None;
        }
        self.window_start = now;
        // Speech is louder than -50 dBov on average (loudness > 77).
        let best = self
            .acc
            .iter()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(p, (sum, n))| (*p, sum / u64::from(*n)))
            .filter(|(_, avg)| *avg > 77)
            .max_by_key(|(p, avg)| (*avg, std::cmp::Reverse(*p)));
        for v in self.acc.values_mut() {
            *v = (0, 0);
        }
        match best {
            Some((p, _)) if self.current != Some(p) => {
                self.current = Some(p);
                Some(p)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loudest_talker_wins_after_a_window() {
        let t0 = Instant::now();
        let mut s = SpeakerTracker::new(t0);
        for _ in 0..20 {
            s.feed(PeerId(1), 90, Some(true));
            s.feed(PeerId(2), 20, Some(true));
        }
        assert_eq!(s.poll(t0 + Duration::from_millis(100)), None);
        assert_eq!(s.poll(t0 + Duration::from_millis(600)), Some(PeerId(2)));
        // Same speaker again: no new event.
        s.feed(PeerId(2), 20, Some(true));
        assert_eq!(s.poll(t0 + Duration::from_millis(1200)), None);
        // Silence elects nobody.
        s.feed(PeerId(1), 127, Some(false));
        assert_eq!(s.poll(t0 + Duration::from_millis(1800)), None);
    }
}
