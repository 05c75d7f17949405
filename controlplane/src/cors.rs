//! CORS for browser pages on other origins: WHIP/WHEP (any origin by default: the bearer
//! token is the credential, and a player or publisher page usually lives on the customer's
//! own site) and the REST API (no other origin by default: its tenant key and secret do not
//! belong in a browser).
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered by
//! the layer itself, before authentication; an actual response carries
//! `Access-Control-Allow-Origin` and, for WHIP/WHEP, exposes `Location`, `Link` and `ETag`
//! (RFC 9725 clients read the session URL and ICE servers from them).
//! Must never: echo an origin that is not configured, or allow cookies (`credentials`): no
//! route reads them.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Why a configured origin is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not `*` or an origin like https://example.com[:port] (no path)")]
pub struct BadOrigin(pub String);

/// Checks one configured origin: `*`, or `scheme://host[:port]` with http or https.
pub fn check_origin(origin: &str) -> Result<(), BadOrigin> {
    if origin == "*" {
        return Ok(());
    }
    let bad = || BadOrigin(origin.to_string());
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(bad)?;
    if rest.is_empty()
        || rest.contains(['/', '?', '#', ' ', '*'])
        || HeaderValue::from_str(origin).is_err()
    {
        return Err(bad());
    }
    Ok(())
}

fn allow_origin(origins: &[String]) -> Option<AllowOrigin> {
    if origins.is_empty() {
        return None;
    }
    if origins.iter().any(|o| o == "*") {
        return Some(AllowOrigin::any());
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter(|o| check_origin(o).is_ok())
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(AllowOrigin::list(list))
}

/// The layer for `/whip/…` and `/whep/…`; `None` when no origin is allowed.
pub fn whip_layer(origins: &[String]) -> Option<CorsLayer> {
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin(origins)?)
            .allow_methods([Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
            ])
            .expose_headers([
                header::LOCATION,
                HeaderName::from_static("link"),
                header::ETAG,
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

/// The layer for the REST API (`/v1/…`); `None` when no origin is allowed (the default).
pub fn api_layer(origins: &[String]) -> Option<CorsLayer> {
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin(origins)?)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::LOCATION, HeaderName::from_static("retry-after")])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_star_or_scheme_host_port() {
        for ok in [
            "*",
            "https://example.com",
            "http://127.0.0.1:8080",
            "https://a.b:443",
        ] {
            assert_eq!(check_origin(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "example.com",
            "https://",
            "https://example.com/path",
            "ftp://example.com",
            "https://*.example.com",
            "https://exa mple.com",
        ] {
            assert!(check_origin(bad).is_err(), "{bad:?}");
        }
        assert!(whip_layer(&[]).is_none());
        assert!(api_layer(&[]).is_none());
    }
}
