//! The WebSocket endpoint `/v1/rtc`: one task per socket that parses client messages,
//! calls the hub, and writes the session's outbox back to the socket.
//!
//! Owns: the pre-join state (only `join`/`ping` accepted), keepalive (idle timeout; `ping` →
//! `pong`), frame limits, the message rate limit (`limits`), the bounded outbox (a reader too
//! slow to drain it is cut off), leave vs. drop (a drop detaches the session for the
//! reconnect grace period; a limit ends it). Must never: block the socket on node calls of another session, or panic on input.
//!
//! Each socket runs in a `signaling` span carrying one request id — the upgrade request's
//! (`request_id`: the caller's `X-Request-Id` or a fresh one, echoed on the `101`) — and
//! with that id as the task's current one, so every log line of the session (join, leave,
//! refusals, closing) carries it and the node API calls made for it send it to the media
//! node. The room, identity and session id are added to the span once joined.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use shardcast_dataplane::node::{LayerPreference, PeerRole};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::bus::RoomEventKind;
use super::hub::{CloseReason, Hub, Outbox, Outgoing, Phase, Session};
use super::limits::{SocketLimits, Verdict};
use super::messages::{ClientMsg, ServerMsg, MAX_MID_LEN, MAX_SOURCES};
use super::services::{Member, SignalError};
use crate::auth::TrustedProxies;

/// Largest accepted client frame (SDP offers with simulcast are ~10 KiB).
pub const MAX_FRAME: usize = 256 * 1024;

/// The client address (for the password limiter): the TCP peer when the server was started
/// with connect info, or the `X-Forwarded-For` client when that peer is a trusted proxy
/// (`auth::client_addr`; the server puts its `TrustedProxies` in the request extensions).
pub fn source_ip(parts: &Parts) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    match parts.extensions.get::<Arc<TrustedProxies>>() {
        Some(trusted) => trusted.client(peer, &parts.headers),
        None => peer,
    }
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
    // The upgrade request's id (set by the `request_id` middleware), for the whole session;
    // a root span, as the session outlives the upgrade request.
    let id = crate::request_id::current().unwrap_or_else(crate::request_id::fresh);
    let span = tracing::info_span!(
        parent: None,
        "signaling",
        request_id = %id,
        session = tracing::field::Empty,
        room = tracing::field::Empty,
        identity = tracing::field::Empty,
    );
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| {
            crate::request_id::scope(id, run(hub, socket, ip)).instrument(span)
        })
}

