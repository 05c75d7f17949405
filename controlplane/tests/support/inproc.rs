//! An in-process control plane for the integration tests: the real router, hub and room bus
//! (`server::build`) on a store the test owns, its rooms placed on an in-process media node
//! (`Placement::single`) or through the node registry (`Placement::cluster`), served on
//! loopback; plus the media node (one unpinned shard on the portable driver) and host
//! tokens the tests join with.
//!
//! Must never: hide a setting a test asserts on — tests that need other options build
//! [`options`] and change the fields themselves.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use shardcast_controlplane::app::ApiConfig;
use shardcast_controlplane::auth::tokens::{AccessClaims, TokenService};
use shardcast_controlplane::config::SignalingConfig;
use shardcast_controlplane::ids::{NodeId, RoomName};
use shardcast_controlplane::nodeapi::credential::{Audience, Verifier};
use shardcast_controlplane::nodeapi::registry::{self, NodeIdentity, Registration};
use shardcast_controlplane::placement::{NodeHandle, Placement};
use shardcast_controlplane::server::{self, Server, ServerOptions};
use shardcast_controlplane::services::now_unix_secs;
use shardcast_controlplane::store::records::{ApiKeyRecord, Grants, ParticipantRole};
use shardcast_controlplane::store::{EmbeddedStore, Store};
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::node::MediaNodeApi;
use shardcast_dataplane::{MediaNode, MediaNodeConfig};

/// Every server option at its default (no dev key, the built-in page, a random bus secret).
pub fn options() -> ServerOptions {
    ServerOptions {
        api: ApiConfig::default(),
        signaling: SignalingConfig::default(),
        dev_key: None,
        web_dir: None,
        http: Default::default(),
        bus: Default::default(),
        egress: None,
    }
}

/// [`options`] with a room-bus secret shared by the instances of one test, so their room
/// events reach each other.
pub fn options_with_bus_secret(secret: &str) -> ServerOptions {
    ServerOptions {
        bus: shardcast_controlplane::signaling::BusOptions {
            secret: Some(secret.into()),
            ..Default::default()
        },
        ..options()
    }
}

/// An embedded store in `dir` (the caller keeps the directory for as long as the store).
pub async fn embedded_store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(dir).await.unwrap())
}

/// A real media node in this process: one unpinned shard on the portable driver.
pub fn media_node() -> MediaNode {
    let mut nc = MediaNodeConfig::default();
    nc.shards.shards = 1;
    nc.shards.pin = false;
    nc.shards.backend = IoBackend::Portable;
    MediaNode::start(nc).unwrap()
}

/// Every room on `node`, named `id` (what `shardcast serve` does).
pub fn single(id: &str, node: Arc<dyn MediaNodeApi>) -> Arc<Placement> {
    Arc::new(Placement::single(NodeHandle {
        id: Arc::from(id),
        api: node,
    }))
}

/// Serves `router` on `listener` (with the peer address, as the binary does); its address.
pub fn serve_on(listener: tokio::net::TcpListener, router: axum::Router) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// Serves `router` on a fresh loopback port.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, router)
}

/// Serves a built instance on a fresh loopback port, its room bus advertising that address
/// (so other instances on the store send it their room events).
pub async fn serve_built(built: Server) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    built
        .bus
        .advertise(&format!("http://{}", listener.local_addr().unwrap()));
    serve_on(listener, built.router)
}

/// A control plane on `store`, placing rooms through the node registry (nodes authenticated
/// with `secret`, which is also its room-bus secret), served on loopback.
pub async fn cluster_control_plane(store: Arc<dyn Store>, secret: &str) -> SocketAddr {
    let built = server::build(
        store.clone(),
        Arc::new(Placement::cluster(store, secret.into())),
        options_with_bus_secret(secret),
    )
    .await;
    serve_built(built).await
}

/// A media node as `shardcast medianode` runs one: [`media_node`] behind the real node API
/// server on loopback, registered in `store` as `id` on a lease of `lease`.
pub async fn registered_media_node(
    store: Arc<dyn Store>,
    id: &str,
    secret: &str,
    lease: Duration,
) -> Registration {
    let node: Arc<dyn MediaNodeApi> = Arc::new(media_node());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (id, url) = (
        NodeId::parse(id).unwrap(),
        format!("http://{}", listener.local_addr().unwrap()),
    );
    let credentials = Verifier::new(Audience::new(id.clone(), &url), secret, None);
    serve_on(
        listener,
        shardcast_controlplane::nodeapi::server::router(node.clone(), credentials),
    );
    registry::register(
        store,
        node,
        NodeIdentity {
            id,
            api_address: url,
            capacity: 100,
            region: None,
        },
        lease,
    )
    .await
    .unwrap()
}

/// A host's access token for `identity` in `room`, valid for ten minutes.
pub fn host_token(key: &ApiKeyRecord, room: &str, identity: &str) -> String {
    let now = now_unix_secs();
    TokenService::default()
        .mint(
            key,
            &AccessClaims {
                sub: identity.into(),
                name: identity.into(),
                room: RoomName::parse(room).unwrap(),
                role: ParticipantRole::Host,
                grants: Grants::for_role(ParticipantRole::Host),
                exp: now + 600,
                nbf: now - 5,
                iat: now,
                iss: String::new(),
                region: None,
            },
        )
        .unwrap()
}
