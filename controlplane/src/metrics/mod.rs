//! The Prometheus `/metrics` endpoint, served on its own listener (`metrics.listen`) in
//! every server role: `serve` (control plane + in-process media node), `controlplane` and
//! `medianode`. See docs/API.md, "Metrics", for every family.
//!
//! Written by hand in the text exposition format (`text`) rather than with the `prometheus`
//! crate: almost everything here already exists as a snapshot (shard counters, the hub's
//! sessions, the node registry), so a registry would only be a second copy updated before
//! each scrape; the crate's default registry is process-global, which servers built side by
//! side in one test process cannot share; and the format is a few lines of escaping.
//!
//! Owns: what a scrape reads and how it is named. Must never: block a shard or take a lock
//! the packet path takes (media families read the shards' published snapshots), scan the
//! store on every scrape (the node census is cached), or use unbounded label values.

pub mod http;
pub mod media;
pub mod process;
pub mod text;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use shardcast_dataplane::MediaNode;

use crate::signaling::Hub;
use crate::store::{nodes, Store};
use crate::webhooks::{WebhookCounts, Webhooks};
pub use http::HttpMetrics;
use text::{Encoder, Kind};

/// The Content-Type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long a node census from the store is reused: scrapes come every 15-60 s, but several
/// Prometheus servers may scrape one instance, and one store listing per window is enough.
const NODE_CENSUS_TTL: Duration = Duration::from_secs(5);
/// A scrape gives up on the store after this long and leaves the node families empty.
const NODE_CENSUS_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
struct NodeCounts {
    registered: u64,
    draining: u64,
}

/// Registered and draining media nodes, read from the store at most once per TTL.
struct NodeCensus {
    store: Arc<dyn Store>,
    cache: tokio::sync::Mutex<Option<(Instant, NodeCounts)>>,
}

impl NodeCensus {
    async fn counts(&self) -> Option<NodeCounts> {
        // Held across the store call on purpose: concurrent scrapes wait for one listing.
        let mut cache = self.cache.lock().await;
        if let Some((at, counts)) = *cache {
            if at.elapsed() < NODE_CENSUS_TTL {
                return Some(counts);
            }
        }
        match tokio::time::timeout(NODE_CENSUS_TIMEOUT, nodes::list(self.store.as_ref())).await {
            Ok(Ok(list)) => {
                let counts = NodeCounts {
                    registered: list.len() as u64,
                    draining: list.iter().filter(|n| n.draining).count() as u64,
                };
                *cache = Some((Instant::now(), counts));
                Some(counts)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "metrics: cannot list media nodes");
                None
            }
            Err(_) => {
                tracing::warn!("metrics: listing media nodes timed out");
                None
            }
        }
    }
}

/// What one process exports; each role fills in the parts it runs.
pub struct Metrics {
    role: &'static str,
    media: Option<Arc<MediaNode>>,
    http: Option<Arc<HttpMetrics>>,
    hub: Option<Arc<Hub>>,
    nodes: Option<NodeCensus>,
    webhooks: Option<Webhooks>,
}

impl Metrics {
    /// `role` is the command (`serve`, `controlplane`, `medianode`), exported in
    /// `shardcast_build_info`.
    pub fn new(role: &'static str) -> Self {
        Self {
            role,
            media: None,
            http: None,
            hub: None,
            nodes: None,
            webhooks: None,
        }
    }

    /// Per-shard families from this in-process media node.
    pub fn with_media(mut self, node: Arc<MediaNode>) -> Self {
        self.media = Some(node);
        self
    }

    /// Control-plane families: the request counters and the hub of a built server
    /// (`server::Server::http_metrics` and `hub`), and the node registry in `store`.
    pub fn with_control_plane(
        mut self,
        http: Arc<HttpMetrics>,
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
    ) -> Self {
        self.http = Some(http);
        self.hub = Some(hub);
        self.nodes = Some(NodeCensus {
            store,
            cache: tokio::sync::Mutex::new(None),
        });
        self
    }

