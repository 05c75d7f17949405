//! Test support: a world of one `ShardCore` and raw str0m clients on a simulated network in
//! virtual time. The loop always jumps to the earliest pending instant (a core or client
//! deadline, a media tick, a datagram arrival), so a minute of call runs in well under one.
#![allow(dead_code)]

pub mod client;
pub mod net;
pub mod stream;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shardcast_sfu::{
    CoreConfig, CoreEvent, CreatePeer, Output, PeerId, PeerRole, RoomId, ShardCore, ShardId,
    TrackId, TrackInfo,
};

#[allow(unused_imports)]
pub use client::Received;
pub use client::{ClientOptions, TestClient};
#[allow(unused_imports)]
pub use client::{SvcMode, Vp9Rx};
pub use net::{Link, Net};

pub const SERVER: &str = "10.0.0.1:5000";

pub struct Member {
    pub peer: PeerId,
    pub client: TestClient,
}

pub struct World {
    pub now: Instant,
    pub start: Instant,
    pub core: ShardCore,
    pub server: SocketAddr,
    pub members: Vec<Member>,
    pub net: Net,
    pub events: Vec<(Instant, CoreEvent)>,
    /// Cross-shard messages the core emitted, for a test to hand to another core.
    pub to_shards: Vec<(ShardId, shardcast_sfu::ShardMessage)>,
    /// Messages the core handed to every other shard (`Output::ToEveryShard`).
    pub to_every_shard: Vec<shardcast_sfu::ShardMessage>,
    core_deadline: Instant,
    next_local: u64,
    /// How many times the core's own deadline woke it (`handle_timeout`).
    pub core_wakeups: u64,
    /// With a clock set (`benches/fanout.rs` sets the thread's CPU time), the time spent
    /// inside the core's input and output calls — not in the clients, the simulated network
    /// or the datagram drain — and how many calls were timed.
    pub core_clock: Option<fn() -> Duration>,
    pub core_busy: Duration,
    pub core_timed: u64,
}

