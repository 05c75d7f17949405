//! The WebSocket endpoint `/v1/rtc`: one task per socket that parses client messages,
//! calls the hub, and writes the session's outbox back to the socket.
//!
//! Owns: the pre-join state (only `join`/`ping` accepted), keepalive (idle timeout; `ping` →
//! `pong`), frame limits, leave vs. drop (a drop detaches the session for the reconnect grace
//! period). Must never: block the socket on node calls of another session, or panic on input.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use shardcast_dataplane::node::{LayerPreference, PeerRole};
use tokio::sync::mpsc;

use super::bus::RoomEventKind;
use super::hub::{Hub, Outgoing, Phase, Session};
use super::messages::{ClientMsg, ServerMsg};
use super::services::SignalError;

/// Largest accepted client frame (SDP offers with simulcast are ~10 KiB).
pub const MAX_FRAME: usize = 256 * 1024;

/// The client address, when the server was started with connect info.
pub fn source_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

pub struct Source(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(source_ip(parts)))
    }
}

pub async fn handler(
    State(hub): State<Arc<Hub>>,
    Source(ip): Source,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        // Not a WebSocket handshake (e.g. a plain GET): JSON like every other error, with
        // axum's status (400, or 426 when the connection cannot be upgraded).
        Err(r) => {
            let body = serde_json::json!({"code": "websocket_required", "message": r.body_text()});
            return (r.status(), axum::Json(body)).into_response();
        }
    };
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| run(hub, socket, ip))
}

async fn run(hub: Arc<Hub>, socket: WebSocket, ip: IpAddr) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Outgoing>();
    // The writer: the session's outbox to the socket, until `Close`.
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Outgoing::Msg(m) => {
                    let text = serde_json::to_string(&m).unwrap_or_default();
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Outgoing::Close => {
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            }
        }
    });
    let idle = Duration::from_secs(hub.config.idle_timeout_secs);
    // A socket that has not joined by then is closed: an unauthenticated connection must not
    // hold a slot for the idle timeout over and over.
    let join_by = tokio::time::Instant::now() + Duration::from_secs(hub.config.join_timeout_secs);
    let mut session: Option<Arc<Session>> = None;
    let mut left = false;
    loop {
        let wait = match session {
            Some(_) => idle,
            None => join_by
                .saturating_duration_since(tokio::time::Instant::now())
                .min(idle),
        };
        let frame = match tokio::time::timeout(wait, stream.next()).await {
            Err(_) if session.is_none() => {
                tracing::debug!("signaling: no join before the deadline");
                let _ = tx.send(Outgoing::Msg(ServerMsg::error(
                    "join_timeout",
                    "send join within the join deadline",
                )));
                break;
            }
            Err(_) => {
                tracing::debug!("signaling: idle timeout");
                break;
            }
            Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(f))) => f,
        };
        let text = match frame {
            Message::Text(t) => t.to_string(),
            Message::Binary(_) => {
                let _ = tx.send(Outgoing::Msg(ServerMsg::error(
                    "invalid_message",
                    "binary frames are not part of the protocol",
                )));
                continue;
            }
            Message::Close(_) => break,
            _ => continue,
        };
        let msg = match ClientMsg::parse(&text) {
            Ok(m) => m,
            Err(message) => {
                let _ = tx.send(Outgoing::Msg(ServerMsg::error("invalid_message", message)));
                continue;
            }
        };
        if let Some(s) = &session {
            if s.phase() == Phase::Closed {
                break;
            }
        }
        match (msg, &session) {
            (ClientMsg::Ping, _) => {
                let _ = tx.send(Outgoing::Msg(ServerMsg::Pong));
            }
            (
                ClientMsg::Join {
                    token,
                    password,
                    resume,
                },
                None,
            ) => {
                match join(
                    &hub,
                    &token,
                    password.as_deref(),
                    resume.as_deref(),
                    ip,
                    &tx,
                )
                .await
                {
                    Ok(s) => session = Some(s),
                    Err(e) => {
                        let _ = tx.send(Outgoing::Msg(ServerMsg::error(e.code, e.message)));
                    }
                }
            }
            (ClientMsg::Join { .. }, Some(_)) => {
                let _ = tx.send(Outgoing::Msg(ServerMsg::error(
                    "invalid_message",
                    "already joined",
                )));
            }
            (ClientMsg::Leave, Some(s)) => {
                hub.close(s, None).await;
                left = true;
                break;
            }
            (ClientMsg::Leave, None) => break,
            (_, None) => {
                let _ = tx.send(Outgoing::Msg(ServerMsg::error(
                    "not_joined",
                    "send join first",
                )));
            }
            (msg, Some(s)) => {
                if let Err(e) = handle(&hub, s, msg).await {
                    s.send(ServerMsg::error(e.code, e.message));
                }
            }
        }
    }
    if let (Some(s), false) = (&session, left) {
        if s.phase() != Phase::Closed {
            hub.detach(s);
        }
    }
    let _ = tx.send(Outgoing::Close);
    drop(tx);
    let _ = writer.await;
}

