//! Which SRTP profile the harness's clients negotiated with the server, so the floor seals
//! with the same cipher. str0m does not expose the DTLS-chosen profile through its API; it
//! logs it once per connection (`debug!("DTLS set SRTP keying material and profile: {}")`,
//! target `str0m`). [`layer`] is a tracing layer that counts those events per profile; the
//! CLI installs it next to its log output, and `run` reads the counts before and after.
//!
//! Its filter enables exactly that target at debug level and caches "never" for every other
//! callsite, so str0m's per-packet trace/debug points stay disabled (the harness's CPU is
//! measured). Must never keep anything but the counts.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::DynFilterFn;
use tracing_subscriber::layer::{Context, Layer};

use crate::srtp::Profile;

/// The message str0m logs when DTLS hands over the keying material.
const PREFIX: &str = "DTLS set SRTP keying material and profile: ";

/// Connections seen per profile, in `Profile::ALL` order.
static SEEN: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

/// Connections per profile so far (since the process started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts(pub [u64; 3]);

impl Counts {
    pub fn now() -> Counts {
        Counts(std::array::from_fn(|i| SEEN[i].load(Ordering::Relaxed)))
    }

    /// What was seen after `earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts(std::array::from_fn(|i| {
            self.0[i].saturating_sub(earlier.0[i])
        }))
    }

    /// The profile most connections used; None when none was seen.
    pub fn most_used(&self) -> Option<Profile> {
        let (i, n) = self
            .0
            .iter()
            .enumerate()
            .max_by_key(|&(i, n)| (*n, std::cmp::Reverse(i)))?;
        (*n > 0).then(|| Profile::ALL[i])
    }

    /// Profiles seen, with counts (for a warning when the connections disagree).
    pub fn seen(&self) -> Vec<(Profile, u64)> {
        Profile::ALL
            .into_iter()
            .zip(self.0)
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Records one connection's profile from str0m's log message; false if it is not that one.
pub fn record_message(message: &str) -> bool {
    let Some(name) = message.strip_prefix(PREFIX) else {
        return false;
    };
    match Profile::from_log_name(name) {
        Some(p) => {
            let i = Profile::ALL.iter().position(|x| *x == p).unwrap_or(0);
            SEEN[i].fetch_add(1, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

fn is_str0m_debug(m: &Metadata<'_>) -> bool {
    m.target() == "str0m" && m.is_event() && *m.level() == Level::DEBUG
}

/// The capturing layer with its own filter (see the module docs).
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = DynFilterFn::new(|m, _| is_str0m_debug(m))
        .with_callsite_filter(|m| {
            if is_str0m_debug(m) {
                tracing::subscriber::Interest::always()
            } else {
                tracing::subscriber::Interest::never()
            }
        })
        .with_max_level_hint(Level::DEBUG);
    Capture.with_filter(filter)
}

struct Capture;

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        struct Message(String);
        impl Visit for Message {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "message" {
                    self.0 = value.to_string();
                }
            }
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        record_message(&m.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test: the counts are process-wide statics, and tests of one binary run in
    /// parallel threads.
    #[test]
    fn counts_profiles_from_str0m_debug_events_only() {
        use tracing_subscriber::layer::SubscriberExt;
        let before = Counts::now();
        assert!(record_message(
            "DTLS set SRTP keying material and profile: SRTP_AEAD_AES_256_GCM"
        ));
        assert!(record_message(
            "DTLS set SRTP keying material and profile: SRTP_AES128_CM_SHA1_80"
        ));
        assert!(!record_message("DTLS connected"));
        assert!(!record_message(
            "DTLS set SRTP keying material and profile: SRTP_NULL"
        ));
        // Through the layer, on this thread only: what str0m's `Rtc::poll_output` logs
        // (target `str0m`, debug) counts; the same text at another target or level does not.
        let subscriber = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(
                target: "str0m",
                "DTLS set SRTP keying material and profile: {}",
                Profile::AeadAes256Gcm.srtp_profile()
            );
            tracing::debug!(target: "str0m::rtp", "{PREFIX}SRTP_AES128_CM_SHA1_80");
            tracing::trace!(target: "str0m", "{PREFIX}SRTP_AES128_CM_SHA1_80");
            tracing::info!(target: "str0m", "{PREFIX}SRTP_AES128_CM_SHA1_80");
        });
        let d = Counts::now().since(&before);
        assert_eq!(d.0, [1, 0, 2]);
        assert_eq!(d.most_used(), Some(Profile::AeadAes256Gcm));
        assert_eq!(
            d.seen(),
            vec![(Profile::Aes128CmSha1_80, 1), (Profile::AeadAes256Gcm, 2)]
        );
        assert_eq!(Counts::default().most_used(), None);
    }
}
