//! WHIP (RFC 9725) publish and WHEP play: HTTP-only ingest and egress for a room.
//!
//! - `POST /whip/{room}` — `Authorization: Bearer <access token>` (canPublish),
//!   `Content-Type: application/sdp` offer → `201 Created`, SDP answer, `Location:
//!   /whip/{room}/{session}`. The publisher is a participant of the room like any other: its
//!   tracks are forwarded to every subscriber.
//! - `POST /whep/{room}[?identity=I]` — (canSubscribe) plays the tracks published in the room
//!   (only `I`'s with `identity`), in participant-identity then publish order, bound to the
//!   offer's recvonly m-lines audio→audio, video→video in order: a usual one-audio one-video
//!   offer gets the first publisher's audio and video. Lines left open take tracks published
//!   later (a player that came first, a broadcaster who reconnects), never through a
//!   renegotiation: the peer's role is `Play`.
//! - `DELETE` on the `Location` (same Bearer identity) ends the session → `200`.
//! - `PATCH` on the `Location` with `application/trickle-ice-sdpfrag` (RFC 9725 §4.3,
//!   `crate::sdpfrag`) and `If-Match`: trickled candidates → `204`; new ICE credentials (an
//!   ICE restart) → `200` with our new credentials and candidates and a new `ETag` (our ICE
//!   ufrag; every `201` carries the first).
//!
//! Pages on other origins may call these routes (`crate::cors`, `http.cors.whip_origins`).
//! With `[turn]` configured, every `201` carries one `Link: <url>; rel="ice-server"; …` per
//! TURN/STUN URL with time-limited credentials (RFC 9725 §4.6, `crate::turn`).
//!
//! Errors are JSON `{code, message}`: malformed SDP → `400 bad_sdp`, wrong content type →
//! `415 unsupported_media_type`, token problems → `401`, missing grant → `403 forbidden`.
//! Must never: hold media state — sessions live in the signaling hub.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use shardcast_dataplane::node::PeerRole;

use crate::routes::{ApiPath, ApiQuery};
use crate::signaling::hub::{Hub, Phase, Plays};
use crate::signaling::messages::track_from_wire;
use crate::signaling::services::{Member, SignalError};
use crate::signaling::socket::Source;

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/whip/{room}", post(whip))
        .route("/whep/{room}", post(whep))
        .route("/whip/{room}/{session}", delete(end).patch(patch))
        .route("/whep/{room}/{session}", delete(end).patch(patch))
        .with_state(hub)
}

