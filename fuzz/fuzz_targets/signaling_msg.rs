//! A WebSocket text frame as the signaling socket reads it (`controlplane/src/signaling/
//! socket.rs`): JSON into a `ClientMsg` (internally tagged, unknown fields refused), and the
//! per-message parsing the hub then does on its fields (track ids, trickled candidates).
//! Garbage must be a serde error (the socket answers `invalid_message`), never a panic; a
//! message that parses must survive a round trip through its own serialisation (the
//! protocol is one shape, documented in docs/PROTOCOL.md), and the error text the client
//! gets back must stay small whatever it sent.
#![no_main]

use shardcast_controlplane::error::MAX_DETAIL;
use shardcast_controlplane::signaling::messages::{track_from_wire, ClientMsg, ServerMsg};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // A text frame is UTF-8 by the WebSocket protocol; tungstenite refuses anything else.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let msg = match ClientMsg::parse(text) {
        Ok(m) => m,
        Err(message) => {
            let reply = ServerMsg::error("invalid_message", message);
            let json = serde_json::to_string(&reply).expect("error reply serialises");
            assert!(
                json.len() <= 2 * MAX_DETAIL,
                "error reply grows with the input: {json}"
            );
            return;
        }
    };
    let json = serde_json::to_string(&msg).expect("a parsed message serialises");
    let again: ClientMsg = serde_json::from_str(&json).expect("its serialisation parses");
    assert_eq!(again, msg, "round trip");
    match &msg {
        ClientMsg::SetSubscription { track, .. } | ClientMsg::Mute { track, .. } => {
            if let Some(id) = track_from_wire(track) {
                assert_eq!(track_from_wire(&format!("{:x}", id.0)), Some(id));
            }
        }
        ClientMsg::Candidate { candidate, .. } if !candidate.is_empty() => {
            // What the hub hands the media node, which parses it as str0m does.
            let c = candidate
                .trim()
                .strip_prefix("a=")
                .unwrap_or(candidate.trim());
            let _ = str0m::Candidate::from_sdp_string(c);
        }
        _ => {}
    }
});
