//! `RemoteNode`: `MediaNodeApi` over HTTP to a `shardcast medianode` (wire form in the
//! `nodeapi` module docs). Calls are plain POSTs; events come from one long-lived NDJSON
//! stream that reconnects by itself and feeds a local broadcast, so callers see the same
//! `events()` as with the in-process node. Must never retry a call on its own: a call may have
//! taken effect on the node before the connection broke.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use shardcast_dataplane::node::{
    CreatePeer, CreatedPeer, LayerPreference, MediaNodeApi, NodeError, NodeEvent, NodeFuture,
    NodeLoad, PeerId, TrackId,
};
use tokio::sync::{broadcast, watch};

use super::{NodeCall, CALL_PATH, EVENTS_PATH};

struct Inner {
    base: String,
    secret: String,
    http: reqwest::Client,
    events: broadcast::Sender<NodeEvent>,
    /// True while the event stream is connected.
    connected: watch::Receiver<bool>,
}

/// A media node reached over HTTP.
pub struct RemoteNode {
    inner: Arc<Inner>,
}

impl RemoteNode {
    /// `base` like `http://10.0.0.5:7881`. Starts the event stream task (needs a runtime).
    pub fn new(base: &str, secret: &str) -> Self {
        let (events, _) = broadcast::channel(4096);
        let (conn_tx, connected) = watch::channel(false);
        let inner = Arc::new(Inner {
            base: base.trim_end_matches('/').to_string(),
            secret: secret.to_string(),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
            events,
            connected,
        });
        tokio::spawn(event_loop(Arc::downgrade(&inner), conn_tx));
        Self { inner }
    }

    async fn call<T: DeserializeOwned>(&self, call: NodeCall) -> Result<T, NodeError> {
        let inner = &self.inner;
        // Events caused by this call (e.g. an Offer) must not fall into a gap before the
        // stream is up: wait briefly for it.
        let mut c = inner.connected.clone();
        let _ = tokio::time::timeout(Duration::from_secs(3), c.wait_for(|up| *up)).await;
        let resp = inner
            .http
            .post(format!("{}{}", inner.base, CALL_PATH))
            .bearer_auth(&inner.secret)
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

async fn event_loop(inner: Weak<Inner>, connected: watch::Sender<bool>) {
    loop {
        let Some(i) = inner.upgrade() else { return };
        let req = i
            .http
            .get(format!("{}{}", i.base, EVENTS_PATH))
            .bearer_auth(&i.secret)
            .send();
        let sender = i.events.clone();
        let base = i.base.clone();
        drop(i);
        match req.await {
            Ok(mut resp) if resp.status().is_success() => {
                let _ = connected.send(true);
                let mut buf: Vec<u8> = Vec::new();
                loop {
                    // A keep-alive line comes every 10 s; silence for 30 s means a dead link.
                    let chunk = tokio::time::timeout(Duration::from_secs(30), resp.chunk()).await;
                    let Ok(Ok(Some(chunk))) = chunk else { break };
                    buf.extend_from_slice(&chunk);
                    while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        let line = &line[..line.len() - 1];
                        if line.is_empty() {
                            continue;
                        }
                        match serde_json::from_slice::<NodeEvent>(line) {
                            Ok(ev) => {
                                let _ = sender.send(ev);
                            }
                            Err(e) => tracing::warn!(node = %base, error = %e, "bad node event"),
                        }
                    }
                    if inner.strong_count() == 0 {
                        return;
                    }
                }
                let _ = connected.send(false);
                tracing::warn!(node = %base, "node event stream ended; reconnecting");
            }
            Ok(resp) => {
                tracing::warn!(node = %base, status = %resp.status(), "node event stream refused")
            }
            Err(e) => tracing::debug!(node = %base, error = %e, "node event stream failed"),
        }
        if inner.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl MediaNodeApi for RemoteNode {
    fn create_peer(&self, request: CreatePeer) -> NodeFuture<'_, CreatedPeer> {
        Box::pin(self.call(NodeCall::CreatePeer { request }))
    }
    fn renegotiate(&self, peer: PeerId, offer: String) -> NodeFuture<'_, String> {
        Box::pin(self.call(NodeCall::Renegotiate { peer, offer }))
    }
    fn accept_answer(&self, peer: PeerId, answer: String) -> NodeFuture<'_, ()> {
        Box::pin(self.call(NodeCall::AcceptAnswer { peer, answer }))
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
    fn close_peer(&self, peer: PeerId) -> NodeFuture<'_, ()> {
        Box::pin(self.call(NodeCall::ClosePeer { peer }))
    }
    fn load(&self) -> NodeFuture<'_, NodeLoad> {
        Box::pin(self.call(NodeCall::Load))
    }
    fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }
}
