//! `PasswordLimiter`: caps wrong room-password attempts per (room, source address).
//!
//! A fixed window per key: after `max_failures` wrong attempts within `window`, every
//! attempt is refused until the window that started with the first failure has passed. A
//! right password clears the key. State is per control-plane instance (in memory): with N
//! instances an attacker gets at most N × `max_failures` guesses per window, which is
//! documented rather than paid for with a store write per attempt.
//! Time is passed in so tests do not sleep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept before stale windows are pruned, so a spray of sources cannot grow memory
/// without bound between prunes.
const PRUNE_AT: usize = 10_000;

pub struct PasswordLimiter {
    max_failures: u32,
    window: Duration,
    entries: Mutex<HashMap<(String, IpAddr), Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl PasswordLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures: max_failures.max(1),
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` if this source has used up its attempts on this room.
    pub fn check(&self, room: &str, source: IpAddr, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(&(room.to_owned(), source)) {
            Some(w) if w.failures >= self.max_failures => {
                let ends = w.started + self.window;
                if now < ends {
                    Err(ends - now)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, room: &str, source: IpAddr, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= PRUNE_AT {
            let window = self.window;
            entries.retain(|_, w| now.duration_since(w.started) < window);
        }
        let w = entries.entry((room.to_owned(), source)).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now.duration_since(w.started) >= self.window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures += 1;
    }

    pub fn record_success(&self, room: &str, source: IpAddr) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&(room.to_owned(), source));
    }
}
