//! A tenant's webhook in the Store (`/shardcast/webhooks/{tenant}`): its URL and signing
//! secret, and the checks made when it is set.
//!
//! The secret is stored as given (it signs every event, so it must be readable here, as API
//! key secrets are); it is shown in full only when the server generated it, in the answer
//! to the `PUT` that did. Must never: return a stored secret from a read.

use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::WebhookError;
use crate::error::ApiError;
use crate::ids::TenantId;
use crate::services::now_unix_secs;
use crate::store::typed::{get_json, put_json};
use crate::store::{keys, Store};

pub const MAX_URL_BYTES: usize = 2048;
pub const MIN_SECRET_BYTES: usize = 16;
pub const MAX_SECRET_BYTES: usize = 256;

pub fn key(tenant: &TenantId) -> String {
    keys::webhook(tenant)
}

/// As stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub tenant: TenantId,
    pub url: String,
    pub secret: String,
    pub updated_at: u64,
}

/// As answered: the secret only when just generated, otherwise its last characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookView {
    pub tenant: TenantId,
    pub url: String,
    pub secret_hint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub updated_at: u64,
}

impl WebhookView {
    pub fn of(r: &WebhookRecord, show_secret: bool) -> Self {
        let tail: String = {
            let chars: Vec<char> = r.secret.chars().collect();
            chars[chars.len().saturating_sub(4)..].iter().collect()
        };
        Self {
            tenant: r.tenant.clone(),
            url: r.url.clone(),
            secret_hint: format!("…{tail}"),
            secret: show_secret.then(|| r.secret.clone()),
            updated_at: r.updated_at,
        }
    }
}

/// An `http` or `https` URL with a host and no user name or password in it.
pub fn check_url(url: &str) -> Result<reqwest::Url, WebhookError> {
    if url.len() > MAX_URL_BYTES {
        return Err(WebhookError::InvalidUrl(format!(
            "the webhook URL is longer than {MAX_URL_BYTES} bytes"
        )));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| WebhookError::InvalidUrl(format!("the webhook URL does not parse: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(WebhookError::InvalidUrl(format!(
            "the webhook URL must be http:// or https://, not {}:",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(WebhookError::InvalidUrl(
            "the webhook URL has no host".into(),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(WebhookError::InvalidUrl(
            "the webhook URL must not carry credentials; receivers check the signature".into(),
        ));
    }
    Ok(parsed)
}

/// Printable ASCII without spaces, 16 to 256 bytes.
pub fn check_secret(secret: &str) -> Result<(), WebhookError> {
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&secret.len()) {
        return Err(WebhookError::InvalidSecret(format!(
            "the signing secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes"
        )));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WebhookError::InvalidSecret(
            "the signing secret must be printable ASCII without spaces".into(),
        ));
    }
    Ok(())
}

/// `whsec_` and 32 random bytes, base64url.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Resolves the host and opens (then closes) a TCP connection to it, within `limit`: what
/// can be known at configuration time. A receiver that accepts but answers badly is found
/// at delivery, and counted there.
pub async fn check_reachable(url: &reqwest::Url, limit: Duration) -> Result<(), WebhookError> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    // `host_str` keeps an IPv6 literal's brackets, which `lookup_host` wants.
    let target = format!("{host}:{port}");
    let addrs: Vec<_> = match tokio::time::timeout(limit, tokio::net::lookup_host(&target)).await {
        Ok(Ok(addrs)) => addrs.collect(),
        Ok(Err(e)) => {
            return Err(WebhookError::Unreachable(format!(
                "cannot resolve {host}: {e}"
            )))
        }
        Err(_) => {
            return Err(WebhookError::Unreachable(format!(
                "resolving {host} took longer than {} ms",
                limit.as_millis()
            )))
        }
    };
    let mut last = format!("{host} has no address");
    for addr in addrs {
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => last = format!("cannot connect to {addr}: {e}"),
            Err(_) => {
                last = format!(
                    "connecting to {addr} took longer than {} ms",
                    limit.as_millis()
                )
            }
        }
    }
    Err(WebhookError::Unreachable(last))
}

pub async fn get(store: &dyn Store, tenant: &TenantId) -> Result<Option<WebhookRecord>, ApiError> {
    Ok(get_json::<WebhookRecord>(store, &key(tenant))
        .await?
        .map(|v| v.value))
}

/// Stores the webhook; a missing `secret` keeps the current one, or generates one (then
/// the second value is true: show it once).
pub async fn put(
    store: &dyn Store,
    tenant: &TenantId,
    url: String,
    secret: Option<String>,
) -> Result<(WebhookRecord, bool), ApiError> {
    let (secret, generated) = match secret {
        Some(s) => (s, false),
        None => match get(store, tenant).await? {
            Some(existing) => (existing.secret, false),
            None => (generate_secret(), true),
        },
    };
    let record = WebhookRecord {
        tenant: tenant.clone(),
        url,
        secret,
        updated_at: now_unix_secs(),
    };
    put_json(store, &key(tenant), &record, None).await?;
    Ok((record, generated))
}

pub async fn remove(store: &dyn Store, tenant: &TenantId) -> Result<(), ApiError> {
    if store.delete(&key(tenant)).await? {
        Ok(())
    } else {
        Err(WebhookError::NotFound.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        assert!(check_url("https://hooks.example.com/shardcast?x=1").is_ok());
        assert!(check_url("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "example.com/hook",
            "http://user:pw@example.com/",
            "",
        ] {
            assert!(
                matches!(check_url(bad), Err(WebhookError::InvalidUrl(_))),
                "{bad}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        assert!(check_url(&long).is_err());
    }

    #[test]
    fn secrets_are_checked_and_generated_ones_pass() {
        assert!(check_secret("short").is_err());
        assert!(check_secret("sixteen bytes..!").is_err(), "space");
        assert!(check_secret(&"x".repeat(MAX_SECRET_BYTES + 1)).is_err());
        assert!(check_secret("0123456789abcdef").is_ok());
        let g = generate_secret();
        assert!(check_secret(&g).is_ok(), "{g}");
        assert_ne!(g, generate_secret());
    }

    #[test]
    fn a_view_hides_the_secret_unless_asked() {
        let r = WebhookRecord {
            tenant: TenantId::parse("acme").unwrap(),
            url: "https://h/".into(),
            secret: "0123456789abcdefWXYZ".into(),
            updated_at: 1,
        };
        let hidden = serde_json::to_value(WebhookView::of(&r, false)).unwrap();
        assert_eq!(hidden["secret_hint"], "…WXYZ");
        assert!(hidden.get("secret").is_none());
        assert!(!hidden.to_string().contains("0123456789abcdef"));
        let shown = WebhookView::of(&r, true);
        assert_eq!(shown.secret.as_deref(), Some("0123456789abcdefWXYZ"));
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = check_url(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        check_reachable(&open, Duration::from_secs(2))
            .await
            .unwrap();
        drop(listener);
        let err = check_reachable(&open, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(err, WebhookError::Unreachable(_)), "{err}");
    }
}
