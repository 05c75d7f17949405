//! Typed configuration of the `shardcast` binary: one struct for every role (serve,
//! controlplane, medianode), read from a TOML file, then overridden by `SHARDCAST_*`
//! environment variables and command-line flags (clap merges those two), then validated.
//!
//! Owns: defaults, the TOML schema (unknown keys are errors that name the key), validation
//! with messages of the form `<key>: <problem>`. Must never: start anything, touch the
//! network or the store — it only describes what the binary will do.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A configuration problem, always naming the key at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// The whole configuration. Every section has defaults, so an empty file (or none) is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of the embedded store and the default tenant's credentials.
    pub data_dir: PathBuf,
    /// Dev mode: `GET /dev/token` mints host tokens for the default tenant, to anyone who can
    /// reach the HTTP listener (a reverse proxy on the same host included). Off unless asked
    /// for (`--dev`, or `dev = true`); the server logs a warning at start-up when it is on.
    pub dev: bool,
    /// Admin key for tenant management (`Authorization: Bearer <key>`). `None` = no admin API.
    pub admin_key: Option<String>,
    /// `tracing` filter, e.g. `info` or `shardcast_controlplane=debug,info`.
    pub log: String,
    /// `text` (default) or `json` (one object per line, with the ids of its spans).
    pub log_format: crate::logging::LogFormat,
    pub http: HttpConfig,
    pub media: MediaConfig,
    pub etcd: EtcdConfig,
    pub cluster: ClusterConfig,
    pub signaling: SignalingConfig,
    pub rooms: RoomsConfig,
    pub turn: TurnConfig,
    pub metrics: MetricsConfig,
    pub shutdown: ShutdownConfig,
    /// Delivery of tenants' webhooks (the URL and secret are per tenant, set over REST).
    pub webhooks: crate::webhooks::WebhookSettings,
    pub egress: EgressConfig,
}

/// `[egress]`: recordings (`crate::egress`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Where recordings are written (`{dir}/{tenant}/{room}/{egress id}.webm|mp4`). Default:
    /// `recordings` in the data directory.
    pub dir: Option<PathBuf>,
    /// GStreamer's launcher (Debian: gstreamer1.0-tools), found on `PATH` unless absolute.
    pub gst_launch: PathBuf,
    /// How long a stopping recording may take to finish its file before it is killed.
    pub finish_timeout_secs: u64,
    /// Recordings one instance runs at once; more are refused (`503 egress_unavailable`).
    pub max_active: usize,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            dir: None,
            gst_launch: PathBuf::from("gst-launch-1.0"),
            finish_timeout_secs: 10,
            max_active: 16,
        }
    }
}

