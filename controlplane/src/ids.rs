//! Names of control-plane entities as newtypes, validated once at the edge.
//!
//! Every id ends up inside a Store key, where `/` separates segments, so the allowed alphabet
//! is deliberately narrow: 1–128 of `A-Z a-z 0-9 _ - . @ +`, not starting with `.`.
//! Media-side ids (`PeerId`, `TrackId`, `RoomId`) live in the dataplane crate.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const MAX_ID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: use 1-{MAX_ID_LEN} characters of A-Z a-z 0-9 _ - . @ +, not starting with '.'")]
pub struct InvalidId {
    pub what: &'static str,
    pub value: String,
}

fn valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@' | b'+'))
}

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: impl Into<String>) -> Result<Self, InvalidId> {
                let s = s.into();
                if valid(&s) {
                    Ok(Self(s))
                } else {
                    Err(InvalidId { what: $what, value: s })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_id!(
    /// A tenant: an application with its own rooms and API keys.
    TenantId,
    "tenant id"
);
name_id!(
    /// The public half of an API key pair (also the JWT `kid` and `iss`).
    ApiKeyId,
    "api key id"
);
name_id!(
    /// A room's name, unique within its tenant.
    RoomName,
    "room name"
);
name_id!(
    /// A participant's identity, unique within its room.
    Identity,
    "identity"
);
name_id!(
    /// A media node.
    NodeId,
    "node id"
);
name_id!(
    /// Where a process runs (`eu-west`, `us-east-1`): an operator's label on media nodes and
    /// control planes, and a token's hint for where its participant's room should go.
    Region,
    "region"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_separators_and_empty() {
        assert!(RoomName::parse("daily-standup_1").is_ok());
        assert!(Identity::parse("ana@example.com").is_ok());
        assert!(RoomName::parse("").is_err());
        assert!(RoomName::parse("a/b").is_err());
        assert!(RoomName::parse("..").is_err());
        assert!(RoomName::parse("x".repeat(129)).is_err());
        assert!(serde_json::from_str::<RoomName>("\"bad name\"").is_err());
    }
}
