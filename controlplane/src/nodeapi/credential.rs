//! Node API credentials: the short-lived token a control plane sends to one media node
//! instead of the cluster secret, and the node's check of it. Both sides live here so the
//! format cannot drift.
//!
//! Token (`Authorization: Bearer <token>`):
//!
//! ```text
//! v1.<node id>.<expiry, unix seconds>.<base64url, no padding: HMAC-SHA256(secret, message)>
//! message = "shardcast-node-api\0v1\0" ‖ len32(node id) ‖ node id
//!           ‖ len32(advertised base URL) ‖ advertised base URL ‖ expiry as u64 big-endian
//! ```
//!
//! Why this shape:
//! - The secret never crosses the wire, so a node (or whoever captures its traffic, or
//!   whoever wrote a forged node record pointing at their own address) learns only tokens.
//! - The token names its node and, inside the MAC only, the address the control plane
//!   dialled (the `api_address` of the node's record). A node accepts a token only for ITS
//!   id and ITS advertised address, so a token for node A is refused by node B, and a token
//!   sent to a forged record's address names that address and is refused by every real node.
//! - The expiry bounds replay of a captured token to [`TOKEN_LIFETIME`] (+ [`CLOCK_SKEW`]);
//!   no nonce, because refusing a replay inside that window would need per-node state, and
//!   whoever can capture a token there can capture the calls themselves too.
//! - The domain prefix keeps these MACs apart from any other use of the secret; the length
//!   prefixes make the message unambiguous whatever the fields contain.
//! - The node checks the MAC with a constant-time compare (`aws_lc_rs::hmac::verify`), and
//!   accepts the cluster secret and, during a rotation, the previous one.
//!
//! The client signs once and reuses the token until less than [`REFRESH_BEFORE`] of it is
//! left, so it does not sign per request. Must never: log or send a secret.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::ids::NodeId;

/// How long a fresh token is valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(120);
/// How far the clocks of a control plane and a node may disagree.
pub const CLOCK_SKEW: Duration = Duration::from_secs(30);
/// A cached token is replaced once less than this is left of it.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(60);

const VERSION: &str = "v1";
const DOMAIN: &[u8] = b"shardcast-node-api\0v1\0";

/// Why a node refused a request's credential. Every case is a `401`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("send Authorization: Bearer <node API token>")]
    Missing,
    #[error("the credential is not a v1 node API token")]
    Malformed,
    #[error("the token is for another node")]
    WrongNode,
    #[error("the token has expired (or the clocks differ by more than the allowed skew)")]
    Expired,
    #[error("the token's expiry is further ahead than any token's lifetime (clocks differ?)")]
    TooFarAhead,
    #[error(
        "the token's signature does not match this node's id and advertised address under \
         the cluster secret"
    )]
    BadSignature,
}

impl CredentialError {
    /// The stable error code in the node API's `{"error": {"code", "message"}}` body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "credential_missing",
            Self::Malformed => "credential_malformed",
            Self::WrongNode => "credential_wrong_node",
            Self::Expired => "credential_expired",
            Self::TooFarAhead => "credential_too_far_ahead",
            Self::BadSignature => "credential_bad_signature",
        }
    }
}

/// The other use of these tokens: a control-plane instance sending room events to another
/// (`signaling::bus`). Its own domain, so a node API token is never a room-bus token.
const ROOM_BUS_DOMAIN: &[u8] = b"shardcast-room-bus\0v1\0";

/// The node a token is for: its id and the base URL control planes reach it at (the
/// `api_address` it registers). A trailing `/` is not part of the address. Also, with
/// [`Audience::room_bus`], a control-plane instance receiving room events: its instance id
/// and the address it registered its interest with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience {
    node_id: NodeId,
    base_url: String,
    domain: &'static [u8],
}

impl Audience {
    pub fn new(node_id: NodeId, base_url: &str) -> Self {
        Self {
            node_id,
            base_url: base_url.trim_end_matches('/').to_string(),
            domain: DOMAIN,
        }
    }

