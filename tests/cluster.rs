//! A distributed deployment as separate processes on loopback: `shardcast controlplane` and
//! `shardcast medianode` against a real etcd ([`crate::etcd::Etcd`]), sharing a cluster
//! secret; each process is stopped by PID when its guard drops, and a media node can be
//! killed outright (SIGKILL, no deregistration) to test lease expiry.
//!
//! Also [`Rest`]: the control plane's REST API as an application back-end calls it.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::etcd::Etcd;
use crate::process::ChildGuard;
use crate::server::shardcast_bin;
use crate::{free_tcp_port, wait_for};

pub const CLUSTER_SECRET: &str = "cluster-secret-for-process-tests";
pub const ADMIN_KEY: &str = "admin-key-for-process-tests-0123";

fn base_command(etcd: &Etcd, data: &std::path::Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new(shardcast_bin()?);
    cmd.env_remove("SHARDCAST_CONFIG")
        .args(["--etcd", &etcd.endpoint])
        .args(["--cluster-secret", CLUSTER_SECRET])
        .arg("--data-dir")
        .arg(data)
        .args(["--log", "info"]);
    Ok(cmd)
}

/// A running `shardcast controlplane`.
pub struct ControlPlane {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    process: ChildGuard,
    _data: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts a control plane (admin key [`ADMIN_KEY`], no dev mode) and waits for HTTP.
    pub fn start(etcd: &Etcd) -> anyhow::Result<Self> {
        Self::start_with_config(etcd, "")
    }

    /// As [`ControlPlane::start`], with `config` as its TOML file (keys without a flag).
    pub fn start_with_config(etcd: &Etcd, config: &str) -> anyhow::Result<Self> {
        let data = tempfile::Builder::new().prefix("shardcast-cp-").tempdir()?;
        let listen = format!("127.0.0.1:{}", free_tcp_port());
        let file = data.path().join("controlplane.toml");
        std::fs::write(&file, config)?;
        let mut cmd = base_command(etcd, data.path())?;
        cmd.arg("--config")
            .arg(&file)
            .args(["--listen", &listen])
            .args(["--admin-key", ADMIN_KEY])
            .arg("controlplane");
        let mut process = ChildGuard::spawn(
            "shardcast controlplane",
            cmd,
            &data.path().join("controlplane.log"),
        )?;
        let base_url = format!("http://{listen}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        wait_for(
            "the control plane to answer",
            Duration::from_secs(60),
            || {
                process.check_running()?;
                let r = http.get(format!("{base_url}/v1/openapi.json")).send();
                Ok(r.ok().filter(|r| r.status().is_success()).map(|_| ()))
            },
        )?;
        Ok(Self {
            base_url,
            process,
            _data: data,
        })
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// SIGTERM by PID, as systemd stops the service.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// SIGKILL by PID: a crash.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGSTOP by PID: the instance hangs (its sockets stay open, nothing answers) until
    /// [`ControlPlane::thaw`]; dropping the guard continues and stops it.
    pub fn freeze(&self) {
        self.process.freeze();
    }

    /// SIGCONT after [`ControlPlane::freeze`].
    pub fn thaw(&self) {
        self.process.thaw();
    }

    /// The exit code once the process ended by itself within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        self.process.wait_timeout(timeout)
    }
}

/// A running `shardcast medianode`: one portable-driver shard on 127.0.0.1, its node API on
/// a free loopback port, registered in etcd on a lease of `lease_secs`.
pub struct MediaNodeProcess {
    pub id: String,
    /// The node API URL it registered.
    pub api_url: String,
    process: ChildGuard,
    _data: tempfile::TempDir,
}

impl MediaNodeProcess {
    /// Starts the node and waits until it says it registered.
    pub fn start(etcd: &Etcd, id: &str, lease_secs: u64) -> anyhow::Result<Self> {
        Self::start_with_config(etcd, id, lease_secs, "")
    }

    /// As [`MediaNodeProcess::start`], with `extra` TOML appended to its config file
    /// (sections other than `[cluster]`).
    pub fn start_with_config(
        etcd: &Etcd,
        id: &str,
        lease_secs: u64,
        extra: &str,
    ) -> anyhow::Result<Self> {
        let data = tempfile::Builder::new()
            .prefix("shardcast-node-")
            .tempdir()?;
        // node_lease_secs has no flag: it comes from the config file.
        let config = data.path().join("node.toml");
        std::fs::write(
            &config,
            format!("[cluster]\nnode_lease_secs = {lease_secs}\n{extra}"),
        )?;
        let listen = format!("127.0.0.1:{}", free_tcp_port());
        let mut cmd = base_command(etcd, data.path())?;
        cmd.arg("--config")
            .arg(&config)
            .args(["--node-listen", &listen])
            .args(["--node-id", id])
            .args(["--media-ip", "127.0.0.1", "--media-port", "0"])
            .args(["--shards", "1", "--io-backend", "portable"])
            .arg("medianode");
        let mut process = ChildGuard::spawn(
            &format!("shardcast medianode {id}"),
            cmd,
            &data.path().join("medianode.log"),
        )?;
        wait_for(
            &format!("media node {id} to register"),
            Duration::from_secs(60),
            || {
                process.check_running()?;
                Ok(process
                    .log_tail(200)
                    .contains("serving the node API on")
                    .then_some(()))
            },
        )?;
        Ok(Self {
            id: id.to_string(),
            api_url: format!("http://{listen}"),
            process,
            _data: data,
        })
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGKILL by PID: the node cannot revoke its lease, so it lingers until the lease ends.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM by PID, as systemd stops the service.
    pub fn terminate(&self) {
        self.process.terminate();
    }

    /// The exit code once the process ended by itself within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        self.process.wait_timeout(timeout)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// The REST API of a control plane, as an application back-end uses it.
pub struct Rest {
    pub base_url: String,
    http: reqwest::blocking::Client,
    /// The tenant's API key and secret (HTTP Basic), once [`Rest::create_tenant`] ran.
    tenant_key: Option<(String, String)>,
}

impl Rest {
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            base_url: base_url.to_string(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            tenant_key: None,
        })
    }

