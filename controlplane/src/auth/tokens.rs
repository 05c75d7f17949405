//! Access tokens: JWT HS256 signed with a tenant API key's secret.
//!
//! Header `kid` = the API key id; claims `iss` = the same key id, `sub` = identity, `name`,
//! `room`, `role`, `grants`, `exp`, `nbf`, `iat`, optionally `region`. Verification looks the
//! key up by `kid`, checks the signature with HS256 only (so `alg: none` or any other
//! algorithm is refused), then time bounds, issuer, and what the caller expects (tenant,
//! room). Every failure maps to a stable `ApiError` code.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

use crate::error::{cut_detail, ApiError};
use crate::ids::{ApiKeyId, Identity, Region, RoomName, TenantId};
use crate::store::records::{ApiKeyRecord, Grants, ParticipantRole};
use crate::store::typed::get_json;
use crate::store::{keys, Store};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The participant's identity.
    pub sub: String,
    pub name: String,
    pub room: RoomName,
    pub role: ParticipantRole,
    pub grants: Grants,
    /// Unix seconds.
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    /// The API key id that signed it.
    pub iss: String,
    /// Where the participant's room should be placed if this participant places it (its
    /// region, as the application knows it); absent: the control plane's own region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub tenant: TenantId,
    pub api_key: ApiKeyId,
    pub identity: Identity,
    pub claims: AccessClaims,
}

/// What the verifier must also see. `None` = not checked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected<'a> {
    pub tenant: Option<&'a TenantId>,
    pub room: Option<&'a RoomName>,
}

/// Mints and verifies tokens. Holds policy only (lifetimes, clock leeway); keys live in the
/// Store.
#[derive(Debug, Clone)]
pub struct TokenService {
    /// Clock skew tolerated between instances, applied to `exp` and `nbf`.
    pub leeway_secs: u64,
    pub default_ttl_secs: u64,
    pub max_ttl_secs: u64,
}

impl Default for TokenService {
    fn default() -> Self {
        Self {
            leeway_secs: 5,
            default_ttl_secs: 3600,
            max_ttl_secs: 24 * 3600,
        }
    }
}

impl TokenService {
    /// Signs `claims` with `key` (`kid` = key id). `claims.iss` is forced to the key id.
    pub fn mint(&self, key: &ApiKeyRecord, claims: &AccessClaims) -> Result<String, ApiError> {
        let mut claims = claims.clone();
        claims.iss = key.id.to_string();
        let header = Header {
            alg: Algorithm::HS256,
            kid: Some(key.id.to_string()),
            ..Header::default()
        };
        encode(
            &header,
            &claims,
            &EncodingKey::from_secret(key.secret.as_bytes()),
        )
        .map_err(|e| ApiError::Internal(format!("signing a token failed: {e}")))
    }

    pub async fn verify(
        &self,
        store: &dyn Store,
        token: &str,
        expected: Expected<'_>,
    ) -> Result<VerifiedToken, ApiError> {
        let header = decode_header(token)
            .map_err(|e| ApiError::TokenInvalid(cut_detail(format!("unreadable header ({e})"))))?;
        if header.alg != Algorithm::HS256 {
            return Err(ApiError::TokenInvalid("only HS256 is accepted".into()));
        }
        let kid = header
            .kid
            .ok_or_else(|| ApiError::TokenInvalid("no kid in the header".into()))?;
        let kid =
            ApiKeyId::parse(kid).map_err(|_| ApiError::TokenInvalid("malformed kid".into()))?;
        let key = get_json::<ApiKeyRecord>(store, &keys::api_key(&kid))
            .await?
            .ok_or_else(|| ApiError::TokenInvalid("unknown or revoked signing key".into()))?
            .value;

        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "nbf", "sub", "iss"]);
        validation.set_issuer(&[key.id.as_str()]);
        let data = decode::<AccessClaims>(
            token,
            &DecodingKey::from_secret(key.secret.as_bytes()),
            &validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => ApiError::TokenExpired,
            ErrorKind::ImmatureSignature => ApiError::TokenNotYetValid,
            ErrorKind::InvalidSignature => ApiError::TokenInvalid("bad signature".into()),
            ErrorKind::InvalidIssuer => ApiError::TokenInvalid("issuer is not the kid".into()),
            other => ApiError::TokenInvalid(cut_detail(format!("{other:?}"))),
        })?;
        let claims = data.claims;
        let identity = Identity::parse(claims.sub.clone())
            .map_err(|_| ApiError::TokenInvalid("malformed sub".into()))?;
        if expected.tenant.is_some_and(|t| *t != key.tenant) {
            return Err(ApiError::TokenWrongTenant);
        }
        if expected.room.is_some_and(|r| *r != claims.room) {
            return Err(ApiError::TokenWrongRoom);
        }
        Ok(VerifiedToken {
            tenant: key.tenant,
            api_key: key.id,
            identity,
            claims,
        })
    }
}
