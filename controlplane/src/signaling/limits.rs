//! Rate limits of one WebSocket (docs/PROTOCOL.md, "Limits"): a token bucket on every client
//! message (`signaling.messages_per_sec`, `signaling.message_burst`), a count of the messages
//! it refused that closes the socket once it reaches `signaling.refused_before_close` within
//! one `REFUSAL_WINDOW`. The chat limit (`signaling.chat_per_sec`, `signaling.chat_burst`) is a
//! `TokenBucket` too, kept in the session so a reconnect does not refill it.
//!
//! Sans-IO: time is passed in, so the tests run without sleeping. Must never: allocate per
//! message or share state between sockets (each socket task owns its limiter).

use std::time::{Duration, Instant};

use crate::config::SignalingConfig;

/// Refused messages are counted per window of this length; `refused_before_close` of them in
/// one window is sustained abuse.
pub const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

/// A token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What to do with one client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Drop it and answer `error{code:"rate_limited"}`.
    Refuse,
    /// Too many refused: answer `rate_limited` and close the socket.
    Close,
}

/// The limits of one socket.
#[derive(Debug, Clone)]
pub struct SocketLimits {
    messages: TokenBucket,
    refused: u32,
    refused_max: u32,
    window_start: Instant,
}

impl SocketLimits {
    pub fn new(config: &SignalingConfig, now: Instant) -> Self {
        Self {
            messages: TokenBucket::new(config.messages_per_sec, config.message_burst, now),
            refused: 0,
            refused_max: config.refused_before_close.max(1),
            window_start: now,
        }
    }

    /// Any client message (checked before it is parsed, so junk costs a token too).
    pub fn message(&mut self, now: Instant) -> Verdict {
        if self.messages.take(now) {
            return Verdict::Accept;
        }
        if now.saturating_duration_since(self.window_start) >= REFUSAL_WINDOW {
            self.window_start = now;
            self.refused = 0;
        }
        self.refused += 1;
        if self.refused >= self.refused_max {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SignalingConfig {
        SignalingConfig {
            messages_per_sec: 10.0,
            message_burst: 5,
            refused_before_close: 20,
            ..SignalingConfig::default()
        }
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut l = SocketLimits::new(&config(), t0);
        for _ in 0..5 {
            assert_eq!(l.message(t0), Verdict::Accept);
        }
        assert_eq!(l.message(t0), Verdict::Refuse);
        // 10 per second: one more every 100 ms, never more than the burst after a pause.
        assert_eq!(l.message(t0 + Duration::from_millis(100)), Verdict::Accept);
        assert_eq!(l.message(t0 + Duration::from_millis(100)), Verdict::Refuse);
        let later = t0 + Duration::from_secs(60);
        let accepted = (0..10)
            .filter(|_| l.message(later) == Verdict::Accept)
            .count();
        assert_eq!(accepted, 5);
    }

    #[test]
    fn sustained_abuse_closes_but_occasional_excess_does_not() {
        let t0 = Instant::now();
        let mut l = SocketLimits::new(&config(), t0);
        // Refused messages spread over windows never add up to a close.
        for w in 0..5u64 {
            let now = t0 + REFUSAL_WINDOW * (w as u32) + Duration::from_millis(1);
            let verdicts: Vec<Verdict> = (0..20).map(|_| l.message(now)).collect();
            assert!(verdicts.contains(&Verdict::Refuse));
            assert!(!verdicts.contains(&Verdict::Close), "window {w}");
        }
        // A flood: the 20th refusal within one window closes.
        let now = t0 + Duration::from_secs(100);
        let verdicts: Vec<Verdict> = (0..25).map(|_| l.message(now)).collect();
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Accept).count(),
            5
        );
        assert_eq!(verdicts[5 + 19], Verdict::Close);
    }

    #[test]
    fn a_slow_bucket_refills_one_token_at_a_time() {
        let t0 = Instant::now();
        let mut chat = TokenBucket::new(1.0, 2, t0);
        assert!(chat.take(t0));
        assert!(chat.take(t0));
        assert!(!chat.take(t0));
        assert!(!chat.take(t0 + Duration::from_millis(900)));
        assert!(chat.take(t0 + Duration::from_secs(1)));
        assert!(!chat.take(t0 + Duration::from_secs(1)));
    }
}