impl EgressConfig {
    /// The settings `crate::egress` runs with, the directory defaulted from `data_dir`.
    pub fn settings(&self, data_dir: &Path) -> crate::egress::EgressSettings {
        crate::egress::EgressSettings {
            dir: self
                .dir
                .clone()
                .unwrap_or_else(|| data_dir.join("recordings")),
            gst_launch: self.gst_launch.clone(),
            finish_timeout: std::time::Duration::from_secs(self.finish_timeout_secs.max(1)),
            max_active: self.max_active,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// REST, signaling, WHIP/WHEP and the demo page.
    pub listen: SocketAddr,
    /// Directory of the demo page; `None` = the page built into the binary.
    pub web_dir: Option<PathBuf>,
    /// Which other origins' pages may call WHIP/WHEP and the REST API (`controlplane::cors`).
    pub cors: CorsConfig,
    /// Reverse proxies (CIDRs or addresses) whose `X-Forwarded-For` header names the client,
    /// for per-client limits (wrong room passwords). Empty: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// Seconds a client has to send a complete request head; then the connection is closed
    /// (a client sending half a header must not hold a connection forever).
    pub header_read_timeout_secs: u64,
    /// Seconds a REST, WHIP/WHEP or page request may take, body included; then
    /// `408 request_timeout`. WebSocket sessions are not affected.
    pub request_timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins (`https://host[:port]`, or `*` for any) whose pages may publish and play over
    /// WHIP/WHEP. Default `["*"]`: the bearer token is the credential. Empty: same origin only.
    pub whip_origins: Vec<String>,
    /// Origins whose pages may call the REST API (`/v1/…`). Default empty: a tenant's key and
    /// secret do not belong in a browser.
    pub api_origins: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            whip_origins: vec!["*".into()],
            api_origins: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Address the shards bind their UDP sockets to, and advertise as ICE host candidate.
    pub bind_ip: IpAddr,
    /// First UDP port; shard i uses `base_port + i`. 0 = ephemeral ports.
    pub base_port: u16,
    /// ICE-TCP (RFC 6544): each shard also listens for TCP on `bind_ip` and offers it as a
    /// passive TCP candidate after the UDP one, for clients whose network blocks UDP.
    pub ice_tcp: bool,
    /// First ICE-TCP port; shard i listens on `tcp_base_port + i`. 0 = ephemeral ports.
    pub tcp_base_port: u16,
    /// ICE-TCP connections one shard keeps open; more are closed at accept.
    pub tcp_max_connections: usize,
    /// Number of shards (threads); 0 = one per CPU.
    pub shards: usize,
    /// `auto`, `io_uring` or `portable`.
    pub backend: String,
    /// Downlink congestion control: a send-side bandwidth estimate per subscriber (from
    /// transport-cc feedback, REMB or receiver-report loss), probes, and simulcast layers
    /// chosen to fit the estimate. Nothing is paced either way: every packet goes out in the
    /// turn it arrives. Off: no estimate, and each subscriber gets the best layer its
    /// preference allows (for links known to have the room, e.g. a LAN or a studio feed).
    pub congestion_control: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// etcd client URLs (distributed roles only); `https://` ones with the TLS files below.
    pub endpoints: Vec<String>,
    /// PEM file of the CA that signed etcd's server certificate (TLS to etcd).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for an etcd started with `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// etcd authentication (`etcdctl user add`): user name and password. The password may
    /// come from the environment instead (`SHARDCAST_ETCD_PASSWORD`).
    pub username: Option<String>,
    pub password: Option<String>,
    /// How long one etcd request may take before it fails (ms): a join or token request then
    /// answers `503 store_unavailable` instead of waiting on a partitioned or frozen etcd.
    pub request_timeout_ms: u64,
    /// How long connecting to an endpoint may take (ms).
    pub connect_timeout_ms: u64,
}

/// Bounds of `etcd.request_timeout_ms` / `etcd.connect_timeout_ms`: below 100 ms a loaded
/// etcd's ordinary fsync stalls would fail requests; above 5 minutes a client waits longer
/// than any caller does.
const ETCD_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=300_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Shared secret between control planes and media nodes. Never sent: control planes sign
    /// short-lived per-node tokens with it, nodes check them (`nodeapi::credential`).
    pub secret: Option<String>,
    /// Media node, during a rotation only: tokens signed with this former secret are
    /// accepted too, until every control plane signs with the new `secret`.
    pub previous_secret: Option<String>,
    /// Where `shardcast medianode` serves the node API (a private address).
    pub node_listen: SocketAddr,
    /// URL control planes use to reach this node; default `http://<node_listen>`.
    pub node_advertise: Option<String>,
    /// Stable node id; default derived from the advertised URL.
    pub node_id: Option<String>,
    /// Peers a node accepts before placement calls it full.
    pub node_capacity: u32,
    /// Seconds a node's registration outlives its last keep-alive.
    pub node_lease_secs: u64,
    /// Control plane: seconds its participant records outlive its last keep-alive (a killed
    /// instance's participants vanish, and free their seats, within this). Also the longest
    /// etcd outage the instance's sessions ride out unharmed: an outage past it costs them
    /// their records (see docs/OPERATIONS.md), so it is 30 s, not a heartbeat's 10.
    pub session_lease_secs: u64,
    /// Control plane: milliseconds a media node's event stream reconnects may be refused
    /// (connection refused, or 503 while the node stops) before the node counts as lost: its
    /// sessions get `node_lost` and placement stops using it, without waiting for its lease
    /// to expire. (A node that is only unreachable is lost after 30 s.)
    pub node_lost_ms: u64,
    /// Control plane: the URL other control-plane instances send this one room events at
    /// (its HTTP listener, reachable from them); default `http://<http.listen>` as bound.
    pub controlplane_advertise: Option<String>,
    /// Control plane: seconds a dead instance's room interest outlives it (its lease; as
    /// `session_lease_secs`, also how long an etcd outage may last before the instance's
    /// rooms resync).
    pub bus_lease_secs: u64,
    /// Where this process runs (`eu-west`; the alphabet of ids): a media node registers with
    /// it, and a control plane places a room whose token names no region on a node of its
    /// own region when one has room (docs/OPERATIONS.md, "Regions"). None: unlabelled.
    pub region: Option<String>,
}

/// What SIGTERM (or Ctrl-C) does, on every role (`shutdown` module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Milliseconds the listener keeps answering after clients were told (`/readyz` 503,
    /// new joins refused with `server_shutdown`), so load balancers and reconnecting clients
    /// see the instance leave.
    pub linger_ms: u64,
    /// Seconds the whole stop may take before the process exits anyway; keep it below the
    /// service manager's stop timeout (systemd `TimeoutStopSec`, 15 s in systemd/).
    pub timeout_secs: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            linger_ms: 1000,
            timeout_secs: 10,
        }
    }
}

