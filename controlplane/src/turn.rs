//! TURN servers for clients that cannot reach a media node directly (UDP blocked, strict
//! NAT): the control plane hands each client `iceServers` with time-limited credentials in
//! the TURN REST API scheme that coturn implements as `use-auth-secret`: the username is
//! `<expiry unix time>:<identity>` and the password is base64(HMAC-SHA1(secret, username)).
//! The TURN server checks the MAC with the same shared secret and refuses the username after
//! its expiry; nothing is stored anywhere.
//!
//! Handed out in the WebSocket `joined` message (`ice_servers`) and on WHIP/WHEP `201`s as
//! `Link: <url>; rel="ice-server"; username=…; credential=…; credential-type="password"`
//! (RFC 9725 §4.6). Must never: hand out the secret itself, or credentials without expiry.

use aws_lc_rs::hmac;
use axum::http::HeaderValue;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// What the config says about TURN (`[turn]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TurnSettings {
    /// `turn:`/`turns:` (and `stun:`) URLs, as clients should use them.
    pub urls: Vec<String>,
    /// The secret shared with the TURN server (coturn `static-auth-secret`).
    pub secret: Option<String>,
    /// How long handed-out credentials stay valid.
    pub ttl_secs: u64,
}

/// One entry of a client's `RTCConfiguration.iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Why a `[turn]` section is unusable.
pub fn check(settings: &TurnSettings) -> Result<(), String> {
    for u in &settings.urls {
        let scheme_ok = ["turn:", "turns:", "stun:", "stuns:"]
            .iter()
            .any(|s| u.starts_with(s) && u.len() > s.len());
        if !scheme_ok || u.contains(char::is_whitespace) || u.contains(['<', '>', '"']) {
            return Err(format!("`{u}` is not a turn:, turns: or stun: URL"));
        }
    }
    let needs_secret = settings.urls.iter().any(|u| u.starts_with("turn"));
    match &settings.secret {
        None if needs_secret => {
            Err("turn URLs need turn.secret (coturn's static-auth-secret)".into())
        }
        Some(s) if s.len() < 16 => Err("turn.secret: at least 16 characters".into()),
        _ if settings.ttl_secs == 0 => Err("turn.ttl_secs must be > 0".into()),
        _ => Ok(()),
    }
}

/// The ICE servers for `identity`, valid until `now_unix + ttl`; empty when none are set.
pub fn ice_servers(settings: &TurnSettings, identity: &str, now_unix: u64) -> Vec<IceServer> {
    let (turn, stun): (Vec<&String>, Vec<&String>) =
        settings.urls.iter().partition(|u| u.starts_with("turn"));
    let mut out = Vec::new();
    if !stun.is_empty() {
        out.push(IceServer {
            urls: stun.into_iter().cloned().collect(),
            username: None,
            credential: None,
        });
    }
    if let (false, Some(secret)) = (turn.is_empty(), &settings.secret) {
        let username = format!("{}:{identity}", now_unix.saturating_add(settings.ttl_secs));
        out.push(IceServer {
            urls: turn.into_iter().cloned().collect(),
            credential: Some(credential(secret, &username)),
            username: Some(username),
        });
    }
    out
}

/// base64(HMAC-SHA1(secret, username)): the TURN REST API password.
pub fn credential(secret: &str, username: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

/// RFC 9725 §4.6 `Link` header values, one per URL.
pub fn link_headers(servers: &[IceServer]) -> Vec<HeaderValue> {
    let mut out = Vec::new();
    for s in servers {
        for url in &s.urls {
            let mut v = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(u), Some(c)) = (&s.username, &s.credential) {
                v.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quoted(u),
                    quoted(c)
                ));
            }
            if let Ok(h) = HeaderValue::from_str(&v) {
                out.push(h);
            }
        }
    }
    out
}

/// A quoted-string body (RFC 9110 §5.6.4): backslash and quote escaped.
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TurnSettings {
        TurnSettings {
            urls: vec![
                "stun:turn.example.com:3478".into(),
                "turn:turn.example.com:3478?transport=udp".into(),
                "turns:turn.example.com:5349?transport=tcp".into(),
            ],
            secret: Some("north-wind-and-the-sun".into()),
            ttl_secs: 3600,
        }
    }

    #[test]
    fn the_password_is_base64_hmac_sha1_of_the_username() {
        // RFC 2202 test case 2: HMAC-SHA1("Jefe", "what do ya want for nothing?").
        let want = base64::engine::general_purpose::STANDARD
            .encode(hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"));
        assert_eq!(credential("Jefe", "what do ya want for nothing?"), want);
    }

    #[test]
    fn turn_urls_get_expiring_credentials_and_stun_urls_none() {
        let s = settings();
        let servers = ice_servers(&s, "alice", 1_800_000_000);
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].urls, vec!["stun:turn.example.com:3478"]);
        assert_eq!(servers[0].username, None);
        let turn = &servers[1];
        assert_eq!(turn.urls.len(), 2);
        assert_eq!(turn.username.as_deref(), Some("1800003600:alice"));
        assert_eq!(
            turn.credential.as_deref(),
            Some(credential("north-wind-and-the-sun", "1800003600:alice").as_str())
        );
        assert!(ice_servers(&TurnSettings::default(), "alice", 0).is_empty());
        let links = link_headers(&servers);
        assert_eq!(links.len(), 3);
        assert_eq!(
            links[0].to_str().unwrap(),
            "<stun:turn.example.com:3478>; rel=\"ice-server\""
        );
        let l = links[1].to_str().unwrap();
        assert!(l.starts_with("<turn:turn.example.com:3478?transport=udp>; rel=\"ice-server\"; username=\"1800003600:alice\"; credential=\""), "{l}");
        assert!(l.ends_with("; credential-type=\"password\""), "{l}");
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(check(&settings()), Ok(()));
        assert_eq!(
            check(&TurnSettings::default()),
            Err("turn.ttl_secs must be > 0".into())
        );
        let mut s = settings();
        s.secret = None;
        assert!(check(&s).is_err());
        s.secret = Some("short".into());
        assert!(check(&s).is_err());
        let mut s = settings();
        s.urls.push("http://turn.example.com".into());
        assert!(check(&s).is_err());
        s.urls.pop();
        s.urls.push("turn:x>; rel=\"evil\"".into());
        assert!(check(&s).is_err());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
