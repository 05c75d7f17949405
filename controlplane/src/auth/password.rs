//! Room passwords as argon2id PHC strings (argon2 crate defaults).
//!
//! Hashing is deliberately slow, so callers on the async runtime use the `_blocking` forms
//! via `spawn_blocking`. Plain passwords are never stored or logged.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

use crate::error::ApiError;

pub const MAX_PASSWORD_LEN: usize = 256;

pub fn hash_blocking(password: &str) -> Result<String, ApiError> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::InvalidRequest(format!(
            "password must be 1-{MAX_PASSWORD_LEN} bytes"
        )));
    }
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// False for a wrong password and for an unreadable hash (logged: that is corrupt data).
pub fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::error!(target: "auth", error = %e, "stored room password hash is unreadable");
            false
        }
    }
}

pub async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

pub async fn verify(password: String, phc: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || verify_blocking(&password, &phc))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let phc = hash_blocking("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(!phc.contains("correct horse"));
        assert!(verify_blocking("correct horse", &phc));
        assert!(!verify_blocking("correct hors", &phc));
        assert!(!verify_blocking("correct horse", "not a hash"));
    }

    #[test]
    fn rejects_empty_and_huge_passwords() {
        assert!(hash_blocking("").is_err());
        assert!(hash_blocking(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }
}
