//! A two-client in-memory network in virtual time: every datagram is delayed by a fixed
//! latency and may be dropped by a filter; time jumps to the next deadline or delivery.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shardcast_client::{Client, ClientConfig, ClientOutput, TimeBase};

/// What a test can learn from a datagram's cleartext RTP header (SRTP leaves it readable).
#[derive(Debug, Clone, Copy)]
pub struct RtpInfo {
    pub pt: u8,
    pub seq: u16,
    pub ssrc: u32,
}

/// Parses the RTP header of an SRTP datagram; `None` for STUN, DTLS and RTCP.
pub fn rtp_info(d: &[u8]) -> Option<RtpInfo> {
    if d.len() < 12 || d[0] & 0xC0 != 0x80 || (192..=223).contains(&d[1]) {
        return None;
    }
    Some(RtpInfo {
        pt: d[1] & 0x7F,
        seq: u16::from_be_bytes([d[2], d[3]]),
        ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
    })
}

struct InFlight {
    at: Instant,
    source: SocketAddr,
    destination: SocketAddr,
    contents: Vec<u8>,
}

/// Decides per datagram from `a` to `b` whether the network drops it.
pub type DropFilter = Box<dyn FnMut(&[u8]) -> bool>;

pub struct Pair {
    pub a: Client,
    pub b: Client,
    pub now: Instant,
    pub start: Instant,
    pub latency: Duration,
    /// Applied to datagrams from a to b.
    pub drop_a_to_b: Option<DropFilter>,
    /// Applied to datagrams from b to a.
    pub drop_b_to_a: Option<DropFilter>,
    a_next: Instant,
    b_next: Instant,
    to_a: VecDeque<InFlight>,
    to_b: VecDeque<InFlight>,
}

pub const A_ADDR: &str = "10.0.0.1:5000";
pub const B_ADDR: &str = "10.0.0.2:6000";

impl Pair {
    /// `a` offers (it publishes), `b` answers; then the pair is driven until both connect.
    pub fn connect(
        a_cfg: impl FnOnce(TimeBase) -> ClientConfig,
        b_cfg: impl FnOnce(TimeBase) -> ClientConfig,
        latency: Duration,
    ) -> Pair {
        let mut pair = Pair::new(a_cfg, b_cfg, latency);
        pair.offer_from_a();
        pair.wait_connected();
        pair
    }

    /// Two clients, no signaling yet.
    pub fn new(
        a_cfg: impl FnOnce(TimeBase) -> ClientConfig,
        b_cfg: impl FnOnce(TimeBase) -> ClientConfig,
        latency: Duration,
    ) -> Pair {
        let start = Instant::now();
        let time = TimeBase::virtual_at(start);
        let a = Client::new(a_cfg(time), A_ADDR.parse().unwrap(), start).unwrap();
        let b = Client::new(b_cfg(time), B_ADDR.parse().unwrap(), start).unwrap();
        Pair {
            a,
            b,
            now: start,
            start,
            latency,
            drop_a_to_b: None,
            drop_b_to_a: None,
            a_next: start,
            b_next: start,
            to_a: VecDeque::new(),
            to_b: VecDeque::new(),
        }
    }

    /// `a` offers, `b` answers (signaling is instantaneous).
    pub fn offer_from_a(&mut self) {
        let offer = self.a.create_offer(self.now).unwrap();
        let answer = self.b.accept_offer(self.now, &offer).unwrap();
        self.a.accept_answer(self.now, &answer).unwrap();
    }

    /// `b` offers, `a` answers.
    pub fn offer_from_b(&mut self) {
        let offer = self.b.create_offer(self.now).unwrap();
        let answer = self.a.accept_offer(self.now, &offer).unwrap();
        self.b.accept_answer(self.now, &answer).unwrap();
    }

    /// Drives the pair until both clients are connected (at most 10 s).
    pub fn wait_connected(&mut self) {
        self.run_until(Duration::from_secs(10), |p| {
            p.a.is_connected() && p.b.is_connected()
        });
        assert!(
            self.a.is_connected() && self.b.is_connected(),
            "pair connects"
        );
    }

    /// Runs `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.step(Some(end));
        }
    }

    /// Runs until `done` or `limit` of virtual time passes; returns whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Pair) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step(Some(end));
        }
        done(self)
    }

    fn step(&mut self, end: Option<Instant>) {
        self.drain();
        let mut next = self.a_next.min(self.b_next);
        for q in [&self.to_a, &self.to_b] {
            if let Some(p) = q.front() {
                next = next.min(p.at);
            }
        }
        if let Some(end) = end {
            next = next.min(end);
        }
        self.now = next.max(self.now);
        let now = self.now;
        while self.to_a.front().is_some_and(|p| p.at <= now) {
            let p = self.to_a.pop_front().unwrap();
            self.a
                .handle_datagram(now, p.source, p.destination, &p.contents);
        }
        while self.to_b.front().is_some_and(|p| p.at <= now) {
            let p = self.to_b.pop_front().unwrap();
            self.b
                .handle_datagram(now, p.source, p.destination, &p.contents);
        }
        if self.a_next <= now {
            self.a.handle_timeout(now);
        }
        if self.b_next <= now {
            self.b.handle_timeout(now);
        }
    }

    fn drain(&mut self) {
        let at = self.now + self.latency;
        loop {
            match self.a.poll_output() {
                ClientOutput::Transmit {
                    source,
                    destination,
                    contents,
                } => {
                    let dropped = self.drop_a_to_b.as_mut().is_some_and(|f| f(&contents));
                    if !dropped {
                        self.to_b.push_back(InFlight {
                            at,
                            source,
                            destination,
                            contents,
                        });
                    }
                }
                ClientOutput::Timeout(t) => {
                    self.a_next = t;
                    break;
                }
            }
        }
        loop {
            match self.b.poll_output() {
                ClientOutput::Transmit {
                    source,
                    destination,
                    contents,
                } => {
                    let dropped = self.drop_b_to_a.as_mut().is_some_and(|f| f(&contents));
                    if !dropped {
                        self.to_a.push_back(InFlight {
                            at,
                            source,
                            destination,
                            contents,
                        });
                    }
                }
                ClientOutput::Timeout(t) => {
                    self.b_next = t;
                    break;
                }
            }
        }
    }
}

/// Drops each datagram with probability `p`, reproducibly from `seed`.
pub fn random_loss(seed: u64, p: f64) -> DropFilter {
    let mut rng = fastrand::Rng::with_seed(seed);
    Box::new(move |_| rng.f64() < p)
}
