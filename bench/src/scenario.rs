//! Scenario files (bench/scenarios/*.toml): who joins which rooms, what they publish and
//! receive, for how long, and optionally a ramp. Plain data, validated on load with errors
//! that name the bad key; the harness turns it into clients.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a group of participants publishes as video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum VideoKind {
    #[default]
    None,
    /// One layer at 1500 kbps.
    Single,
    /// Three simulcast layers, 150 / 500 / 1500 kbps, a keyframe every 2 s.
    Simulcast3,
}

impl VideoKind {
    /// What the pool's publishers send for this kind (None: no video).
    pub fn spec(self) -> Option<shardcast_client::VideoSpec> {
        match self {
            VideoKind::None => None,
            VideoKind::Single => Some(shardcast_client::VideoSpec::single(1_500_000)),
            VideoKind::Simulcast3 => Some(shardcast_client::VideoSpec::simulcast3()),
        }
    }
}

/// How a group's participants reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SignalingKind {
    /// WebSocket signaling (`/v1/rtc`): publish and subscribe on one peer connection.
    #[default]
    Websocket,
    /// WHIP for publishers, WHEP for receive-only participants.
    WhipWhep,
}

/// Participants that behave alike: `per_room` of them in each of `rooms` rooms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub rooms: u32,
    pub per_room: u32,
    #[serde(default)]
    pub audio: bool,
    #[serde(default)]
    pub video: VideoKind,
    #[serde(default = "yes")]
    pub subscribe: bool,
    /// Highest simulcast layer asked for (0–2); absent = the best the SFU can send.
    pub max_layer: Option<u8>,
    /// One in N subscribers checks every payload byte and measures latency; the rest count.
    #[serde(default = "one")]
    pub verify_one_in: u32,
    #[serde(default)]
    pub signaling: SignalingKind,
    /// Negotiate transport-cc (the transport-wide sequence number), as browsers do; false:
    /// the group's clients send receiver reports only, as some non-browser stacks.
    #[serde(default = "yes")]
    pub transport_cc: bool,
}

impl Group {
    /// Whether members send media (and so need a publishing token).
    pub fn publishes(&self) -> bool {
        self.audio || self.video != VideoKind::None
    }
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}

/// Joins and leaves at a steady rate: each member of `group` lives `lifetime_secs`, then
/// leaves and is replaced by a new participant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Churn {
    pub group: String,
    pub lifetime_secs: f64,
}

/// Raise `group`'s `per_room` by `step` every `step_secs` until loss > `max_loss` or p99
/// latency > `max_p99_ms` (or `max_per_room` is reached); the last good step is the knee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    pub group: String,
    pub step: u32,
    pub step_secs: u64,
    pub max_per_room: u32,
    #[serde(default = "default_max_loss")]
    pub max_loss: f64,
    #[serde(default = "default_max_p99_ms")]
    pub max_p99_ms: f64,
}

fn default_max_loss() -> f64 {
    0.01
}
fn default_max_p99_ms() -> f64 {
    50.0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Measured seconds once everyone has joined (`--duration` overrides).
    pub duration_secs: u64,
    /// New participants per second while joining (spreads DTLS handshakes).
    #[serde(default = "default_join_rate")]
    pub join_rate_per_sec: f64,
    #[serde(rename = "group")]
    pub groups: Vec<Group>,
    pub churn: Option<Churn>,
    pub ramp: Option<Ramp>,
}

