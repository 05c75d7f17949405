//! Drives the REST app in-process with `oneshot`, on a fresh embedded store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use base64::Engine;
use serde_json::Value;
use shardcast_controlplane::{app, ApiConfig, AppState, EmbeddedStore};
use tower::ServiceExt;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

pub struct TestApp {
    pub state: AppState,
    router: Router,
    _dir: tempfile::TempDir,
}

#[derive(Clone)]
pub enum Auth {
    None,
    Admin,
    Bearer(String),
    Basic(String, String),
    Raw(String),
}

/// A tenant with one key pair, ready to call tenant routes.
#[derive(Clone)]
pub struct Tenant {
    pub id: String,
    pub key: String,
    pub secret: String,
}

impl Tenant {
    pub fn auth(&self) -> Auth {
        Auth::Basic(self.key.clone(), self.secret.clone())
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_config(ApiConfig {
            admin_key: Some(ADMIN_KEY.into()),
            ..ApiConfig::default()
        })
        .await
    }

    pub async fn with_config(config: ApiConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        let state = AppState::new(Arc::new(store), config);
        Self {
            router: app(state.clone()),
            state,
            _dir: dir,
        }
    }

    pub async fn raw(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("non-JSON body: {}", String::from_utf8_lossy(&bytes)))
        };
        (status, body)
    }

    pub fn request(method: Method, path: &str, auth: &Auth, body: Option<String>) -> Request<Body> {
        let mut builder = Request::builder().method(method).uri(path);
        let value = match auth {
            Auth::None => None,
            Auth::Admin => Some(format!("Bearer {ADMIN_KEY}")),
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
            Auth::Basic(k, s) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{k}:{s}"))
            )),
            Auth::Raw(v) => Some(v.clone()),
        };
        if let Some(v) = value {
            builder = builder.header(header::AUTHORIZATION, v);
        }
        match body {
            Some(b) => builder
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b))
                .unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.raw(Self::request(
            method,
            path,
            auth,
            body.map(|b| b.to_string()),
        ))
        .await
    }

    /// Creates a tenant and a key pair through the admin API.
    pub async fn tenant(&self, id: &str) -> Tenant {
        let (status, _) = self
            .call(
                Method::POST,
                "/v1/tenants",
                &Auth::Admin,
                Some(serde_json::json!({ "id": id })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, key) = self
            .call(
                Method::POST,
                &format!("/v1/tenants/{id}/keys"),
                &Auth::Admin,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        Tenant {
            id: id.into(),
            key: key["id"].as_str().unwrap().into(),
            secret: key["secret"].as_str().unwrap().into(),
        }
    }
}

/// Asserts an error response's status and stable code.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "body: {}", got.1);
    assert_eq!(got.1["code"], code, "body: {}", got.1);
    assert!(got.1["message"].as_str().is_some_and(|m| !m.is_empty()));
}
