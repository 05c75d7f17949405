//! `DirectBus`: room events delivered directly to the instances that hold the room's
//! sessions (module docs of `bus` for the design).
//!
//! Per room with local sessions a task keeps this instance's interest key: it registers
//! (one store put on the bus lease, one listing of the room's other instances, and a `hello`
//! to each so they send here from then on and we know where their numbering stands), and,
//! [`BusOptions::linger`] after the last local session left, says `bye` to each and deletes
//! the key. One watch on the interest prefix keeps the peers of those rooms current. A
//! publisher numbers the event (`seq`), hands it to the inbox when it has sessions in the
//! room and to the link of every other interested instance; an instance without sessions
//! there (a REST call, the last leave) reads the room's interest keys once instead.
//!
//! Must never: write the store per event, wait on a peer while publishing, or hold the state
//! lock across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::inbox::Inbox;
use super::interest::{self, Interest};
use super::link::{Batch, Item, Link, LinkCounters, EVENTS_PATH, HELLO_PATH};
use super::seq::{Numbering, Position, RoomKey, Tracker, Verdict};
use super::{RoomBus, RoomEvent};
use crate::ids::NodeId;
use crate::nodeapi::credential::{Audience, CredentialError, Signer, Verifier};
use crate::store::{LeaseId, Store, StoreError, WatchKind};

mod options;
mod receive;
mod tasks;

use options::{bump, Counters};
pub use options::{BusOptions, BusStats};
use receive::{receive_batch, receive_hello};
use tasks::{collect_links, keep_lease, room_task, watch_interest};

/// How long a publisher waits for its room's registration before sending anyway.
const READY_WAIT: Duration = Duration::from_secs(5);
/// How long a `hello` may take.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);
/// Rooms numbered at most (registered ones are never dropped).
const MAX_STREAMS: usize = 10_000;
/// How long a deregistering room waits for its `bye`s to go out.
const BYE_FLUSH: Duration = Duration::from_secs(2);

/// Another instance interested in a room: its address and its key's revision.
#[derive(Debug, Clone)]
struct PeerAt {
    address: String,
    revision: u64,
}

struct LocalRoom {
    /// Sessions are here now.
    wanted: watch::Sender<bool>,
    /// The interest key is written and the peers greeted.
    ready: watch::Sender<bool>,
    /// The other instances interested (not this one).
    peers: HashMap<String, PeerAt>,
}

#[derive(Default)]
struct BusState {
    rooms: HashMap<RoomKey, LocalRoom>,
    numbering: Numbering,
    tracker: Tracker,
    links: HashMap<String, Arc<Link>>,
}

/// The body of `POST /internal/v1/bus/hello`, and its answer.
#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    from: String,
    address: String,
    tenant: String,
    room: String,
    /// The `mod_revision` of the sender's interest key.
    revision: u64,
    /// Where the sender's numbering of the room stands.
    at: Option<Position>,
    /// The sender registers again after its lease ran out, with its sessions' records
    /// rewritten: the receiver resyncs the room (what it read while they were gone missed
    /// them). Absent from older senders: false.
    #[serde(default)]
    restored: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct HelloReply {
    at: Option<Position>,
}

pub struct DirectBus {
    id: String,
    store: Arc<dyn Store>,
    opts: BusOptions,
    secret: String,
    /// Where other instances reach this one; set once the listener is bound.
    address: watch::Sender<Option<String>>,
    lease: tokio::sync::Mutex<Option<LeaseId>>,
    http: reqwest::Client,
    inbox: Arc<Inbox>,
    state: Mutex<BusState>,
    counters: Counters,
    link_counters: Arc<LinkCounters>,
    me: Weak<DirectBus>,
}

