//! WHIP publish / WHEP play for one participant (RFC 9725, docs/API.md): POST the I/O
//! thread's offer with the Bearer token, hand the answer back, DELETE the session on leave.
//!
//! A WHEP viewer's m-lines take the room's tracks whenever they are published (a viewer may
//! come first). Servers before that answered `404 no_publisher` when nothing was published
//! yet; that is still retried for a while, so the bench runs against them too.
//! Never: renegotiate (WHIP/WHEP here has no PATCH and no server offers).

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_TYPE, LOCATION};
use tokio::sync::mpsc::UnboundedReceiver;

use super::signal::{Command, Link, ToSignal};
use super::JoinSpec;
use crate::scenario::VideoKind;

/// How long a WHEP viewer retries `404 no_publisher` (servers before WHEP players could come
/// first).
const NO_PUBLISHER_WAIT: Duration = Duration::from_secs(20);
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// Runs the session until the pool asks to leave (`Ok`) or the server refuses (`Err`).
pub(crate) async fn run(spec: &JoinSpec, http: &reqwest::Client, link: Link) -> Result<(), String> {
    let Link {
        id,
        thread,
        mut from_pool,
    } = link;
    let publish = spec.audio || spec.video != VideoKind::None;
    let kind = if publish { "whip" } else { "whep" };
    let base = spec.base_url.trim_end_matches('/');
    let url = format!("{base}/{kind}/{}", spec.room);

    let offer = loop {
        match from_pool.recv().await {
            Some(ToSignal::Offer(sdp)) => break sdp,
            Some(ToSignal::Answer(_)) => continue,
            Some(ToSignal::Leave) | None => return Ok(()),
        }
    };
    let started = Instant::now();
    let (location, answer) = loop {
        let r = http
            .post(&url)
            .bearer_auth(&spec.token)
            .header(CONTENT_TYPE, "application/sdp")
            .body(offer.clone())
            .send()
            .await
            .map_err(|e| format!("{kind} POST: {e}"))?;
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = r
            .text()
            .await
            .map_err(|e| format!("{kind} POST body: {e}"))?;
        match (status, location) {
            (201, Some(location)) => break (location, body),
            (201, None) => return Err(format!("{kind} POST: 201 without Location")),
            (404, _)
                if !publish
                    && body.contains("no_publisher")
                    && started.elapsed() < NO_PUBLISHER_WAIT =>
            {
                if sleep_or_leave(&mut from_pool, RETRY_EVERY).await {
                    return Ok(());
                }
            }
            _ => return Err(format!("{kind} POST: {status} {}", body.trim())),
        }
    };
    thread.send(Command::Answer { id, sdp: answer });

    // Nothing more to signal: wait for the leave, then end the session on the server.
    loop {
        match from_pool.recv().await {
            Some(ToSignal::Leave) | None => break,
            Some(other) => tracing::debug!(participant = id, ?other, "ignored on {kind}"),
        }
    }
    let session = if location.starts_with("http") {
        location
    } else {
        format!("{base}{location}")
    };
    match http.delete(&session).bearer_auth(&spec.token).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{kind} DELETE: {}", r.status())),
        Err(e) => Err(format!("{kind} DELETE: {e}")),
    }
}

/// Sleeps `d`; true when the pool asked to leave meanwhile.
async fn sleep_or_leave(from_pool: &mut UnboundedReceiver<ToSignal>, d: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + d;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return false,
            m = from_pool.recv() => match m {
                Some(ToSignal::Leave) | None => return true,
                Some(_) => {}
            },
        }
    }
}
