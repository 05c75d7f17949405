//! The wire messages of the WebSocket signaling protocol (docs/PROTOCOL.md is the reference;
//! this file must match it). JSON text frames, internally tagged by `type`.
//!
//! Must never: carry logic — only shapes and (de)serialization.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shardcast_dataplane::node::{MediaKind, TrackId};

pub use crate::store::records::TrackSource;

/// Messages a client sends.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMsg {
    Join {
        token: String,
        #[serde(default)]
        password: Option<String>,
        #[serde(default)]
        resume: Option<String>,
    },
    Offer {
        sdp: String,
        #[serde(default)]
        ice_restart: bool,
        /// What the offer's send m-lines carry, by `a=mid` (at most `MAX_SOURCES`); a
        /// track whose mid is not here is `camera` (video) or `microphone` (audio).
        #[serde(default)]
        sources: BTreeMap<String, TrackSource>,
    },
    Answer {
        sdp: String,
    },
    /// A trickled ICE candidate (`candidate:…`, as `RTCIceCandidate.candidate`); an empty
    /// string is end-of-candidates.
    Candidate {
        candidate: String,
        #[serde(default)]
        sdp_mid: Option<String>,
    },
    SetSubscription {
        track: String,
        visible: bool,
        #[serde(default)]
        max_layer: Option<u8>,
    },
    Chat {
        text: String,
    },
    Mute {
        track: String,
        muted: bool,
    },
    Admit {
        identity: String,
    },
    Deny {
        identity: String,
    },
    Kick {
        identity: String,
    },
    MuteParticipant {
        identity: String,
        kind: MediaKind,
    },
    /// Host only: record `participant`, or stream it over HLS (`crate::egress`).
    StartEgress {
        kind: crate::egress::EgressKind,
        /// Omitted: the room's active speaker.
        #[serde(default)]
        participant: Option<String>,
    },
    /// Host only: stop egress `id` of this room.
    StopEgress {
        id: String,
    },
    Ping,
    Leave,
}

/// A participant as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    pub identity: String,
    pub name: String,
    pub role: String,
    pub grants: serde_json::Value,
}

/// Most entries in an `offer`'s `sources`, and the longest mid in it.
pub const MAX_SOURCES: usize = 16;
pub const MAX_MID_LEN: usize = 32;

/// A published track as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "WireTrack")]
pub struct TrackInfo {
    /// `TrackId` in lower-case hex (also the msid track id in server offers).
    pub id: String,
    pub identity: String,
    pub kind: MediaKind,
    pub source: TrackSource,
    pub rids: Vec<String>,
    pub muted: bool,
}

/// A `TrackInfo` as read from another control-plane instance's room bus: one from before
/// sources existed has none (the default for the kind).
#[derive(Deserialize)]
struct WireTrack {
    id: String,
    identity: String,
    kind: MediaKind,
    #[serde(default)]
    source: Option<TrackSource>,
    rids: Vec<String>,
    muted: bool,
}

impl From<WireTrack> for TrackInfo {
    fn from(t: WireTrack) -> Self {
        TrackInfo {
            source: t
                .source
                .unwrap_or(TrackSource::default_for(kind_of(t.kind))),
            id: t.id,
            identity: t.identity,
            kind: t.kind,
            rids: t.rids,
            muted: t.muted,
        }
    }
}

/// The store's name for a media kind.
pub fn kind_of(kind: MediaKind) -> crate::store::records::TrackKind {
    match kind {
        MediaKind::Audio => crate::store::records::TrackKind::Audio,
        MediaKind::Video => crate::store::records::TrackKind::Video,
    }
}

/// A chat message as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatInfo {
    pub id: String,
    pub identity: String,
    pub name: String,
    pub text: String,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
}

/// Why a session's media node went away (`node_lost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeLostReason {
    /// The node died or stopped.
    Lost,
    /// An operator drains the node (`POST /v1/nodes/{node}/drain`); its peers move.
    Draining,
}

/// Messages the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Joined {
        session: String,
        room: String,
        me: ParticipantInfo,
        participants: Vec<ParticipantInfo>,
        tracks: Vec<TrackInfo>,
        chat: Vec<ChatInfo>,
        /// For the client's `RTCConfiguration.iceServers` (TURN for users behind firewalls).
        #[serde(default)]
        ice_servers: Vec<crate::turn::IceServer>,
    },
    /// Room events may have been lost on their way to this session (between control-plane
    /// instances): the room's state now, which replaces what the client had. Media goes on;
    /// the server re-offers if subscriptions changed.
    Resync {
        participants: Vec<ParticipantInfo>,
        tracks: Vec<TrackInfo>,
        chat: Vec<ChatInfo>,
    },
    Waiting,
    Denied {
        reason: String,
    },
    Knock {
        identity: String,
        name: String,
    },
    Answer {
        sdp: String,
    },
    Offer {
        sdp: String,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        identity: String,
    },
    TrackPublished {
        track: TrackInfo,
    },
    TrackUnpublished {
        id: String,
        identity: String,
    },
    Muted {
        track: String,
        identity: String,
        muted: bool,
        by: String,
    },
    ActiveSpeaker {
        identity: String,
    },
    /// To one subscriber: the video of `track` it receives paused because its downlink
    /// cannot carry the track's lowest layer (audio goes on), or resumed.
    VideoPaused {
        track: String,
        paused: bool,
        reason: String,
    },
    Chat {
        message: ChatInfo,
    },
    Kicked {
        reason: String,
    },
    /// This control-plane instance is shutting down (SIGTERM): the session has ended (the
    /// room saw the participant leave) and the socket closes. Connect again (a load balancer
    /// sends you to another instance) and join as new.
    ServerShutdown,
    /// The media node carrying this session's peer connection is gone (killed, or stopped),
    /// or is being drained and its rooms move to another node (`reason`). The session stays
    /// joined; the client drops its peer connection and sends a new `offer` from a fresh
    /// one, which is placed on a live node. Tracks it published are unpublished (the room saw
    /// `track_unpublished`) and come back as new tracks.
    NodeLost {
        reason: NodeLostReason,
    },
    /// A participant's role or grants changed (REST API); when it is the receiver's own
    /// identity, its session now works under them.
    PermissionsChanged {
        participant: ParticipantInfo,
    },
    /// To the whole room: a recording or HLS stream of it started, became active or ended
    /// (`egress.state`), so everyone knows they are recorded.
    Egress {
        egress: crate::egress::EgressView,
    },
    Error {
        code: String,
        message: String,
    },
    Pong,
}

