//! Authentication: admin key, tenant API key pairs, access tokens, room passwords (and the
//! client address their limiter keys on).
//!
//! Only well-kept crates do the crypto (jsonwebtoken for HS256, argon2 for passwords).
//! Nothing here talks HTTP except the extractors in [`credentials`], and nothing here
//! decides what a caller may do inside a room: that is the grants' reader's job.

pub mod client_addr;
pub mod credentials;
pub mod password;
pub mod rate_limit;
pub mod tokens;

pub use client_addr::TrustedProxies;
pub use credentials::{AdminAuth, TenantAuth};
pub use rate_limit::PasswordLimiter;
pub use tokens::{AccessClaims, TokenService, VerifiedToken};

/// Compares secrets in time independent of where they first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