    fn check(r: reqwest::blocking::Response, what: &str) -> anyhow::Result<Value> {
        let status = r.status();
        let body = r.text()?;
        if !status.is_success() {
            bail!("{what}: {status}: {body}");
        }
        Ok(if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).with_context(|| format!("{what}: body {body}"))?
        })
    }

    fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(ADMIN_KEY)
    }

    fn tenant(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<reqwest::blocking::RequestBuilder> {
        let (k, s) = self.tenant_key.as_ref().context("no tenant yet")?;
        Ok(self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .basic_auth(k, Some(s)))
    }

    /// Creates tenant `id` and a key pair (admin API); later calls act as that tenant.
    pub fn create_tenant(&mut self, id: &str) -> anyhow::Result<()> {
        let r = self
            .admin(reqwest::Method::POST, "/v1/tenants")
            .json(&json!({ "id": id }))
            .send()?;
        Self::check(r, "create tenant")?;
        let r = self
            .admin(reqwest::Method::POST, &format!("/v1/tenants/{id}/keys"))
            .send()?;
        let key = Self::check(r, "create key")?;
        let field = |f: &str| -> anyhow::Result<String> {
            Ok(key[f].as_str().context("key pair field")?.to_string())
        };
        self.tenant_key = Some((field("id")?, field("secret")?));
        Ok(())
    }

    pub fn create_room(&self, room: &str) -> anyhow::Result<Value> {
        let r = self
            .tenant(reqwest::Method::POST, "/v1/rooms")?
            .json(&json!({ "name": room }))
            .send()?;
        Self::check(r, "create room")
    }

    /// Creates `room` with `settings` (`max_participants`, `empty_timeout_secs`, …).
    pub fn create_room_with(&self, room: &str, settings: Value) -> anyhow::Result<Value> {
        let mut body = settings;
        body["name"] = json!(room);
        let r = self
            .tenant(reqwest::Method::POST, "/v1/rooms")?
            .json(&body)
            .send()?;
        Self::check(r, "create room")
    }

    /// An access token for `identity` in `room` (host role).
    pub fn token(&self, room: &str, identity: &str) -> anyhow::Result<String> {
        self.token_with(room, json!({ "identity": identity, "role": "host" }))
    }

    /// An access token minted from `request` (`POST /v1/rooms/{room}/tokens`'s body).
    pub fn token_with(&self, room: &str, request: Value) -> anyhow::Result<String> {
        let r = self
            .tenant(reqwest::Method::POST, &format!("/v1/rooms/{room}/tokens"))?
            .json(&request)
            .send()?;
        let v = Self::check(r, "mint token")?;
        Ok(v["token"].as_str().context("token field")?.to_string())
    }

    /// `GET /v1/rooms/{room}`.
    pub fn room(&self, room: &str) -> anyhow::Result<Value> {
        let r = self
            .tenant(reqwest::Method::GET, &format!("/v1/rooms/{room}"))?
            .send()?;
        Self::check(r, "get room")
    }

    pub fn participants(&self, room: &str) -> anyhow::Result<Vec<Value>> {
        let r = self
            .tenant(
                reqwest::Method::GET,
                &format!("/v1/rooms/{room}/participants"),
            )?
            .send()?;
        let v = Self::check(r, "list participants")?;
        Ok(v["participants"].as_array().cloned().unwrap_or_default())
    }

    /// The node carrying `room`, as its participants' records say (all must agree).
    pub fn room_node(&self, room: &str) -> anyhow::Result<Option<String>> {
        let mut nodes: Vec<String> = self
            .participants(room)?
            .iter()
            .filter_map(|p| p["node"].as_str().map(str::to_string))
            .collect();
        nodes.dedup();
        match nodes.len() {
            0 => Ok(None),
            1 => Ok(nodes.pop()),
            _ => bail!("room {room} spans nodes {nodes:?}"),
        }
    }

    /// `GET /v1/nodes`: the node `id` as listed (`None` if it is not).
    pub fn node(&self, id: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let r = self.admin(reqwest::Method::GET, "/v1/nodes").send()?;
        let v = Self::check(r, "list nodes")?;
        Ok(v["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["id"] == id).cloned()))
    }

    /// `GET /v1/nodes`: the live nodes' ids and whether each is draining.
    pub fn nodes(&self) -> anyhow::Result<Vec<(String, bool)>> {
        let r = self.admin(reqwest::Method::GET, "/v1/nodes").send()?;
        let v = Self::check(r, "list nodes")?;
        Ok(v["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|n| {
                Some((
                    n["id"].as_str()?.to_string(),
                    n["draining"].as_bool().unwrap_or(false),
                ))
            })
            .collect())
    }

    /// `POST /v1/nodes/{id}/drain`.
    pub fn drain(&self, node: &str) -> anyhow::Result<()> {
        let r = self
            .admin(reqwest::Method::POST, &format!("/v1/nodes/{node}/drain"))
            .send()?;
        Self::check(r, "drain node").map(|_| ())
    }
}
