//! The REST API through `app()` with `oneshot`, on the embedded store: every error code,
//! tenant isolation, token mint → verify, host controls, and the OpenAPI/route check.

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use shardcast_controlplane::auth::tokens::{AccessClaims, Expected};
use shardcast_controlplane::auth::PasswordLimiter;
use shardcast_controlplane::ids::{ApiKeyId, Identity, NodeId, Region, RoomName, TenantId};
use shardcast_controlplane::routes;
use shardcast_controlplane::services::chat::{self, NewMessage};
use shardcast_controlplane::services::events::{RemoveReason, RoomEvent};
use shardcast_controlplane::services::{participants, rooms};
use shardcast_controlplane::store::records::{
    ApiKeyRecord, Grants, NodeRecord, ParticipantRecord, ParticipantRole, ParticipantState,
    RoomRecord, TrackKind, TrackRecord, TrackSource,
};
use shardcast_controlplane::store::typed::get_json;
use shardcast_controlplane::store::{keys, nodes};
use shardcast_controlplane::{ApiConfig, ApiError};
use support::api::{assert_error, Auth, Tenant, TestApp, ADMIN_KEY};

async fn room(app: &TestApp, t: &Tenant, body: Value) -> (StatusCode, Value) {
    app.call(Method::POST, "/v1/rooms", &t.auth(), Some(body))
        .await
}

fn participant(identity: &str, state: ParticipantState) -> ParticipantRecord {
    ParticipantRecord {
        identity: Identity::parse(identity).unwrap(),
        name: identity.to_uppercase(),
        role: ParticipantRole::Participant,
        grants: Grants::for_role(ParticipantRole::Participant),
        state,
        node: Some(NodeId::parse("node-1").unwrap()),
        peer: Some(7),
        tracks: vec![
            TrackRecord {
                id: 11,
                kind: TrackKind::Audio,
                muted: false,
                rids: Vec::new(),
                source: TrackSource::Microphone,
            },
            TrackRecord {
                id: 12,
                kind: TrackKind::Video,
                muted: false,
                rids: vec!["q".into(), "h".into(), "f".into()],
                source: TrackSource::Screen,
            },
        ],
        video_paused: false,
        joined_at: 0,
    }
}

async fn add_participant(app: &TestApp, t: &Tenant, room: &str, p: &ParticipantRecord) {
    participants::upsert(
        app.state.store.as_ref(),
        &TenantId::parse(t.id.clone()).unwrap(),
        &RoomName::parse(room).unwrap(),
        p,
    )
    .await
    .unwrap();
}

// ---------------------------------------------------------------- admin and tenants