impl ShutdownConfig {
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalingConfig {
    /// Seconds a dropped session may be resumed (`join` with `resume`).
    pub reconnect_grace_secs: u64,
    /// Seconds without any client message before the server closes the socket.
    pub idle_timeout_secs: u64,
    /// Seconds a new socket has to send a `join` that succeeds; then it is closed with
    /// `error{code:"join_timeout"}`.
    pub join_timeout_secs: u64,
    /// Chat messages sent with `joined`.
    pub chat_history: usize,
    /// Messages a socket's outbox holds; a client that lets it fill up (does not read) is
    /// disconnected with close reason `slow_reader` and leaves its room.
    pub outbox_messages: usize,
    /// Client messages per second a socket may send (token bucket, refilled at this rate);
    /// excess messages are dropped with `error{code:"rate_limited"}`.
    pub messages_per_sec: f64,
    /// Client messages a socket may send at once (the bucket's size; ICE trickle comes in
    /// bursts).
    pub message_burst: u32,
    /// Refused (rate-limited) messages within 10 s that close the socket with close reason
    /// `rate_limited`.
    pub refused_before_close: u32,
    /// Chat messages per second a participant may send (token bucket), and at once.
    pub chat_per_sec: f64,
    pub chat_burst: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// A valid token for a room that does not exist creates the room (default settings, no
    /// password) when it joins over WebSocket, WHIP or WHEP. `false`: `room_not_found`, and
    /// rooms are made only with `POST /v1/rooms`.
    pub auto_create: bool,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self { auto_create: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// TURN (`turn:`, `turns:`) and STUN URLs clients get in `iceServers` (WebSocket
    /// `joined`) and WHIP/WHEP `Link` headers. Empty: none (clients connect directly).
    pub urls: Vec<String>,
    /// The secret shared with the TURN server (coturn: `use-auth-secret`,
    /// `static-auth-secret`); credentials are HMACs of it, never the secret itself.
    pub secret: Option<String>,
    /// How long handed-out credentials are valid.
    pub ttl_secs: u64,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: None,
            ttl_secs: 86_400,
        }
    }
}

impl TurnConfig {
    pub fn settings(&self) -> crate::turn::TurnSettings {
        crate::turn::TurnSettings {
            urls: self.urls.clone(),
            secret: self.secret.clone(),
            ttl_secs: self.ttl_secs,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where `GET /metrics` (Prometheus text format) is served; `None` = no metrics listener.
    /// Off by default: many servers on one machine (tests, benches) would fight over a port.
    pub listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            dev: false,
            admin_key: None,
            log: "info".into(),
            log_format: Default::default(),
            http: HttpConfig::default(),
            media: MediaConfig::default(),
            etcd: EtcdConfig::default(),
            cluster: ClusterConfig::default(),
            signaling: SignalingConfig::default(),
            rooms: RoomsConfig::default(),
            turn: TurnConfig::default(),
            metrics: MetricsConfig::default(),
            shutdown: ShutdownConfig::default(),
            webhooks: crate::webhooks::WebhookSettings::default(),
            egress: EgressConfig::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7880),
            web_dir: None,
            cors: CorsConfig::default(),
            trusted_proxies: Vec::new(),
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            base_port: 0,
            ice_tcp: true,
            tcp_base_port: 0,
            tcp_max_connections: 256,
            shards: 0,
            backend: "auto".into(),
            congestion_control: true,
        }
    }
}

