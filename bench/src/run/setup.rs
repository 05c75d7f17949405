//! REST set-up of a run (docs/API.md): create the scenario's rooms and mint one access token
//! per participant with the tenant's API key — or, against a server we did not start and
//! have no key for, through dev mode's `GET /dev/token` (host tokens, rooms created on
//! demand). Also counts the participants the server lists, as a cross-check.
//! Blocking HTTP on the run's control thread; never on the media path.

use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use serde_json::json;

/// How the harness gets tokens.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// A tenant API key (`Authorization: Basic id:secret`).
    ApiKey { id: String, secret: String },
    /// Dev mode (`GET /dev/token`), for `--target` without `--api-key`.
    Dev,
}

impl Credentials {
    /// Parses `ID:SECRET`.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        match text.split_once(':') {
            Some((id, secret)) if !id.is_empty() && !secret.is_empty() => Ok(Credentials::ApiKey {
                id: id.to_string(),
                secret: secret.to_string(),
            }),
            _ => Err("expected API_KEY_ID:API_SECRET".to_string()),
        }
    }
}

pub struct Setup {
    http: reqwest::blocking::Client,
    base_url: String,
    credentials: Credentials,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: String,
}

#[derive(Deserialize)]
struct Participants {
    participants: Vec<Participant>,
}

#[derive(Deserialize)]
struct Participant {
    state: String,
}

impl Setup {
    pub fn new(base_url: &str, credentials: Credentials) -> anyhow::Result<Setup> {
        Ok(Setup {
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                // The server closes a connection idle for `http.header_read_timeout_secs`
                // (10 s by default); one reused just as it closes fails ("error sending
                // request"), which is how the end-of-run participant count went missing.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()?,
            base_url: base_url.trim_end_matches('/').to_string(),
            credentials,
        })
    }

    /// Creates `room` (a room that already exists is fine: a reused `--target`).
    pub fn create_room(&self, room: &str) -> anyhow::Result<()> {
        let Credentials::ApiKey { id, secret } = &self.credentials else {
            // Dev mode creates the room with the first token.
            return Ok(());
        };
        let r = self
            .http
            .post(format!("{}/v1/rooms", self.base_url))
            .basic_auth(id, Some(secret))
            .json(&json!({ "name": room }))
            .send()
            .with_context(|| format!("POST /v1/rooms {room}"))?;
        let status = r.status();
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            return Ok(());
        }
        anyhow::bail!(
            "POST /v1/rooms {room}: HTTP {status}: {}",
            r.text().unwrap_or_default()
        )
    }

    /// An access token for `identity` in `room`; `publish` picks role participant (publish +
    /// subscribe) over viewer (subscribe only).
    pub fn token(&self, room: &str, identity: &str, publish: bool) -> anyhow::Result<String> {
        let r = match &self.credentials {
            Credentials::ApiKey { id, secret } => self
                .http
                .post(format!("{}/v1/rooms/{room}/tokens", self.base_url))
                .basic_auth(id, Some(secret))
                .json(&json!({
                    "identity": identity,
                    "name": identity,
                    "role": if publish { "participant" } else { "viewer" },
                    "ttl_secs": 86_400,
                }))
                .send(),
            Credentials::Dev => self
                .http
                .get(format!("{}/dev/token", self.base_url))
                .query(&[("room", room), ("identity", identity), ("name", identity)])
                .send(),
        }
        .with_context(|| format!("minting a token for {identity} in {room}"))?;
        let status = r.status();
        if !status.is_success() {
            anyhow::bail!(
                "token for {identity} in {room}: HTTP {status}: {}",
                r.text().unwrap_or_default()
            );
        }
        Ok(r.json::<TokenResponse>()?.token)
    }

    /// Participants the control plane lists as joined in `rooms` (GET
    /// /v1/rooms/{room}/participants): a cross-check of what the harness counts as
    /// connected. None in dev mode (no tenant key) or when a request fails.
    pub fn joined_participants(&self, rooms: &[String]) -> Option<u64> {
        let Credentials::ApiKey { id, secret } = &self.credentials else {
            return None;
        };
        let mut total = 0;
        for room in rooms {
            let r = self
                .http
                .get(format!("{}/v1/rooms/{room}/participants", self.base_url))
                .basic_auth(id, Some(secret))
                .send()
                .map_err(
                    |e| tracing::warn!(error = ?e, room, "cannot count the server's participants"),
                )
                .ok()?;
            if !r.status().is_success() {
                tracing::warn!(status = %r.status(), room, "cannot count the server's participants");
                return None;
            }
            let list: Participants = r.json().ok()?;
            total += list
                .participants
                .iter()
                .filter(|p| p.state == "joined")
                .count() as u64;
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_api_key_credentials() {
        assert!(matches!(
            Credentials::parse("AK1:sec:ret"),
            Ok(Credentials::ApiKey { id, secret }) if id == "AK1" && secret == "sec:ret"
        ));
        assert!(Credentials::parse("nocolon").is_err());
        assert!(Credentials::parse(":x").is_err());
    }
}
