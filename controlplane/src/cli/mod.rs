//! The `shardcast` command line: argument definitions (clap) and dispatch to one module per
//! command. Every flag also reads a `SHARDCAST_*` environment variable and overrides the
//! TOML file given with `--config`.
//!
//! Owns: flags, env names, how they fold into `Config`. Must never: hold server logic — the
//! commands call into the library (`shardcast_controlplane::...`).

mod client;
mod guard;
mod serve;
mod token;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use shardcast_controlplane::config::{Config, ProcessRole};

#[derive(Debug, Parser)]
#[command(
    name = "shardcast",
    version,
    about = "Shardcast: a WebRTC SFU and its control plane"
)]
pub struct Cli {
    /// TOML configuration file (see controlplane/shardcast.sample.toml).
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "SHARDCAST_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that override the config file; each has an environment variable.
#[derive(Debug, Args, Default)]
pub struct Overrides {
    /// Data directory (embedded store, default tenant credentials) [config: data_dir].
    #[arg(long, global = true, env = "SHARDCAST_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address [config: http.listen; default 127.0.0.1:7880].
    #[arg(long, global = true, env = "SHARDCAST_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve the demo page from this directory instead of the built-in copy [http.web_dir].
    #[arg(long, global = true, env = "SHARDCAST_WEB_DIR", value_name = "DIR")]
    pub web_dir: Option<PathBuf>,
    /// Dev mode: GET /dev/token mints host tokens to anyone who can reach the listener
    /// (never behind a proxy or on a shared network) [dev; default off].
    #[arg(long, global = true, env = "SHARDCAST_DEV")]
    pub dev: bool,
    /// Admin key for tenant management [admin_key].
    #[arg(
        long,
        global = true,
        env = "SHARDCAST_ADMIN_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub admin_key: Option<String>,
    /// Log filter, e.g. info or shardcast_controlplane=debug [log].
    #[arg(long, global = true, env = "SHARDCAST_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// etcd password for `etcd.username` [etcd.password].
    #[arg(
        long,
        global = true,
        env = "SHARDCAST_ETCD_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub etcd_password: Option<String>,
    /// Log lines as text or json [log_format; default text].
    #[arg(
        long,
        global = true,
        env = "SHARDCAST_LOG_FORMAT",
        value_name = "FORMAT"
    )]
    pub log_format: Option<shardcast_controlplane::logging::LogFormat>,
    /// UDP address of the media shards and their ICE host candidate [media.bind_ip].
    #[arg(long, global = true, env = "SHARDCAST_MEDIA_IP", value_name = "IP")]
    pub media_ip: Option<IpAddr>,
    /// First media UDP port, 0 = ephemeral [media.base_port].
    #[arg(long, global = true, env = "SHARDCAST_MEDIA_PORT", value_name = "PORT")]
    pub media_port: Option<u16>,
    /// Media shard threads, 0 = one per CPU [media.shards].
    #[arg(long, global = true, env = "SHARDCAST_SHARDS", value_name = "N")]
    pub shards: Option<usize>,
    /// I/O backend [media.backend].
    #[arg(long, global = true, env = "SHARDCAST_IO_BACKEND", value_enum)]
    pub io_backend: Option<IoBackendArg>,
    /// Downlink congestion control (bandwidth estimate, probes, layer fitting; never pacing)
    /// [media.congestion_control].
    #[arg(
        long,
        global = true,
        env = "SHARDCAST_CONGESTION_CONTROL",
        value_name = "BOOL"
    )]
    pub congestion_control: Option<bool>,
    /// etcd endpoints, comma separated [etcd.endpoints].
    #[arg(
        long,
        global = true,
        env = "SHARDCAST_ETCD",
        value_delimiter = ',',
        value_name = "URLS"
    )]
    pub etcd: Option<Vec<String>>,
    /// Shared secret between control planes and media nodes [cluster.secret].
    #[arg(
        long,
        global = true,
        env = "SHARDCAST_CLUSTER_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,
    /// Media node, while rotating the cluster secret: the former secret, still accepted
    /// [cluster.previous_secret].
    #[arg(
        long,
        global = true,
        env = "SHARDCAST_CLUSTER_PREVIOUS_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub cluster_previous_secret: Option<String>,
    /// Node API listen address of `medianode` [cluster.node_listen].
    #[arg(
        long,
        global = true,
        env = "SHARDCAST_NODE_LISTEN",
        value_name = "ADDR"
    )]
    pub node_listen: Option<SocketAddr>,
    /// URL control planes use to reach this media node [cluster.node_advertise].
    #[arg(
        long,
        global = true,
        env = "SHARDCAST_NODE_ADVERTISE",
        value_name = "URL"
    )]
    pub node_advertise: Option<String>,
    /// Serve Prometheus `GET /metrics` on this address [metrics.listen; default: off].
    #[arg(
        long,
        global = true,
        env = "SHARDCAST_METRICS_LISTEN",
        value_name = "ADDR"
    )]
    pub metrics_listen: Option<SocketAddr>,
    /// Stable media node id [cluster.node_id].
    #[arg(long, global = true, env = "SHARDCAST_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,
    /// Where this process runs, e.g. eu-west [cluster.region].
    #[arg(long, global = true, env = "SHARDCAST_REGION", value_name = "LABEL")]
    pub region: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IoBackendArg {
    Auto,
    IoUring,
    Portable,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// All in one: control plane + one media node on the embedded store (no config needed).
    Serve,
    /// Distributed: a control plane against etcd, driving remote media nodes.
    Controlplane,
    /// Distributed: a media node serving the node API and registering in etcd.
    Medianode,
    /// Access tokens for the default tenant (reads the data directory; works offline).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Rooms, through the REST API of a running server.
    #[command(subcommand)]
    Room(RoomCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a signed access token.
    Create(token::CreateArgs),
}

#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a room.
    Create(client::RoomCreateArgs),
    /// List rooms.
    List(client::ClientArgs),
}

