//! Start-up checks of the roles that run a media node (`serve`, `medianode`): refuse to
//! start a server whose DTLS keys would be predictable.
//!
//! str0m's `_internal_test_exports` feature makes its DTLS provider report `is_test()`, and
//! str0m-aws-lc-rs then seeds the DTLS RNG with a constant: every handshake's randoms, and
//! so the SRTP keys exported from it, can be recomputed by anyone. Cargo unifies features
//! across one build, so a workspace crate that enables the feature in its normal
//! dependencies puts it into the server built next to it (it happened: the bench did).
//!
//! One exception, for the test suite: `cargo test --workspace` builds this binary for the
//! integration tests with the dev-dependency features of the whole workspace, the feature
//! included (shardcast-rtp's tests need it). A debug build therefore starts anyway when
//! [`ALLOW_TEST_DTLS`] is `1`, with a warning; a release build never does.
//! Must never: be skipped by a role that starts a media node, or accept the override in a
//! release build.

use anyhow::bail;

/// Lets a debug build start with str0m's test DTLS (set by the test harnesses only).
pub const ALLOW_TEST_DTLS: &str = "SHARDCAST_ALLOW_TEST_DTLS";

/// Refuses to go on when str0m's DTLS provider (the one every peer's `Rtc` is built with)
/// is str0m's test build.
pub fn refuse_test_dtls() -> anyhow::Result<()> {
    let provider = shardcast_rtp::srtp::tap::tapping_provider();
    let allowed = std::env::var_os(ALLOW_TEST_DTLS).is_some_and(|v| v == "1");
    check(
        provider.dtls_provider.is_test(),
        cfg!(debug_assertions),
        allowed,
    )
}

/// The decision, apart from where its inputs come from.
fn check(test_dtls: bool, debug_build: bool, allowed: bool) -> anyhow::Result<()> {
    if !test_dtls {
        return Ok(());
    }
    if debug_build && allowed {
        tracing::warn!(
            "str0m's DTLS is its test build (predictable keys); starting anyway because \
             {ALLOW_TEST_DTLS}=1 and this is a debug build: never expose this server"
        );
        return Ok(());
    }
    bail!(
        "refusing to start: this binary was built with str0m's `_internal_test_exports` \
         feature, which seeds DTLS with a fixed RNG seed, so DTLS and SRTP keys are \
         predictable. A crate built together with the server enables it in its \
         [dependencies] (`cargo tree -e normal,features -i str0m` names it); build the \
         server on its own: cargo build --release -p shardcast-controlplane --bin shardcast"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_dtls_always_starts() {
        for debug_build in [false, true] {
            for allowed in [false, true] {
                assert!(check(false, debug_build, allowed).is_ok());
            }
        }
    }

    #[test]
    fn test_dtls_is_refused_with_a_reason_and_a_fix() {
        let err = check(true, false, false).unwrap_err().to_string();
        assert!(err.contains("refusing to start"), "{err}");
        assert!(err.contains("_internal_test_exports"), "{err}");
        assert!(err.contains("predictable"), "{err}");
        assert!(err.contains("cargo build --release -p shardcast-controlplane"));
        // Without the override a debug build refuses too.
        assert!(check(true, true, false).is_err());
    }

    #[test]
    fn only_a_debug_build_takes_the_override() {
        assert!(check(true, true, true).is_ok());
        assert!(check(true, false, true).is_err(), "release ignores it");
    }
}
