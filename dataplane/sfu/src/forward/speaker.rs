//! [`ActiveSpeakerDetector`]: one per room. Fed the RFC 6464 audio level of every audio
//! packet, it names the dominant speaker, smoothed over a short window and with hysteresis so
//! it does not flap between two people talking over each other.
//!
//! Scoring: each packet contributes `127 - level` (0 when the V bit says no voice). Time is
//! cut into buckets (50 ms); a participant's score is the mean of its bucket averages over the
//! window (8 buckets = 400 ms), a bucket without packets (DTX, muted) counting as silence.
//! A challenger replaces the dominant speaker when it is loud enough on its own (`min_score`),
//! beats the dominant by `margin_pct`, and keeps doing so for `hold`.
//!
//! Owns: per-participant level history. Must never: read the clock, allocate per packet (only
//! when a participant is first seen), or emit an event when nothing changed.

use std::time::{Duration, Instant};

/// Buckets per window.
const BUCKETS: usize = 8;

/// One RFC 6464 one-byte value: V bit and level in -dBov (0 loudest, 127 silence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    pub voice: bool,
    pub level: u8,
}

impl AudioLevel {
    /// Parse the extension's data byte.
    pub fn parse(byte: u8) -> Self {
        AudioLevel {
            voice: byte & 0x80 != 0,
            level: byte & 0x7f,
        }
    }

    /// Parse the extension data as received (exactly one meaningful byte; RFC 8285 may pad).
    pub fn from_ext(data: &[u8]) -> Option<Self> {
        data.first().map(|b| Self::parse(*b))
    }

    /// From an already-parsed extension: level in dBov as a negative number (0 loudest,
    /// -127 silence, as str0m reports it) and the V bit when known (unknown counts as voice,
    /// so senders without VAD still get a speaker by loudness).
    pub fn from_dbov(dbov: i8, voice: Option<bool>) -> Self {
        AudioLevel {
            voice: voice.unwrap_or(true),
            level: dbov.unsigned_abs().min(127),
        }
    }