impl Overrides {
    /// Fold flags/env over the file's values.
    pub fn apply(&self, c: &mut Config) {
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = self.listen {
            c.http.listen = v;
        }
        if let Some(v) = &self.web_dir {
            c.http.web_dir = Some(v.clone());
        }
        if self.dev {
            c.dev = true;
        }
        if let Some(v) = &self.admin_key {
            c.admin_key = Some(v.clone());
        }
        if let Some(v) = &self.log {
            c.log = v.clone();
        }
        if let Some(v) = self.log_format {
            c.log_format = v;
        }
        if let Some(v) = &self.etcd_password {
            c.etcd.password = Some(v.clone());
        }
        if let Some(v) = self.media_ip {
            c.media.bind_ip = v;
        }
        if let Some(v) = self.media_port {
            c.media.base_port = v;
        }
        if let Some(v) = self.shards {
            c.media.shards = v;
        }
        if let Some(v) = self.io_backend {
            c.media.backend = match v {
                IoBackendArg::Auto => "auto",
                IoBackendArg::IoUring => "io_uring",
                IoBackendArg::Portable => "portable",
            }
            .into();
        }
        if let Some(v) = self.congestion_control {
            c.media.congestion_control = v;
        }
        if let Some(v) = &self.etcd {
            c.etcd.endpoints = v.clone();
        }
        if let Some(v) = &self.cluster_secret {
            c.cluster.secret = Some(v.clone());
        }
        if let Some(v) = &self.cluster_previous_secret {
            c.cluster.previous_secret = Some(v.clone());
        }
        if let Some(v) = self.node_listen {
            c.cluster.node_listen = v;
        }
        if let Some(v) = &self.node_advertise {
            c.cluster.node_advertise = Some(v.clone());
        }
        if let Some(v) = &self.node_id {
            c.cluster.node_id = Some(v.clone());
        }
        if let Some(v) = &self.region {
            c.cluster.region = Some(v.clone());
        }
        if let Some(v) = self.metrics_listen {
            c.metrics.listen = Some(v);
        }
    }
}

fn load_config(cli: &Cli, role: ProcessRole) -> anyhow::Result<Config> {
    let mut c = Config::load(cli.config.as_deref())?;
    cli.overrides.apply(&mut c);
    c.validate(role)?;
    Ok(c)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let role = match &cli.command {
        Command::Serve => ProcessRole::Serve,
        Command::Controlplane => ProcessRole::ControlPlane,
        Command::Medianode => ProcessRole::MediaNode,
        Command::Token(_) | Command::Room(_) => ProcessRole::Tool,
    };
    let config = load_config(&cli, role)?;
    if role != ProcessRole::Tool {
        shardcast_controlplane::logging::init(&config.log, config.log_format);
    }
    if matches!(role, ProcessRole::Serve | ProcessRole::MediaNode) {
        guard::refuse_test_dtls()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let result = match cli.command {
        Command::Serve => rt.block_on(serve::serve(config)),
        Command::Controlplane => rt.block_on(serve::controlplane(config)),
        Command::Medianode => rt.block_on(serve::medianode(config)),
        Command::Token(TokenCommand::Create(args)) => token::create(&config, &args),
        Command::Room(RoomCommand::Create(args)) => rt.block_on(client::room_create(&config, args)),
        Command::Room(RoomCommand::List(args)) => rt.block_on(client::room_list(&config, args)),
    };
    // Tasks still running (an event stream, a socket writer) must not hold up the exit the
    // shutdown sequence already bounded.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    result
}
