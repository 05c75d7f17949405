//! `shardcast room create|list`: a small REST client of a running server, authenticated with
//! an API key/secret (flags, env, or the default tenant's credentials in the data directory).
//!
//! Must never: open the store (a running `serve` holds its lock) — everything goes over HTTP.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};
use shardcast_controlplane::config::Config;
use shardcast_controlplane::config::DefaultTenant;

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Base URL of the server.
    #[arg(long, env = "SHARDCAST_URL", default_value = "http://127.0.0.1:7880")]
    pub url: String,
    /// API key (default: the default tenant's, from the data directory).
    #[arg(long, env = "SHARDCAST_API_KEY")]
    pub api_key: Option<String>,
    /// API secret (default: the default tenant's, from the data directory).
    #[arg(long, env = "SHARDCAST_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
}

#[derive(Debug, Args)]
pub struct RoomCreateArgs {
    /// Room name.
    pub name: String,
    /// Room password (stored as an argon2 hash).
    #[arg(long)]
    pub password: Option<String>,
    /// Maximum participants.
    #[arg(long)]
    pub max_participants: Option<u32>,
    /// Waiting room: participants wait until a host admits them.
    #[arg(long)]
    pub ask_before_join: bool,
    /// Seconds an empty room lives on.
    #[arg(long)]
    pub empty_timeout_secs: Option<u64>,
    /// Video codecs the room prefers, most preferred first (e.g. `vp9,vp8`; of vp8, vp9,
    /// h264): publishers send the first of them they offer.
    #[arg(long, value_delimiter = ',')]
    pub video_codecs: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn credentials(config: &Config, args: &ClientArgs) -> anyhow::Result<(String, String)> {
    match (&args.api_key, &args.api_secret) {
        (Some(k), Some(s)) => Ok((k.clone(), s.clone())),
        (None, None) => {
            let t = DefaultTenant::read(&config.data_dir)?.with_context(|| {
                format!(
                    "no --api-key/--api-secret and no default tenant in {} (start `shardcast serve` once)",
                    config.data_dir.display()
                )
            })?;
            Ok((t.api_key, t.api_secret))
        }
        _ => bail!("--api-key and --api-secret go together"),
    }
}

async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let resp = req.send().await.context("request failed")?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{status}: {} {}",
            body["code"].as_str().unwrap_or(""),
            body["message"].as_str().unwrap_or("")
        );
    }
    Ok(body)
}

pub async fn room_create(config: &Config, args: RoomCreateArgs) -> anyhow::Result<()> {
    let (key, secret) = credentials(config, &args.client)?;
    let mut body = json!({ "name": args.name, "ask_before_join": args.ask_before_join });
    if let Some(p) = args.password {
        body["password"] = json!(p);
    }
    if let Some(m) = args.max_participants {
        body["max_participants"] = json!(m);
    }
    if let Some(t) = args.empty_timeout_secs {
        body["empty_timeout_secs"] = json!(t);
    }
    if !args.video_codecs.is_empty() {
        body["video_codecs"] = json!(args.video_codecs);
    }
    let url = format!("{}/v1/rooms", args.client.url.trim_end_matches('/'));
    let room = send(
        reqwest::Client::new()
            .post(url)
            .basic_auth(key, Some(secret))
            .json(&body),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&room)?);
    Ok(())
}

pub async fn room_list(config: &Config, args: ClientArgs) -> anyhow::Result<()> {
    let (key, secret) = credentials(config, &args)?;
    let url = format!("{}/v1/rooms", args.url.trim_end_matches('/'));
    let rooms = send(
        reqwest::Client::new()
            .get(url)
            .basic_auth(key, Some(secret)),
    )
    .await?;
    let list = rooms
        .get("rooms")
        .and_then(Value::as_array)
        .cloned()
        .or_else(|| rooms.as_array().cloned())
        .unwrap_or_default();
    for r in list {
        println!(
            "{}\tparticipants={}\tpassword={}",
            r["name"].as_str().unwrap_or("?"),
            r.get("participants")
                .map(|v| v.to_string())
                .unwrap_or_default(),
            r.get("has_password")
                .map(|v| v.to_string())
                .unwrap_or_default(),
        );
    }
    Ok(())
}