async fn run(hub: Arc<Hub>, socket: WebSocket, ip: IpAddr) {
    let (sink, mut stream) = socket.split();
    let (tx, rx, mut overflowed) = Outbox::new(hub.config.outbox_messages);
    let writer = tokio::spawn(write(sink, rx, overflowed.clone()));
    let idle = Duration::from_secs(hub.config.idle_timeout_secs);
    // A socket that has not joined by then is closed: an unauthenticated connection must not
    // hold a slot for the idle timeout over and over.
    let join_by = tokio::time::Instant::now() + Duration::from_secs(hub.config.join_timeout_secs);
    let mut limits = SocketLimits::new(&hub.config, Instant::now());
    let mut session: Option<Arc<Session>> = None;
    let mut left = false;
    let mut close_reason = None;
    tracing::debug!(%ip, "signaling: socket open");
    loop {
        let wait = match session {
            Some(_) => idle,
            None => join_by
                .saturating_duration_since(tokio::time::Instant::now())
                .min(idle),
        };
        let next = tokio::select! {
            biased;
            Ok(_) = overflowed.wait_for(|full| *full) => {
                tracing::info!(
                    outbox = hub.config.outbox_messages,
                    "signaling: slow reader, closing"
                );
                close_reason = Some(CloseReason::SLOW_READER);
                break;
            }
            next = tokio::time::timeout(wait, stream.next()) => next,
        };
        let frame = match next {
            Err(_) if session.is_none() => {
                tracing::debug!("signaling: no join before the deadline");
                tx.push(Outgoing::Msg(ServerMsg::error(
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
        if let Message::Close(_) = frame {
            break;
        }
        // Every frame counts, WebSocket pings too (each one makes the server write a pong).
        let protocol = matches!(frame, Message::Text(_) | Message::Binary(_));
        match limits.message(Instant::now()) {
            Verdict::Accept => {}
            Verdict::Refuse => {
                if protocol {
                    tx.push(Outgoing::Msg(ServerMsg::error(
                        "rate_limited",
                        "too many messages; this one was dropped",
                    )));
                }
                continue;
            }
            Verdict::Close => {
                tracing::info!("signaling: message rate exceeded for too long, closing");
                tx.push(Outgoing::Msg(ServerMsg::error(
                    "rate_limited",
                    "too many messages for too long; closing",
                )));
                close_reason = Some(CloseReason::RATE_LIMITED);
                break;
            }
        }
        let text = match frame {
            Message::Text(t) => t.to_string(),
            Message::Binary(_) => {
                tx.push(Outgoing::Msg(ServerMsg::error(
                    "invalid_message",
                    "binary frames are not part of the protocol",
                )));
                continue;
            }
            _ => continue,
        };
        let msg = match ClientMsg::parse(&text) {
            Ok(m) => m,
            Err(message) => {
                tx.push(Outgoing::Msg(ServerMsg::error("invalid_message", message)));
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
                tx.push(Outgoing::Msg(ServerMsg::Pong));
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
                    Ok(s) => {
                        let span = tracing::Span::current();
                        span.record("session", s.id.as_str());
                        span.record("room", s.member.room.as_str());
                        span.record("identity", s.member.identity.as_str());
                        tracing::info!(role = %s.member.role, "signaling: joined");
                        session = Some(s);
                    }
                    Err(e) => {
                        tracing::info!(code = e.code, "signaling: join refused: {}", e.message);
                        tx.push(Outgoing::Msg(ServerMsg::error(e.code, e.message)));
                    }
                }
            }
            (ClientMsg::Join { .. }, Some(_)) => {
                tx.push(Outgoing::Msg(ServerMsg::error(
                    "invalid_message",
                    "already joined",
                )));
            }
            (ClientMsg::Leave, Some(s)) => {
                hub.close(s, None).await;
                tracing::info!("signaling: left");
                left = true;
                break;
            }
            (ClientMsg::Leave, None) => break,
            (_, None) => {
                tx.push(Outgoing::Msg(ServerMsg::error(
                    "not_joined",
                    "send join first",
                )));
            }
            (msg, Some(s)) => {
                if let Err(e) = handle(&hub, s, msg).await {
                    tracing::debug!(code = e.code, "signaling: request refused: {}", e.message);
                    s.send(ServerMsg::error(e.code, e.message));
                }
            }
        }
    }
    if close_reason.is_some() {
        // Before `close` below queues a plain close: the writer stops at the first one.
        tx.push(Outgoing::Close(close_reason));
    }
    if let (Some(s), false) = (&session, left) {
        if close_reason.is_some() {
            // Cut off by a limit: the participant leaves for good (no resume grace), so the
            // room sees it go now and nothing keeps queueing for it.
            hub.close(s, None).await;
            tracing::info!("signaling: cut off by a limit; the participant left");
        } else if s.phase() != Phase::Closed {
            hub.detach(s);
            tracing::info!("signaling: socket dropped; the session waits for a resume");
        }
    }
    tx.push(Outgoing::Close(None));
    drop(tx);
    let _ = writer.await;
    if close_reason.is_some() {
        // The closing handshake (RFC 6455 §7.1.1): read, and drop, what the client still
        // sends until its Close, for a moment at most. Dropping a socket with unread input
        // makes the kernel answer with a reset, and a client that was still sending (a
        // flood, typically) would then lose our close frame and the reason in it.
        let _ = tokio::time::timeout(CLOSE_HANDSHAKE_WAIT, async {
            while let Some(Ok(frame)) = stream.next().await {
                if matches!(frame, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// How long a socket closed for a limit waits for the client's Close before it is dropped.
const CLOSE_HANDSHAKE_WAIT: Duration = Duration::from_secs(1);

/// The writer: the outbox to the socket, until `Close`. When the outbox overflows, the
/// socket's send buffer is full too (that is how the outbox filled), so it stops at once —
/// even in the middle of a send — and tries the `slow_reader` close frame for a moment only.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    mut overflowed: watch::Receiver<bool>,
) {
    loop {
        let out = tokio::select! {
            biased;
            Ok(_) = overflowed.wait_for(|full| *full) => break,
            out = rx.recv() => out,
        };
        let (frame, last) = match out {
            None => return,
            Some(Outgoing::Msg(m)) => {
                let text = serde_json::to_string(&m).unwrap_or_default();
                (Message::Text(text.into()), false)
            }
            Some(Outgoing::Close(reason)) => (Message::Close(reason.map(close_frame)), true),
        };
        tokio::select! {
            biased;
            Ok(_) = overflowed.wait_for(|full| *full) => break,
            sent = sink.send(frame) => {
                if sent.is_err() || last {
                    return;
                }
            }
        }
    }
    let frame = Message::Close(Some(close_frame(CloseReason::SLOW_READER)));
    let _ = tokio::time::timeout(SLOW_READER_CLOSE_WAIT, sink.send(frame)).await;
}

/// How long a slow reader's close frame may wait for room in the socket before the
/// connection is dropped without it.
const SLOW_READER_CLOSE_WAIT: Duration = Duration::from_secs(1);

fn close_frame(r: CloseReason) -> CloseFrame {
    CloseFrame {
        code: r.code,
        reason: r.reason.into(),
    }
}

async fn join(
    hub: &Arc<Hub>,
    token: &str,
    password: Option<&str>,
    resume: Option<&str>,
    ip: IpAddr,
    tx: &Outbox,
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
        ClientMsg::Offer { sdp, sources, .. } => {
            if sources.len() > MAX_SOURCES || sources.keys().any(|m| m.len() > MAX_MID_LEN) {
                return Err(SignalError::new(
                    "invalid_message",
                    "sources: at most 16 mids of at most 32 bytes",
                ));
            }
            let _guard = s.sdp.lock().await;
            s.set_sources(sources);
            let role = if s.grants().can_publish {
                PeerRole::Both
            } else {
                PeerRole::Subscribe
            };
            let hold = s.hold_server_offers();
            hold.answer(hub.offer(s, sdp, role, Vec::new()).await?);
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
        ClientMsg::StartEgress { kind, participant } => {
            let (egresses, m) = host_egresses(hub, s)?;
            let req = crate::egress::StartEgress { kind, participant };
            egresses
                .start(&m.tenant, &m.room, req)
                .await
                .map(|_| ())
                .map_err(api_error)
        }
        ClientMsg::StopEgress { id } => {
            let (egresses, m) = host_egresses(hub, s)?;
            // Not waited for: the room hears `egress` (ended) once the file is finished.
            egresses
                .request_stop(&m.tenant, &m.room, &id)
                .map_err(api_error)
        }
        ClientMsg::Join { .. } | ClientMsg::Ping | ClientMsg::Leave => Ok(()),
    }
}

/// The egresses a host of this session's room may control.
fn host_egresses<'a>(
    hub: &'a Hub,
    s: &'a Session,
) -> Result<(&'a crate::egress::Egresses, &'a Member), SignalError> {
    if !s.is_host() {
        return Err(SignalError::new(
            "forbidden",
            "recording and streaming need the host role",
        ));
    }
    let egresses = hub
        .egresses()
        .ok_or_else(|| SignalError::new("unavailable", "this server does not record"))?;
    Ok((egresses, &s.member))
}

/// A REST error as a signaling error with the same stable code; store and internal
/// failures as every signaling path shows them (a generic message, the detail logged under
/// an error id: `api_to_signal`).
fn api_error(e: crate::error::ApiError) -> SignalError {
    use crate::error::ApiError;
    match e {
        ApiError::Unavailable(_) | ApiError::Internal(_) => super::store_services::api_to_signal(e),
        e => SignalError::new(e.code(), e.to_string()),
    }
}
