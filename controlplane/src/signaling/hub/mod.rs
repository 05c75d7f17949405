//! The signaling hub of one control-plane instance: its live sessions, the map from media
//! node peers to sessions, and the two event inputs — node events (SDP offers, tracks,
//! active speaker) and room events from the bus (joins, chat, host controls).
//!
//! Owns: session lifecycle (join, wait, admit, leave, detach + resume grace, kick), auto
//! subscription (every participant with canSubscribe receives every other participant's
//! tracks). Must never: hold a lock across an `.await` (std mutexes, short critical
//! sections), or talk to a socket directly — sessions own their outboxes.
//!
//! Files: `session` (per-session state and outbox), `lifecycle` (join, wait, resume, close),
//! `media` (offers, subscriptions, mutes), `node_events` (the node event pump),
//! `room_events` (bus events, chat, host controls, resyncs), `index` (sessions by room, and
//! the room interest they register), `permissions` (live role/grant changes), `restore`
//! (records rewritten after a lost lease),
//! `shutdown` (SIGTERM: tell and close every session, refuse new ones).

mod index;
mod lifecycle;
mod media;
mod node_events;
mod permissions;
mod restore;
mod room_events;
mod session;
mod shutdown;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use tracing::Instrument;

use shardcast_dataplane::node::{MediaKind, NodeError, PeerId};

use super::bus::{BusStats, Delivery, RoomBus, RoomEvent, RoomEventKind};
use super::messages::TrackInfo;
use super::services::{Member, Presence, SignalError, SignalServices};
use crate::config::SignalingConfig;
use crate::placement::Placement;
use crate::shutdown::Stopping;

use session::SessionState;
pub use session::{CloseReason, OfferHold, Outbox, Outgoing, Phase, Plays, Session};

struct HubInner {
    sessions: index::SessionIndex,
    by_peer: HashMap<(Arc<str>, PeerId), String>,
    /// Node id → the address of the client its pump reads (`node_events::ensure_pump`).
    pumped_nodes: HashMap<Arc<str>, usize>,
    /// (tenant, room) → its last active speaker, for rooms with sessions here (an egress
    /// that follows the speaker starts with it). Pruned to such rooms past [`SPEAKERS_MAX`].
    speakers: HashMap<(String, String), String>,
}

/// Rooms whose last speaker a hub remembers before it forgets those without sessions here.
const SPEAKERS_MAX: usize = 4096;

/// Counts of what one hub holds (`Hub::census`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HubCensus {
    /// WebSocket sessions with their socket connected now (not detached in resume grace).
    pub websockets: u64,
    /// Sessions admitted to their room (WebSocket and WHIP/WHEP).
    pub joined: u64,
    /// Sessions in a room's waiting room.
    pub waiting: u64,
    /// Distinct rooms with a joined or waiting session on this instance.
    pub rooms: u64,
}

/// The signaling hub; one per control-plane instance, shared by the WebSocket and WHIP
/// handlers.
pub struct Hub {
    pub(crate) services: Arc<dyn SignalServices>,
    pub(crate) placement: Arc<Placement>,
    bus: Arc<dyn RoomBus>,
    pub(crate) config: SignalingConfig,
    inner: Mutex<HubInner>,
    /// Set by `shutdown` (or by the process, `stopping()`): no new sessions from then on.
    stopping: Stopping,
    /// Told of presence and track changes this instance publishes (`set_webhooks`).
    webhooks: std::sync::OnceLock<crate::webhooks::Webhooks>,
    /// This instance's egresses, for hosts' `start_egress`/`stop_egress` (`set_egresses`).
    egresses: std::sync::OnceLock<crate::egress::Egresses>,
    /// Wakes the task that rewrites records after a lost lease (`restore`); `restore_pending`
    /// says a trigger came while it ran.
    restore: Arc<tokio::sync::Notify>,
    restore_pending: std::sync::atomic::AtomicBool,
    me: Weak<Hub>,
}

fn node_err(e: NodeError) -> SignalError {
    match e {
        NodeError::BadSdp(m) => SignalError::new("bad_sdp", m),
        NodeError::UnknownTrack(t) => SignalError::new("unknown_track", format!("track {t}")),
        NodeError::BadState(m) => SignalError::new("offer_glare", m),
        NodeError::Full => SignalError::new("room_full", "the media node is full"),
        // Names the node's address: for the log only.
        other => SignalError::hidden("unavailable", "the media node is unavailable", other),
    }
}

impl Hub {
    pub fn new(
        services: Arc<dyn SignalServices>,
        placement: Arc<Placement>,
        bus: Arc<dyn RoomBus>,
        config: SignalingConfig,
    ) -> Arc<Self> {
        let hub = Arc::new_cyclic(|me| Hub {
            services,
            placement,
            bus: bus.clone(),
            config,
            inner: Mutex::new(HubInner {
                sessions: index::SessionIndex::new(bus.clone()),
                by_peer: HashMap::new(),
                pumped_nodes: HashMap::new(),
                speakers: HashMap::new(),
            }),
            stopping: Stopping::new(),
            webhooks: std::sync::OnceLock::new(),
            egresses: std::sync::OnceLock::new(),
            restore: Arc::new(tokio::sync::Notify::new()),
            restore_pending: std::sync::atomic::AtomicBool::new(false),
            me: me.clone(),
        });
        hub.watch_lost_nodes();
        hub.watch_drained_nodes();
        hub.watch_lost_leases();
        // Room events in order; the inbox is bounded and turns overflow into resyncs.
        let inbox = bus.inbox();
        let weak = Arc::downgrade(&hub);
        tokio::spawn(async move {
            loop {
                let delivery = inbox.next().await;
                let Some(hub) = weak.upgrade() else { return };
                match delivery {
                    Delivery::Event(ev) => {
                        // Under the id of the work that published it (another instance's too).
                        let id = crate::request_id::adopt(ev.request_id.as_deref());
                        let span = tracing::info_span!(
                            "room_event",
                            request_id = %id,
                            tenant = %ev.tenant,
                            room = %ev.room
                        );
                        crate::request_id::scope(id, hub.on_room_event(ev))
                            .instrument(span)
                            .await
                    }
                    Delivery::Resync { tenant, room } => hub.resync_room(&tenant, &room).await,
                    Delivery::LeaseLost => hub.request_restore(),
                }
            }
        });
        hub
    }