impl DirectBus {
    /// A bus for this instance (a fresh id per process) and its interest watch.
    pub fn start(store: Arc<dyn Store>, opts: BusOptions) -> Arc<Self> {
        let secret = opts
            .secret
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client");
        let bus = Arc::new_cyclic(|me| DirectBus {
            id: format!("cp-{}", uuid::Uuid::new_v4().simple()),
            store,
            inbox: Arc::new(Inbox::new(opts.inbox_events)),
            opts,
            secret,
            address: watch::channel(None).0,
            lease: tokio::sync::Mutex::new(None),
            http,
            state: Mutex::default(),
            counters: Counters::default(),
            link_counters: Arc::default(),
            me: me.clone(),
        });
        tokio::spawn(watch_interest(Arc::downgrade(&bus)));
        tokio::spawn(keep_lease(Arc::downgrade(&bus)));
        tokio::spawn(collect_links(Arc::downgrade(&bus)));
        bus
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where other instances send this one its room events (`http://host:port`, the HTTP
    /// listener). Until set, this instance registers an empty address: it gets no events
    /// from others (fine for one instance, as in-process tests).
    pub fn advertise(&self, address: &str) {
        self.address
            .send_replace(Some(address.trim_end_matches('/').to_string()));
    }

    /// Stopping (after the hub closed its sessions): ends every room's stream with `bye` and
    /// deletes the interest keys with the lease, so peers neither keep sending here nor
    /// resync their sessions as if this instance had died.
    pub async fn stop(&self) {
        let rooms: Vec<RoomKey> = self.state.lock().unwrap().rooms.keys().cloned().collect();
        futures_util::future::join_all(rooms.iter().map(|r| self.deregister(r))).await;
        if let Some(lease) = self.lease.lock().await.take() {
            let _ = self.store.revoke_lease(lease).await;
        }
    }

    /// The internal routes (`POST /internal/v1/bus/events`, `.../hello`), on the same
    /// listener as the API: only other instances, with a room-bus token, get through.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(EVENTS_PATH, post(receive_batch))
            .route(HELLO_PATH, post(receive_hello))
            .with_state(self.clone())
    }

    fn audience(instance: &str, address: &str) -> Option<Audience> {
        Some(Audience::room_bus(NodeId::parse(instance).ok()?, address))
    }

    fn verify(&self, headers: &HeaderMap) -> Result<(), CredentialError> {
        let address = self.address.borrow().clone().unwrap_or_default();
        // Our own id is `cp-<hex>`, always a valid id.
        let audience = Self::audience(&self.id, &address).ok_or(CredentialError::WrongNode)?;
        let verifier = Verifier::new(audience, &self.secret, self.opts.previous_secret.as_deref());
        let auth = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        verifier.verify_header(auth).inspect_err(|e| {
            tracing::warn!(error = %e, "room bus: refused a peer's credential");
        })
    }

    fn link(&self, st: &mut BusState, instance: &str, address: &str) -> Option<Arc<Link>> {
        if address.is_empty() {
            return None;
        }
        if let Some(l) = st.links.get(instance) {
            return Some(l.clone());
        }
        let signer = Signer::new(&self.secret, Self::audience(instance, address)?);
        let link = Link::start(
            &self.id,
            instance,
            address,
            signer,
            self.opts.outbox_events,
            self.http.clone(),
            self.link_counters.clone(),
        );
        st.links.insert(instance.to_string(), link.clone());
        Some(link)
    }

    /// The other instances interested in `room`, read from the store (for a room this
    /// instance is not registered in).
    async fn read_peers(&self, room: &RoomKey) -> Result<HashMap<String, PeerAt>, StoreError> {
        let kvs = self.store.list_prefix(&interest::room_prefix(room)).await?;
        Ok(kvs
            .into_iter()
            .filter_map(|kv| {
                let (_, instance) = interest::parse_key(&kv.key)?;
                let value: Interest = serde_json::from_slice(&kv.value).ok()?;
                (instance != self.id).then_some((
                    instance,
                    PeerAt {
                        address: value.address,
                        revision: kv.mod_revision,
                    },
                ))
            })
            .collect())
    }

    async fn publish_event(&self, event: RoomEvent) {
        bump(&self.counters.published);
        let room: RoomKey = (event.tenant.clone(), event.room.clone());
        // Registered (or registering) here: wait for the handshakes, then use the peers the
        // registration and the watch keep.
        let ready = {
            let st = self.state.lock().unwrap();
            st.rooms
                .get(&room)
                .filter(|r| *r.wanted.borrow() || *r.ready.borrow())
                .map(|r| r.ready.subscribe())
        };
        let mut registered = false;
        if let Some(mut ready) = ready {
            registered = tokio::time::timeout(READY_WAIT, ready.wait_for(|r| *r))
                .await
                .is_ok_and(|r| r.is_ok());
        }
        let mut read: Option<HashMap<String, PeerAt>> = None;
        let mut st = loop {
            if !registered && read.is_none() {
                read = Some(match self.read_peers(&room).await {
                    Ok(p) => p,
                    Err(e) => {
                        bump(&self.counters.publish_failures);
                        tracing::warn!(error = %e, tenant = %room.0, room = %room.1,
                            "room bus: cannot read the room's instances; event not sent to them");
                        HashMap::new()
                    }
                });
            }
            let st = self.state.lock().unwrap();
            if st.rooms.get(&room).is_some_and(|r| *r.ready.borrow()) || read.is_some() {
                break st;
            }
            // Deregistered while we waited: read the room's instances after all.
            registered = false;
        };
        let at = st.numbering.next(&room, || rand::random::<u64>() >> 11);
        let (local, peers): (bool, Vec<(String, String)>) = match st.rooms.get(&room) {
            Some(r) if *r.ready.borrow() => (
                *r.wanted.borrow(),
                r.peers
                    .iter()
                    .map(|(i, p)| (i.clone(), p.address.clone()))
                    .collect(),
            ),
            r => (
                r.is_some_and(|r| *r.wanted.borrow()),
                read.unwrap_or_default()
                    .into_iter()
                    .map(|(i, p)| (i, p.address))
                    .collect(),
            ),
        };
        for (instance, address) in peers {
            if let Some(link) = self.link(&mut st, &instance, &address) {
                link.push(Item::Event {
                    at,
                    event: event.clone(),
                });
            }
        }
        if st.numbering.len() > MAX_STREAMS {
            // Rooms numbered without a registration (REST calls, last leaves) are forgotten
            // in bulk: their receivers see new streams and resync, which costs a refresh.
            let rooms = std::mem::take(&mut st.rooms);
            st.numbering.retain(|r| rooms.contains_key(r));
            st.rooms = rooms;
        }
        drop(st);
        if local && !self.inbox.push(event) {
            bump(&self.counters.resync_inbox);
        }
    }

    fn on_local_room(&self, room: RoomKey, present: bool) {
        let mut st = self.state.lock().unwrap();
        match st.rooms.get(&room) {
            Some(r) => {
                r.wanted.send_replace(present);
            }
            None if present => {
                let r = LocalRoom {
                    wanted: watch::channel(true).0,
                    ready: watch::channel(false).0,
                    peers: HashMap::new(),
                };
                let wanted = r.wanted.subscribe();
                st.rooms.insert(room.clone(), r);
                tokio::spawn(room_task(self.me.clone(), room, wanted));
            }
            None => {}
        }
    }

    async fn lease(&self) -> Result<LeaseId, StoreError> {
        let mut lease = self.lease.lock().await;
        if let Some(l) = *lease {
            return Ok(l);
        }
        let l = self.store.grant_lease(self.opts.lease).await?;
        *lease = Some(l);
        Ok(l)
    }

    /// Forgets `lost` if it is still the lease in use (the next `lease()` grants a new one);
    /// whether it was.
    async fn forget_lease(&self, lost: LeaseId) -> bool {
        let mut lease = self.lease.lock().await;
        if *lease == Some(lost) {
            *lease = None;
            return true;
        }
        false
    }

    /// The interest key on a live lease (a lost one is replaced, once).
    async fn put_interest(&self, room: &RoomKey, value: Vec<u8>) -> Result<u64, StoreError> {
        let key = interest::key(room, &self.id);
        let lease = self.lease().await?;
        match self.store.put(&key, value.clone(), Some(lease)).await {
            Err(StoreError::LeaseNotFound(l)) => {
                self.forget_lease(l).await;
                let lease = self.lease().await?;
                self.store.put(&key, value, Some(lease)).await
            }
            r => r,
        }
    }

    /// After a lost lease, once the hub has rewritten its sessions' records: every room
    /// registered here is registered again on a live lease, its peers told to resync it
    /// (`restored`), and its local sessions resynced. An error: some room could not be
    /// registered (the store failed again); the caller tries again.
    pub async fn reregister(&self) -> Result<(), StoreError> {
        if let Some(l) = *self.lease.lock().await {
            if let Err(StoreError::LeaseNotFound(_)) = self.store.keep_alive(l).await {
                self.forget_lease(l).await;
            }
        }
        let rooms: Vec<RoomKey> = {
            let st = self.state.lock().unwrap();
            st.rooms
                .iter()
                .filter(|(_, r)| *r.ready.borrow())
                .map(|(k, _)| k.clone())
                .collect()
        };
        let mut result = Ok(());
        for room in rooms {
            if let Err(e) = self.register(&room, true).await {
                tracing::warn!(error = %e, tenant = %room.0, room = %room.1,
                    "room bus: registering again failed");
                result = Err(e);
            }
            // Unregistered meanwhile, others stopped sending here: resync.
            bump(&self.counters.resync_lease);
            self.inbox.resync(room);
        }
        result
    }

    /// Writes the interest key and greets the room's other instances (`restored`: telling
    /// them to resync the room, after a lost lease).
    async fn register(&self, room: &RoomKey, restored: bool) -> Result<(), StoreError> {
        let address = self.address.borrow().clone().unwrap_or_default();
        let value = serde_json::to_vec(&Interest {
            instance: self.id.clone(),
            address: address.clone(),
        })
        .expect("interest encodes");
        let revision = self.put_interest(room, value).await?;
        bump(&self.counters.registrations);
        let peers = self.read_peers(room).await?;
        let at = {
            let mut st = self.state.lock().unwrap();
            let at = st.numbering.current(room);
            if let Some(r) = st.rooms.get_mut(room) {
                for (i, p) in &peers {
                    merge_peer(&mut r.peers, i, p.clone());
                }
            }
            at
        };
        let hellos = peers
            .iter()
            .filter(|(_, p)| !p.address.is_empty())
            .map(|(instance, p)| {
                let hello = Hello {
                    from: self.id.clone(),
                    address: address.clone(),
                    tenant: room.0.clone(),
                    room: room.1.clone(),
                    revision,
                    at,
                    restored,
                };
                async move {
                    let reply = self.hello(instance, &p.address, &hello).await;
                    (instance.clone(), reply)
                }
            });
        let replies = futures_util::future::join_all(hellos).await;
        let mut st = self.state.lock().unwrap();
        for (instance, reply) in replies {
            match reply {
                Ok(r) => st.tracker.expect(&instance, room, r.at),
                Err(e) => {
                    tracing::warn!(peer = %instance, error = %e,
                        "room bus: hello failed; the room resyncs at that instance's first event");
                    st.tracker.unknown(&instance, room);
                }
            }
        }
        Ok(())
    }

    async fn hello(
        &self,
        instance: &str,
        address: &str,
        hello: &Hello,
    ) -> anyhow::Result<HelloReply> {
        let audience = Self::audience(instance, address)
            .ok_or_else(|| anyhow::anyhow!("bad instance id {instance}"))?;
        let token = Signer::new(&self.secret, audience).token();
        let r = self
            .http
            .post(format!("{}{HELLO_PATH}", address.trim_end_matches('/')))
            .bearer_auth(token)
            .timeout(HELLO_TIMEOUT)
            .json(hello)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "status {}", r.status());
        Ok(r.json().await?)
    }

