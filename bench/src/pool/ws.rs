//! WebSocket signaling for one participant (docs/PROTOCOL.md): `join` with the token (and
//! password), forward the I/O thread's first offer, carry answers and server offers both
//! ways, ask for `max_layer` on every received video track, ping, and `leave` on request.
//!
//! Owns only the socket and the ids of the room's video tracks. Never: touch SDP beyond
//! carrying it, or retry a refused join (a refusal is the participant's result).

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::signal::{Command, Link, ToSignal};
use super::JoinSpec;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Waiting for `joined` (or a host's admission) longer than this fails the join.
const JOIN_WAIT: Duration = Duration::from_secs(30);
/// The server closes sockets silent for 60 s; ping well inside that.
const PING_EVERY: Duration = Duration::from_secs(20);

/// Error codes after which the session cannot go on.
const FATAL: [&str; 4] = ["bad_sdp", "unavailable", "room_full", "forbidden"];

/// Runs the session until the pool asks to leave (`Ok`) or the server ends it (`Err`).
pub(crate) async fn run(spec: &JoinSpec, mut link: Link) -> Result<(), String> {
    let url = ws_url(&spec.base_url)?;
    let (mut ws, _) = tokio::time::timeout(JOIN_WAIT, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| "signaling connect timed out".to_string())?
        .map_err(|e| format!("signaling connect: {e}"))?;
    let mut join = json!({"type": "join", "token": spec.token});
    if let Some(p) = &spec.password {
        join["password"] = json!(p);
    }
    send(&mut ws, join).await?;
    let joined = tokio::time::timeout(JOIN_WAIT, wait_joined(&mut ws))
        .await
        .map_err(|_| "no `joined` within 30 s".to_string())??;
    let me = joined["me"]["identity"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut session = Session {
        me,
        video_tracks: BTreeSet::new(),
        layer_asked: BTreeSet::new(),
        max_layer: spec.max_layer,
    };
    for t in joined["tracks"].as_array().into_iter().flatten() {
        session.track_published(t);
    }

    let id = link.id;
    let thread = link.thread.clone();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            from_pool = link.from_pool.recv() => match from_pool {
                Some(ToSignal::Offer(sdp)) => send(&mut ws, json!({"type": "offer", "sdp": sdp})).await?,
                Some(ToSignal::Answer(sdp)) => {
                    send(&mut ws, json!({"type": "answer", "sdp": sdp})).await?;
                    // The server subscribed us before it offered: now the layer request sticks.
                    session.ask_layers(&mut ws).await?;
                }
                Some(ToSignal::Leave) | None => {
                    let _ = send(&mut ws, json!({"type": "leave"})).await;
                    let _ = ws.close(None).await;
                    return Ok(());
                }
            },
            msg = ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(frame))) => {
                        return Err(format!("signaling closed by the server: {frame:?}"))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(format!("signaling socket: {e}")),
                    None => return Err("signaling socket closed".into()),
                };
                let Ok(m) = serde_json::from_str::<Value>(&text) else {
                    tracing::debug!(participant = id, "non-JSON signaling message");
                    continue;
                };
                match m["type"].as_str().unwrap_or_default() {
                    "answer" => thread.send(Command::Answer { id, sdp: sdp_of(&m)? }),
                    "offer" => thread.send(Command::RemoteOffer { id, sdp: sdp_of(&m)? }),
                    "track_published" => session.track_published(&m["track"]),
                    "track_unpublished" => {
                        if let Some(id) = m["id"].as_str() {
                            session.video_tracks.remove(id);
                            session.layer_asked.remove(id);
                        }
                    }
                    "kicked" => return Err(format!("kicked: {}", m["reason"])),
                    "error" => {
                        let code = m["code"].as_str().unwrap_or_default();
                        match code {
                            "offer_glare" => thread.send(Command::Reoffer { id }),
                            // Not subscribed yet: ask again after the next server offer.
                            "unknown_track" => session.layer_asked.clear(),
                            c if FATAL.contains(&c) => {
                                return Err(format!("server error {code}: {}", m["message"]))
                            }
                            _ => tracing::debug!(participant = id, %m, "signaling error"),
                        }
                    }
                    _ => {}
                }
            }
            _ = ping.tick() => send(&mut ws, json!({"type": "ping"})).await?,
        }
    }
}

struct Session {
    me: String,
    video_tracks: BTreeSet<String>,
    layer_asked: BTreeSet<String>,
    max_layer: Option<u8>,
}

impl Session {
    fn track_published(&mut self, t: &Value) {
        let others = t["identity"].as_str() != Some(self.me.as_str());
        if let (Some(id), true, true) = (t["id"].as_str(), t["kind"] == "video", others) {
            self.video_tracks.insert(id.to_string());
        }
    }

    /// `set_subscription{max_layer}` for every video track not asked for yet.
    async fn ask_layers(&mut self, ws: &mut Ws) -> Result<(), String> {
        let Some(max) = self.max_layer else {
            return Ok(());
        };
        let new: Vec<String> = self
            .video_tracks
            .difference(&self.layer_asked)
            .cloned()
            .collect();
        for track in new {
            let m = json!({"type": "set_subscription", "track": track, "visible": true, "max_layer": max});
            send(ws, m).await?;
            self.layer_asked.insert(track);
        }
        Ok(())
    }
}

/// Reads messages until `joined`; `waiting` keeps waiting (a host must admit us).
async fn wait_joined(ws: &mut Ws) -> Result<Value, String> {
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => return Err("closed before `joined`".into()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("signaling socket: {e}")),
        };
        let m: Value = serde_json::from_str(&text).map_err(|e| format!("bad JSON: {e}"))?;
        match m["type"].as_str().unwrap_or_default() {
            "joined" => return Ok(m),
            "error" => return Err(format!("join refused: {} {}", m["code"], m["message"])),
            "denied" => return Err(format!("denied: {}", m["reason"])),
            _ => {}
        }
    }
}

fn sdp_of(m: &Value) -> Result<String, String> {
    m["sdp"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("`{}` without sdp", m["type"]))
}

async fn send(ws: &mut Ws, v: Value) -> Result<(), String> {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .map_err(|e| format!("signaling send: {e}"))
}

/// `http://host:port` → `ws://host:port/v1/rtc` (https → wss).
fn ws_url(base: &str) -> Result<String, String> {
    let base = base.trim_end_matches('/');
    let rest = base
        .strip_prefix("http://")
        .map(|r| format!("ws://{r}"))
        .or_else(|| base.strip_prefix("https://").map(|r| format!("wss://{r}")))
        .ok_or_else(|| format!("base URL {base:?} is not http(s)://"))?;
    Ok(format!("{rest}/v1/rtc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_from_base() {
        assert_eq!(
            ws_url("http://127.0.0.1:7880/").unwrap(),
            "ws://127.0.0.1:7880/v1/rtc"
        );
        assert_eq!(ws_url("https://a.b").unwrap(), "wss://a.b/v1/rtc");
        assert!(ws_url("ftp://x").is_err());
    }
}
