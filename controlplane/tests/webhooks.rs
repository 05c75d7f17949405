//! The webhook settings API through `app()` with `oneshot`: who may set it, what a read
//! shows, what survives an update, and that removing the tenant removes it. Delivery itself is
//! tested end to end with a real server and receiver (tests/e2e/webhooks.rs).

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use shardcast_controlplane::ids::TenantId;
use shardcast_controlplane::services::events::RoomEvent;
use shardcast_controlplane::webhooks::target;
use support::api::{assert_error, Auth, TestApp};

const PATH: &str = "/v1/tenants/acme/webhook";

#[tokio::test]
async fn a_webhook_is_set_read_without_its_secret_kept_and_removed_with_its_tenant() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    // Something listens here, so the reachability check passes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());

    // The tenant's own key is not enough: tenant settings take the admin key.
    let (status, body) = app
        .call(Method::PUT, PATH, &acme.auth(), Some(json!({ "url": url })))
        .await;
    assert_error(&(status, body), StatusCode::UNAUTHORIZED, "unauthorized");

    let (status, set) = app
        .call(Method::PUT, PATH, &Auth::Admin, Some(json!({ "url": url })))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    let secret = set["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{set}");

    let (status, got) = app.call(Method::GET, PATH, &Auth::Admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(got.get("secret").is_none(), "{got}");
    assert!(!got.to_string().contains(&secret[6..]), "{got}");
    assert_eq!(
        got["secret_hint"].as_str().unwrap(),
        format!("…{}", &secret[secret.len() - 4..])
    );

    // A new URL without a secret keeps the secret (and shows none).
    let url2 = format!("{url}/v2");
    let (status, again) = app
        .call(
            Method::PUT,
            PATH,
            &Auth::Admin,
            Some(json!({ "url": url2 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert!(again.get("secret").is_none(), "{again}");
    let tenant = TenantId::parse("acme").unwrap();
    let stored = target::get(app.state.store.as_ref(), &tenant)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.url.as_str(), stored.secret.as_str()),
        (url2.as_str(), secret.as_str())
    );

    let (status, _) = app
        .call(Method::DELETE, "/v1/tenants/acme", &Auth::Admin, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(target::get(app.state.store.as_ref(), &tenant)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn creating_a_room_publishes_room_created_once() {
    let app = TestApp::new().await;
    let acme = app.tenant("acme").await;
    let mut events = app.state.events.subscribe();
    let body = json!({ "name": "standup" });
    let (status, _) = app
        .call(Method::POST, "/v1/rooms", &acme.auth(), Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .call(Method::POST, "/v1/rooms", &acme.auth(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(matches!(
        events.try_recv().unwrap(),
        RoomEvent::RoomCreated { ref room, .. } if room.as_str() == "standup"
    ));
    assert!(
        events.try_recv().is_err(),
        "a refused create announces nothing"
    );
}