fn status_of(code: &str) -> StatusCode {
    match code {
        "bad_sdp" | "invalid_message" | "offer_glare" => StatusCode::BAD_REQUEST,
        "token_invalid"
        | "token_expired"
        | "token_not_yet_valid"
        | "unauthorized"
        | "password_required"
        | "password_wrong" => StatusCode::UNAUTHORIZED,
        "forbidden" => StatusCode::FORBIDDEN,
        "room_not_found" | "not_found" => StatusCode::NOT_FOUND,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "bad_sdpfrag" => StatusCode::BAD_REQUEST,
        "precondition_failed" => StatusCode::PRECONDITION_FAILED,
        "precondition_required" => StatusCode::PRECONDITION_REQUIRED,
        "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "room_full" | "unavailable" | "store_unavailable" | "server_shutdown" => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

fn err(e: SignalError) -> Response {
    (
        status_of(e.code),
        Json(json!({"code": e.code, "message": e.message})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Result<&str, SignalError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SignalError::new("unauthorized", "Authorization: Bearer <token> required"))
}

/// `415 unsupported_media_type` unless the request's Content-Type is `expected`.
fn content_type(headers: &HeaderMap, expected: &str) -> Result<(), SignalError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.trim().to_ascii_lowercase().starts_with(expected) {
        Ok(())
    } else {
        Err(SignalError::new(
            "unsupported_media_type",
            format!("Content-Type must be {expected}"),
        ))
    }
}

/// The checks a POST body passes before its offer goes to a media node. `pub` only for the
/// fuzz target (fuzz/fuzz_targets/whip_body.rs).
#[doc(hidden)]
pub fn sdp_body(headers: &HeaderMap, body: &[u8]) -> Result<String, SignalError> {
    content_type(headers, "application/sdp")?;
    let sdp = std::str::from_utf8(body)
        .map_err(|_| SignalError::new("bad_sdp", "the SDP is not UTF-8"))?;
    if !sdp.trim_start().starts_with("v=0") {
        return Err(SignalError::new("bad_sdp", "an SDP offer starts with v=0"));
    }
    Ok(sdp.to_string())
}

async fn member_for(hub: &Hub, headers: &HeaderMap, room: &str) -> Result<Member, SignalError> {
    let member = hub.services.authenticate(bearer(headers)?).await?;
    if member.room != room {
        return Err(SignalError::new(
            "forbidden",
            "the token is for another room",
        ));
    }
    Ok(member)
}

fn created(
    kind: &str,
    room: &str,
    session: &str,
    answer: String,
    ice_servers: &[crate::turn::IceServer],
    etag: &str,
) -> Response {
    let location = format!("/{kind}/{room}/{session}");
    let mut resp = (StatusCode::CREATED, answer).into_response();
    let h = resp.headers_mut();
    for link in crate::turn::link_headers(ice_servers) {
        h.append(header::LINK, link);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

/// Opens a hub session without a socket and creates its peer; closes it again on failure.
/// Also how an egress subscribes (`crate::egress`): `(session id, answer, ETag)`.
pub(crate) async fn start(
    hub: &Arc<Hub>,
    member: Member,
    source: std::net::IpAddr,
    sdp: String,
    role: PeerRole,
    bind: Vec<shardcast_dataplane::node::TrackId>,
    player: Option<Plays>,
) -> Result<(String, String, String), SignalError> {
    let (session, waiting) = hub.open(member, None, source, None).await?;
    if let Some(plays) = player.clone() {
        session.make_player(plays);
    }
    if waiting {
        hub.close(&session, None).await;
        return Err(SignalError::new(
            "forbidden",
            "the room has a waiting room; WHIP/WHEP need a host token",
        ));
    }
    match hub.offer(&session, sdp.clone(), role, bind).await {
        Ok(answer) => {
            let etag = session.set_resource(sdp, &answer);
            if player.is_some() {
                // After the answer is on its way: tracks published meanwhile, or (a player
                // that came first) as soon as there are some, take the free m-lines.
                let (hub, session) = (hub.clone(), session.clone());
                crate::request_id::spawn(async move { hub.play_published(&session).await });
            }
            Ok((session.id.clone(), answer, etag))
        }
        Err(e) => {
            hub.close(&session, None).await;
            Err(e)
        }
    }
}

async fn whip(
    State(hub): State<Arc<Hub>>,
    ApiPath(room): ApiPath<String>,
    Source(ip): Source,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let member = member_for(&hub, &headers, &room).await?;
        if !member.grants.can_publish {
            return Err(SignalError::new(
                "forbidden",
                "the token has no canPublish grant",
            ));
        }
        let sdp = sdp_body(&headers, &body)?;
        let ice = hub.services.ice_servers(&member);
        let (session, answer, etag) =
            start(&hub, member, ip, sdp, PeerRole::Publish, Vec::new(), None).await?;
        Ok((session, answer, ice, etag))
    }
    .await;
    match result {
        Ok((session, answer, ice, etag)) => created("whip", &room, &session, answer, &ice, &etag),
        Err(e) => err(e),
    }
}

#[derive(Debug, Deserialize)]
struct WhepQuery {
    identity: Option<String>,
}

async fn whep(
    State(hub): State<Arc<Hub>>,
    ApiPath(room): ApiPath<String>,
    ApiQuery(q): ApiQuery<WhepQuery>,
    Source(ip): Source,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let member = member_for(&hub, &headers, &room).await?;
        if !member.grants.can_subscribe {
            return Err(SignalError::new(
                "forbidden",
                "the token has no canSubscribe grant",
            ));
        }
        let sdp = sdp_body(&headers, &body)?;
        let tracks = hub.room_tracks(&member.tenant, &member.room).await?;
        let bind: Vec<_> = tracks
            .iter()
            .filter(|t| t.identity != member.identity)
            .filter(|t| q.identity.as_ref().is_none_or(|i| *i == t.identity))
            .filter_map(|t| track_from_wire(&t.id))
            .collect();
        // Nothing published yet is fine: the player's m-lines take the tracks when they come.
        let ice = hub.services.ice_servers(&member);
        let player = Some(q.identity.clone().map_or(Plays::Everyone, Plays::Only));
        let (session, answer, etag) =
            start(&hub, member, ip, sdp, PeerRole::Play, bind, player).await?;
        Ok((session, answer, ice, etag))
    }
    .await;
    match result {
        Ok((session, answer, ice, etag)) => created("whep", &room, &session, answer, &ice, &etag),
        Err(e) => err(e),
    }
}

/// The live session `session` of the token's identity in `room`.
async fn owned(
    hub: &Hub,
    headers: &HeaderMap,
    room: &str,
    session: &str,
) -> Result<Arc<crate::signaling::hub::Session>, SignalError> {
    let member = member_for(hub, headers, room).await?;
    hub.session(session)
        .filter(|s| {
            s.member.tenant == member.tenant
                && s.member.room == member.room
                && s.member.identity == member.identity
                && s.phase() != Phase::Closed
        })
        .ok_or_else(|| SignalError::new("not_found", "no such session"))
}

async fn end(
    State(hub): State<Arc<Hub>>,
    ApiPath((room, session)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let s = owned(&hub, &headers, &room, &session).await?;
        hub.close(&s, None).await;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => err(e),
    }
}

/// What a PATCH did.
enum Patched {
    /// Candidates added (or none given): `204`, the ETag unchanged.
    Trickled(String),
    /// An ICE restart: `200` with our new credentials and candidates, and a new ETag.
    Restarted { frag: String, etag: String },
}

/// `PATCH` on a session (RFC 9725 §4.3): trickled candidates, or an ICE restart when the
/// fragment brings new credentials. `If-Match` is required: the current ETag for trickle,
/// the current ETag or `*` for a restart.
async fn patch(
    State(hub): State<Arc<Hub>>,
    ApiPath((room, session)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let s = owned(&hub, &headers, &room, &session).await?;
        content_type(&headers, "application/trickle-ice-sdpfrag")?;
        let body = std::str::from_utf8(&body)
            .map_err(|_| SignalError::new("bad_sdpfrag", "the fragment is not UTF-8"))?;
        let frag = crate::sdpfrag::parse(body)
            .map_err(|e| SignalError::new("bad_sdpfrag", e.to_string()))?;
        // One SDP change at a time per session: a PATCH never overtakes another.
        let _sdp = s.sdp.lock().await;
        let (offer, etag) = s
            .resource()
            .ok_or_else(|| SignalError::new("not_found", "no such session"))?;
        let if_match = headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok());
        let restart = frag
            .ufrag
            .as_deref()
            .is_some_and(|u| Some(u) != crate::sdpfrag::ufrag(&offer));
        match if_match.map(str::trim) {
            None => {
                return Err(SignalError::new(
                    "precondition_required",
                    "PATCH needs If-Match with the session's ETag",
                ))
            }
            Some(m) if m == etag || (restart && m == "*") => {}
            Some(_) => {
                return Err(SignalError::new(
                    "precondition_failed",
                    "If-Match does not match the session's ETag (an ICE restart happened)",
                ))
            }
        }
        if let (true, Some(ufrag), Some(pwd)) = (restart, &frag.ufrag, &frag.pwd) {
            let new_offer = crate::sdpfrag::restarted(&offer, ufrag, pwd, &frag.candidates);
            let answer = hub.reoffer(&s, new_offer.clone()).await?;
            let etag = s.set_resource(new_offer, &answer);
            return Ok(Patched::Restarted {
                frag: crate::sdpfrag::answer_frag(&answer),
                etag,
            });
        }
        if !frag.candidates.is_empty() {
            hub.add_candidates(&s, frag.candidates.clone()).await?;
            // Kept with the offer, so a later ICE restart's re-offer still has them.
            s.update_resource_offer(crate::sdpfrag::with_candidates(&offer, &frag.candidates));
        }
        Ok(Patched::Trickled(etag))
    }
    .await;
    let (status, body, etag) = match result {
        Ok(Patched::Trickled(etag)) => (StatusCode::NO_CONTENT, String::new(), etag),
        Ok(Patched::Restarted { frag, etag }) => (StatusCode::OK, frag, etag),
        Err(e) => return err(e),
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    if status == StatusCode::OK {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/trickle-ice-sdpfrag"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