    /// Webhook delivery counters of this instance (`server::Server::state.webhooks`).
    pub fn with_webhooks(mut self, webhooks: Webhooks) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// The whole exposition, as a scrape returns it.
    pub async fn render(&self) -> String {
        let nodes = match &self.nodes {
            Some(n) => Some(n.counts().await),
            None => None,
        };
        let mut e = Encoder::new();
        e.family(
            "shardcast_build_info",
            Kind::Gauge,
            "Always 1: the version and the role of this process.",
        )
        .int(
            &[("version", env!("CARGO_PKG_VERSION")), ("role", self.role)],
            1,
        );
        process::encode(&mut e, &process::read());
        if let Some(node) = &self.media {
            media::encode(&mut e, &node.shard_snapshots(), Instant::now());
        }
        if let Some(http) = &self.http {
            http.encode(&mut e);
        }
        if let Some(hub) = &self.hub {
            let c = hub.census();
            e.family(
                "shardcast_signaling_websockets_open",
                Kind::Gauge,
                "WebSocket signaling sessions with their socket connected to this instance.",
            )
            .int(&[], c.websockets);
            e.family(
                "shardcast_signaling_participants",
                Kind::Gauge,
                "Participant sessions on this instance (WebSocket and WHIP/WHEP), by state.",
            )
            .int(&[("state", "joined")], c.joined)
            .int(&[("state", "waiting")], c.waiting);
            e.family(
                "shardcast_signaling_rooms",
                Kind::Gauge,
                "Rooms with a joined or waiting session on this instance.",
            )
            .int(&[], c.rooms);
            let b = hub.bus_stats();
            e.family(
                "shardcast_bus_events_published_total",
                Kind::Counter,
                "Room events published by this instance.",
            )
            .int(&[], b.published);
            e.family(
                "shardcast_bus_events_received_total",
                Kind::Counter,
                "Room events (and end-of-stream marks) received from other instances.",
            )
            .int(&[], b.received);
            e.family(
                "shardcast_bus_events_sent_total",
                Kind::Counter,
                "Room events sent to other instances (each receiving instance counts once).",
            )
            .int(&[], b.sent);
            e.family(
                "shardcast_bus_events_dropped_total",
                Kind::Counter,
                "Room events not sent (a peer's outbox full, or a batch given up); their rooms are resynced at the peer.",
            )
            .int(&[], b.dropped);
            e.family(
                "shardcast_bus_duplicates_total",
                Kind::Counter,
                "Room events received twice (a retried batch) and dropped.",
            )
            .int(&[], b.duplicates);
            e.family(
                "shardcast_bus_resyncs_total",
                Kind::Counter,
                "Rooms whose sessions were resynced from the store, by why events may have been lost.",
            )
            .int(&[("reason", "gap")], b.resync_gap)
            .int(&[("reason", "sender_lost")], b.resync_lost)
            .int(&[("reason", "sender_vanished")], b.resync_vanished)
            .int(&[("reason", "inbox_full")], b.resync_inbox)
            .int(&[("reason", "lease_lost")], b.resync_lease)
            .int(&[("reason", "peer_restored")], b.resync_restored);
            e.family(
                "shardcast_bus_rooms_registered",
                Kind::Gauge,
                "Rooms this instance has registered interest in (it has sessions there).",
            )
            .int(&[], b.rooms);
            e.family(
                "shardcast_bus_peers",
                Kind::Gauge,
                "Other control-plane instances this one has a room-event link to.",
            )
            .int(&[], b.peers);
            e.family(
                "shardcast_bus_registrations_total",
                Kind::Counter,
                "Interest registrations written to the store (one per room and instance, not per event).",
            )
            .int(&[], b.registrations);
            e.family(
                "shardcast_bus_publish_failures_total",
                Kind::Counter,
                "Events whose room's instances could not be read from the store (not sent to other instances).",
            )
            .int(&[], b.publish_failures);
        }
        if let Some(w) = &self.webhooks {
            encode_webhooks(&mut e, w.counts());
        }
        if let Some(eg) = self.hub.as_ref().and_then(|h| h.egresses()) {
            encode_egresses(&mut e, eg.counts());
        }
        if let Some(counts) = nodes {
            let mut reg = e.family(
                "shardcast_media_nodes_registered",
                Kind::Gauge,
                "Media nodes registered in the store (live lease).",
            );
            if let Some(c) = counts {
                reg.int(&[], c.registered);
            }
            let mut dr = e.family(
                "shardcast_media_nodes_draining",
                Kind::Gauge,
                "Registered media nodes that are draining (take no new rooms).",
            );
            if let Some(c) = counts {
                dr.int(&[], c.draining);
            }
        }
        e.finish()
    }
}

fn encode_egresses(e: &mut Encoder, c: crate::egress::EgressCounts) {
    e.family(
        "shardcast_egresses_running",
        Kind::Gauge,
        "Egresses of this instance not ended yet (starting, active or ending), by kind.",
    )
    .int(&[("kind", "record")], c.recording)
    .int(&[("kind", "hls")], c.hls);
    e.family(
        "shardcast_egresses_ended_total",
        Kind::Counter,
        "Egresses ended on this instance: complete (file finished) or failed.",
    )
    .int(&[("state", "complete")], c.complete)
    .int(&[("state", "failed")], c.failed);
    e.family(
        "shardcast_egress_dropped_packets",
        Kind::Gauge,
        "Packets the pipelines of this instance's listed egresses could not take in time.",
    )
    .int(&[], c.dropped_packets);
}

fn encode_webhooks(e: &mut Encoder, c: WebhookCounts) {
    for (name, help, n) in [
        (
            "shardcast_webhooks_delivered_total",
            "Webhook events a receiver acknowledged with a 2xx answer.",
            c.delivered,
        ),
        (
            "shardcast_webhooks_retried_total",
            "Webhook delivery attempts that failed and were tried again.",
            c.retried,
        ),
        (
            "shardcast_webhooks_failed_total",
            "Webhook events given up after webhooks.max_attempts failed attempts.",
            c.failed,
        ),
        (
            "shardcast_webhooks_dropped_total",
            "Webhook events not queued: their tenant's queue (webhooks.queue_per_tenant) was full.",
            c.dropped,
        ),
    ] {
        e.family(name, Kind::Counter, help).int(&[], n);
    }
    e.family(
        "shardcast_webhooks_queued",
        Kind::Gauge,
        "Webhook events waiting or being delivered on this instance.",
    )
    .int(&[], c.queued);
}

async fn scrape(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.render().await)
}

/// `GET /metrics`; every other path is a 404.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(metrics)
}

/// Serves `router(metrics)` on `listener` until the task is dropped with the runtime.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    if let Err(e) = axum::serve(listener, router(metrics)).await {
        tracing::error!(error = %e, "metrics listener failed");
    }
}