impl EtcdConfig {
    /// TLS files come as a usable set, a user with a password.
    fn check(&self) -> Result<(), ConfigError> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            let missing = if self.cert_file.is_some() {
                "etcd.key_file"
            } else {
                "etcd.cert_file"
            };
            return Err(invalid(
                missing,
                "etcd.cert_file and etcd.key_file go together",
            ));
        }
        if self.cert_file.is_some() && self.ca_file.is_none() {
            return Err(invalid(
                "etcd.ca_file",
                "required with a client certificate (the CA of etcd's server certificate)",
            ));
        }
        let tls = self.ca_file.is_some();
        if let Some(e) = self
            .endpoints
            .iter()
            .find(|e| e.starts_with("https://") != tls)
        {
            let why = if tls {
                format!("`{e}`: with etcd.ca_file every endpoint is https://")
            } else {
                format!("`{e}`: an https:// endpoint needs etcd.ca_file")
            };
            return Err(invalid("etcd.endpoints", why));
        }
        for (key, ms) in [
            ("etcd.request_timeout_ms", self.request_timeout_ms),
            ("etcd.connect_timeout_ms", self.connect_timeout_ms),
        ] {
            if !ETCD_TIMEOUT_MS.contains(&ms) {
                return Err(invalid(
                    key,
                    format!(
                        "{ms}: between {} and {} ms",
                        ETCD_TIMEOUT_MS.start(),
                        ETCD_TIMEOUT_MS.end()
                    ),
                ));
            }
        }
        match (&self.username, &self.password) {
            (Some(_), None) => Err(invalid(
                "etcd.password",
                "required with etcd.username (or SHARDCAST_ETCD_PASSWORD)",
            )),
            (None, Some(_)) => Err(invalid("etcd.username", "required with etcd.password")),
            _ => Ok(()),
        }
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
            request_timeout_ms: 10_000,
            connect_timeout_ms: 5_000,
        }
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            secret: None,
            previous_secret: None,
            node_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7881),
            node_advertise: None,
            node_id: None,
            node_capacity: 1000,
            node_lease_secs: 10,
            session_lease_secs: 30,
            node_lost_ms: 1000,
            controlplane_advertise: None,
            bus_lease_secs: 30,
            region: None,
        }
    }
}

impl Default for SignalingConfig {
    fn default() -> Self {
        Self {
            reconnect_grace_secs: 20,
            idle_timeout_secs: 60,
            join_timeout_secs: 10,
            chat_history: 50,
            outbox_messages: 256,
            messages_per_sec: 20.0,
            message_burst: 50,
            refused_before_close: 100,
            chat_per_sec: 2.0,
            chat_burst: 10,
        }
    }
}

/// `$XDG_DATA_HOME/shardcast` when XDG_DATA_HOME is set, else `./shardcast-data`.
pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("XDG_DATA_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x).join("shardcast"),
        _ => PathBuf::from("shardcast-data"),
    }
}

/// What this process runs as (`shardcast serve`, `controlplane`, `medianode`, or an offline
/// tool); it decides which keys the config must have. Not a participant's role in a room
/// (`store::records::ParticipantRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessRole {
    Serve,
    ControlPlane,
    MediaNode,
    /// Offline tools (`token create`): only the data directory matters.
    Tool,
}