    fn activity(self) -> u32 {
        if self.voice {
            127 - u32::from(self.level.min(127))
        } else {
            0
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeakerConfig {
    pub bucket: Duration,
    /// Minimum score (0..=127) to count as speaking at all.
    pub min_score: u32,
    /// A challenger must score above dominant * margin_pct / 100 ...
    pub margin_pct: u32,
    /// ... for this long.
    pub hold: Duration,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        SpeakerConfig {
            bucket: Duration::from_millis(50),
            min_score: 40,
            margin_pct: 120,
            hold: Duration::from_millis(300),
        }
    }
}

#[derive(Debug, Clone)]
struct Participant {
    key: u64,
    /// Absolute bucket number each slot holds, and its sum and count.
    slot_bucket: [u64; BUCKETS],
    sum: [u32; BUCKETS],
    count: [u16; BUCKETS],
}

impl Participant {
    fn new(key: u64) -> Self {
        Participant {
            key,
            slot_bucket: [u64::MAX; BUCKETS],
            sum: [0; BUCKETS],
            count: [0; BUCKETS],
        }
    }

    /// Mean of the bucket means over the window ending at bucket `cur`, times 1.
    fn score(&self, cur: u64) -> u32 {
        let mut total = 0u32;
        for i in 0..BUCKETS {
            let b = self.slot_bucket[i];
            if b != u64::MAX && b <= cur && cur - b < BUCKETS as u64 && self.count[i] > 0 {
                total += self.sum[i] / u32::from(self.count[i]);
            }
        }
        total / BUCKETS as u32
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ActiveSpeakerDetector {
    cfg: SpeakerConfig,
    epoch: Option<Instant>,
    participants: Vec<Participant>,
    dominant: Option<u64>,
    challenger: Option<(u64, Instant)>,
}

impl ActiveSpeakerDetector {
    pub fn new(cfg: SpeakerConfig) -> Self {
        ActiveSpeakerDetector {
            cfg,
            epoch: None,
            participants: Vec::new(),
            dominant: None,
            challenger: None,
        }
    }

    /// The current dominant speaker.
    pub fn dominant(&self) -> Option<u64> {
        self.dominant
    }

    fn bucket_of(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        let width = self.cfg.bucket.as_micros().max(1);
        (now.saturating_duration_since(epoch).as_micros() / width) as u64
    }

    /// One audio packet's level from participant `key`.
    pub fn feed(&mut self, now: Instant, key: u64, level: AudioLevel) {
        let cur = self.bucket_of(now);
        let idx = match self.participants.iter().position(|p| p.key == key) {
            Some(i) => i,
            None => {
                self.participants.push(Participant::new(key));
                self.participants.len() - 1
            }
        };
        let p = &mut self.participants[idx];
        let slot = (cur % BUCKETS as u64) as usize;
        if p.slot_bucket[slot] != cur {
            p.slot_bucket[slot] = cur;
            p.sum[slot] = 0;
            p.count[slot] = 0;
        }
        p.sum[slot] = p.sum[slot].saturating_add(level.activity());
        p.count[slot] = p.count[slot].saturating_add(1);
    }

    /// A participant left (or stopped publishing audio).
    pub fn remove(&mut self, key: u64) {
        self.participants.retain(|p| p.key != key);
        if self.dominant == Some(key) {
            self.dominant = None;
        }
        if self.challenger.is_some_and(|(k, _)| k == key) {
            self.challenger = None;
        }
    }

    /// Call periodically (every ~100 ms). Returns the new dominant speaker when it changed.
    pub fn poll(&mut self, now: Instant) -> Option<u64> {
        let cur = self.bucket_of(now);
        let best = self
            .participants
            .iter()
            .map(|p| (p.key, p.score(cur)))
            .max_by_key(|&(k, s)| (s, std::cmp::Reverse(k)));
        let (best_key, best_score) = best?;
        if best_score < self.cfg.min_score || Some(best_key) == self.dominant {
            // Silence keeps the last speaker; the dominant one loudest needs no change.
            self.challenger = None;
            return None;
        }
        let dominant_score = self.dominant.map_or(0, |d| {
            self.participants
                .iter()
                .find(|p| p.key == d)
                .map_or(0, |p| p.score(cur))
        });
        if u64::from(best_score) * 100 <= u64::from(dominant_score) * u64::from(self.cfg.margin_pct)
        {
            self.challenger = None;
            return None;
        }
        let since = match self.challenger {
            Some((k, t)) if k == best_key => t,
            _ => {
                self.challenger = Some((best_key, now));
                now
            }
        };
        if self.dominant.is_none() || now.saturating_duration_since(since) >= self.cfg.hold {
            self.dominant = Some(best_key);
            self.challenger = None;
            return Some(best_key);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEECH: AudioLevel = AudioLevel {
        voice: true,
        level: 30,
    };
    const QUIET: AudioLevel = AudioLevel {
        voice: true,
        level: 60,
    };
    const NOISE: AudioLevel = AudioLevel {
        voice: false,
        level: 70,
    };

    /// Feed `levels[i]` for participant i every 20 ms for `ms`, polling every 100 ms;
    /// return the events.
    fn run(
        d: &mut ActiveSpeakerDetector,
        now: &mut Instant,
        levels: &[AudioLevel],
        ms: u64,
    ) -> Vec<u64> {
        let mut events = Vec::new();
        for step in 0..ms / 20 {
            *now += Duration::from_millis(20);
            for (i, l) in levels.iter().enumerate() {
                d.feed(*now, i as u64 + 1, *l);
            }
            if step % 5 == 4 {
                events.extend(d.poll(*now));
            }
        }
        events
    }

    #[test]
    fn parses_rfc6464_byte() {
        assert_eq!(
            AudioLevel::parse(0x9e),
            AudioLevel {
                voice: true,
                level: 30
            }
        );
        assert_eq!(
            AudioLevel::parse(0x7f),
            AudioLevel {
                voice: false,
                level: 127
            }
        );
        assert_eq!(
            AudioLevel::from_ext(&[0x85, 0, 0]),
            Some(AudioLevel::parse(0x85))
        );
        assert_eq!(AudioLevel::from_ext(&[]), None);
        assert_eq!(
            AudioLevel::from_dbov(-30, None),
            AudioLevel {
                voice: true,
                level: 30
            }
        );
        assert_eq!(
            AudioLevel::from_dbov(-128, Some(false)),
            AudioLevel {
                voice: false,
                level: 127
            }
        );
    }

    #[test]
    fn picks_the_speaker_and_ignores_noise() {
        let mut d = ActiveSpeakerDetector::new(SpeakerConfig::default());
        let mut now = Instant::now();
        assert!(run(&mut d, &mut now, &[NOISE, NOISE], 1000).is_empty());
        assert_eq!(
            run(&mut d, &mut now, &[NOISE, SPEECH, NOISE], 1000),
            vec![2]
        );
        // Everyone silent: the last speaker stays, no event.
        assert!(run(&mut d, &mut now, &[NOISE, NOISE, NOISE], 2000).is_empty());
        assert_eq!(d.dominant(), Some(2));
    }

    #[test]
    fn hands_over_after_hold_and_does_not_flap() {
        let mut d = ActiveSpeakerDetector::new(SpeakerConfig::default());
        let mut now = Instant::now();
        assert_eq!(run(&mut d, &mut now, &[SPEECH, NOISE], 1000), vec![1]);
        // A cough: 100 ms of speech from 2 does not take over.
        assert!(run(&mut d, &mut now, &[SPEECH, SPEECH], 100).is_empty());
        // Both talk at once at similar levels: no flapping, 1 stays.
        assert!(run(&mut d, &mut now, &[SPEECH, SPEECH], 2000).is_empty());
        // 1 gets quieter than 2 but within the margin... no change.
        let close = AudioLevel {
            voice: true,
            level: 38,
        };
        assert!(run(&mut d, &mut now, &[close, SPEECH], 2000).is_empty());
        // 1 goes quiet: 2 takes over, once.
        assert_eq!(run(&mut d, &mut now, &[QUIET, SPEECH], 2000), vec![2]);
    }

    #[test]
    fn dtx_gaps_count_as_silence_and_remove_clears() {
        let mut d = ActiveSpeakerDetector::new(SpeakerConfig::default());
        let mut now = Instant::now();
        assert_eq!(run(&mut d, &mut now, &[SPEECH], 1000), vec![1]);
        // 1 stops sending (DTX), 2 speaks: 2 takes over even though 1's last packets were loud.
        let mut events = Vec::new();
        for step in 0..50 {
            now += Duration::from_millis(20);
            d.feed(now, 2, SPEECH);
            if step % 5 == 4 {
                events.extend(d.poll(now));
            }
        }
        assert_eq!(events, vec![2]);
        d.remove(2);
        assert_eq!(d.dominant(), None);
        assert_eq!(run(&mut d, &mut now, &[SPEECH], 500), vec![1]);
    }
}
