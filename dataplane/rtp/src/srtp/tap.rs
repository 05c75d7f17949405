//! The DTLS key tap: captures a str0m peer's SRTP keying material, which str0m 0.25 does
//! not expose, through its pluggable crypto provider.
//!
//! [`build_rtc`] builds the `Rtc` with a process-wide provider that is the default one but
//! for its DTLS provider: that wraps every instance it makes, and the wrapped instance copies
//! `DtlsOutput::KeyingMaterial` into the peer's [`KeySlot`] as it passes through unchanged
//! (str0m still builds its own SRTP contexts from it; Shardcast does not use them). The
//! instance learns its peer's slot from a thread-local set just before `RtcConfig::build`,
//! which calls `DtlsProvider::new_dtls` synchronously.
//! Owns: that provider (made and leaked once per process) and the slots.
//!
//! Once a transport's keys are taken, every SRTP/SRTCP datagram str0m itself emits on it
//! must be dropped, never sent: str0m seals with the same keys, and neither its sequence
//! numbers nor its SRTCP index are coordinated with ours (under AES-GCM a repeated
//! SSRC/index is a repeated nonce).
//! Must never: alter what DTLS outputs, generate certificates differently from the inner
//! provider, or put key bytes in logs.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use str0m::config::{CryptoProvider, DtlsCert};
use str0m::crypto::dtls::{DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider};
use str0m::crypto::dtls::{DtlsVersion, ProtocolVersion};
use str0m::crypto::CryptoError;
use str0m::{Rtc, RtcConfig};

use super::{DtlsKeys, Profile};

/// Where one peer's keys land when its DTLS handshake exports them. Should str0m ever
/// export again on one transport (a new handshake), the newer keys replace any not yet
/// taken and `take` returns them: a caller that keeps polling sees a rekey.
#[derive(Debug, Default)]
pub struct KeySlot {
    /// Lets `take` skip the lock while nothing has arrived (the core polls after every
    /// drain until the keys appear). Only changed with the lock held.
    ready: AtomicBool,
    keys: Mutex<Option<DtlsKeys>>,
}

impl KeySlot {
    /// The keys, once: `Some` the first call after the handshake exported them.
    pub fn take(&self) -> Option<DtlsKeys> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = self.keys.lock().ok()?;
        self.ready.store(false, Ordering::Release);
        slot.take()
    }

    fn put(&self, keys: DtlsKeys) {
        if let Ok(mut slot) = self.keys.lock() {
            *slot = Some(keys);
            self.ready.store(true, Ordering::Release);
        }
    }
}

/// Builds an `Rtc` whose DTLS reports its SRTP keys into the returned slot. The crypto
/// provider is the tapping one (the installed process default, or str0m's feature-flag
/// default, with its DTLS wrapped): a provider already set on `config` is replaced.
pub fn build_rtc(config: RtcConfig, now: Instant) -> (Rtc, Arc<KeySlot>) {
    let slot = Arc::new(KeySlot::default());
    NEXT_SLOT.with(|next| *next.borrow_mut() = Some(slot.clone()));
    let rtc = config
        .set_crypto_provider(tapping_provider().clone())
        .build(now);
    // str0m made its DTLS instance inside `build`: it took the slot. Clear it anyway so a
    // stray instance made later on this thread is never tied to this peer.
    let untaken = NEXT_SLOT.with(|next| next.borrow_mut().take());
    if untaken.is_some() {
        tracing::error!(target: "srtp", "str0m built an Rtc without a DTLS instance: no keys");
    }
    (rtc, slot)
}

/// The process-wide tapping provider (also usable as an `Rtc`'s provider outside
/// [`build_rtc`], where it taps nothing).
pub fn tapping_provider() -> &'static Arc<CryptoProvider> {
    static TAPPING: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    TAPPING.get_or_init(|| {
        let inner = CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(str0m::crypto::from_feature_flags);
        // Leaked once per process: `CryptoProvider` holds `&'static` providers.
        let dtls: &'static TapDtlsProvider = Box::leak(Box::new(TapDtlsProvider {
            inner: inner.dtls_provider,
        }));
        Arc::new(CryptoProvider {
            dtls_provider: dtls,
            ..inner
        })
    })
}

thread_local! {
    /// The slot of the peer whose `Rtc` this thread is building right now.
    static NEXT_SLOT: RefCell<Option<Arc<KeySlot>>> = const { RefCell::new(None) };
}

#[derive(Debug)]
struct TapDtlsProvider {
    inner: &'static dyn DtlsProvider,
}

impl DtlsProvider for TapDtlsProvider {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let inner = self.inner.new_dtls(cert, now, dtls_version, mtu)?;
        match NEXT_SLOT.with(|next| next.borrow_mut().take()) {
            Some(slot) => Ok(Box::new(TapDtlsInstance { inner, slot })),
            // Not built through `build_rtc`: nobody to report to, so no wrapper.
            None => Ok(inner),
        }
    }

    fn is_test(&self) -> bool {
        self.inner.is_test()
    }
}

#[derive(Debug)]
struct TapDtlsInstance {
    inner: Box<dyn DtlsInstance>,
    slot: Arc<KeySlot>,
}

impl DtlsInstance for TapDtlsInstance {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.inner.poll_output(buf);
        if let DtlsOutput::KeyingMaterial(material, profile) = &out {
            match Profile::from_dtls(*profile) {
                Some(profile) => self.slot.put(DtlsKeys {
                    profile,
                    material: material.to_vec(),
                    dtls_client: self.inner.is_active(),
                }),
                None => {
                    tracing::warn!(target: "srtp", "DTLS negotiated {profile}, unknown to Shardcast")
                }
            }
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.inner.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_takes_the_slot_and_leaves_none_behind() {
        let now = Instant::now();
        let (_rtc, slot) = build_rtc(RtcConfig::new(), now);
        assert!(NEXT_SLOT.with(|next| next.borrow().is_none()));
        assert!(slot.take().is_none());
        // The provider used directly builds a working Rtc that taps nothing.
        let provider = tapping_provider().clone();
        let _plain = RtcConfig::new().set_crypto_provider(provider).build(now);
        assert!(NEXT_SLOT.with(|next| next.borrow().is_none()));
    }
}
