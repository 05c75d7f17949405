//! `RemoteNode`: `MediaNodeApi` over HTTP to a `shardcast medianode` (wire form in the
//! `nodeapi` module docs). Calls are plain POSTs; events come from one long-lived NDJSON
//! stream that reconnects by itself and feeds a local broadcast, so callers see the same
//! `events()` as with the in-process node. On reconnect it resumes after the last sequence
//! number it delivered (each event exactly once, in order); when the node answers with a
//! snapshot instead (gap too old, or the node restarted), it delivers the events that
//! reconcile what it told its callers with that snapshot (`resync`). Must never retry a call
//! on its own: a call may have taken effect on the node before the connection broke.
//!
//! A node is *lost* when every reconnect of its stream has been refused for `lost_after`
//! (connection refused: nothing listens there any more; or `503`: the node is shutting down),
//! or when the stream has been down for any reason for [`UNREACHABLE_LOST_AFTER`] (a partition:
//! connects time out, so we cannot tell dead from unreachable sooner). Then `lost()` turns
//! true, calls fail at once, and the stream task ends — a dead node is never retried forever.
//! Placement drops the client then (`placement`). A link that merely breaks (resets, a relay
//! dropping connections) is resumed as before.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use shardcast_dataplane::node::{
    CreatePeer, CreatedPeer, LayerPreference, MediaNodeApi, NodeError, NodeEvent, NodeFuture,
    NodeLoad, NodeSnapshot, PeerId, TrackId,
};
use tokio::sync::{broadcast, watch};

use crate::ids::NodeId;

use super::credential::{self, Audience, Signer};
use super::resync::KnownState;
use super::{NodeCall, StreamLine, CALL_PATH, EVENTS_PATH};

struct Inner {
    base: String,
    /// Tokens for this node (id + `base`); the cluster secret itself is never sent.
    credentials: Signer,
    http: reqwest::Client,
    events: broadcast::Sender<NodeEvent>,
    /// True while the event stream is connected.
    connected: watch::Receiver<bool>,
    /// True once the node is lost (final).
    lost: watch::Receiver<bool>,
    /// What the delivered events said; the base for a snapshot resync.
    known: Mutex<KnownState>,
}

impl Inner {
    fn known(&self) -> std::sync::MutexGuard<'_, KnownState> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers `ev` to callers, keeping `known` in step.
    fn deliver(&self, ev: NodeEvent) {
        self.known().apply(&ev);
        let _ = self.events.send(ev);
    }
}

/// Where the stream left off: the node's epoch and the last delivered seq.
#[derive(Default)]
struct Position {
    epoch: Option<String>,
    seq: u64,
}

/// A media node reached over HTTP.
pub struct RemoteNode {
    inner: Arc<Inner>,
}

impl RemoteNode {
    /// Node `id` at `base` (its registered `api_address`, like `http://10.0.0.5:7881`), with
    /// tokens signed by the cluster `secret`. Starts the event stream task (needs a runtime).
    pub fn new(id: &NodeId, base: &str, secret: &str) -> Self {
        Self::with_lost_after(id, base, secret, DEFAULT_LOST_AFTER)
    }

    /// As [`RemoteNode::new`], calling the node lost after its stream was down `lost_after`.
    pub fn with_lost_after(id: &NodeId, base: &str, secret: &str, lost_after: Duration) -> Self {
        let (events, _) = broadcast::channel(4096);
        let (conn_tx, connected) = watch::channel(false);
        let (lost_tx, lost) = watch::channel(false);
        let inner = Arc::new(Inner {
            base: base.trim_end_matches('/').to_string(),
            credentials: Signer::new(secret, Audience::new(id.clone(), base)),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
            events,
            connected,
            lost,
            known: Mutex::new(KnownState::default()),
        });
        tokio::spawn(event_loop(
            Arc::downgrade(&inner),
            conn_tx,
            lost_tx,
            lost_after,
        ));
        Self { inner }
    }