impl World {
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, CoreConfig::default())
    }

    pub fn with_config(seed: u64, config: CoreConfig) -> Self {
        Self::with_shard(
            seed,
            config,
            ShardId(0),
            Instant::now(),
            SERVER.parse().unwrap(),
        )
    }

    /// A world whose core is shard `shard` listening on `server`, starting at `now`.
    pub fn with_shard(
        seed: u64,
        config: CoreConfig,
        shard: ShardId,
        now: Instant,
        server: SocketAddr,
    ) -> Self {
        World {
            now,
            start: now,
            core: ShardCore::new(config, shard, server, now),
            server,
            members: Vec::new(),
            net: Net::new(seed),
            events: Vec::new(),
            to_shards: Vec::new(),
            to_every_shard: Vec::new(),
            core_deadline: now,
            next_local: 1,
            core_wakeups: 0,
            core_clock: None,
            core_busy: Duration::ZERO,
            core_timed: 0,
        }
    }

    /// Start timing a core call (see `core_clock`).
    fn enter_core(&self) -> Option<Duration> {
        self.core_clock.map(|c| c())
    }

    fn leave_core(&mut self, entered: Option<Duration>) {
        if let (Some(c), Some(t)) = (self.core_clock, entered) {
            self.core_busy += c().saturating_sub(t);
            self.core_timed += 1;
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn addr_of(idx: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, 1, (idx + 1) as u8], 40000))
    }

    /// Process what arrived from another shard, then drain.
    pub fn deliver_from_shard(&mut self, from: ShardId, msg: shardcast_sfu::ShardMessage) {
        self.core.handle_shard_message(self.now, from, msg);
        self.pump();
    }

    fn join(&mut self, name: &str, mut client: TestClient, offer: String, role: PeerRole) -> usize {
        let peer = PeerId::new(self.core.shard(), self.next_local);
        self.next_local += 1;
        let answer = self
            .core
            .create_peer(
                self.now,
                peer,
                CreatePeer {
                    room: RoomId::new("room"),
                    identity: name.into(),
                    role,
                    offer,
                    bind_tracks: Vec::new(),
                    can_send_data: true,
                    video_codecs: Vec::new(),
                },
            )
            .expect("create_peer");
        client.accept_answer(&answer);
        self.members.push(Member { peer, client });
        self.pump();
        self.members.len() - 1
    }

    /// A publisher with audio and VP8 video in `layers` = (rid, kbps), lowest first.
    pub fn add_publisher(&mut self, name: &str, layers: &[(Option<&str>, u64)]) -> usize {
        let idx = self.members.len();
        let mut client = TestClient::new(name, Self::addr_of(idx), self.now);
        let offer = client.offer_publish(layers);
        self.join(name, client, offer, PeerRole::Both)
    }

    /// A publisher whose client negotiates as `opts` says (VP9 with `opts.vp9`).
    pub fn add_publisher_with(
        &mut self,
        name: &str,
        layers: &[(Option<&str>, u64)],
        opts: ClientOptions,
    ) -> usize {
        let idx = self.members.len();
        let mut client = TestClient::with_options(name, Self::addr_of(idx), self.now, opts);
        let offer = client.offer_publish(layers);
        self.join(name, client, offer, PeerRole::Both)
    }

    /// As [`World::add_publisher`], with the client's offer passed through `edit` first
    /// (say, to drop its candidates as a client that trickles them would).
    pub fn add_publisher_edited(
        &mut self,
        name: &str,
        layers: &[(Option<&str>, u64)],
        edit: impl FnOnce(String) -> String,
    ) -> usize {
        let idx = self.members.len();
        let mut client = TestClient::new(name, Self::addr_of(idx), self.now);
        let offer = edit(client.offer_publish(layers));
        self.join(name, client, offer, PeerRole::Both)
    }

    pub fn add_subscriber(&mut self, name: &str) -> usize {
        self.add_subscriber_with(name, ClientOptions::default())
    }

    /// A subscriber that negotiates less than the default (no transport-cc, no RTX).
    pub fn add_subscriber_with(&mut self, name: &str, opts: ClientOptions) -> usize {
        let idx = self.members.len();
        let mut client = TestClient::with_options(name, Self::addr_of(idx), self.now, opts);
        let offer = client.offer_subscribe();
        self.join(name, client, offer, PeerRole::Subscribe)
    }

    /// Links of member `idx`: (client → server, server → client).
    pub fn uplink(&mut self, idx: usize) -> &mut Link {
        let a = Self::addr_of(idx);
        self.net.link_mut(a, self.server)
    }

    pub fn downlink(&mut self, idx: usize) -> &mut Link {
        let a = Self::addr_of(idx);
        self.net.link_mut(self.server, a)
    }

    pub fn published(&self, idx: usize) -> Vec<TrackInfo> {
        self.core
            .tracks_of(self.members[idx].peer)
            .into_iter()
            .filter_map(|t| self.core.track_info(t))
            .collect()
    }

    pub fn subscribe_all(&mut self, subscriber: usize, publisher: usize) {
        for info in self.published(publisher) {
            self.core
                .subscribe(self.now, self.members[subscriber].peer, info)
                .expect("subscribe");
        }
        self.pump();
    }

    /// What member `idx` received on its video m-line (the one that carried layers).
    /// Every RTP packet member `idx` received so far, on all its m-lines.
    pub fn received_packets(&self, idx: usize) -> u64 {
        self.members[idx]
            .client
            .received
            .values()
            .map(|r| r.packets)
            .sum()
    }

    pub fn video(&self, idx: usize) -> &Received {
        self.members[idx]
            .client
            .received
            .values()
            .find(|r| !r.layers.is_empty())
            .expect("video arrives")
    }

    pub fn video_track(&self, publisher: usize) -> TrackId {
        self.published(publisher)
            .into_iter()
            .find(|t| t.kind == shardcast_sfu::MediaKind::Video)
            .expect("video track")
            .track
    }

    /// Drain the core and every client until nothing is immediately pending.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            let (now, server, net) = (self.now, self.server, &mut self.net);
            self.core.drain_datagrams(|destination, data| {
                progressed = true;
                net.send(
                    now,
                    net::Datagram {
                        source: server,
                        destination: destination.addr,
                        data: data.to_vec(),
                    },
                );
            });
            loop {
                let entered = self.enter_core();
                let out = self.core.poll_output();
                self.leave_core(entered);
                match out {
                    Output::Timeout(t) => {
                        self.core_deadline = t;
                        break;
                    }
                    Output::ToShard { shard, msg } => self.to_shards.push((shard, msg)),
                    Output::ToEveryShard { msg } => self.to_every_shard.push(msg),
                    Output::Event(e) => {
                        progressed = true;
                        self.on_core_event(e);
                    }
                }
            }
            for m in &mut self.members {
                for (src, dst, data) in m.client.poll(self.now) {
                    progressed = true;
                    self.net.send(
                        self.now,
                        net::Datagram {
                            source: src,
                            destination: dst,
                            data,
                        },
                    );
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_core_event(&mut self, e: CoreEvent) {
        if let CoreEvent::Offer { peer, sdp } = &e {
            if let Some(m) = self.members.iter_mut().find(|m| m.peer == *peer) {
                if m.client.alive {
                    let answer = m.client.accept_offer(sdp);
                    self.core
                        .accept_answer(self.now, *peer, &answer)
                        .expect("accept_answer");
                }
            }
        }
        self.events.push((self.now, e));
    }

    /// Run the call for `dur` of virtual time.
    pub fn run_for(&mut self, dur: Duration) {
        let end = self.now + dur;
        let mut same = 0u32;
        loop {
            self.pump();
            let before = self.now;
            let mut next = end.min(self.core_deadline);
            if let Some(t) = self.net.next_arrival() {
                next = next.min(t);
            }
            for m in &self.members {
                next = next.min(m.client.next_wakeup());
            }
            self.now = next.max(self.now);
            if self.now == before {
                same += 1;
                if same > 99_990 {
                    eprintln!(
                        "stuck: core {:?} net {:?} clients {:?}",
                        self.core_deadline.saturating_duration_since(self.start),
                        self.net
                            .next_arrival()
                            .map(|t| t.saturating_duration_since(self.start)),
                        self.members
                            .iter()
                            .map(|m| (
                                m.client.deadline.saturating_duration_since(self.start),
                                m.client.next_wakeup().saturating_duration_since(self.start)
                            ))
                            .collect::<Vec<_>>()
                    );
                }
                assert!(same < 100_000, "virtual time stuck at {:?}", self.elapsed());
            } else {
                same = 0;
            }
            while let Some(d) = self.net.pop_due(self.now) {
                if d.destination == self.server {
                    let entered = self.enter_core();
                    self.core
                        .handle_datagram(self.now, d.source, d.destination, &d.data);
                    self.leave_core(entered);
                } else if let Some(m) = self
                    .members
                    .iter_mut()
                    .find(|m| m.client.addr == d.destination)
                {
                    m.client.handle_input(self.now, d.source, &d.data);
                }
            }
            if self.now >= self.core_deadline {
                let entered = self.enter_core();
                self.core.handle_timeout(self.now);
                self.leave_core(entered);
                self.core_wakeups += 1;
            }
            for m in &mut self.members {
                if self.now >= m.client.next_wakeup() {
                    m.client.handle_timeout(self.now);
                }
            }
            if self.now >= end {
                self.pump();
                break;
            }
        }
    }

    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&World) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if cond(self) {
                return true;
            }
            self.run_for(Duration::from_millis(50));
        }
        cond(self)
    }

    pub fn all_connected(&self) -> bool {
        self.members.iter().all(|m| m.client.connected)
    }
}
