//! Access tokens (JWT, HS256) through `TokenService::verify`, against a real embedded store
//! holding one signing key. The first byte picks the shape: 0 the rest is the token text as
//! a client sends it; 1 the rest is the claims JSON, signed with the stored key (what a
//! tenant holding a key can make, so the claims parser is reached behind the signature);
//! 2 the rest is header JSON, a zero byte and claims JSON, signed. Bit 7: the caller expects
//! a room (as the WebSocket join does). Every refusal must be a 4xx `ApiError` with its
//! stable code, never a panic or a 5xx.
#![no_main]

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey};
use shardcast_controlplane::auth::tokens::{Expected, TokenService};
use shardcast_controlplane::error::MAX_DETAIL;
use shardcast_controlplane::ids::{ApiKeyId, RoomName, TenantId};
use shardcast_controlplane::store::keys;
use shardcast_controlplane::store::records::ApiKeyRecord;
use shardcast_controlplane::store::typed::put_json;
use shardcast_controlplane::{EmbeddedStore, Store};

pub const KID: &str = "AKfuzz0000000000000000";
const SECRET: &str = "fuzz-signing-secret-0123456789abcdef";

struct Verifier {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    tokens: TokenService,
    room: RoomName,
    _dir: tempfile::TempDir,
}

fn verifier() -> Verifier {
    let rt = tokio::runtime::Builder::new_current_thread()
        // The embedded store's lease sweeper sleeps on tokio's timer.
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(rt.block_on(EmbeddedStore::open(dir.path())).expect("store"));
    let id = ApiKeyId::parse(KID).expect("key id");
    let record = ApiKeyRecord {
        id: id.clone(),
        tenant: TenantId::parse("fuzz").expect("tenant"),
        secret: SECRET.into(),
        created_at: 0,
    };
    rt.block_on(put_json(store.as_ref(), &keys::api_key(&id), &record, None))
        .expect("key stored");
    Verifier {
        rt,
        store,
        tokens: TokenService::default(),
        room: RoomName::parse("room").expect("room"),
        _dir: dir,
    }
}

fn signed(header: &[u8], claims: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
    format!("{message}.{sig}")
}

thread_local! {
    static VERIFIER: Verifier = verifier();
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode & 3 {
        0 => match std::str::from_utf8(rest) {
            Ok(t) => t.to_string(),
            Err(_) => return,
        },
        1 => signed(
            format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{KID}"}}"#).as_bytes(),
            rest,
        ),
        _ => {
            let at = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            signed(&rest[..at], rest.get(at + 1..).unwrap_or(&[]))
        }
    };
    VERIFIER.with(|v| {
        let expected = Expected {
            tenant: None,
            room: (mode & 0x80 != 0).then_some(&v.room),
        };
        match v
            .rt
            .block_on(v.tokens.verify(v.store.as_ref(), &token, expected))
        {
            Ok(t) => {
                assert_eq!(t.api_key.as_str(), KID);
                assert_eq!(t.claims.iss, KID);
            }
            Err(e) => {
                assert!(
                    e.status().is_client_error(),
                    "token refused with {} {}: {e}",
                    e.status(),
                    e.code()
                );
                assert!(
                    e.to_string().len() <= 2 * MAX_DETAIL,
                    "message grows with the input: {e}"
                );
            }
        }
    });
});