    /// Turns true (once, for good) when the node is lost.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.inner.lost.clone()
    }

    /// True while the event stream is connected.
    pub fn is_connected(&self) -> bool {
        *self.inner.connected.borrow()
    }

    /// Waits until the event stream is connected; false after `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut c = self.inner.connected.clone();
        let up = tokio::time::timeout(timeout, c.wait_for(|up| *up)).await;
        matches!(up, Ok(Ok(_)))
    }

    async fn call<T: DeserializeOwned>(&self, call: NodeCall) -> Result<T, NodeError> {
        let inner = &self.inner;
        if *inner.lost.borrow() {
            return Err(NodeError::Unavailable("the media node is lost".into()));
        }
        // Events caused by this call (e.g. an Offer) must not fall into a gap before the
        // stream is up: wait briefly for it.
        let mut c = inner.connected.clone();
        let _ = tokio::time::timeout(Duration::from_secs(3), c.wait_for(|up| *up)).await;
        let mut req = inner
            .http
            .post(format!("{}{}", inner.base, CALL_PATH))
            .bearer_auth(inner.credentials.token());
        // The media node logs this call under the id of the request that caused it.
        if let Some(id) = crate::request_id::current() {
            req = req.header(crate::request_id::HEADER, id);
        }
        let resp = req
            .timeout(Duration::from_secs(10))
            .json(&call)
            .send()
            .await
            .map_err(|e| NodeError::Unavailable(format!("node {}: {e}", inner.base)))?;
        let body: Value = resp
            .json()
            .await
            .map_err(|e| NodeError::Unavailable(format!("node {}: bad reply: {e}", inner.base)))?;
        if let Some(err) = body.get("error") {
            return Err(serde_json::from_value(err.clone()).unwrap_or_else(|_| {
                NodeError::Unavailable(format!("node {}: {err}", inner.base))
            }));
        }
        let ok = body.get("ok").cloned().unwrap_or(Value::Null);
        serde_json::from_value(ok)
            .map_err(|e| NodeError::Unavailable(format!("node {}: bad reply: {e}", inner.base)))
    }
}

/// How long reconnects may be refused before the node is lost, unless configured.
pub const DEFAULT_LOST_AFTER: Duration = Duration::from_secs(1);
/// How long the stream may be down, refused or not, before the node is lost.
pub const UNREACHABLE_LOST_AFTER: Duration = Duration::from_secs(30);

/// Connection refused somewhere in `e`'s causes: nothing listens at the node's address.
fn refused(e: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

async fn event_loop(
    inner: Weak<Inner>,
    connected: watch::Sender<bool>,
    lost: watch::Sender<bool>,
    lost_after: Duration,
) {
    let mut pos = Position::default();
    // Since when the stream has been down (the client starts down), and since when every
    // reconnect was refused.
    let mut down_since = tokio::time::Instant::now();
    let mut refused_since: Option<tokio::time::Instant> = None;
    // Reconnects come faster than the lost deadline, so a live node is back before it.
    let retry = (lost_after / 4).clamp(Duration::from_millis(50), Duration::from_millis(500));
    loop {
        let Some(i) = inner.upgrade() else { return };
        let token = i.credentials.token();
        // The node ends the stream when this token stops verifying (then we renew it).
        let token_ends = credential::valid_until(&token).unwrap_or(0);
        let mut req = i
            .http
            .get(format!("{}{}", i.base, EVENTS_PATH))
            .bearer_auth(token);
        if let Some(epoch) = &pos.epoch {
            let after = pos.seq.to_string();
            req = req.query(&[("epoch", epoch.as_str()), ("after", after.as_str())]);
        }
        let req = req.send();
        let base = i.base.clone();
        drop(i);
        let mut was_up = false;
        let now_refused = match req.await {
            Ok(resp) if resp.status().is_success() => {
                read_stream(&inner, resp, &mut pos, &connected).await;
                was_up = *connected.borrow();
                let _ = connected.send(false);
                if was_up {
                    down_since = tokio::time::Instant::now();
                }
                if credential::seconds_until(token_ends) <= Duration::from_secs(2) {
                    tracing::debug!(node = %base, seq = pos.seq, "node event stream's token expired; resuming with a new one");
                } else {
                    tracing::warn!(node = %base, seq = pos.seq, "node event stream ended; resuming");
                }
                false
            }
            Ok(resp) => {
                tracing::warn!(node = %base, status = %resp.status(), "node event stream refused");
                resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE
            }
            Err(e) => {
                tracing::debug!(node = %base, error = %e, "node event stream failed");
                refused(&e)
            }
        };
        refused_since = match (now_refused, refused_since) {
            (true, None) => Some(tokio::time::Instant::now()),
            (true, since) => since,
            (false, _) => None,
        };
        if inner.strong_count() == 0 {
            return;
        }
        let refused_long = refused_since.is_some_and(|t| t.elapsed() >= lost_after);
        if refused_long || down_since.elapsed() >= UNREACHABLE_LOST_AFTER {
            tracing::warn!(node = %base, down_ms = down_since.elapsed().as_millis() as u64, "media node lost: its event stream stayed down");
            let _ = lost.send(true);
            return;
        }
        // A stream that was up is retried almost at once: a dead node refuses that retry,
        // which starts its lost clock, a live one resumes before anyone notices.
        let pause = if was_up {
            Duration::from_millis(20)
        } else {
            retry
        };
        tokio::time::sleep(pause).await;
    }
}

/// Reads one connection of the stream until it ends, breaks, or is out of step.
async fn read_stream(
    inner: &Weak<Inner>,
    mut resp: reqwest::Response,
    pos: &mut Position,
    connected: &watch::Sender<bool>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut started = false;
    loop {
        // A keep-alive line comes every 10 s; silence for 30 s means a dead link.
        let chunk = tokio::time::timeout(Duration::from_secs(30), resp.chunk()).await;
        let Ok(Ok(Some(chunk))) = chunk else { return };
        buf.extend_from_slice(&chunk);
        while let Some(at) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=at).collect();
            let line = &line[..line.len() - 1];
            if line.is_empty() {
                continue;
            }
            let Some(i) = inner.upgrade() else { return };
            let line = match serde_json::from_slice::<StreamLine>(line) {
                Ok(l) => l,
                Err(e) => {
                    // Numbering cannot go on past a line we cannot read: resume from the
                    // last good seq on a new connection.
                    tracing::warn!(node = %i.base, error = %e, "bad node event line");
                    return;
                }
            };
            match line {
                StreamLine::Resume { epoch, after } => {
                    if started || pos.epoch.as_deref() != Some(epoch.as_str()) || after != pos.seq {
                        tracing::warn!(node = %i.base, "node resumed at the wrong place");
                        pos.epoch = None;
                        return;
                    }
                    started = true;
                    let _ = connected.send(true);
                }
                StreamLine::Snapshot {
                    epoch,
                    seq,
                    peers,
                    speakers,
                } => {
                    if started {
                        return;
                    }
                    let restarted = pos.epoch.as_ref().is_some_and(|e| *e != epoch);
                    if pos.epoch.is_some() {
                        tracing::warn!(node = %i.base, restarted, "node event gap: resyncing from a snapshot");
                    }
                    let missed = i.known().reconcile(&peers, &speakers, restarted);
                    for ev in missed {
                        let _ = i.events.send(ev);
                    }
                    pos.epoch = Some(epoch);
                    pos.seq = seq;
                    started = true;
                    let _ = connected.send(true);
                }
                StreamLine::Event { seq, event } => {
                    if !started {
                        return;
                    }
                    if seq <= pos.seq {
                        continue; // already delivered
                    }
                    if seq != pos.seq + 1 {
                        tracing::warn!(node = %i.base, expected = pos.seq + 1, got = seq, "node event gap");
                        return;
                    }
                    pos.seq = seq;
                    i.deliver(event);
                }
            }
        }
    }
}

