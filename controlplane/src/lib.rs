//! Shardcast control plane: REST, auth, tenants, the Store (redb, etcd), and (added by the
//! signaling layer) WebSocket signaling, WHIP/WHEP and placement.
//!
//! Layers, top to bottom: `routes` (thin axum handlers, one file per resource) → `services`
//! (rules) → `store::Store` (embedded redb or etcd). `app(state)` builds the HTTP app;
//! `main.rs` is only the CLI around it. This crate never touches media packets: it drives
//! media nodes through `shardcast_dataplane::node::MediaNodeApi`.

pub mod app;
pub mod auth;
pub mod config;
pub mod cors;
pub mod egress;
pub mod error;
pub mod health;
pub mod ids;
pub mod logging;
pub mod metrics;
pub mod nodeapi;
pub mod placement;
pub mod request_id;
pub mod routes;
pub mod sdpfrag;
pub mod server;
pub mod services;
pub mod shutdown;
pub mod signaling;
pub mod store;
pub mod turn;
pub mod webhooks;
pub mod whip;

pub use app::{app, ApiConfig, AppState, NodeHandles};
pub use error::ApiError;
pub use store::{EmbeddedStore, EtcdStore, Store};
