//! A room on this shard: its local members and its active-speaker state.
//! Must never own peers (the core does) or route media.

use std::time::Instant;

use crate::forward::speaker::{ActiveSpeakerDetector, AudioLevel, SpeakerConfig};
use crate::ids::{PeerId, RoomId};

pub struct Room {
    pub id: RoomId,
    pub members: Vec<PeerId>,
    pub speaker: RoomSpeaker,
}

impl Room {
    pub fn new(id: RoomId, _now: Instant) -> Self {
        Room {
            id,
            members: Vec::new(),
            speaker: RoomSpeaker::default(),
        }
    }
}

/// The room's [`ActiveSpeakerDetector`] keyed by `PeerId`: the detector works on plain
/// `u64` keys, the core on peers. Holds no scoring of its own.
#[derive(Debug, Clone)]
pub struct RoomSpeaker {
    detector: ActiveSpeakerDetector,
}

impl Default for RoomSpeaker {
    fn default() -> Self {
        RoomSpeaker {
            detector: ActiveSpeakerDetector::new(SpeakerConfig::default()),
        }
    }
}

impl RoomSpeaker {
    /// One audio packet's level from `peer`, as str0m parsed it (dBov, 0 loudest,
    /// -127 silence; V bit when the sender sets it).
    pub fn feed(&mut self, now: Instant, peer: PeerId, dbov: i8, voice: Option<bool>) {
        self.detector
            .feed(now, peer.0, AudioLevel::from_dbov(dbov, voice));
    }

    /// `peer` left the room: it can no longer be (or stay) the dominant speaker.
    pub fn remove(&mut self, peer: PeerId) {
        self.detector.remove(peer.0);
    }

    /// Call every ~100 ms: the new dominant speaker when it changed.
    pub fn poll(&mut self, now: Instant) -> Option<PeerId> {
        self.detector.poll(now).map(PeerId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Two talkers fed as str0m reports levels (negative dBov) every 20 ms, polled every
    /// 100 ms like the core's tick: the louder one is named once, the quieter never while
    /// it stays quieter, and a peer that leaves stops being the speaker.
    #[test]
    fn louder_peer_becomes_speaker_and_leaving_clears_it() {
        let t0 = Instant::now();
        let mut s = RoomSpeaker::default();
        let (quiet, loud) = (PeerId(1), PeerId(2));
        let mut events = Vec::new();
        for step in 1..=50u64 {
            let now = t0 + Duration::from_millis(20 * step);
            s.feed(now, quiet, -60, Some(true));
            s.feed(now, loud, -20, None);
            if step % 5 == 0 {
                events.extend(s.poll(now));
            }
        }
        assert_eq!(events, vec![loud]);
        assert_eq!(s.detector.dominant(), Some(loud.0));
        s.remove(loud);
        assert_eq!(s.detector.dominant(), None);
    }
}