fn default_join_rate() -> f64 {
    20.0
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        Scenario::parse(&text, &shown)
    }

    pub fn parse(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|source| ScenarioError::Parse {
            path: path.to_string(),
            source,
        })?;
        scenario
            .validate()
            .map_err(|(key, message)| ScenarioError::Invalid {
                path: path.to_string(),
                key,
                message,
            })?;
        Ok(scenario)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        let bad = |key: String, message: &str| Err((key, message.to_string()));
        if self.groups.is_empty() {
            return bad("group".into(), "at least one [[group]] is needed");
        }
        if self.duration_secs == 0 {
            return bad("duration_secs".into(), "must be at least 1");
        }
        if self.join_rate_per_sec.is_nan() || self.join_rate_per_sec <= 0.0 {
            return bad("join_rate_per_sec".into(), "must be above 0");
        }
        for (i, g) in self.groups.iter().enumerate() {
            let key = |field: &str| format!("group[{i}].{field}");
            if g.rooms == 0 {
                return bad(key("rooms"), "must be at least 1");
            }
            if g.verify_one_in == 0 {
                return bad(key("verify_one_in"), "must be at least 1");
            }
            if g.max_layer.is_some_and(|l| l > 2) {
                return bad(key("max_layer"), "must be 0, 1 or 2");
            }
            if g.signaling == SignalingKind::WhipWhep && g.publishes() && g.subscribe {
                return bad(
                    key("signaling"),
                    "WHIP publishes only: a whip_whep group either publishes or subscribes",
                );
            }
            if !g.publishes() && !g.subscribe {
                return bad(
                    key("subscribe"),
                    "a group that publishes nothing must subscribe",
                );
            }
            if self.groups[..i].iter().any(|o| o.name == g.name) {
                return bad(key("name"), "group names must be unique");
            }
        }
        let known = |name: &str| self.groups.iter().any(|g| g.name == name);
        if let Some(c) = &self.churn {
            if !known(&c.group) {
                return bad("churn.group".into(), "names no group");
            }
            if c.lifetime_secs.is_nan() || c.lifetime_secs <= 0.0 {
                return bad("churn.lifetime_secs".into(), "must be above 0");
            }
        }
        if let Some(r) = &self.ramp {
            if !known(&r.group) {
                return bad("ramp.group".into(), "names no group");
            }
            if r.step == 0 || r.step_secs == 0 {
                return bad("ramp.step".into(), "step and step_secs must be at least 1");
            }
        }
        Ok(())
    }

    /// Participants at full size (before any ramp).
    pub fn participants(&self) -> u64 {
        self.groups
            .iter()
            .map(|g| u64::from(g.rooms) * u64::from(g.per_room))
            .sum()
    }

    /// Distinct rooms: groups share rooms by index (room i of every group is the same room).
    pub fn rooms(&self) -> u32 {
        self.groups.iter().map(|g| g.rooms).max().unwrap_or(0)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_scenario_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(
                    Some(s.name.as_str()),
                    path.file_stem().and_then(|n| n.to_str())
                );
                names.push(s.name);
            }
        }
        names.sort();
        assert_eq!(
            names,
            [
                "audio-500",
                "churn",
                "conference-8",
                "rooms-50x4",
                "smoke",
                "soak",
                "webinar-1x200",
                "webinar-20-no-twcc"
            ]
        );
    }

    #[test]
    fn counts_participants_and_rooms() {
        let s = Scenario::parse(
            r#"
            name = "x"
            duration_secs = 5
            [[group]]
            name = "host"
            rooms = 2
            per_room = 1
            audio = true
            video = "simulcast3"
            subscribe = false
            [[group]]
            name = "viewers"
            rooms = 2
            per_room = 10
            "#,
            "x.toml",
        )
        .unwrap();
        assert_eq!(s.participants(), 22);
        assert_eq!(s.rooms(), 2);
        assert_eq!(s.groups[1].video, VideoKind::None);
        assert!(s.groups[1].subscribe);
        assert!(
            s.groups[1].transport_cc,
            "transport-cc unless a group says otherwise"
        );
    }

    #[test]
    fn errors_name_the_bad_key() {
        let base =
            "name = \"x\"\nduration_secs = 5\n[[group]]\nname = \"g\"\nrooms = 1\nper_room = 1\n";
        let err = Scenario::parse(&format!("{base}max_layer = 3\n"), "x.toml").unwrap_err();
        assert!(err.to_string().contains("group[0].max_layer"), "{err}");
        let err = Scenario::parse(&format!("{base}colour = 1\n"), "x.toml").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = Scenario::parse(
            &format!("{base}[ramp]\ngroup = \"nope\"\nstep = 1\nstep_secs = 1\nmax_per_room = 5\n"),
            "x.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("ramp.group"), "{err}");
        let err = Scenario::parse(&format!("{base}subscribe = false\n"), "x.toml").unwrap_err();
        assert!(err.to_string().contains("group[0].subscribe"), "{err}");
    }
}
