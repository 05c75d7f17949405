//! HTTP routes: thin handlers, one file per resource, all listed in [`table`].
//!
//! A handler parses and authenticates (extractors), calls one service function and shapes
//! the response. It never touches a Store backend and holds no rules of its own.
//! `app()` builds the router from `table()` alone, and a test checks `table()` against the
//! OpenAPI document, so a route cannot exist undocumented (or be documented and missing).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{on, MethodFilter, MethodRouter};
use serde::de::DeserializeOwned;

use crate::app::AppState;
use crate::error::{cut_detail, ApiError};

pub mod chat;
pub mod egress;
pub mod nodes;
pub mod openapi;
pub mod participants;
pub mod rooms;
pub mod tenants;
pub mod tokens;
pub mod webhooks;

/// HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    pub fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Put => MethodFilter::PUT,
            Verb::Patch => MethodFilter::PATCH,
            Verb::Delete => MethodFilter::DELETE,
        }
    }

    /// Lower case, as OpenAPI path items name operations.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
}

/// One route: method, axum path (`{param}` syntax, the same as OpenAPI) and handler.
pub struct RouteSpec {
    pub verb: Verb,
    pub path: &'static str,
    pub handler: MethodRouter<AppState>,
}

pub fn route<H, T>(verb: Verb, path: &'static str, handler: H) -> RouteSpec
where
    H: Handler<T, AppState>,
    T: 'static,
{
    RouteSpec {
        verb,
        path,
        handler: on(verb.filter(), handler),
    }
}

/// Every route the application serves.
pub fn table() -> Vec<RouteSpec> {
    let mut routes = Vec::new();
    routes.extend(openapi::routes());
    routes.extend(tenants::routes());
    routes.extend(webhooks::routes());
    routes.extend(rooms::routes());
    routes.extend(participants::routes());
    routes.extend(tokens::routes());
    routes.extend(chat::routes());
    routes.extend(egress::routes());
    routes.extend(nodes::routes());
    routes
}

/// `Json<T>` whose rejections are `ApiError`s (`invalid_json`, `payload_too_large`).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection, state.config.body_limit_bytes)),
        }
    }
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::PayloadTooLarge { limit };
    }
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::InvalidJson("send Content-Type: application/json".into())
        }
        other => ApiError::InvalidJson(cut_detail(other.body_text())),
    }
}

/// `Path<T>` whose rejections are `invalid_request`.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e: PathRejection| ApiError::InvalidRequest(cut_detail(e.body_text())))
    }
}

/// `Query<T>` whose rejections are `invalid_request`.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e: QueryRejection| ApiError::InvalidRequest(cut_detail(e.body_text())))
    }
}