impl ServerMsg {
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        ServerMsg::Error {
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// Messages after which the server closes the socket.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ServerMsg::Denied { .. } | ServerMsg::Kicked { .. } | ServerMsg::ServerShutdown
        )
    }
}

impl ClientMsg {
    /// Reads a client's text frame; the error is the message of the `invalid_message`
    /// reply, its serde detail cut to `error::MAX_DETAIL` bytes (serde quotes the offending
    /// value escaped, so the full text could be several times the frame).
    pub fn parse(text: &str) -> Result<ClientMsg, String> {
        serde_json::from_str(text)
            .map_err(|e| crate::error::cut_detail(format!("not a protocol message: {e}")))
    }
}

/// Protocol form of a track id.
pub fn track_to_wire(t: TrackId) -> String {
    format!("{:x}", t.0)
}

/// Parses the protocol form of a track id; `None` when it is not one.
pub fn track_from_wire(s: &str) -> Option<TrackId> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    u64::from_str_radix(s, 16).ok().map(TrackId)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_message_reply_is_not_larger_than_a_bound() {
        // A JSON string of DEL characters: serde's error quotes it with each one escaped as
        // `\u{7f}`, 8 bytes for 1 (the fuzz target's finding).
        let frame = format!("\"{}\"", "\u{7f}".repeat(10_000));
        let Err(message) = ClientMsg::parse(&frame) else {
            panic!("a string is not a message");
        };
        assert!(message.starts_with("not a protocol message: invalid type: string"));
        assert!(
            message.len() <= crate::error::MAX_DETAIL + '…'.len_utf8(),
            "{}",
            message.len()
        );
        assert!(message.ends_with('…'));
        // A short error is left whole.
        let Err(message) = ClientMsg::parse(r#"{"type":"nope"}"#) else {
            panic!("unknown type");
        };
        assert!(message.contains("unknown variant `nope`") && !message.ends_with('…'));
    }

    #[test]
    fn client_messages_parse_as_documented() {
        let m: ClientMsg = serde_json::from_str(r#"{"type":"join","token":"t"}"#).unwrap();
        assert_eq!(
            m,
            ClientMsg::Join {
                token: "t".into(),
                password: None,
                resume: None
            }
        );
        let m: ClientMsg = serde_json::from_str(
            r#"{"type":"set_subscription","track":"1a","visible":false,"max_layer":1}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ClientMsg::SetSubscription {
                track: "1a".into(),
                visible: false,
                max_layer: Some(1)
            }
        );
        let m: ClientMsg =
            serde_json::from_str(r#"{"type":"mute_participant","identity":"a","kind":"video"}"#)
                .unwrap();
        assert_eq!(
            m,
            ClientMsg::MuteParticipant {
                identity: "a".into(),
                kind: MediaKind::Video
            }
        );
        assert!(serde_json::from_str::<ClientMsg>(r#"{"type":"nope"}"#).is_err());
        let m: ClientMsg = serde_json::from_str(
            r#"{"type":"offer","sdp":"v=0","sources":{"2":"screen","3":"screen_audio"}}"#,
        )
        .unwrap();
        let ClientMsg::Offer { sources, .. } = m else {
            panic!("{m:?}")
        };
        assert_eq!(sources.get("2"), Some(&TrackSource::Screen));
        assert_eq!(sources.get("3"), Some(&TrackSource::ScreenAudio));
        let bad = r#"{"type":"offer","sdp":"v=0","sources":{"2":"window"}}"#;
        assert!(ClientMsg::parse(bad).is_err_and(|e| e.contains("unknown variant")));
    }

    #[test]
    fn a_track_from_an_instance_without_sources_gets_its_kinds_default() {
        let t: TrackInfo = serde_json::from_str(
            r#"{"id":"1","identity":"a","kind":"audio","rids":[],"muted":false}"#,
        )
        .unwrap();
        assert_eq!(t.source, TrackSource::Microphone);
        let v = serde_json::to_value(TrackInfo {
            source: TrackSource::Screen,
            kind: MediaKind::Video,
            ..t
        })
        .unwrap();
        assert_eq!(v["source"], "screen");
    }

    #[test]
    fn server_messages_serialize_as_documented() {
        let v = serde_json::to_value(ServerMsg::error("bad_sdp", "x")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","code":"bad_sdp","message":"x"})
        );
        let v = serde_json::to_value(ServerMsg::Pong).unwrap();
        assert_eq!(v, serde_json::json!({"type":"pong"}));
    }

    #[test]
    fn track_ids_round_trip() {
        let t = TrackId(0x0001_0000_0000_002a);
        assert_eq!(track_from_wire(&track_to_wire(t)), Some(t));
        assert_eq!(track_from_wire("zz"), None);
        assert_eq!(track_from_wire(""), None);
    }
}
