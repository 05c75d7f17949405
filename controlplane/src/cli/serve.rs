//! The server roles: `serve` (all in one), `controlplane` and `medianode` (distributed).
//!
//! Must never: hold request logic — it wires config into `shardcast_controlplane::server`,
//! placement, the node registry and the node API server, then serves until Ctrl-C/SIGTERM
//! and stops in the order `shardcast_controlplane::shutdown` describes.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shardcast_controlplane::app::ApiConfig;
use shardcast_controlplane::auth::TrustedProxies;
use shardcast_controlplane::config::Config;
use shardcast_controlplane::ids::NodeId;
use shardcast_controlplane::metrics::{self, Metrics};
use shardcast_controlplane::nodeapi::credential::{Audience, Verifier};
use shardcast_controlplane::nodeapi::registry::{self, NodeIdentity};
use shardcast_controlplane::placement::{NodeHandle, Placement};
use shardcast_controlplane::server::{self, HttpOptions, ServerOptions};
use shardcast_controlplane::shutdown::{self, Stopping};
use shardcast_controlplane::signaling::BusOptions;
use shardcast_controlplane::store::{EmbeddedStore, EtcdStore, Store};
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::node::MediaNodeApi;
use shardcast_dataplane::tcp::TcpConfig;
use shardcast_dataplane::{MediaNode, MediaNodeConfig};

fn api_config(config: &Config) -> ApiConfig {
    ApiConfig {
        admin_key: config.admin_key.clone(),
        chat_history_default: config.signaling.chat_history,
        rooms_auto_create: config.rooms.auto_create,
        cors_whip_origins: config.http.cors.whip_origins.clone(),
        cors_api_origins: config.http.cors.api_origins.clone(),
        turn: config.turn.settings(),
        webhooks: config.webhooks.clone(),
        session_lease: Duration::from_secs(config.cluster.session_lease_secs),
        ..ApiConfig::default()
    }
}

/// How long a stopping control plane keeps delivering the webhook events still queued (the
/// sessions' `participant_left` among them), within `shutdown.timeout_secs` (10 s).
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);

/// Serves `router` until SIGTERM/Ctrl-C, then stops as `shardcast_controlplane::shutdown`
/// describes: `stopping` set, `on_stop` run (tell sessions, revoke the lease), the listener
/// kept for `linger`, then closed; all of it bounded by `shutdown.timeout_secs`. Returns `Ok`
/// after a stop (exit 0) even when connections were still open at the deadline.
async fn serve_until_stopped<F>(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    config: &Config,
    stopping: Stopping,
    on_stop: F,
) -> anyhow::Result<()>
where
    F: std::future::Future<Output = ()>,
{
    let header_read = Duration::from_secs(config.http.header_read_timeout_secs);
    let config = &config.shutdown;
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(server::serve(listener, router, header_read, async move {
        let _ = close_rx.await;
    }));
    tokio::select! {
        _ = shutdown::signal() => {}
        r = &mut server => return Ok(r??),
    }
    let deadline = tokio::time::Instant::now() + config.timeout();
    tracing::info!(
        linger_ms = config.linger_ms,
        timeout_secs = config.timeout_secs,
        "shutting down: refusing new work"
    );
    stopping.begin();
    if tokio::time::timeout_at(deadline, on_stop).await.is_err() {
        tracing::warn!("shutdown: telling clients took until the deadline");
    }
    tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + config.linger())).await;
    let _ = close_tx.send(());
    match tokio::time::timeout_at(deadline, &mut server).await {
        Ok(r) => r??,
        Err(_) => {
            tracing::warn!("shutdown: connections still open at the deadline; exiting anyway");
            server.abort();
        }
    }
    tracing::info!("stopped");
    Ok(())
}

async fn bind_http(listen: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("http.listen: cannot bind {listen}"))?;
    // Tests and scripts read this line to learn the bound port (listen may be port 0).
    println!("shardcast: listening on http://{}", listener.local_addr()?);
    Ok(listener)
}

/// Binds `metrics.listen` (when set), prints the bound address and serves `/metrics` on a
/// task of its own, which ends with the runtime. Called before the main listener so the
/// `metrics on` line precedes the line scripts wait for.
async fn start_metrics(config: &Config, metrics: Metrics) -> anyhow::Result<()> {
    let Some(listen) = config.metrics.listen else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("metrics.listen: cannot bind {listen}"))?;
    // Tests and scripts read this line to learn the bound port (listen may be port 0).
    println!("shardcast: metrics on http://{}", listener.local_addr()?);
    tokio::spawn(metrics::serve(listener, Arc::new(metrics)));
    Ok(())
}