#[tokio::test]
async fn admin_routes_need_the_admin_key() {
    let app = TestApp::new().await;
    let body = Some(json!({ "id": "acme" }));
    let got = app
        .call(Method::POST, "/v1/tenants", &Auth::None, body.clone())
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
    let got = app
        .call(
            Method::POST,
            "/v1/tenants",
            &Auth::Bearer("wrong".into()),
            body.clone(),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
    let t = app.tenant("acme").await;
    // A tenant's own credentials are not admin credentials.
    let got = app.call(Method::GET, "/v1/tenants", &t.auth(), None).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, list) = app
        .call(Method::GET, "/v1/tenants", &Auth::Admin, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["tenants"][0]["id"], "acme");
    let got = app
        .call(Method::POST, "/v1/tenants", &Auth::Admin, body)
        .await;
    assert_error(&got, StatusCode::CONFLICT, "tenant_exists");
    let got = app
        .call(
            Method::POST,
            "/v1/tenants",
            &Auth::Admin,
            Some(json!({ "id": "no/slash" })),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn admin_api_is_closed_without_a_configured_key() {
    let app = TestApp::with_config(ApiConfig::default()).await;
    let got = app
        .call(Method::GET, "/v1/tenants", &Auth::Admin, None)
        .await;
    assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn api_keys_create_list_revoke() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    let (status, keys) = app
        .call(Method::GET, "/v1/tenants/acme/keys", &Auth::Admin, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 1);
    assert_eq!(keys["keys"][0]["id"], t.key.as_str());
    assert!(
        keys["keys"][0].get("secret").is_none(),
        "secrets are shown once only"
    );

    let (status, _) = app.call(Method::GET, "/v1/rooms", &t.auth(), None).await;
    assert_eq!(status, StatusCode::OK);
    let wrong = Auth::Basic(t.key.clone(), "not-the-secret".into());
    let got = app.call(Method::GET, "/v1/rooms", &wrong, None).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
    let got = app
        .call(
            Method::GET,
            "/v1/rooms",
            &Auth::Raw("Basic !!!".into()),
            None,
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");

    let path = format!("/v1/tenants/acme/keys/{}", t.key);
    let (status, _) = app.call(Method::DELETE, &path, &Auth::Admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = app.call(Method::GET, "/v1/rooms", &t.auth(), None).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
    let got = app.call(Method::DELETE, &path, &Auth::Admin, None).await;
    assert_error(&got, StatusCode::NOT_FOUND, "api_key_not_found");
    let got = app
        .call(Method::POST, "/v1/tenants/nobody/keys", &Auth::Admin, None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "tenant_not_found");
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let app = TestApp::new().await;
    let a = app.tenant("alpha").await;
    let b = app.tenant("beta").await;
    let (status, _) = room(&app, &a, json!({ "name": "shared-name" })).await;
    assert_eq!(status, StatusCode::CREATED);
    let got = app
        .call(Method::GET, "/v1/rooms/shared-name", &b.auth(), None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "room_not_found");
    let got = app
        .call(Method::DELETE, "/v1/rooms/shared-name", &b.auth(), None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "room_not_found");
    let (_, list) = app.call(Method::GET, "/v1/rooms", &b.auth(), None).await;
    assert_eq!(list["rooms"], json!([]));
    // The same name is free in another tenant.
    let (status, _) = room(&app, &b, json!({ "name": "shared-name" })).await;
    assert_eq!(status, StatusCode::CREATED);
    // b cannot revoke a's key through its own tenant path.
    let path = format!("/v1/tenants/beta/keys/{}", a.key);
    let got = app.call(Method::DELETE, &path, &Auth::Admin, None).await;
    assert_error(&got, StatusCode::NOT_FOUND, "api_key_not_found");
    let (status, _) = app.call(Method::GET, "/v1/rooms", &a.auth(), None).await;
    assert_eq!(status, StatusCode::OK);
    // Tokens from b are not valid for a.
    let (_, tok) = app
        .call(
            Method::POST,
            "/v1/rooms/shared-name/tokens",
            &b.auth(),
            Some(json!({ "identity": "bob" })),
        )
        .await;
    let alpha = TenantId::parse("alpha").unwrap();
    let err = app
        .state
        .tokens
        .verify(
            app.state.store.as_ref(),
            tok["token"].as_str().unwrap(),
            Expected {
                tenant: Some(&alpha),
                room: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err, ApiError::TokenWrongTenant);
}

#[tokio::test]
async fn removing_a_tenant_closes_its_rooms() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    room(&app, &t, json!({ "name": "r1" })).await;
    room(&app, &other, json!({ "name": "r1" })).await;
    add_participant(
        &app,
        &t,
        "r1",
        &participant("ann", ParticipantState::Joined),
    )
    .await;
    let mut events = app.state.events.subscribe();

    let (status, _) = app
        .call(Method::DELETE, "/v1/tenants/acme", &Auth::Admin, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = app.call(Method::GET, "/v1/rooms", &t.auth(), None).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
    let got = app
        .call(Method::GET, "/v1/tenants/acme", &Auth::Admin, None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "tenant_not_found");
    let store = app.state.store.as_ref();
    assert!(store
        .list_prefix("/shardcast/rooms/acme/")
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .list_prefix("/shardcast/participants/acme/")
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        events.try_recv().unwrap(),
        RoomEvent::ParticipantRemoved {
            reason: RemoveReason::RoomClosed,
            ..
        }
    ));
    assert!(matches!(
        events.try_recv().unwrap(),
        RoomEvent::RoomClosed { .. }
    ));
    // The other tenant is untouched.
    let (status, _) = app
        .call(Method::GET, "/v1/rooms/r1", &other.auth(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

// ---------------------------------------------------------------- rooms

#[tokio::test]
async fn room_lifecycle_and_settings() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    let (status, created) = room(
        &app,
        &t,
        json!({ "name": "board", "password": "s3cret", "max_participants": 10, "ask_before_join": true }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["has_password"], true);
    assert_eq!(created["max_participants"], 10);
    assert_eq!(created["ask_before_join"], true);
    assert_eq!(created["empty_timeout_secs"], 300);
    assert_eq!(
        created["video_codecs"],
        json!([]),
        "no codec preference by default"
    );
    assert!(
        !created.to_string().contains("argon2"),
        "no hash in responses"
    );
    let stored = get_json::<RoomRecord>(
        app.state.store.as_ref(),
        &keys::room(
            &TenantId::parse("acme").unwrap(),
            &RoomName::parse("board").unwrap(),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    let hash = stored.value.password_hash.unwrap();
    assert!(hash.starts_with("$argon2id$") && !hash.contains("s3cret"));

    let got = room(&app, &t, json!({ "name": "board" })).await;
    assert_error(&got, StatusCode::CONFLICT, "room_exists");

    let (status, updated) = app
        .call(
            Method::PATCH,
            "/v1/rooms/board",
            &t.auth(),
            Some(json!({ "password": null, "max_participants": null, "empty_timeout_secs": 60 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["has_password"], false);
    assert_eq!(updated["max_participants"], Value::Null);
    assert_eq!(updated["ask_before_join"], true, "absent fields are kept");
    assert_eq!(updated["empty_timeout_secs"], 60);
    let (status, updated) = app
        .call(
            Method::PATCH,
            "/v1/rooms/board",
            &t.auth(),
            Some(json!({ "video_codecs": ["vp9", "h264"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["video_codecs"], json!(["vp9", "h264"]));
    assert_eq!(updated["empty_timeout_secs"], 60, "absent fields are kept");

    let (_, list) = app.call(Method::GET, "/v1/rooms", &t.auth(), None).await;
    assert_eq!(list["rooms"].as_array().unwrap().len(), 1);
    let (status, _) = app
        .call(Method::DELETE, "/v1/rooms/board", &t.auth(), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = app
        .call(Method::GET, "/v1/rooms/board", &t.auth(), None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "room_not_found");
}

#[tokio::test]
async fn bad_bodies_are_rejected_and_change_nothing() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    let rooms_now = || async {
        app.state
            .store
            .list_prefix("/shardcast/rooms/")
            .await
            .unwrap()
            .len()
    };

    let got = app
        .raw(TestApp::request(
            Method::POST,
            "/v1/rooms",
            &t.auth(),
            Some("{\"name\": ".into()),
        ))
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_json");
    let got = room(&app, &t, json!({ "name": "x", "colour": "red" })).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_json");
    let got = room(&app, &t, json!({ "name": 5 })).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_json");
    let got = room(&app, &t, json!({ "name": "bad name" })).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    let got = room(&app, &t, json!({ "name": "zero", "max_participants": 0 })).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    let twice = json!({ "name": "twice", "video_codecs": ["vp8", "vp8"] });
    assert_error(
        &room(&app, &t, twice).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let unknown = json!({ "name": "h265", "video_codecs": ["h265"] });
    assert_error(
        &room(&app, &t, unknown).await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    let huge = json!({ "name": "big", "password": "p".repeat(70 * 1024) }).to_string();
    let got = app
        .raw(TestApp::request(
            Method::POST,
            "/v1/rooms",
            &t.auth(),
            Some(huge),
        ))
        .await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let mut no_type = TestApp::request(Method::POST, "/v1/rooms", &t.auth(), None);
    *no_type.body_mut() = axum::body::Body::from(json!({ "name": "n" }).to_string());
    let got = app.raw(no_type).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(rooms_now().await, 0, "no rejected request created a room");

    room(&app, &t, json!({ "name": "keep", "ask_before_join": true })).await;
    let got = app
        .call(
            Method::PATCH,
            "/v1/rooms/keep",
            &t.auth(),
            Some(json!({ "max_participants": 0 })),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    let got = app
        .call(
            Method::PATCH,
            "/v1/rooms/keep",
            &t.auth(),
            Some(json!({ "ask_before_join": "yes" })),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_json");
    let (_, after) = app
        .call(Method::GET, "/v1/rooms/keep", &t.auth(), None)
        .await;
    assert_eq!(after["ask_before_join"], true);
    assert_eq!(after["max_participants"], Value::Null);

    let got = app.call(Method::GET, "/v1/nope", &t.auth(), None).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn unknown_rooms_are_room_not_found_everywhere() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    let a = t.auth();
    for (method, path, body) in [
        (Method::GET, "/v1/rooms/ghost", None),
        (
            Method::PATCH,
            "/v1/rooms/ghost",
            Some(json!({ "ask_before_join": true })),
        ),
        (Method::DELETE, "/v1/rooms/ghost", None),
        (Method::GET, "/v1/rooms/ghost/participants", None),
        (Method::GET, "/v1/rooms/ghost/participants/ann", None),
        (Method::DELETE, "/v1/rooms/ghost/participants/ann", None),
        (Method::POST, "/v1/rooms/ghost/participants/ann/admit", None),
        (
            Method::POST,
            "/v1/rooms/ghost/tokens",
            Some(json!({ "identity": "ann" })),
        ),
        (Method::GET, "/v1/rooms/ghost/chat", None),
        (Method::GET, "/v1/rooms/not%20valid", None),
        (
            Method::POST,
            "/v1/rooms/ghost/egress",
            Some(json!({ "kind": "record", "participant": "ann" })),
        ),
        (Method::GET, "/v1/rooms/ghost/egress", None),
        (Method::DELETE, "/v1/rooms/ghost/egress/e1", None),
    ] {
        let got = app.call(method.clone(), path, &a, body).await;
        assert_error(&got, StatusCode::NOT_FOUND, "room_not_found");
    }
}

/// Egress requests are checked before anything starts; an app built without a hub (no
/// signaling, hence no recorder) says so rather than failing later.
#[tokio::test]
async fn egress_requests_are_checked_and_need_an_instance_that_records() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    let a = t.auth();
    room(&app, &t, json!({ "name": "r1" })).await;
    let post = |body: Value| app.call(Method::POST, "/v1/rooms/r1/egress", &a, Some(body));
    let got = post(json!({ "kind": "stream", "participant": "ann" })).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_json");
    let got = post(json!({ "kind": "record", "participant": "ann", "x": 1 })).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_json");
    let got = post(json!({ "kind": "record", "participant": "not valid/" })).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    let got = post(json!({ "kind": "record", "participant": "ann" })).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "egress_unavailable");
    let got = app.call(Method::GET, "/v1/rooms/r1/egress", &a, None).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "egress_unavailable");
    let got = app
        .call(Method::GET, "/v1/rooms/r1/egress", &Auth::None, None)
        .await;
    assert_eq!(got.0, StatusCode::UNAUTHORIZED, "{:?}", got.1);
}

// ---------------------------------------------------------------- tokens

#[tokio::test]
async fn minted_tokens_verify_with_their_claims() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    room(&app, &t, json!({ "name": "standup" })).await;
    let (status, minted) = app
        .call(
            Method::POST,
            "/v1/rooms/standup/tokens",
            &t.auth(),
            Some(json!({ "identity": "ann", "name": "Ann", "role": "viewer", "ttl_secs": 600 })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let token = minted["token"].as_str().unwrap();
    let standup = RoomName::parse("standup").unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let verified = app
        .state
        .tokens
        .verify(
            app.state.store.as_ref(),
            token,
            Expected {
                tenant: Some(&acme),
                room: Some(&standup),
            },
        )
        .await
        .unwrap();
    assert_eq!(verified.tenant, acme);
    assert_eq!(verified.identity.as_str(), "ann");
    assert_eq!(verified.claims.name, "Ann");
    assert_eq!(verified.claims.role, ParticipantRole::Viewer);
    assert_eq!(
        verified.claims.grants,
        Grants::for_role(ParticipantRole::Viewer)
    );
    assert_eq!(verified.claims.iss, t.key);
    assert_eq!(verified.claims.exp, minted["expires_at"].as_u64().unwrap());
    assert_eq!(verified.claims.exp - verified.claims.nbf, 600);
    assert_eq!(verified.claims.region, None);

    // A region hint travels in the token.
    let (status, minted) = app
        .call(
            Method::POST,
            "/v1/rooms/standup/tokens",
            &t.auth(),
            Some(json!({ "identity": "bo", "region": "us-east-1" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let verified = app
        .state
        .tokens
        .verify(
            app.state.store.as_ref(),
            minted["token"].as_str().unwrap(),
            Expected::default(),
        )
        .await
        .unwrap();
    assert_eq!(verified.claims.region.unwrap().as_str(), "us-east-1");

    let other = RoomName::parse("other").unwrap();
    let err = app
        .state
        .tokens
        .verify(
            app.state.store.as_ref(),
            token,
            Expected {
                tenant: None,
                room: Some(&other),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err, ApiError::TokenWrongRoom);

    for bad in [
        json!({ "identity": "bad id" }),
        json!({ "identity": "ann", "ttl_secs": 0 }),
        json!({ "identity": "ann", "ttl_secs": 10_000_000 }),
        json!({ "identity": "ann", "region": "eu west" }),
        json!({ "identity": "ann", "region": "" }),
    ] {
        let got = app
            .call(
                Method::POST,
                "/v1/rooms/standup/tokens",
                &t.auth(),
                Some(bad),
            )
            .await;
        assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let got = app
        .call(
            Method::POST,
            "/v1/rooms/standup/tokens",
            &t.auth(),
            Some(json!({ "identity": "a", "role": "king" })),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_json");
}

fn b64(v: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

#[tokio::test]
async fn bad_tokens_get_stable_codes() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    room(&app, &t, json!({ "name": "standup" })).await;
    let store = app.state.store.as_ref();
    let key = get_json::<ApiKeyRecord>(
        store,
        &keys::api_key(&ApiKeyId::parse(t.key.clone()).unwrap()),
    )
    .await
    .unwrap()
    .unwrap()
    .value;
    let now = shardcast_controlplane::services::now_unix_secs();
    let claims = AccessClaims {
        sub: "ann".into(),
        name: "Ann".into(),
        room: RoomName::parse("standup").unwrap(),
        role: ParticipantRole::Host,
        grants: Grants::for_role(ParticipantRole::Host),
        exp: now + 600,
        nbf: now,
        iat: now,
        iss: t.key.clone(),
        region: None,
    };
    let tokens = &app.state.tokens;
    let verify =
        |token: String| async move { tokens.verify(store, &token, Expected::default()).await };
    assert!(verify(tokens.mint(&key, &claims).unwrap()).await.is_ok());

    let expired = AccessClaims {
        exp: now - 3600,
        nbf: now - 7200,
        ..claims.clone()
    };
    let got = verify(tokens.mint(&key, &expired).unwrap())
        .await
        .unwrap_err();
    assert_eq!(got.code(), "token_expired");
    assert_eq!(got.status(), StatusCode::UNAUTHORIZED);

    let early = AccessClaims {
        nbf: now + 3600,
        exp: now + 7200,
        ..claims.clone()
    };
    let got = verify(tokens.mint(&key, &early).unwrap())
        .await
        .unwrap_err();
    assert_eq!(got.code(), "token_not_yet_valid");

    let forged_key = ApiKeyRecord {
        secret: "not-the-secret".into(),
        ..key.clone()
    };
    let got = verify(tokens.mint(&forged_key, &claims).unwrap())
        .await
        .unwrap_err();
    assert_eq!(got.code(), "token_invalid");

    let good = tokens.mint(&key, &claims).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let header_none =
        b64(format!("{{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"{}\"}}", t.key).as_bytes());
    let got = verify(format!("{header_none}.{}.", parts[1]))
        .await
        .unwrap_err();
    assert_eq!(got.code(), "token_invalid", "alg=none is refused");

    let mut payload: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap();
    payload["role"] = json!("host");
    payload["room"] = json!("elsewhere");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(payload.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(verify(tampered).await.unwrap_err().code(), "token_invalid");
    assert_eq!(
        verify("garbage".into()).await.unwrap_err().code(),
        "token_invalid"
    );

    // Another tenant's key signing a token that names this tenant's kid: bad signature.
    let other = app.tenant("other").await;
    let other_key = ApiKeyRecord {
        id: key.id.clone(),
        secret: other.secret.clone(),
        ..key.clone()
    };
    let got = verify(tokens.mint(&other_key, &claims).unwrap())
        .await
        .unwrap_err();
    assert_eq!(got.code(), "token_invalid");

    // Revoking the key revokes its tokens.
    app.call(
        Method::DELETE,
        &format!("/v1/tenants/acme/keys/{}", t.key),
        &Auth::Admin,
        None,
    )
    .await;
    assert_eq!(verify(good).await.unwrap_err().code(), "token_invalid");
}

// ---------------------------------------------------------------- participants

#[tokio::test]
async fn host_controls_change_the_store_and_publish_events() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    let a = t.auth();
    room(&app, &t, json!({ "name": "r", "ask_before_join": true })).await;
    add_participant(&app, &t, "r", &participant("ann", ParticipantState::Joined)).await;
    add_participant(
        &app,
        &t,
        "r",
        &participant("bob", ParticipantState::Waiting),
    )
    .await;
    add_participant(
        &app,
        &t,
        "r",
        &participant("cat", ParticipantState::Waiting),
    )
    .await;
    let mut events = app.state.events.subscribe();

    let (status, list) = app
        .call(Method::GET, "/v1/rooms/r/participants", &a, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["identity"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "bob", "cat"]);

    let (status, p) = app
        .call(
            Method::POST,
            "/v1/rooms/r/participants/ann/tracks/12/mute",
            &a,
            Some(json!({ "muted": true })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p["tracks"][1]["muted"], true);
    assert_eq!(p["tracks"][0]["muted"], false);
    // Each track says what it carries.
    assert_eq!(p["tracks"][0]["source"], "microphone");
    assert_eq!(p["tracks"][1]["source"], "screen");
    match events.try_recv().unwrap() {
        RoomEvent::TrackMuted {
            identity,
            track,
            muted,
            peer,
            ..
        } => {
            assert_eq!(
                (identity.as_str(), track, muted, peer.peer),
                ("ann", 12, true, Some(7))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let got = app
        .call(
            Method::POST,
            "/v1/rooms/r/participants/ann/tracks/99/mute",
            &a,
            Some(json!({ "muted": true })),
        )
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "track_not_found");
    let got = app
        .call(
            Method::POST,
            "/v1/rooms/r/participants/ann/tracks/x/mute",
            &a,
            Some(json!({ "muted": true })),
        )
        .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");

    let (_, p) = app
        .call(
            Method::POST,
            "/v1/rooms/r/participants/ann/pause_video",
            &a,
            Some(json!({ "paused": true })),
        )
        .await;
    assert_eq!(p["video_paused"], true);
    assert!(
        matches!(events.try_recv().unwrap(), RoomEvent::VideoPaused { paused: true, ref tracks, .. } if tracks == &[12])
    );

    let (_, p) = app
        .call(
            Method::PATCH,
            "/v1/rooms/r/participants/ann/permissions",
            &a,
            Some(json!({ "canPublish": false, "roomAdmin": true })),
        )
        .await;
    assert_eq!(
        p["grants"],
        json!({ "canPublish": false, "canSubscribe": true, "canChat": true, "roomAdmin": true })
    );
    assert!(matches!(
        events.try_recv().unwrap(),
        RoomEvent::PermissionsUpdated { .. }
    ));
    // The role changes alone; the grants stay as they are.
    let (status, p) = app
        .call(
            Method::PATCH,
            "/v1/rooms/r/participants/ann/permissions",
            &a,
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p["role"], "viewer");
    assert_eq!(p["grants"]["roomAdmin"], true);
    assert!(matches!(
        events.try_recv().unwrap(),
        RoomEvent::PermissionsUpdated { role: ParticipantRole::Viewer, grants, .. } if grants.room_admin && !grants.can_publish
    ));
    let bad = app
        .call(
            Method::PATCH,
            "/v1/rooms/r/participants/ann/permissions",
            &a,
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_json");

    let (status, p) = app
        .call(Method::POST, "/v1/rooms/r/participants/bob/admit", &a, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p["state"], "joined");
    assert!(matches!(
        events.try_recv().unwrap(),
        RoomEvent::ParticipantAdmitted { .. }
    ));
    let got = app
        .call(Method::POST, "/v1/rooms/r/participants/bob/admit", &a, None)
        .await;
    assert_error(&got, StatusCode::CONFLICT, "not_waiting");
    let got = app
        .call(Method::POST, "/v1/rooms/r/participants/ann/deny", &a, None)
        .await;
    assert_error(&got, StatusCode::CONFLICT, "not_waiting");

    let (status, _) = app
        .call(Method::POST, "/v1/rooms/r/participants/cat/deny", &a, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(matches!(
        events.try_recv().unwrap(),
        RoomEvent::ParticipantRemoved {
            reason: RemoveReason::Denied,
            ..
        }
    ));
    let got = app
        .call(Method::GET, "/v1/rooms/r/participants/cat", &a, None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "participant_not_found");

    let (status, _) = app
        .call(Method::DELETE, "/v1/rooms/r/participants/ann", &a, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(matches!(
        events.try_recv().unwrap(),
        RoomEvent::ParticipantRemoved {
            reason: RemoveReason::Kicked,
            ..
        }
    ));
    let got = app
        .call(Method::DELETE, "/v1/rooms/r/participants/ann", &a, None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "participant_not_found");
    let (_, list) = app
        .call(Method::GET, "/v1/rooms/r/participants", &a, None)
        .await;
    assert_eq!(list["participants"].as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------- chat

const LIMITS: chat::ChatLimits = chat::ChatLimits {
    max_bytes: 4096,
    keep: 500,
};

#[tokio::test]
async fn chat_history_is_stored_in_order() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    room(&app, &t, json!({ "name": "r" })).await;
    let (tenant, r) = (
        TenantId::parse("acme").unwrap(),
        RoomName::parse("r").unwrap(),
    );
    let ann = Identity::parse("ann").unwrap();
    let mut events = app.state.events.subscribe();
    for text in ["one", "two", "three"] {
        chat::post(
            app.state.store.as_ref(),
            app.state.events.as_ref(),
            &tenant,
            &r,
            NewMessage {
                from: &ann,
                name: "Ann",
                text,
            },
            LIMITS,
        )
        .await
        .unwrap();
    }
    assert!(
        matches!(events.try_recv().unwrap(), RoomEvent::Chat { ref message, .. } if message.text == "one")
    );
    let (status, h) = app
        .call(Method::GET, "/v1/rooms/r/chat", &t.auth(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert_eq!(h["messages"][2]["seq"], 3);
    let (_, h) = app
        .call(Method::GET, "/v1/rooms/r/chat?limit=2", &t.auth(), None)
        .await;
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["two", "three"]);
    for q in ["limit=0", "limit=100000", "limit=abc"] {
        let got = app
            .call(
                Method::GET,
                &format!("/v1/rooms/r/chat?{q}"),
                &t.auth(),
                None,
            )
            .await;
        assert_error(&got, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let empty = chat::post(
        app.state.store.as_ref(),
        app.state.events.as_ref(),
        &tenant,
        &r,
        NewMessage {
            from: &ann,
            name: "Ann",
            text: "  ",
        },
        LIMITS,
    )
    .await;
    assert_eq!(empty.unwrap_err().code(), "invalid_request");

    // Deleting the room deletes its chat.
    app.call(Method::DELETE, "/v1/rooms/r", &t.auth(), None)
        .await;
    assert!(app
        .state
        .store
        .list_prefix("/shardcast/chat/")
        .await
        .unwrap()
        .is_empty());
}

/// A room keeps its last `keep` messages: older ones leave the store as new ones arrive, so
/// neither the store nor the history read at every join grows with the room's age.
#[tokio::test]
async fn a_room_keeps_only_its_last_messages() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    room(&app, &t, json!({ "name": "r" })).await;
    let (tenant, r) = (
        TenantId::parse("acme").unwrap(),
        RoomName::parse("r").unwrap(),
    );
    let ann = Identity::parse("ann").unwrap();
    let limits = chat::ChatLimits {
        max_bytes: 4096,
        keep: 5,
    };
    for i in 1..=12 {
        let text = format!("m{i}");
        let new = NewMessage {
            from: &ann,
            name: "Ann",
            text: &text,
        };
        chat::post(
            app.state.store.as_ref(),
            app.state.events.as_ref(),
            &tenant,
            &r,
            new,
            limits,
        )
        .await
        .unwrap();
    }
    let stored = app
        .state
        .store
        .list_prefix("/shardcast/chat/acme/r/")
        .await
        .unwrap();
    assert_eq!(stored.len(), 5, "the store holds the last 5 messages");
    let (status, h) = app
        .call(Method::GET, "/v1/rooms/r/chat?limit=50", &t.auth(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let seqs: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [8, 9, 10, 11, 12]);
}

// ---------------------------------------------------------------- nodes

#[tokio::test]
async fn nodes_list_and_drain() {
    let app = TestApp::new().await;
    let store = app.state.store.as_ref();
    let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    let record = NodeRecord {
        id: NodeId::parse("node-a").unwrap(),
        api_address: "http://127.0.0.1:7001".into(),
        capacity: 500,
        peers: 3,
        rooms: 1,
        utilization: 0.25,
        cpu: 0.0,
        updated_at_ms: 1,
        region: Some(Region::parse("eu-west").unwrap()),
    };
    nodes::register(store, &record, lease).await.unwrap();
    let (status, list) = app.call(Method::GET, "/v1/nodes", &Auth::Admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["nodes"][0]["id"], "node-a");
    assert_eq!(list["nodes"][0]["draining"], false);
    assert_eq!(list["nodes"][0]["region"], "eu-west");

    // A room shows the node it is on (none before it is placed), with the node's region.
    let t = app.tenant("acme").await;
    room(&app, &t, json!({ "name": "standup" })).await;
    let (status, got) = app
        .call(Method::GET, "/v1/rooms/standup", &t.auth(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["nodes"], json!([]));
    let (_, listed) = app.call(Method::GET, "/v1/rooms", &t.auth(), None).await;
    assert!(listed["rooms"][0].get("nodes").is_none(), "{listed}");
    let (acme, standup) = (
        TenantId::parse("acme").unwrap(),
        RoomName::parse("standup").unwrap(),
    );
    nodes::bind_room(store, &acme, &standup, &record.id, 1)
        .await
        .unwrap();
    let (_, got) = app
        .call(Method::GET, "/v1/rooms/standup", &t.auth(), None)
        .await;
    assert_eq!(
        got["nodes"],
        json!([{ "id": "node-a", "region": "eu-west", "live": true }])
    );
    let (status, n) = app
        .call(Method::POST, "/v1/nodes/node-a/drain", &Auth::Admin, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(n["draining"], true);
    // A heartbeat rewriting the node's record does not undo the drain.
    nodes::register(store, &record, lease).await.unwrap();
    let (_, list) = app.call(Method::GET, "/v1/nodes", &Auth::Admin, None).await;
    assert_eq!(list["nodes"][0]["draining"], true);
    let (_, n) = app
        .call(Method::DELETE, "/v1/nodes/node-a/drain", &Auth::Admin, None)
        .await;
    assert_eq!(n["draining"], false);
    let got = app
        .call(Method::POST, "/v1/nodes/ghost/drain", &Auth::Admin, None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "node_not_found");
    store.revoke_lease(lease).await.unwrap();
    let (_, list) = app.call(Method::GET, "/v1/nodes", &Auth::Admin, None).await;
    assert_eq!(list["nodes"], json!([]), "a node whose lease ended is gone");
    let (_, got) = app
        .call(Method::GET, "/v1/rooms/standup", &t.auth(), None)
        .await;
    assert_eq!(
        got["nodes"],
        json!([{ "id": "node-a", "region": null, "live": false }])
    );
}

// ---------------------------------------------------------------- passwords

#[tokio::test]
async fn limiter_blocks_after_max_failures_per_room_and_source() {
    let app = TestApp::new().await;
    let store = app.state.store.as_ref();
    let limiter = PasswordLimiter::new(5, Duration::from_secs(60));
    let tenant = TenantId::parse("acme").unwrap();
    let (room, other_room) = (
        RoomName::parse("room").unwrap(),
        RoomName::parse("other-room").unwrap(),
    );
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    let other_ip: IpAddr = "192.0.2.2".parse().unwrap();
    let t0 = 1_795_000_000_000u64;
    let check = |room: &RoomName, ip: IpAddr, at: u64| {
        let (limiter, tenant, room) = (&limiter, tenant.clone(), room.clone());
        async move { limiter.check(store, &tenant, &room, ip, at).await.unwrap() }
    };
    for i in 0..5u64 {
        assert!(check(&room, ip, t0).await.is_ok(), "attempt {i} allowed");
        let n = limiter
            .record_failure(store, &tenant, &room, ip, t0 + i * 1000)
            .await
            .unwrap();
        assert_eq!(n as u64, i + 1);
    }
    let retry = check(&room, ip, t0 + 10_000).await.unwrap_err();
    assert_eq!(retry, Duration::from_secs(50));
    assert!(check(&room, other_ip, t0).await.is_ok(), "per source");
    assert!(check(&other_room, ip, t0).await.is_ok(), "per room");
    assert!(check(&room, ip, t0 + 60_000).await.is_ok(), "window passes");
    // A failure after the window starts a new one.
    let n = limiter
        .record_failure(store, &tenant, &room, ip, t0 + 61_000)
        .await
        .unwrap();
    assert_eq!(n, 1);
    limiter
        .record_success(store, &tenant, &room, ip)
        .await
        .unwrap();
    assert!(store
        .get(&keys::password_failures(&tenant, &room, ip))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn wrong_room_passwords_are_rate_limited() {
    let app = TestApp::new().await;
    let t = app.tenant("acme").await;
    room(
        &app,
        &t,
        json!({ "name": "locked", "password": "open sesame" }),
    )
    .await;
    room(&app, &t, json!({ "name": "open" })).await;
    let (tenant, locked) = (
        TenantId::parse("acme").unwrap(),
        RoomName::parse("locked").unwrap(),
    );
    let store = app.state.store.as_ref();
    let limiter = app.state.password_limiter.as_ref();
    let ip: IpAddr = "198.51.100.7".parse().unwrap();
    let now = shardcast_controlplane::services::now_unix_ms();
    let check = |pw: Option<&'static str>, ip: IpAddr, at: u64| {
        let (tenant, locked) = (tenant.clone(), locked.clone());
        async move { rooms::check_password(store, limiter, &tenant, &locked, pw, ip, at).await }
    };

    check(Some("open sesame"), ip, now).await.unwrap();
    assert_eq!(
        check(None, ip, now).await.unwrap_err(),
        ApiError::WrongPassword
    );
    for _ in 0..4 {
        assert_eq!(
            check(Some("guess"), ip, now).await.unwrap_err(),
            ApiError::WrongPassword
        );
    }
    let limited = check(Some("open sesame"), ip, now).await.unwrap_err();
    assert_eq!(limited.code(), "rate_limited");
    let response = axum::response::IntoResponse::into_response(limited);
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "60");
    check(Some("open sesame"), "198.51.100.8".parse().unwrap(), now)
        .await
        .unwrap();
    check(Some("open sesame"), ip, now + 61_000).await.unwrap();
    // Rooms without a password take anything; unknown rooms are not found.
    let open = RoomName::parse("open").unwrap();
    rooms::check_password(store, limiter, &tenant, &open, Some("x"), ip, now)
        .await
        .unwrap();
    let ghost = RoomName::parse("ghost").unwrap();
    let err = rooms::check_password(store, limiter, &tenant, &ghost, None, ip, now)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "room_not_found");
}

// ---------------------------------------------------------------- OpenAPI

#[tokio::test]
async fn openapi_documents_exactly_the_served_routes() {
    let app = TestApp::new().await;
    let (status, doc) = app
        .call(Method::GET, "/v1/openapi.json", &Auth::None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "put", "patch", "delete"].contains(&k.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = routes::table()
        .iter()
        .map(|r| (r.verb.as_str().to_owned(), r.path.to_owned()))
        .collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(phantom.is_empty(), "documented but not served: {phantom:?}");

    // And the router really serves each of them (the JSON fallback answers `not_found`).
    for (method, path) in &served {
        let concrete = path
            .replace("{room}", "r")
            .replace("{identity}", "i")
            .replace("{track}", "1")
            .replace("{tenant}", "t")
            .replace("{key}", "k")
            .replace("{node}", "n");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let (status, body) = app.call(method.clone(), &concrete, &Auth::None, None).await;
        assert_ne!(
            body["code"], "not_found",
            "{method} {concrete} hit the fallback"
        );
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {concrete}"
        );
    }
    let _ = ADMIN_KEY;
}