impl Config {
    /// Parse TOML text; unknown keys and wrong types are errors naming the key.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            reason: e.to_string().trim().to_string(),
        })
    }

    /// Read a TOML file, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn reconnect_grace(&self) -> Duration {
        Duration::from_secs(self.signaling.reconnect_grace_secs)
    }

    /// `cluster.region`, checked by [`Config::validate`] (a bad label is None here).
    pub fn region(&self) -> Option<crate::ids::Region> {
        let label = self.cluster.region.as_ref()?;
        crate::ids::Region::parse(label.clone()).ok()
    }

    /// The URL control planes use to reach this media node.
    pub fn node_url(&self) -> String {
        self.cluster
            .node_advertise
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.cluster.node_listen))
    }

    /// Check the keys `role` needs; the error names the first bad key.
    pub fn validate(&self, role: ProcessRole) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if role == ProcessRole::Tool {
            return Ok(());
        }
        if !matches!(
            self.media.backend.as_str(),
            "auto" | "io_uring" | "portable"
        ) {
            return Err(invalid(
                "media.backend",
                format!(
                    "`{}` is not one of auto, io_uring, portable",
                    self.media.backend
                ),
            ));
        }
        if self.media.shards > 256 {
            return Err(invalid("media.shards", "at most 256"));
        }
        if self.media.base_port != 0 {
            let shards = self.media.shards.max(1);
            if self.media.base_port as usize + shards > 65536 {
                return Err(invalid(
                    "media.base_port",
                    "base_port + shards exceeds 65535",
                ));
            }
        }
        if self.media.ice_tcp {
            let shards = self.media.shards.max(1);
            if self.media.tcp_base_port != 0 && self.media.tcp_base_port as usize + shards > 65536 {
                return Err(invalid(
                    "media.tcp_base_port",
                    "tcp_base_port + shards exceeds 65535",
                ));
            }
            if !(1..=65536).contains(&self.media.tcp_max_connections) {
                return Err(invalid("media.tcp_max_connections", "between 1 and 65536"));
            }
        }
        for (key, origins) in [
            ("http.cors.whip_origins", &self.http.cors.whip_origins),
            ("http.cors.api_origins", &self.http.cors.api_origins),
        ] {
            for o in origins {
                crate::cors::check_origin(o).map_err(|e| invalid(key, e.to_string()))?;
            }
        }
        for (key, secs) in [
            (
                "http.header_read_timeout_secs",
                self.http.header_read_timeout_secs,
            ),
            ("http.request_timeout_secs", self.http.request_timeout_secs),
        ] {
            if secs == 0 {
                return Err(invalid(key, "must be > 0"));
            }
        }
        crate::auth::TrustedProxies::parse(&self.http.trusted_proxies)
            .map_err(|e| invalid("http.trusted_proxies", e))?;
        crate::turn::check(&self.turn.settings()).map_err(|e| {
            let e = e.strip_prefix("turn.").map(str::to_string).unwrap_or(e);
            invalid("turn", e)
        })?;
        if self.signaling.chat_history > 1000 {
            return Err(invalid("signaling.chat_history", "at most 1000"));
        }
        if self.signaling.idle_timeout_secs == 0 {
            return Err(invalid("signaling.idle_timeout_secs", "must be > 0"));
        }
        if self.signaling.join_timeout_secs == 0 {
            return Err(invalid("signaling.join_timeout_secs", "must be > 0"));
        }
        if self.shutdown.timeout_secs == 0 {
            return Err(invalid("shutdown.timeout_secs", "must be > 0"));
        }
        if self.shutdown.linger_ms >= self.shutdown.timeout_secs * 1000 {
            return Err(invalid(
                "shutdown.linger_ms",
                "must be shorter than shutdown.timeout_secs",
            ));
        }
        if let Some(url) = &self.cluster.controlplane_advertise {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "cluster.controlplane_advertise",
                    "must be an http(s) URL",
                ));
            }
        } else if role == ProcessRole::ControlPlane && self.http.listen.ip().is_unspecified() {
            return Err(invalid(
                "cluster.controlplane_advertise",
                "required when http.listen is a wildcard address: other instances must know \
                 where to send room events",
            ));
        }
        if self.cluster.bus_lease_secs < 2 {
            return Err(invalid("cluster.bus_lease_secs", "at least 2"));
        }
        if self.cluster.node_lost_ms < 100 {
            return Err(invalid("cluster.node_lost_ms", "at least 100"));
        }
        if !(16..=65_536).contains(&self.signaling.outbox_messages) {
            return Err(invalid("signaling.outbox_messages", "must be 16..=65536"));
        }
        for (key, rate) in [
            (
                "signaling.messages_per_sec",
                self.signaling.messages_per_sec,
            ),
            ("signaling.chat_per_sec", self.signaling.chat_per_sec),
        ] {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(invalid(key, "must be a number > 0"));
            }
        }
        for (key, n) in [
            ("signaling.message_burst", self.signaling.message_burst),
            (
                "signaling.refused_before_close",
                self.signaling.refused_before_close,
            ),
            ("signaling.chat_burst", self.signaling.chat_burst),
        ] {
            if n == 0 {
                return Err(invalid(key, "must be > 0"));
            }
        }
        self.webhooks
            .check()
            .map_err(|(key, problem)| invalid(key, problem))?;
        if let Some(k) = &self.admin_key {
            if k.len() < 16 {
                return Err(invalid("admin_key", "at least 16 characters"));
            }
        }
        if matches!(role, ProcessRole::ControlPlane | ProcessRole::MediaNode) {
            if self.etcd.endpoints.is_empty() {
                return Err(invalid(
                    "etcd.endpoints",
                    "at least one endpoint is required",
                ));
            }
            for e in &self.etcd.endpoints {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(invalid(
                        "etcd.endpoints",
                        format!("`{e}` is not an http(s) URL"),
                    ));
                }
            }
            self.etcd.check()?;
            match &self.cluster.secret {
                None => return Err(invalid("cluster.secret", "required for distributed roles")),
                Some(s) if s.len() < 16 => {
                    return Err(invalid("cluster.secret", "at least 16 characters"))
                }
                _ => {}
            }
            if self
                .cluster
                .previous_secret
                .as_ref()
                .is_some_and(|s| s.len() < 16)
            {
                return Err(invalid("cluster.previous_secret", "at least 16 characters"));
            }
        }
        if let Some(label) = &self.cluster.region {
            if let Err(e) = crate::ids::Region::parse(label.clone()) {
                return Err(invalid("cluster.region", e.to_string()));
            }
        }
        if self.cluster.session_lease_secs < 2 {
            return Err(invalid("cluster.session_lease_secs", "at least 2"));
        }
        if role == ProcessRole::MediaNode {
            if let Some(url) = &self.cluster.node_advertise {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(invalid("cluster.node_advertise", "must be an http(s) URL"));
                }
            }
            if self.cluster.node_capacity == 0 {
                return Err(invalid("cluster.node_capacity", "must be > 0"));
            }
            if self.cluster.node_lease_secs < 2 {
                return Err(invalid("cluster.node_lease_secs", "at least 2"));
            }
        }
        Ok(())
    }
}

