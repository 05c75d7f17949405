//! Typed records stored as JSON values under the keys in [`super::keys`].
//!
//! These are storage shapes, not API shapes: routes convert them into response bodies so
//! that secrets and hashes never leak (e.g. `RoomRecord::password_hash`).

use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, Identity, NodeId, Region, RoomName, TenantId};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: TenantId,
    pub name: String,
    /// Unix seconds.
    pub created_at: u64,
}

/// An API key pair. The secret is the HS256 key for this tenant's access tokens, so it is
/// stored as is (a hash could not sign); it is returned once, at creation, and never again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub tenant: TenantId,
    pub secret: String,
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// `None` = unlimited.
    pub max_participants: Option<u32>,
    /// Waiting room: joiners wait until a host admits them.
    pub ask_before_join: bool,
    /// Close the room after it has been empty this long.
    pub empty_timeout_secs: u32,
    /// The video codecs the room prefers, most preferred first (empty: each publisher's
    /// own choice). Publishers send the first of these they offer.
    #[serde(default)]
    pub video_codecs: Vec<VideoCodec>,
}

/// A video codec a room may prefer (`"vp8"`, `"vp9"`, `"h264"`, `"av1"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoCodec {
    Vp8,
    Vp9,
    H264,
    Av1,
}

impl VideoCodec {
    /// The SDP encoding name, in lower case: what the media node matches.
    pub fn as_str(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "vp8",
            VideoCodec::Vp9 => "vp9",
            VideoCodec::H264 => "h264",
            VideoCodec::Av1 => "av1",
        }
    }
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            max_participants: None,
            ask_before_join: false,
            empty_timeout_secs: 300,
            video_codecs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomRecord {
    pub tenant: TenantId,
    pub name: RoomName,
    pub settings: RoomSettings,
    /// argon2 PHC string; `None` = no password.
    pub password_hash: Option<String>,
    pub created_at: u64,
}

/// A participant's role in a room: in access tokens, participant records and the REST API
/// (`"host"`, `"participant"`, `"viewer"`). Not what a process runs as
/// (`config::ProcessRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantRole {
    Host,
    Participant,
    Viewer,
}

/// What a participant may do; carried in access tokens and updatable by hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grants {
    pub can_publish: bool,
    pub can_subscribe: bool,
    pub can_chat: bool,
    pub room_admin: bool,
}

