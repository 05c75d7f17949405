//! The room event bus: how chat and room events reach participants connected to ANY
//! control-plane instance.
//!
//! Design (documented in docs/PROTOCOL.md, "Several instances"): an event is written to the
//! Store under `<prefix><uuid>` and deleted right after; every instance watches `<prefix>`
//! and re-broadcasts each put to its local sessions. On etcd this is an etcd watch shared by
//! all instances; on the embedded store the watch is in-process, so single-node mode runs the
//! very same path. Events are notifications only: state (participants, chat history) is in the
//! Store before its event is published, so a missed event is repaired by the next `joined`.
//!
//! Must never: carry SDP or media decisions — those go to the owning instance's node calls.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use shardcast_dataplane::node::MediaKind;
use tokio::sync::broadcast;

use super::messages::ServerMsg;
use super::services::Grants;
use crate::store::{Store, WatchKind};

/// An event about one room, seen by every instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub tenant: String,
    pub room: String,
    /// The session that caused it; it does not receive its own event.
    #[serde(default)]
    pub origin: Option<String>,
    pub kind: RoomEventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RoomEventKind {
    /// A server message for the room's joined sessions on every instance (but the origin):
    /// presence, tracks, mutes, active speaker, chat, and `knock` (hosts only). Track events
    /// also (un)subscribe each receiver; see `Hub::deliver`.
    Broadcast {
        msg: ServerMsg,
    },
    /// To the waiting session of `identity`.
    Admit {
        identity: String,
    },
    Deny {
        identity: String,
        reason: String,
    },
    /// To the session of `identity`, wherever it is connected.
    Kick {
        identity: String,
        reason: String,
    },
    /// To the instance holding `identity`'s session: stop forwarding its tracks of `kind`.
    MuteParticipant {
        identity: String,
        kind: MediaKind,
        by: String,
    },
    /// To the instance holding `identity`'s session: mute or unmute one of its tracks.
    MuteTrack {
        identity: String,
        track: String,
        muted: bool,
        by: String,
    },
    /// The REST API changed `identity`'s role or grants: every instance tells its sessions
    /// of the room, and the one holding `identity`'s session applies them to it.
    Permissions {
        identity: String,
        name: String,
        role: String,
        grants: Grants,
    },
    /// The room was deleted: every session ends.
    RoomClosed,
}

/// Publish and receive room events.
pub trait RoomBus: Send + Sync + 'static {
    fn publish(&self, event: RoomEvent) -> super::services::BoxFuture<'_, ()>;
    fn subscribe(&self) -> broadcast::Receiver<RoomEvent>;
}

/// The Store-backed bus (see module docs).
pub struct StoreBus {
    store: Arc<dyn Store>,
    prefix: String,
    local: broadcast::Sender<RoomEvent>,
}

impl StoreBus {
    /// Starts the watch task. `prefix` must end with `/`.
    pub fn start(store: Arc<dyn Store>, prefix: impl Into<String>) -> Arc<Self> {
        let (local, _) = broadcast::channel(1024);
        let bus = Arc::new(Self {
            store,
            prefix: prefix.into(),
            local,
        });
        let weak = Arc::downgrade(&bus);
        tokio::spawn(async move {
            // Event keys are unique per publish; a re-established watch may repeat some.
            let mut seen: std::collections::VecDeque<String> = std::collections::VecDeque::new();
            loop {
                let Some(bus) = weak.upgrade() else { return };
                let watch = bus.store.watch_prefix(&bus.prefix).await;
                let sender = bus.local.clone();
                drop(bus);
                let mut stream = match watch {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "room bus: watch failed, retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(ev) if ev.kind == WatchKind::Put => {
                            if seen.contains(&ev.key) {
                                continue;
                            }
                            if seen.len() >= 1024 {
                                seen.pop_front();
                            }
                            seen.push_back(ev.key.clone());
                            match serde_json::from_slice::<RoomEvent>(&ev.value) {
                                Ok(event) => {
                                    let _ = sender.send(event);
                                }
                                Err(e) => {
                                    tracing::warn!(key = %ev.key, error = %e, "room bus: bad event")
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "room bus: watch broke, re-watching");
                            break;
                        }
                    }
                    if sender.receiver_count() == 0 && weak.strong_count() == 0 {
                        return;
                    }
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        bus
    }

    /// Waits until the watch is registered (tests, and start-up ordering).
    pub async fn ready(&self) {
        // A probe event round-trips through the store once the watch is live.
        let mut rx = self.local.subscribe();
        let probe = RoomEvent {
            tenant: String::new(),
            room: format!("probe-{}", uuid::Uuid::new_v4()),
            origin: None,
            kind: RoomEventKind::RoomClosed,
        };
        for _ in 0..100 {
            self.publish(probe.clone()).await;
            let deadline = tokio::time::sleep(Duration::from_millis(100));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    got = rx.recv() => match got {
                        Ok(e) if e == probe => return,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            }
        }
    }
}

impl RoomBus for StoreBus {
    fn publish(&self, event: RoomEvent) -> super::services::BoxFuture<'_, ()> {
        Box::pin(async move {
            let key = format!("{}{}", self.prefix, uuid::Uuid::new_v4());
            let value = match serde_json::to_vec(&event) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "room bus: cannot encode event");
                    return;
                }
            };
            // Watchers see the put even though the key is deleted right away: the key only
            // exists to carry the event through the store's watch.
            if let Err(e) = self.store.put(&key, value, None).await {
                tracing::warn!(error = %e, "room bus: publish failed");
                return;
            }
            if let Err(e) = self.store.delete(&key).await {
                tracing::debug!(error = %e, "room bus: cleanup failed");
            }
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<RoomEvent> {
        self.local.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::messages::ChatInfo;

    /// What crosses instances is JSON: a broadcast carries the very server message clients get.
    #[test]
    fn broadcast_events_round_trip_through_json() {
        let event = RoomEvent {
            tenant: "t".into(),
            room: "r".into(),
            origin: Some("s1".into()),
            kind: RoomEventKind::Broadcast {
                msg: ServerMsg::Chat {
                    message: ChatInfo {
                        id: "1".into(),
                        identity: "ann".into(),
                        name: "Ann".into(),
                        text: "hi".into(),
                        ts: 5,
                    },
                },
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["kind"]["event"], "broadcast");
        assert_eq!(json["kind"]["msg"]["type"], "chat");
        let back: RoomEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