/// The default tenant's credentials, created by the first `serve` and kept in
/// `<data_dir>/default_tenant.json` (mode 0600) so `token create` and `room` work offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultTenant {
    pub tenant: String,
    pub api_key: String,
    pub api_secret: String,
}

impl DefaultTenant {
    pub const FILE: &'static str = "default_tenant.json";

    /// `Ok(None)` when no server has created it yet.
    pub fn read(data_dir: &Path) -> Result<Option<Self>, ConfigError> {
        let path = data_dir.join(Self::FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ConfigError::Parse {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ConfigError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Write atomically (temp file + rename), readable by the owner only.
    pub fn write(&self, data_dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(data_dir)?;
        let tmp = data_dir.join(format!("{}.tmp", Self::FILE));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(tmp, data_dir.join(Self::FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::from_toml("", "t").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:7880");
        assert!(!c.dev, "dev mode only when asked for");
        c.validate(ProcessRole::Serve).unwrap();
    }

    #[test]
    fn etcd_timeouts_are_read_and_bounded() {
        let c = Config::from_toml("[etcd]\nrequest_timeout_ms = 2500\n", "t").unwrap();
        assert_eq!(c.etcd.request_timeout_ms, 2500);
        assert_eq!(c.etcd.connect_timeout_ms, 5000, "the default");
        c.etcd.check().unwrap();
        for (toml, key) in [
            ("request_timeout_ms = 0", "etcd.request_timeout_ms"),
            ("connect_timeout_ms = 99", "etcd.connect_timeout_ms"),
            ("request_timeout_ms = 300001", "etcd.request_timeout_ms"),
        ] {
            let c = Config::from_toml(&format!("[etcd]\n{toml}\n"), "t").unwrap();
            let e = c.etcd.check().unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[http]\nlisten = \"127.0.0.1:1\"\nlistn = 3\n", "f.toml")
            .unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = Config::from_toml("[media]\nshards = \"four\"\n", "f.toml").unwrap_err();
        assert!(e.to_string().contains("shards"), "{e}");
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = Config::default();
        c.media.backend = "epoll".into();
        assert_eq!(
            c.validate(ProcessRole::Serve).unwrap_err(),
            invalid(
                "media.backend",
                "`epoll` is not one of auto, io_uring, portable"
            )
        );
        let c = Config::default();
        let e = c.validate(ProcessRole::ControlPlane).unwrap_err();
        assert!(e.to_string().starts_with("cluster.secret:"), "{e}");
    }

    #[test]
    fn a_region_is_a_label() {
        let mut c: Config = toml::from_str("[cluster]\nregion = \"eu-west\"").unwrap();
        c.validate(ProcessRole::Serve).unwrap();
        assert_eq!(c.region().unwrap().as_str(), "eu-west");
        c.cluster.region = Some("eu west".into());
        let e = c.validate(ProcessRole::Serve).unwrap_err();
        assert!(e.to_string().starts_with("cluster.region:"), "{e}");
        assert_eq!(Config::default().region(), None);
    }

    #[test]
    fn default_tenant_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(DefaultTenant::read(dir.path()).unwrap(), None);
        let t = DefaultTenant {
            tenant: "default".into(),
            api_key: "k".into(),
            api_secret: "s".into(),
        };
        t.write(dir.path()).unwrap();
        assert_eq!(DefaultTenant::read(dir.path()).unwrap(), Some(t));
    }

    #[test]
    fn metrics_listener_is_off_unless_set() {
        assert_eq!(Config::default().metrics.listen, None);
        let c = Config::from_toml("[metrics]\nlisten = \"127.0.0.1:9464\"\n", "t").unwrap();
        assert_eq!(c.metrics.listen, Some("127.0.0.1:9464".parse().unwrap()));
        let e = Config::from_toml("[metrics]\nport = 1\n", "f.toml").unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
    }

    #[test]
    fn cors_allows_any_origin_for_whip_and_none_for_rest_by_default() {
        let c = Config::default();
        assert_eq!(c.http.cors.whip_origins, vec!["*".to_string()]);
        assert!(c.http.cors.api_origins.is_empty());
        let c = Config::from_toml(
            "[http.cors]\nwhip_origins = []\napi_origins = [\"https://admin.example.com\"]\n",
            "t",
        )
        .unwrap();
        c.validate(ProcessRole::Serve).unwrap();
        let c = Config::from_toml("[http.cors]\napi_origins = [\"https://x/y\"]\n", "t").unwrap();
        let e = c.validate(ProcessRole::Serve).unwrap_err();
        assert!(e.to_string().starts_with("http.cors.api_origins:"), "{e}");
    }

    #[test]
    fn turn_urls_need_a_secret() {
        let c = Config::from_toml("[turn]\nurls = [\"turn:t.example:3478\"]\n", "t").unwrap();
        let e = c.validate(ProcessRole::Serve).unwrap_err();
        assert!(e.to_string().starts_with("turn:"), "{e}");
        let c = Config::from_toml(
            "[turn]\nurls = [\"turn:t.example:3478\"]\nsecret = \"0123456789abcdef\"\n",
            "t",
        )
        .unwrap();
        c.validate(ProcessRole::Serve).unwrap();
        assert_eq!(c.turn.ttl_secs, 86_400);
    }

    #[test]
    fn rooms_are_created_on_first_join_unless_turned_off() {
        assert!(Config::default().rooms.auto_create);
        let c = Config::from_toml("[rooms]\nauto_create = false\n", "t").unwrap();
        assert!(!c.rooms.auto_create);
    }

    #[test]
    fn ice_tcp_is_on_by_default_and_its_limits_are_checked() {
        let c = Config::from_toml("[media]\nshards = 2\n", "f.toml").unwrap();
        assert!(c.media.ice_tcp);
        assert_eq!(c.media.tcp_max_connections, 256);
        let mut c = Config::default();
        c.media.tcp_max_connections = 0;
        let e = c.validate(ProcessRole::Serve).unwrap_err();
        assert!(
            e.to_string().starts_with("media.tcp_max_connections:"),
            "{e}"
        );
        let mut c = Config::default();
        c.media.shards = 4;
        c.media.tcp_base_port = 65534;
        let e = c.validate(ProcessRole::Serve).unwrap_err();
        assert!(e.to_string().starts_with("media.tcp_base_port:"), "{e}");
        // Off: its keys are not checked.
        c.media.ice_tcp = false;
        c.validate(ProcessRole::Serve).unwrap();
        let c = Config::from_toml("[media]\nice_tcp = false\n", "f.toml").unwrap();
        assert!(!c.media.ice_tcp);
    }

    #[test]
    fn sample_config_parses_and_validates() {
        let text = include_str!("../shardcast.sample.toml");
        let c = Config::from_toml(text, "shardcast.sample.toml").unwrap();
        c.validate(ProcessRole::Serve).unwrap();
    }
}
