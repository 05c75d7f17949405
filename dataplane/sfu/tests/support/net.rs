//! A simulated network in virtual time: per-direction links with delay, seeded random loss
//! and a bandwidth cap with a bounded queue (tail drop). Deterministic for a given seed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One direction of one client's access link.
#[derive(Debug, Clone)]
pub struct Link {
    pub delay: Duration,
    /// Probability in 0.0..1.0 that a datagram is lost.
    pub loss: f64,
    /// Bandwidth cap; `None` = unlimited.
    pub rate_bps: Option<u64>,
    /// Datagrams that would wait longer than this in the queue are dropped.
    pub queue_limit: Duration,
    busy_until: Option<Instant>,
}

impl Link {
    pub fn new(delay_ms: u64) -> Self {
        Link {
            delay: Duration::from_millis(delay_ms),
            loss: 0.0,
            rate_bps: None,
            queue_limit: Duration::from_millis(200),
            busy_until: None,
        }
    }
}

#[derive(Debug)]
pub struct Datagram {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub data: Vec<u8>,
}

/// One datagram as a wiretap saw it: when, from, to, bytes.
pub type Tapped = (Instant, SocketAddr, SocketAddr, Vec<u8>);

/// Links are keyed by (from, to) address pairs; unknown pairs get a 10 ms lossless link.
pub struct Net {
    rng: fastrand::Rng,
    links: HashMap<(SocketAddr, SocketAddr), Link>,
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    packets: HashMap<u64, Datagram>,
    next_id: u64,
    pub sent: u64,
    /// Datagrams sent to each destination (before loss), so a test can tell that nobody
    /// answered an address.
    pub sent_to: HashMap<SocketAddr, u64>,
    /// STUN binding responses (success or error) sent to each destination.
    pub stun_responses_to: HashMap<SocketAddr, u64>,
    pub lost: u64,
    pub queue_dropped: u64,
    /// When set, every datagram handed to the network is also copied here as sent
    /// (time, source, destination, bytes), before loss or queueing: a test's wiretap.
    pub wiretap: Option<Vec<Tapped>>,
}

impl Net {
    pub fn new(seed: u64) -> Self {
        Net {
            rng: fastrand::Rng::with_seed(seed),
            links: HashMap::new(),
            queue: BinaryHeap::new(),
            packets: HashMap::new(),
            next_id: 0,
            sent: 0,
            sent_to: HashMap::new(),
            stun_responses_to: HashMap::new(),
            lost: 0,
            queue_dropped: 0,
            wiretap: None,
        }
    }

    pub fn link_mut(&mut self, from: SocketAddr, to: SocketAddr) -> &mut Link {
        self.links
            .entry((from, to))
            .or_insert_with(|| Link::new(10))
    }

    pub fn send(&mut self, now: Instant, d: Datagram) {
        self.sent += 1;
        if let Some(tap) = self.wiretap.as_mut() {
            tap.push((now, d.source, d.destination, d.data.clone()));
        }
        *self.sent_to.entry(d.destination).or_default() += 1;
        if is_binding_response(&d.data) {
            *self.stun_responses_to.entry(d.destination).or_default() += 1;
        }
        let draw = self.rng.f64();
        let link = self
            .links
            .entry((d.source, d.destination))
            .or_insert_with(|| Link::new(10));
        let mut depart = now;
        if let Some(rate) = link.rate_bps {
            let start = link.busy_until.map_or(now, |b| b.max(now));
            if start.saturating_duration_since(now) > link.queue_limit {
                self.queue_dropped += 1;
                return;
            }
            let bits = (d.data.len() as u64 + 28) * 8;
            depart = start + Duration::from_micros(bits * 1_000_000 / rate.max(1));
            link.busy_until = Some(depart);
        }
        if draw < link.loss {
            self.lost += 1;
            return;
        }
        let at = depart + link.delay;
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push(Reverse((at, id)));
        self.packets.insert(id, d);
    }

    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _))| *at)
    }

    pub fn pop_due(&mut self, now: Instant) -> Option<Datagram> {
        match self.queue.peek() {
            Some(Reverse((at, _))) if *at <= now => {
                let Reverse((_, id)) = self.queue.pop()?;
                self.packets.remove(&id)
            }
            _ => None,
        }
    }
}

fn is_binding_response(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| *b < 4)
        && str0m::ice::StunMessage::parse(datagram)
            .is_ok_and(|m| m.is_successful_binding_response() || m.is_failed_binding_response())
}
