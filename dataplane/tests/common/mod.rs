//! Test logics for the shard loop: small, WebRTC-free behaviours behind `ShardLogic`, so the
//! drivers and the loop are tested with real sockets but without DTLS.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use shardcast_dataplane::driver::{DriverConfig, IoBackend};
use shardcast_dataplane::shard::{Outbox, ShardConfig, ShardHandle, ShardLogic, ShardSnapshot};
use shardcast_sfu::ids::ShardId;

/// Datagram opcodes the echo logic understands (first byte).
pub const ECHO: u8 = b'E';
/// `B n hi lo`: answer with n datagrams of (hi<<8|lo) bytes each.
pub const BURST: u8 = b'B';
/// `F s ...`: hand the datagram to shard s, which echoes it from its own socket.
pub const FORWARD: u8 = b'F';
/// Panics inside the logic (a stand-in for a bug hit by crafted input).
pub const PANIC: u8 = b'P';

pub enum Command {
    Ping(std::sync::mpsc::Sender<ShardId>),
    /// Blocks the shard thread (simulates a busy shard).
    Sleep(Duration),
}

#[derive(Debug, Clone, Default)]
pub struct EchoStats {
    pub echoed: u64,
    pub forwarded_in: u64,
}

pub struct Echo {
    shard: ShardId,
    pending: Vec<(SocketAddr, Vec<u8>)>,
    to_shards: Vec<(ShardId, (SocketAddr, Vec<u8>))>,
    stats: EchoStats,
}

impl Echo {
    pub fn new(shard: ShardId) -> Self {
        Echo {
            shard,
            pending: Vec::new(),
            to_shards: Vec::new(),
            stats: EchoStats::default(),
        }
    }
}

impl ShardLogic for Echo {
    type Command = Command;
    type Message = (SocketAddr, Vec<u8>);
    type Stats = EchoStats;

    fn handle_datagram(&mut self, _now: Instant, source: SocketAddr, _: SocketAddr, p: &[u8]) {
        match p.first() {
            Some(&ECHO) => self.pending.push((source, p.to_vec())),
            Some(&BURST) if p.len() >= 4 => {
                let size = u16::from_be_bytes([p[2], p[3]]) as usize;
                for i in 0..p[1] {
                    self.pending.push((source, vec![i; size]));
                }
            }
            Some(&FORWARD) if p.len() >= 2 => self
                .to_shards
                .push((ShardId(p[1] as u16), (source, p.to_vec()))),
            Some(&PANIC) => panic!("test logic asked to panic"),
            _ => {}
        }
    }

    fn handle_shard_message(&mut self, _: Instant, _: ShardId, (to, p): (SocketAddr, Vec<u8>)) {
        self.stats.forwarded_in += 1;
        self.pending.push((to, p));
    }

    fn handle_command(&mut self, _: Instant, command: Command) {
        match command {
            Command::Ping(reply) => {
                let _ = reply.send(self.shard);
            }
            Command::Sleep(d) => std::thread::sleep(d),
        }
    }

    fn handle_timeout(&mut self, _: Instant) {}

    fn drain_output(&mut self, _: Instant, out: &mut Outbox<'_, Self::Message>) -> Option<Instant> {
        for (to, p) in self.pending.drain(..) {
            self.stats.echoed += 1;
            out.transmit(to, &p);
        }
        for (shard, m) in self.to_shards.drain(..) {
            out.to_shard(shard, m);
        }
        None
    }

    fn stats(&self) -> EchoStats {
        self.stats.clone()
    }
}

pub fn config(backend: IoBackend, shards: usize) -> ShardConfig {
    ShardConfig {
        shards,
        backend,
        pin: false,
        driver: DriverConfig::default(),
        ..ShardConfig::default()
    }
}

pub fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Receives until `n` datagrams arrived or the socket times out; returns (source, payload)s.
pub fn recv_n(socket: &UdpSocket, n: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < n {
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => out.push((from, buf[..len].to_vec())),
            Err(_) => break,
        }
    }
    out
}

/// Waits (up to 10 s) for a shard snapshot that satisfies `cond`; returns the last one.
pub fn wait_snapshot<L: ShardLogic>(
    shard: &ShardHandle<L>,
    cond: impl Fn(&ShardSnapshot<L::Stats>) -> bool,
) -> ShardSnapshot<L::Stats> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let s = shard.snapshot();
        if cond(&s) || Instant::now() > end {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