    /// Says `bye` to the room's peers, waits for it to go out, deletes the key.
    async fn deregister(&self, room: &RoomKey) {
        let links: Vec<Arc<Link>> = {
            let mut st = self.state.lock().unwrap();
            let st = &mut *st;
            match st.numbering.current(room) {
                // Nothing numbered: nothing to end.
                None => Vec::new(),
                Some(at) => {
                    let peers: Vec<(String, String)> = st
                        .rooms
                        .get(room)
                        .map(|r| {
                            r.peers
                                .iter()
                                .map(|(i, p)| (i.clone(), p.address.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    let mut links = Vec::new();
                    for (instance, address) in peers {
                        if let Some(link) = self.link(st, &instance, &address) {
                            link.push(Item::Bye {
                                tenant: room.0.clone(),
                                room: room.1.clone(),
                                at,
                            });
                            links.push(link);
                        }
                    }
                    links
                }
            }
        };
        futures_util::future::join_all(links.iter().map(|l| l.flushed(BYE_FLUSH))).await;
        self.delete_key(room).await;
    }

    async fn delete_key(&self, room: &RoomKey) {
        if let Err(e) = self.store.delete(&interest::key(room, &self.id)).await {
            // The lease removes it when this instance goes; until then peers keep sending
            // events here that find no session.
            tracing::warn!(error = %e, "room bus: cannot delete an interest key");
        }
    }

    fn receive(&self, batch: Batch) {
        let mut st = self.state.lock().unwrap();
        for room in batch.lost {
            if st.rooms.contains_key(&room) {
                bump(&self.counters.resync_lost);
                self.inbox.resync(room);
            }
        }
        for item in batch.items {
            bump(&self.counters.received);
            let room = item.room();
            if !st.rooms.contains_key(&room) {
                continue;
            }
            match item {
                Item::Event { at, event } => match st.tracker.receive(&batch.from, &room, at) {
                    Verdict::Duplicate => bump(&self.counters.duplicates),
                    v => {
                        if !self.inbox.push(event) {
                            bump(&self.counters.resync_inbox);
                        }
                        if v == Verdict::DeliverAndResync {
                            bump(&self.counters.resync_gap);
                            self.inbox.resync(room);
                        }
                    }
                },
                Item::Bye { at, .. } => {
                    if st.tracker.bye(&batch.from, &room, at) {
                        bump(&self.counters.resync_gap);
                        self.inbox.resync(room.clone());
                    }
                    if let Some(r) = st.rooms.get_mut(&room) {
                        r.peers.remove(&batch.from);
                    }
                }
            }
        }
    }

    fn receive_hello(&self, hello: Hello) -> HelloReply {
        let room = (hello.tenant, hello.room);
        let mut st = self.state.lock().unwrap();
        if let Some(r) = st.rooms.get_mut(&room) {
            merge_peer(
                &mut r.peers,
                &hello.from,
                PeerAt {
                    address: hello.address,
                    revision: hello.revision,
                },
            );
            st.tracker.expect(&hello.from, &room, hello.at);
            if hello.restored {
                bump(&self.counters.resync_restored);
                self.inbox.resync(room.clone());
            }
        }
        HelloReply {
            at: st.numbering.current(&room),
        }
    }

    /// A change of an interest key seen by the watch.
    fn on_interest(&self, kind: WatchKind, key: &str, value: &[u8], revision: u64) {
        let Some((room, instance)) = interest::parse_key(key) else {
            return;
        };
        if instance == self.id {
            return;
        }
        let mut st = self.state.lock().unwrap();
        let st = &mut *st;
        let Some(r) = st.rooms.get_mut(&room) else {
            return;
        };
        match kind {
            WatchKind::Put => {
                if let Ok(v) = serde_json::from_slice::<Interest>(value) {
                    merge_peer(
                        &mut r.peers,
                        &instance,
                        PeerAt {
                            address: v.address,
                            revision,
                        },
                    );
                }
            }
            WatchKind::Delete => {
                if r.peers
                    .get(&instance)
                    .is_some_and(|p| p.revision < revision)
                {
                    r.peers.remove(&instance);
                }
                if st.tracker.gone(&instance, &room) {
                    bump(&self.counters.resync_vanished);
                    self.inbox.resync(room);
                }
            }
        }
    }

    /// After a watch break: re-read the peers of every registered room.
    async fn relist(&self) {
        let rooms: Vec<RoomKey> = self.state.lock().unwrap().rooms.keys().cloned().collect();
        for room in rooms {
            let Ok(peers) = self.read_peers(&room).await else {
                continue;
            };
            let mut st = self.state.lock().unwrap();
            let st = &mut *st;
            let Some(r) = st.rooms.get_mut(&room) else {
                continue;
            };
            let vanished: Vec<String> = r
                .peers
                .keys()
                .filter(|i| !peers.contains_key(*i))
                .cloned()
                .collect();
            for i in vanished {
                r.peers.remove(&i);
                if st.tracker.gone(&i, &room) {
                    bump(&self.counters.resync_vanished);
                    self.inbox.resync(room.clone());
                }
            }
            for (i, p) in peers {
                merge_peer(&mut r.peers, &i, p);
            }
        }
    }
}

fn merge_peer(peers: &mut HashMap<String, PeerAt>, instance: &str, p: PeerAt) {
    match peers.get(instance) {
        Some(old) if old.revision > p.revision => {}
        _ => {
            peers.insert(instance.to_string(), p);
        }
    }
}

impl RoomBus for DirectBus {
    fn publish(&self, event: RoomEvent) -> crate::signaling::services::BoxFuture<'_, ()> {
        Box::pin(self.publish_event(event))
    }

    fn inbox(&self) -> Arc<Inbox> {
        self.inbox.clone()
    }

    fn local_room(&self, tenant: &str, room: &str, present: bool) {
        self.on_local_room((tenant.to_string(), room.to_string()), present)
    }

    fn reregister(&self) -> crate::signaling::services::BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(DirectBus::reregister(self))
    }

    fn stats(&self) -> BusStats {
        let c = &self.counters;
        let l = &self.link_counters;
        let st = self.state.lock().unwrap();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BusStats {
            published: get(&c.published),
            received: get(&c.received),
            sent: get(&l.sent),
            dropped: get(&l.dropped),
            duplicates: get(&c.duplicates),
            resync_gap: get(&c.resync_gap),
            resync_lost: get(&c.resync_lost),
            resync_vanished: get(&c.resync_vanished),
            resync_inbox: get(&c.resync_inbox),
            resync_lease: get(&c.resync_lease),
            resync_restored: get(&c.resync_restored),
            rooms: st.rooms.values().filter(|r| *r.ready.borrow()).count() as u64,
            peers: st.links.len() as u64,
            registrations: get(&c.registrations),
            publish_failures: get(&c.publish_failures),
        }
    }
}