    fn arc(&self) -> Arc<Hub> {
        self.me.upgrade().expect("hub alive while used")
    }

    pub fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.inner.lock().unwrap().sessions.get(id).cloned()
    }

    /// Every session now, taken under the hub lock and released at once (callers then lock
    /// each session alone, or `.await`).
    fn session_list(&self) -> Vec<Arc<Session>> {
        self.inner
            .lock()
            .unwrap()
            .sessions
            .values()
            .cloned()
            .collect()
    }

    /// What this instance holds now, for metrics. The hub lock is held only to copy the
    /// session list (no `.await`, no store), then each session's state lock alone.
    pub fn census(&self) -> HubCensus {
        let sessions = self.session_list();
        let mut census = HubCensus::default();
        let mut rooms = HashSet::new();
        for s in &sessions {
            let (phase, attached) = {
                let st = s.state.lock().unwrap();
                (st.phase, st.outbox.is_some())
            };
            match phase {
                Phase::Joined => census.joined += 1,
                Phase::Waiting => census.waiting += 1,
                Phase::Closed => continue,
            }
            if s.interactive && attached {
                census.websockets += 1;
            }
            rooms.insert((s.member.tenant.as_str(), s.member.room.as_str()));
        }
        census.rooms = rooms.len() as u64;
        census
    }

    fn room_sessions(&self, tenant: &str, room: &str) -> Vec<Arc<Session>> {
        self.inner.lock().unwrap().sessions.room(tenant, room)
    }

    /// The room's last active speaker, if this instance heard of one (it has sessions there).
    pub fn speaker_of(&self, tenant: &str, room: &str) -> Option<String> {
        let inner = self.inner.lock().unwrap();
        inner
            .speakers
            .get(&(tenant.to_string(), room.to_string()))
            .cloned()
    }

    fn remember_speaker(&self, tenant: &str, room: &str, identity: &str) {
        let mut inner = self.inner.lock().unwrap();
        let key = (tenant.to_string(), room.to_string());
        inner.speakers.insert(key, identity.to_string());
        if inner.speakers.len() > SPEAKERS_MAX {
            let HubInner {
                speakers, sessions, ..
            } = &mut *inner;
            speakers.retain(|(t, r), _| !sessions.room(t, r).is_empty());
        }
    }

    /// The room bus's counters (`/metrics`).
    pub fn bus_stats(&self) -> BusStats {
        self.bus.stats()
    }

    /// Send the tenants' webhooks the presence and track changes of this instance's sessions.
    /// Set once, when the server is built.
    pub fn set_webhooks(&self, webhooks: crate::webhooks::Webhooks) {
        let _ = self.webhooks.set(webhooks);
    }

    /// Lets hosts start and stop egresses over signaling.
    pub fn set_egresses(&self, egresses: crate::egress::Egresses) {
        let _ = self.egresses.set(egresses);
    }

    pub fn egresses(&self) -> Option<&crate::egress::Egresses> {
        self.egresses.get()
    }

    /// Every presence and track change of a session held here passes through this (and only
    /// here: events received from the bus do not), so its webhook is emitted once.
    pub async fn publish(&self, member: &Member, origin: Option<&str>, kind: RoomEventKind) {
        if let Some(w) = self.webhooks.get() {
            w.on_signal(&member.tenant, &member.room, &kind);
        }
        self.bus
            .publish(RoomEvent {
                tenant: member.tenant.clone(),
                room: member.room.clone(),
                origin: origin.map(str::to_string),
                request_id: crate::request_id::current(),
                kind,
            })
            .await;
    }

    /// Publish a room event that did not come from a session (REST host controls).
    pub async fn publish_room(&self, tenant: &str, room: &str, kind: RoomEventKind) {
        self.bus
            .publish(RoomEvent {
                tenant: tenant.into(),
                room: room.into(),
                origin: None,
                request_id: crate::request_id::current(),
                kind,
            })
            .await;
    }

    /// Tracks of the room's joined participants in publish order (WHEP binds these).
    pub async fn room_tracks(
        &self,
        tenant: &str,
        room: &str,
    ) -> Result<Vec<TrackInfo>, SignalError> {
        let stored = self.services.participants(tenant, room).await?;
        Ok(stored
            .into_iter()
            .filter(|p| p.presence == Presence::Joined)
            .flat_map(|p| p.tracks)
            .collect())
    }

    /// Used by WHIP/WHEP: the kind of a wire track id among `tracks`.
    pub fn kind_of(tracks: &[TrackInfo], id: &str) -> Option<MediaKind> {
        tracks.iter().find(|t| t.id == id).map(|t| t.kind)
    }
}

fn node_id_of(session: &Session) -> Option<String> {
    session
        .state
        .lock()
        .unwrap()
        .node
        .as_ref()
        .map(|n| n.id.to_string())
}
