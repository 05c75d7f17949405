//! `shardcast token create`: sign an access token for the default tenant, offline.
//!
//! Reads the default tenant's key pair from the data directory (written by the first
//! `serve`), so it works while a server holds the store's lock. Must never: open the store.

use anyhow::Context;
use clap::{Args, ValueEnum};
use shardcast_controlplane::auth::tokens::{AccessClaims, TokenService};
use shardcast_controlplane::config::{Config, DefaultTenant};
use shardcast_controlplane::ids::{ApiKeyId, Identity, RoomName, TenantId};
use shardcast_controlplane::store::records::{ApiKeyRecord, Grants, ParticipantRole};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ParticipantRoleArg {
    Host,
    Participant,
    Viewer,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Room the token admits to.
    #[arg(long)]
    pub room: String,
    /// Participant identity (unique in the room).
    #[arg(long)]
    pub identity: String,
    /// Display name (default: the identity).
    #[arg(long)]
    pub name: Option<String>,
    /// Role; grants follow from it.
    #[arg(long, value_enum, default_value = "participant")]
    pub role: ParticipantRoleArg,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
}

pub fn create(config: &Config, args: &CreateArgs) -> anyhow::Result<()> {
    let saved = DefaultTenant::read(&config.data_dir)?.with_context(|| {
        format!(
            "no default tenant in {} (start `shardcast serve` once with this data directory)",
            config.data_dir.display()
        )
    })?;
    let room = RoomName::parse(args.room.clone()).context("--room")?;
    let identity = Identity::parse(args.identity.clone()).context("--identity")?;
    if args.ttl == 0 || args.ttl > 24 * 3600 {
        anyhow::bail!("--ttl: 1..=86400 seconds");
    }
    let role = match args.role {
        ParticipantRoleArg::Host => ParticipantRole::Host,
        ParticipantRoleArg::Participant => ParticipantRole::Participant,
        ParticipantRoleArg::Viewer => ParticipantRole::Viewer,
    };
    let key = ApiKeyRecord {
        id: ApiKeyId::parse(saved.api_key.clone()).context("default tenant api key")?,
        tenant: TenantId::parse(saved.tenant.clone()).context("default tenant id")?,
        secret: saved.api_secret,
        created_at: 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = AccessClaims {
        sub: identity.to_string(),
        name: args.name.clone().unwrap_or_else(|| identity.to_string()),
        room,
        role,
        grants: Grants::for_role(role),
        exp: now + args.ttl,
        nbf: now.saturating_sub(5),
        iat: now,
        iss: key.id.to_string(),
        region: None,
    };
    let token = TokenService::default()
        .mint(&key, &claims)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{token}");
    Ok(())
}