impl MediaNodeApi for RemoteNode {
    fn create_peer(&self, request: CreatePeer) -> NodeFuture<'_, CreatedPeer> {
        Box::pin(async move {
            let created: CreatedPeer = self.call(NodeCall::CreatePeer { request }).await?;
            self.inner.known().created(created.peer);
            Ok(created)
        })
    }
    fn renegotiate(&self, peer: PeerId, offer: String) -> NodeFuture<'_, String> {
        Box::pin(self.call(NodeCall::Renegotiate { peer, offer }))
    }
    fn accept_answer(&self, peer: PeerId, answer: String) -> NodeFuture<'_, ()> {
        Box::pin(self.call(NodeCall::AcceptAnswer { peer, answer }))
    }
    fn add_candidates(&self, peer: PeerId, candidates: Vec<String>) -> NodeFuture<'_, ()> {
        Box::pin(self.call(NodeCall::AddCandidates { peer, candidates }))
    }
    fn subscribe(&self, subscriber: PeerId, track: TrackId) -> NodeFuture<'_, ()> {
        Box::pin(self.call(NodeCall::Subscribe { subscriber, track }))
    }
    fn unsubscribe(&self, subscriber: PeerId, track: TrackId) -> NodeFuture<'_, ()> {
        Box::pin(self.call(NodeCall::Unsubscribe { subscriber, track }))
    }
    fn set_preference(
        &self,
        subscriber: PeerId,
        track: TrackId,
        preference: LayerPreference,
    ) -> NodeFuture<'_, ()> {
        Box::pin(self.call(NodeCall::SetPreference {
            subscriber,
            track,
            preference,
        }))
    }
    fn set_track_muted(&self, track: TrackId, muted: bool) -> NodeFuture<'_, ()> {
        Box::pin(self.call(NodeCall::SetTrackMuted { track, muted }))
    }
    fn set_can_send_data(&self, peer: PeerId, allowed: bool) -> NodeFuture<'_, ()> {
        Box::pin(self.call(NodeCall::SetCanSendData { peer, allowed }))
    }
    fn close_peer(&self, peer: PeerId) -> NodeFuture<'_, ()> {
        Box::pin(self.call(NodeCall::ClosePeer { peer }))
    }
    fn load(&self) -> NodeFuture<'_, NodeLoad> {
        Box::pin(self.call(NodeCall::Load))
    }
    fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }
    fn snapshot(&self) -> NodeFuture<'_, NodeSnapshot> {
        Box::pin(self.call(NodeCall::Snapshot))
    }
}