async fn join(
    hub: &Arc<Hub>,
    token: &str,
    password: Option<&str>,
    resume: Option<&str>,
    ip: IpAddr,
    tx: &mpsc::UnboundedSender<Outgoing>,
) -> Result<Arc<Session>, SignalError> {
    let member = hub.services.authenticate(token).await?;
    if let Some(id) = resume {
        if let Some(s) = hub.resume(id, &member, tx.clone()) {
            if s.phase() == Phase::Waiting {
                s.send(ServerMsg::Waiting);
            } else {
                hub.send_joined(&s).await?;
            }
            return Ok(s);
        }
        // Unknown or expired: fall through to a fresh join (the client restarts its peer).
    }
    let (s, waiting) = hub.open(member, password, ip, Some(tx.clone())).await?;
    if waiting {
        s.send(ServerMsg::Waiting);
    }
    Ok(s)
}

async fn handle(hub: &Arc<Hub>, s: &Arc<Session>, msg: ClientMsg) -> Result<(), SignalError> {
    if s.phase() == Phase::Waiting {
        return Err(SignalError::new(
            "not_joined",
            "waiting for a host to admit you",
        ));
    }
    match msg {
        ClientMsg::Offer { sdp, .. } => {
            let _guard = s.sdp.lock().await;
            let role = if s.grants().can_publish {
                PeerRole::Both
            } else {
                PeerRole::Subscribe
            };
            let answer = hub.offer(s, sdp, role, Vec::new()).await?;
            s.send(ServerMsg::Answer { sdp: answer });
            Ok(())
        }
        ClientMsg::Answer { sdp } => {
            let _guard = s.sdp.lock().await;
            hub.answer(s, sdp).await
        }
        ClientMsg::Candidate { candidate, .. } => {
            if candidate.trim().is_empty() {
                return Ok(()); // end-of-candidates: nothing to do
            }
            if candidate.len() > 512 || candidate.contains(['\r', '\n']) {
                return Err(SignalError::new("invalid_message", "not a candidate line"));
            }
            let _guard = s.sdp.lock().await;
            hub.add_candidates(s, vec![candidate]).await
        }
        ClientMsg::SetSubscription {
            track,
            visible,
            max_layer,
        } => {
            if max_layer.is_some_and(|l| l > 2) {
                return Err(SignalError::new("invalid_message", "max_layer is 0..=2"));
            }
            hub.set_subscription(s, &track, LayerPreference { max_layer, visible })
                .await
        }
        ClientMsg::Chat { text } => hub.chat(s, &text).await,
        ClientMsg::Mute { track, muted } => hub.mute(s, &track, muted).await,
        ClientMsg::Admit { identity } => {
            hub.host_control(s, RoomEventKind::Admit { identity }).await
        }
        ClientMsg::Deny { identity } => {
            hub.host_control(
                s,
                RoomEventKind::Deny {
                    identity,
                    reason: "a host denied entry".into(),
                },
            )
            .await
        }
        ClientMsg::Kick { identity } => {
            if identity == s.member.identity {
                return Err(SignalError::new("invalid_message", "use leave to leave"));
            }
            hub.host_control(
                s,
                RoomEventKind::Kick {
                    identity,
                    reason: format!("removed by {}", s.member.identity),
                },
            )
            .await
        }
        ClientMsg::MuteParticipant { identity, kind } => {
            let by = s.member.identity.clone();
            hub.host_control(s, RoomEventKind::MuteParticipant { identity, kind, by })
                .await
        }
        ClientMsg::Join { .. } | ClientMsg::Ping | ClientMsg::Leave => Ok(()),
    }
}