impl Grants {
    /// The grants a role gets when a token does not spell them out.
    pub fn for_role(role: ParticipantRole) -> Self {
        match role {
            ParticipantRole::Host => Self {
                can_publish: true,
                can_subscribe: true,
                can_chat: true,
                room_admin: true,
            },
            ParticipantRole::Participant => Self {
                can_publish: true,
                can_subscribe: true,
                can_chat: true,
                room_admin: false,
            },
            ParticipantRole::Viewer => Self {
                can_publish: false,
                can_subscribe: true,
                can_chat: true,
                room_admin: false,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantState {
    /// In the waiting room, not yet admitted.
    Waiting,
    Joined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    Audio,
    Video,
}

/// What a published track carries, as its publisher said (signaling `offer` `sources`):
/// by default `microphone` for audio and `camera` for video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Camera,
    Microphone,
    Screen,
    ScreenAudio,
}

impl TrackSource {
    /// The source a track of `kind` has when its publisher named none.
    pub fn default_for(kind: TrackKind) -> Self {
        match kind {
            TrackKind::Audio => TrackSource::Microphone,
            TrackKind::Video => TrackSource::Camera,
        }
    }

    /// Whether a track of `kind` can carry this source (a screen is video, its sound audio).
    pub fn fits(self, kind: TrackKind) -> bool {
        matches!(
            (self, kind),
            (TrackSource::Camera | TrackSource::Screen, TrackKind::Video)
                | (
                    TrackSource::Microphone | TrackSource::ScreenAudio,
                    TrackKind::Audio
                )
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredTrack")]
pub struct TrackRecord {
    /// The media node's `TrackId`.
    pub id: u64,
    pub kind: TrackKind,
    /// Muted by a host (forwarding stopped on the node).
    pub muted: bool,
    /// Simulcast rids the publisher declared (lowest layer first, as the node reports them);
    /// empty for a single-layer track.
    #[serde(default)]
    pub rids: Vec<String>,
    pub source: TrackSource,
}

/// A `TrackRecord` as stored: records written before sources existed have none (the
/// default for the kind).
#[derive(Deserialize)]
struct StoredTrack {
    id: u64,
    kind: TrackKind,
    muted: bool,
    #[serde(default)]
    rids: Vec<String>,
    #[serde(default)]
    source: Option<TrackSource>,
}

impl From<StoredTrack> for TrackRecord {
    fn from(t: StoredTrack) -> Self {
        TrackRecord {
            id: t.id,
            kind: t.kind,
            muted: t.muted,
            rids: t.rids,
            source: t.source.unwrap_or(TrackSource::default_for(t.kind)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantRecord {
    pub identity: Identity,
    pub name: String,
    pub role: ParticipantRole,
    pub grants: Grants,
    pub state: ParticipantState,
    /// The media node carrying its peer connection, once it has one.
    pub node: Option<NodeId>,
    /// The node's `PeerId`.
    pub peer: Option<u64>,
    #[serde(default)]
    pub tracks: Vec<TrackRecord>,
    /// A host paused all of its video.
    #[serde(default)]
    pub video_paused: bool,
    /// Unix seconds.
    pub joined_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRecord {
    /// Per-room sequence number, from 1, gapless in storage order.
    pub seq: u64,
    pub from: Identity,
    pub name: String,
    pub text: String,
    /// Unix milliseconds.
    pub sent_at_ms: u64,
}

/// What a media node publishes about itself, on its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    /// Node API base URL (`http://10.0.0.5:7880`), or `in-process` in all-in-one mode.
    pub api_address: String,
    /// Maximum peers the node takes.
    pub capacity: u32,
    pub peers: u32,
    pub rooms: u32,
    /// 0.0 ..= 1.0: the larger of the fullest shard's share of its peer capacity and `cpu`.
    pub utilization: f32,
    /// 0.0 ..= 1.0: the shard threads' measured CPU share in their last second, averaged.
    #[serde(default)]
    pub cpu: f32,
    /// Unix milliseconds of the last report.
    pub updated_at_ms: u64,
    /// The operator's region label (`cluster.region`); placement prefers nodes in the
    /// region a room is wanted in. None: unlabelled (a record written before regions, too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRecord {
    pub draining: bool,
    pub since_ms: u64,
    /// Written by the node itself as it stops (SIGTERM), not by an operator: removed once its
    /// calls moved, and at its next start if it died before that.
    #[serde(default)]
    pub stopping: bool,
}

/// Which node a room lives on. Created if absent; deleted when the room closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomBinding {
    pub node: NodeId,
    pub bound_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_track_stored_before_sources_gets_its_kinds_default() {
        let old: TrackRecord =
            serde_json::from_str(r#"{"id":1,"kind":"audio","muted":false,"rids":[]}"#).unwrap();
        assert_eq!(old.source, TrackSource::Microphone);
        let old: TrackRecord =
            serde_json::from_str(r#"{"id":2,"kind":"video","muted":true}"#).unwrap();
        assert_eq!(old.source, TrackSource::Camera);
        let screen = TrackRecord {
            source: TrackSource::Screen,
            ..old
        };
        let json = serde_json::to_string(&screen).unwrap();
        assert!(json.contains(r#""source":"screen""#), "{json}");
        assert_eq!(serde_json::from_str::<TrackRecord>(&json).unwrap(), screen);
        assert!(TrackSource::ScreenAudio.fits(TrackKind::Audio));
        assert!(!TrackSource::Screen.fits(TrackKind::Audio));
    }
}