fn start_media_node(config: &Config) -> anyhow::Result<Arc<MediaNode>> {
    let mut c = MediaNodeConfig::default();
    c.shards.shards = config.media.shards;
    c.shards.bind_ip = config.media.bind_ip;
    c.shards.base_port = config.media.base_port;
    c.shards.tcp = config.media.ice_tcp.then(|| TcpConfig {
        base_port: config.media.tcp_base_port,
        max_connections: config.media.tcp_max_connections,
        ..TcpConfig::default()
    });
    c.shards.backend = match config.media.backend.as_str() {
        "io_uring" => IoBackend::IoUring,
        "portable" => IoBackend::Portable,
        _ => IoBackend::Auto,
    };
    if !config.media.congestion_control {
        c.core.bwe_initial_kbps = 0;
    }
    let node =
        MediaNode::start(c).map_err(|e| anyhow::anyhow!("media: cannot start shards: {e}"))?;
    tracing::info!(
        addrs = ?node.shard_addrs(),
        tcp = ?node.shard_tcp_addrs(),
        backend = ?node.backend(),
        "media node started"
    );
    Ok(Arc::new(node))
}

/// The id of `serve`'s in-process media node in `/v1/nodes` and participant records.
const LOCAL_NODE: &str = "local";

/// All in one: control plane + in-process media node on the embedded store.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("data_dir: cannot create {}", config.data_dir.display()))?;
    let store: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open(config.data_dir.join("store"))
            .await
            .with_context(|| {
                format!(
                    "data_dir: cannot open the store in {}",
                    config.data_dir.display()
                )
            })?,
    );
    let key = server::ensure_default_tenant(store.as_ref(), &config.data_dir).await?;
    let media = start_media_node(&config)?;
    let node: Arc<dyn MediaNodeApi> = media.clone();
    // The in-process node registers like a `medianode` does, so `GET /v1/nodes` lists it with
    // its load and draining it keeps new rooms off it. Capacity 0: it is the only node, so
    // placement never calls it full.
    let id = NodeId::parse(LOCAL_NODE).context("local node id")?;
    let reg = registry::register(
        store.clone(),
        node.clone(),
        NodeIdentity {
            id: id.clone(),
            api_address: "in-process".into(),
            capacity: 0,
            region: config.region(),
        },
        Duration::from_secs(config.cluster.node_lease_secs.max(2)),
    )
    .await
    .context("registering the media node in the store")?;
    let placement = Arc::new(Placement::local(
        store.clone(),
        id,
        NodeHandle {
            id: Arc::from(LOCAL_NODE),
            api: node,
        },
    ));
    let dev = config.dev;
    warn_dev(dev);
    let built = server::build(
        store.clone(),
        placement,
        ServerOptions {
            api: api_config(&config),
            signaling: config.signaling.clone(),
            dev_key: dev.then_some(key.clone()),
            web_dir: config.http.web_dir.clone(),
            http: http_options(&config)?,
            bus: bus_options(&config),
            egress: Some(config.egress.settings(&config.data_dir)),
        },
    )
    .await;
    let metrics = Metrics::new("serve")
        .with_media(media)
        .with_control_plane(built.http_metrics.clone(), built.hub.clone(), store)
        .with_webhooks(built.state.webhooks.clone());
    start_metrics(&config, metrics).await?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        api_key = %key.id,
        dev,
        "shardcast serve: default tenant `{}`; credentials in {}",
        key.tenant,
        config.data_dir.join(shardcast_controlplane::config::DefaultTenant::FILE).display()
    );
    let listener = bind_http(config.http.listen).await?;
    advertise_bus(&config, &built, &listener)?;
    let (hub, bus) = (built.hub.clone(), built.bus.clone());
    let egresses = built.egresses.clone();
    let webhooks = built.state.webhooks.clone();
    serve_until_stopped(
        listener,
        built.router,
        &config,
        hub.stopping(),
        async move {
            if let Some(e) = egresses {
                e.stop_all().await;
            }
            hub.shutdown().await;
            bus.stop().await;
            reg.stop().await;
            webhooks.flush(WEBHOOK_FLUSH).await;
        },
    )
    .await
}

/// The `[http]` keys requests need (checked by `Config::validate` already).
fn http_options(config: &Config) -> anyhow::Result<HttpOptions> {
    Ok(HttpOptions {
        trusted_proxies: TrustedProxies::parse(&config.http.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("http.trusted_proxies: {e}"))?,
        request_timeout: Duration::from_secs(config.http.request_timeout_secs),
    })
}

/// The room bus's settings (`[cluster]`).
fn bus_options(config: &Config) -> BusOptions {
    BusOptions {
        secret: config.cluster.secret.clone(),
        previous_secret: config.cluster.previous_secret.clone(),
        lease: Duration::from_secs(config.cluster.bus_lease_secs),
        ..BusOptions::default()
    }
}

/// Tells the room bus where other instances reach this one: `cluster.controlplane_advertise`,
/// else the HTTP listener as bound.
fn advertise_bus(
    config: &Config,
    built: &server::Server,
    listener: &tokio::net::TcpListener,
) -> anyhow::Result<()> {
    let url = match &config.cluster.controlplane_advertise {
        Some(url) => url.clone(),
        None => format!("http://{}", listener.local_addr()?),
    };
    built.bus.advertise(&url);
    Ok(())
}

