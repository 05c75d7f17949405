//! The DTLS key tap: captures a str0m peer's SRTP keying material, which str0m 0.25 does
//! not expose, through its pluggable crypto provider.
//!
//! [`build_rtc`] builds the `Rtc` with a process-wide provider that is the default one but
//! for its DTLS provider: that makes every DTLS instance itself (dimpl on aws-lc, exactly as
//! str0m's aws-lc provider does) and wraps it; the wrapped instance copies
//! `DtlsOutput::KeyingMaterial` into the peer's [`KeySlot`] as it passes through unchanged
//! (str0m still builds its own SRTP contexts from it; Shardcast does not use them). The
//! instance learns its peer's slot from a thread-local set just before `RtcConfig::build`,
//! which calls `DtlsProvider::new_dtls` synchronously.
//! Owns: that provider (made and leaked once per process), the slots, the dimpl
//! configuration and the node's DTLS certificate.
//!
//! What a peer's DTLS costs to make, and why the provider does not delegate it: str0m's aws-lc
//! provider builds a dimpl `Config` per instance, and `ConfigBuilder::build` checks its crypto
//! provider by running one key exchange per supported group (P-256, P-384, X25519), ≈ 2 ms;
//! str0m then generates a key pair and self-signed certificate per `Rtc`, ≈ 1.4 ms. Both ran on
//! the shard thread for every peer created, so a burst of joins stalled its media. Here the
//! configuration is made once per MTU, and the certificate once per process and renewed after
//! [`CERTIFICATE_LIFETIME`] (peers made after that get the new one; a certificate only has
//! to match the fingerprint in its own peer's SDP, and the DTLS key exchange is ephemeral
//! per connection, as mediasoup's worker and Janus do with one certificate).
//!
//! Once a transport's keys are taken, every SRTP/SRTCP datagram str0m itself emits on it
//! must be dropped, never sent: str0m seals with the same keys, and neither its sequence
//! numbers nor its SRTCP index are coordinated with ours (under AES-GCM a repeated
//! SSRC/index is a repeated nonce).
//! Must never: alter what DTLS outputs, configure dimpl differently from str0m's aws-lc
//! provider, or put key bytes in logs.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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
            configs: Mutex::new(Vec::new()),
            certificate: Mutex::new(None),
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

/// How long the process keeps one DTLS certificate before it makes a new one.
pub const CERTIFICATE_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
struct TapDtlsProvider {
    inner: &'static dyn DtlsProvider,
    /// dimpl configurations by MTU (str0m passes one MTU for every peer of a process).
    configs: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>>,
    /// The certificate peers get, and when it was made.
    certificate: Mutex<Option<(DtlsCert, Instant)>>,
}

impl TapDtlsProvider {
    /// The configuration str0m's aws-lc provider makes for each instance, made once.
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let mut configs = self
            .configs
            .lock()
            .map_err(|_| CryptoError::Other("dimpl configurations poisoned".into()))?;
        if let Some((_, config)) = configs.iter().find(|(m, _)| *m == mtu) {
            return Ok(config.clone());
        }
        // ICE verifies return routability before DTLS, making server cookies redundant.
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        if self.inner.is_test() {
            // str0m's test builds make DTLS deterministic; so does its provider.
            builder = builder.dangerously_set_rng_seed(42);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("dimpl config creation failed: {e}")))?,
        );
        configs.push((mtu, config.clone()));
        Ok(config)
    }
}

impl DtlsProvider for TapDtlsProvider {
    /// The process's certificate, made by the inner provider on first use and again once
    /// it is older than [`CERTIFICATE_LIFETIME`].
    fn generate_certificate(&self) -> Option<DtlsCert> {
        let Ok(mut current) = self.certificate.lock() else {
            return self.inner.generate_certificate();
        };
        let now = Instant::now();
        match &*current {
            Some((cert, made)) if now.duration_since(*made) < CERTIFICATE_LIFETIME => {
                Some(cert.clone())
            }
            _ => {
                let cert = self.inner.generate_certificate()?;
                *current = Some((cert.clone(), now));
                Some(cert)
            }
        }
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let certificate = dimpl::DtlsCertificate {
            certificate: cert.certificate.clone(),
            private_key: cert.private_key.clone(),
        };
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, certificate, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, certificate, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, certificate, now),
            other => {
                return Err(CryptoError::Other(format!(
                    "Unsupported DTLS version: {other}"
                )))
            }
        };
        let inner: Box<dyn DtlsInstance> = Box::new(DimplInstance { dtls });
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

/// A dimpl instance as str0m's DTLS instance (str0m's types are dimpl's, re-exported).
struct DimplInstance {
    dtls: dimpl::Dtls,
}

impl std::fmt::Debug for DimplInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DimplInstance").finish()
    }
}

impl DtlsInstance for DimplInstance {
    fn set_active(&mut self, active: bool) {
        self.dtls.set_active(active)
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.dtls.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.dtls.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.dtls.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.dtls.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.dtls.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.dtls.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.dtls.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.dtls.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.dtls.close()
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

    #[test]
    fn peers_share_the_process_certificate() {
        let now = Instant::now();
        let (mut a, _) = build_rtc(RtcConfig::new(), now);
        let (mut b, _) = build_rtc(RtcConfig::new(), now);
        let fa = a.direct_api().local_dtls_fingerprint().clone();
        let fb = b.direct_api().local_dtls_fingerprint().clone();
        assert_eq!(fa, fb, "one certificate for every peer the provider makes");
        // An Rtc built with the default provider makes its own.
        let mut c = RtcConfig::new().build(now);
        assert_ne!(c.direct_api().local_dtls_fingerprint(), &fa);
    }
}