    /// A control-plane instance (`instance` is its id, same alphabet as node ids) receiving
    /// room events at `base_url`.
    pub fn room_bus(instance: NodeId, base_url: &str) -> Self {
        Self {
            domain: ROOM_BUS_DOMAIN,
            ..Self::new(instance, base_url)
        }
    }

    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn message(&self, expiry: u64) -> Vec<u8> {
        let (id, url) = (self.node_id.as_str().as_bytes(), self.base_url.as_bytes());
        let mut m = Vec::with_capacity(self.domain.len() + 16 + id.len() + url.len());
        m.extend_from_slice(self.domain);
        for field in [id, url] {
            m.extend_from_slice(&(field.len() as u32).to_be_bytes());
            m.extend_from_slice(field);
        }
        m.extend_from_slice(&expiry.to_be_bytes());
        m
    }
}

fn key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())
}

/// From now until `unix` (seconds), zero when it is past.
pub fn seconds_until(unix: u64) -> Duration {
    Duration::from_secs(unix.saturating_sub(unix_now()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The last second (unix) at which a token that verified still verifies: its expiry plus
/// the allowed skew. A stream opened with it ends then, so a retired secret or a node's new
/// address cuts long-lived connections too. `None` when the token has no readable expiry.
pub fn valid_until(token: &str) -> Option<u64> {
    let expiry = token.rsplit('.').nth(1)?;
    let expiry: u64 = expiry.parse().ok()?;
    Some(expiry.saturating_add(CLOCK_SKEW.as_secs()))
}

/// The token for `audience` valid until `expiry` (unix seconds), signed with `secret`.
pub fn mint(secret: &str, audience: &Audience, expiry: u64) -> String {
    let tag = hmac::sign(&key(secret), &audience.message(expiry));
    format!(
        "{VERSION}.{}.{expiry}.{}",
        audience.node_id,
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// The control plane's side for one node: a token, fresh enough, for every request.
pub struct Signer {
    secret: String,
    audience: Audience,
    /// The current token and its expiry.
    cached: Mutex<Option<(u64, String)>>,
}

impl Signer {
    pub fn new(secret: &str, audience: Audience) -> Self {
        Self {
            secret: secret.to_string(),
            audience,
            cached: Mutex::new(None),
        }
    }

    /// The token to send now.
    pub fn token(&self) -> String {
        self.token_at(unix_now())
    }

    /// The token to send at `now` (unix seconds): the cached one while more than
    /// [`REFRESH_BEFORE`] of it is left, else a new one valid for [`TOKEN_LIFETIME`].
    pub fn token_at(&self, now: u64) -> String {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((expiry, token)) = cached.as_ref() {
            if *expiry > now && *expiry - now > REFRESH_BEFORE.as_secs() {
                return token.clone();
            }
        }
        let expiry = now + TOKEN_LIFETIME.as_secs();
        let token = mint(&self.secret, &self.audience, expiry);
        *cached = Some((expiry, token.clone()));
        token
    }
}

/// The node's side: accepts tokens for its own id and advertised address only.
pub struct Verifier {
    audience: Audience,
    /// The cluster secret, then the previous one while a rotation is under way.
    keys: Vec<hmac::Key>,
}

impl Verifier {
    pub fn new(audience: Audience, secret: &str, previous_secret: Option<&str>) -> Self {
        let keys = std::iter::once(secret)
            .chain(previous_secret)
            .map(key)
            .collect();
        Self { audience, keys }
    }

    pub fn audience(&self) -> &Audience {
        &self.audience
    }

    /// Checks an `Authorization` header value (`None`: no header, or not text).
    pub fn verify_header(&self, authorization: Option<&str>) -> Result<(), CredentialError> {
        let token = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(CredentialError::Missing)?;
        self.verify_at(token, unix_now())
    }

    /// Checks `token` at `now` (unix seconds).
    pub fn verify_at(&self, token: &str, now: u64) -> Result<(), CredentialError> {
        // The node id may contain '.', the other fields may not: split from the right.
        let mut parts = token.rsplitn(3, '.');
        let (Some(mac), Some(expiry), Some(head)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CredentialError::Malformed);
        };
        let node = head
            .strip_prefix(VERSION)
            .and_then(|h| h.strip_prefix('.'))
            .ok_or(CredentialError::Malformed)?;
        // Digits only: `u64::from_str` would also take "+5", a second spelling of one MAC.
        if expiry.is_empty() || expiry.len() > 20 || !expiry.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CredentialError::Malformed);
        }
        let expiry: u64 = expiry.parse().map_err(|_| CredentialError::Malformed)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| CredentialError::Malformed)?;
        if node != self.audience.node_id.as_str() {
            return Err(CredentialError::WrongNode);
        }
        if now > expiry.saturating_add(CLOCK_SKEW.as_secs()) {
            return Err(CredentialError::Expired);
        }
        if expiry > now + TOKEN_LIFETIME.as_secs() + CLOCK_SKEW.as_secs() {
            return Err(CredentialError::TooFarAhead);
        }
        let message = self.audience.message(expiry);
        if self
            .keys
            .iter()
            .any(|k| hmac::verify(k, &message, &mac).is_ok())
        {
            Ok(())
        } else {
            Err(CredentialError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "cluster-secret-for-unit-tests";
    const NOW: u64 = 1_800_000_000;

    fn aud(id: &str, url: &str) -> Audience {
        Audience::new(NodeId::parse(id).unwrap(), url)
    }

    fn node_a() -> Audience {
        aud("node-a", "http://10.0.0.5:7881")
    }

    fn verifier(a: Audience) -> Verifier {
        Verifier::new(a, SECRET, None)
    }

    #[test]
    fn a_token_round_trips_and_never_contains_the_secret() {
        let token = Signer::new(SECRET, node_a()).token_at(NOW);
        assert!(token.starts_with("v1.node-a.1800000120."), "{token}");
        assert!(!token.contains(SECRET));
        assert_eq!(verifier(node_a()).verify_at(&token, NOW), Ok(()));
        // A trailing slash on either side is the same address.
        let slash = Verifier::new(aud("node-a", "http://10.0.0.5:7881/"), SECRET, None);
        assert_eq!(slash.verify_at(&token, NOW), Ok(()));
    }

    #[test]
    fn a_node_id_with_dots_round_trips() {
        let a = aud("node.eu-1.a", "http://10.0.0.5:7881");
        let token = mint(SECRET, &a, NOW + 60);
        assert_eq!(verifier(a).verify_at(&token, NOW), Ok(()));
    }

    #[test]
    fn a_token_for_another_node_is_refused() {
        let token = mint(SECRET, &node_a(), NOW + 60);
        let b = verifier(aud("node-b", "http://10.0.0.6:7881"));
        assert_eq!(b.verify_at(&token, NOW), Err(CredentialError::WrongNode));
        // Renaming the node in the token does not help: the MAC covers the id.
        let renamed = token.replacen("node-a", "node-b", 1);
        assert_eq!(
            b.verify_at(&renamed, NOW),
            Err(CredentialError::BadSignature)
        );
    }

    #[test]
    fn a_token_for_another_address_is_refused() {
        // A forged record for node-a pointing at the attacker's address: the token the
        // control plane sends there names that address, and node-a refuses it.
        let forged = aud("node-a", "http://203.0.113.9:7881");
        let token = mint(SECRET, &forged, NOW + 60);
        assert_eq!(
            verifier(node_a()).verify_at(&token, NOW),
            Err(CredentialError::BadSignature)
        );
    }

    #[test]
    fn an_expired_token_is_refused_after_the_skew() {
        let token = mint(SECRET, &node_a(), NOW);
        let v = verifier(node_a());
        assert_eq!(v.verify_at(&token, NOW + CLOCK_SKEW.as_secs()), Ok(()));
        assert_eq!(
            v.verify_at(&token, NOW + CLOCK_SKEW.as_secs() + 1),
            Err(CredentialError::Expired)
        );
    }

    #[test]
    fn a_clock_ahead_by_the_skew_is_accepted_and_beyond_refused() {
        let v = verifier(node_a());
        // The signer's clock is CLOCK_SKEW ahead of the node's.
        let ahead = Signer::new(SECRET, node_a()).token_at(NOW + CLOCK_SKEW.as_secs());
        assert_eq!(v.verify_at(&ahead, NOW), Ok(()));
        let too_far = mint(
            SECRET,
            &node_a(),
            NOW + TOKEN_LIFETIME.as_secs() + CLOCK_SKEW.as_secs() + 1,
        );
        assert_eq!(
            v.verify_at(&too_far, NOW),
            Err(CredentialError::TooFarAhead)
        );
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let token = mint(SECRET, &node_a(), NOW + 60);
        let v = verifier(node_a());
        // A later expiry under the same MAC.
        let later = token.replacen(&format!(".{}.", NOW + 60), &format!(".{}.", NOW + 90), 1);
        assert_eq!(v.verify_at(&later, NOW), Err(CredentialError::BadSignature));
        // One MAC character changed.
        let mut bytes = token.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert_eq!(
            v.verify_at(&flipped, NOW),
            Err(CredentialError::BadSignature)
        );
        // Signed with another secret.
        let other = mint("another-secret-of-some-length", &node_a(), NOW + 60);
        assert_eq!(v.verify_at(&other, NOW), Err(CredentialError::BadSignature));
    }

    #[test]
    fn malformed_and_missing_credentials_have_their_own_codes() {
        let v = verifier(node_a());
        let good = mint(SECRET, &node_a(), NOW + 60);
        for bad in [
            "",
            SECRET,
            "v1.node-a",
            "v2.node-a.1800000060.AAAA",
            &good.replacen(&format!(".{}.", NOW + 60), &format!(".+{}.", NOW + 60), 1),
            &format!("{good}!"),
        ] {
            assert_eq!(
                v.verify_at(bad, NOW),
                Err(CredentialError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(v.verify_header(None), Err(CredentialError::Missing));
        assert_eq!(
            v.verify_header(Some(&format!("Basic {good}"))),
            Err(CredentialError::Missing)
        );
        assert_eq!(CredentialError::WrongNode.code(), "credential_wrong_node");
    }

    #[test]
    fn the_previous_secret_is_accepted_during_a_rotation() {
        let old = "the-old-cluster-secret-0123";
        let token = mint(old, &node_a(), NOW + 60);
        let rotating = Verifier::new(node_a(), SECRET, Some(old));
        assert_eq!(rotating.verify_at(&token, NOW), Ok(()));
        let new = mint(SECRET, &node_a(), NOW + 60);
        assert_eq!(rotating.verify_at(&new, NOW), Ok(()));
        assert_eq!(
            verifier(node_a()).verify_at(&token, NOW),
            Err(CredentialError::BadSignature)
        );
    }

    #[test]
    fn a_node_api_token_is_no_room_bus_token() {
        let id = NodeId::parse("cp-1").unwrap();
        let url = "http://10.0.0.5:7880";
        let node_token = mint(SECRET, &Audience::new(id.clone(), url), NOW + 60);
        let bus = Verifier::new(Audience::room_bus(id.clone(), url), SECRET, None);
        assert_eq!(
            bus.verify_at(&node_token, NOW),
            Err(CredentialError::BadSignature)
        );
        let bus_token = mint(SECRET, &Audience::room_bus(id, url), NOW + 60);
        assert_eq!(bus.verify_at(&bus_token, NOW), Ok(()));
    }

    #[test]
    fn the_signer_reuses_a_token_until_it_nears_expiry() {
        let s = Signer::new(SECRET, node_a());
        let first = s.token_at(NOW);
        let keep = TOKEN_LIFETIME.as_secs() - REFRESH_BEFORE.as_secs();
        assert_eq!(s.token_at(NOW + keep - 1), first);
        let next = s.token_at(NOW + keep);
        assert_ne!(next, first);
        assert_eq!(verifier(node_a()).verify_at(&next, NOW + keep), Ok(()));
    }
}