/// Dev mode hands host tokens to anyone who can reach the listener: say so where an
/// operator looks first, every start.
fn warn_dev(dev: bool) {
    if dev {
        tracing::warn!(
            "DEV MODE IS ON: GET /dev/token gives a host token for any room to anyone who can \
             reach this listener, a reverse proxy on this host included. Never use --dev (or \
             `dev = true`) on a server others can reach."
        );
    }
}

async fn etcd(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let store = EtcdStore::connect_with(&config.etcd)
        .await
        .with_context(|| format!("etcd.endpoints: cannot reach {:?}", config.etcd.endpoints))?;
    // TLS and authorization problems show at the first request: fail at start, not later.
    store.status_revision().await.with_context(|| {
        format!(
            "etcd.endpoints: {:?} does not answer",
            config.etcd.endpoints
        )
    })?;
    Ok(Arc::new(store))
}

/// Distributed control plane: etcd store, remote media nodes.
pub async fn controlplane(config: Config) -> anyhow::Result<()> {
    let store = etcd(&config).await?;
    let secret = config.cluster.secret.clone().unwrap_or_default();
    let placement = Arc::new(
        Placement::cluster_with_lost_after(
            store.clone(),
            secret,
            Duration::from_millis(config.cluster.node_lost_ms),
        )
        .in_region(config.region()),
    );
    warn_dev(config.dev);
    let dev_key = if config.dev {
        std::fs::create_dir_all(&config.data_dir)?;
        Some(server::ensure_default_tenant(store.as_ref(), &config.data_dir).await?)
    } else {
        None
    };
    let built = server::build(
        store.clone(),
        placement,
        ServerOptions {
            api: api_config(&config),
            signaling: config.signaling.clone(),
            dev_key,
            web_dir: config.http.web_dir.clone(),
            http: http_options(&config)?,
            bus: bus_options(&config),
            egress: Some(config.egress.settings(&config.data_dir)),
        },
    )
    .await;
    let metrics = Metrics::new("controlplane")
        .with_control_plane(built.http_metrics.clone(), built.hub.clone(), store)
        .with_webhooks(built.state.webhooks.clone());
    start_metrics(&config, metrics).await?;
    let listener = bind_http(config.http.listen).await?;
    advertise_bus(&config, &built, &listener)?;
    let (hub, bus) = (built.hub.clone(), built.bus.clone());
    let egresses = built.egresses.clone();
    let webhooks = built.state.webhooks.clone();
    serve_until_stopped(
        listener,
        built.router,
        &config,
        hub.stopping(),
        async move {
            if let Some(e) = egresses {
                e.stop_all().await;
            }
            hub.shutdown().await;
            bus.stop().await;
            webhooks.flush(WEBHOOK_FLUSH).await;
        },
    )
    .await
}

/// Distributed media node: serves the node API and keeps its registration alive.
pub async fn medianode(config: Config) -> anyhow::Result<()> {
    let store = etcd(&config).await?;
    let media = start_media_node(&config)?;
    let node: Arc<dyn MediaNodeApi> = media.clone();
    let url = config.node_url();
    let id = match &config.cluster.node_id {
        Some(id) => NodeId::parse(id.clone()).context("cluster.node_id")?,
        None => NodeId::parse(
            url.trim_start_matches("http://")
                .trim_start_matches("https://")
                .replace([':', '/', '.'], "-"),
        )
        .context("cluster.node_advertise")?,
    };
    let secret = config.cluster.secret.clone().unwrap_or_default();
    // The node accepts only tokens for its own id and the address it registers below.
    let credentials = Verifier::new(
        Audience::new(id.clone(), &url),
        &secret,
        config.cluster.previous_secret.as_deref(),
    );
    let (stopping, streams_end) = (Stopping::new(), Stopping::new());
    let router = shardcast_controlplane::nodeapi::server::router_stopping(
        node.clone(),
        credentials,
        stopping.clone(),
        streams_end.clone(),
    )
    .merge(shardcast_controlplane::health::media_node(
        node.clone(),
        stopping.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(config.cluster.node_listen)
        .await
        .with_context(|| {
            format!(
                "cluster.node_listen: cannot bind {}",
                config.cluster.node_listen
            )
        })?;
    let reg = registry::register(
        store,
        node,
        NodeIdentity {
            id: id.clone(),
            api_address: url.clone(),
            capacity: config.cluster.node_capacity,
            region: config.region(),
        },
        Duration::from_secs(config.cluster.node_lease_secs),
    )
    .await
    .context("registering in etcd")?;
    let moving = media.clone();
    start_metrics(&config, Metrics::new("medianode").with_media(media)).await?;
    println!("shardcast: media node {id} serving the node API on {url}");
    let within = config.shutdown.timeout() / 2;
    serve_until_stopped(listener, router, &config, stopping, async move {
        // The calls move first, to other nodes, while this one still forwards (as for an
        // operator's drain); then the key goes, not after the lease's ttl, and the event
        // streams end, so control planes tell whoever is left `node_lost`.
        reg.move_calls_off(moving.as_ref(), within).await;
        streams_end.begin();
        reg.stop().await;
    })
    .await
}
