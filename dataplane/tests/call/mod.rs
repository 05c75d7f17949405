//! A call on a real `MediaNode` over loopback with shardcast-client peers, driven from the
//! test thread: clients on non-blocking sockets (UDP, or an ICE-TCP stream with RFC 4571
//! frames), node events answered as they come.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use shardcast_client::{Client, ClientConfig, ClientOutput, TimeBase, VideoSpec};
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::node::{
    CreatePeer, MediaNodeApi, NodeEvent, PeerId, PeerRole, RoomId, TrackId,
};
use shardcast_dataplane::shard::ShardConfig;
use shardcast_dataplane::{MediaNode, MediaNodeConfig};
use tokio::sync::broadcast;

pub struct Peer {
    pub id: PeerId,
    pub client: Client,
    pub link: Link,
}

/// How a test peer reaches the node.
pub enum Link {
    Udp(UdpSocket),
    /// An ICE-TCP connection to a shard's listener: frames read but not yet whole in `rx`.
    Tcp {
        stream: TcpStream,
        server: SocketAddr,
        rx: Vec<u8>,
        /// False: `turn` no longer reads the stream (a client that stopped reading; it still
        /// sends what its timers produce).
        reading: bool,
    },
}

impl Link {
    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Link::Udp(s) => s.local_addr().unwrap(),
            Link::Tcp { stream, .. } => stream.local_addr().unwrap(),
        }
    }
}

pub struct Call {
    pub rt: tokio::runtime::Runtime,
    pub node: MediaNode,
    pub events: broadcast::Receiver<NodeEvent>,
    pub seen: Vec<NodeEvent>,
    pub peers: Vec<Peer>,
}

pub fn node(backend: IoBackend, shards: usize, max_peers_per_shard: u32) -> MediaNode {
    MediaNode::start(MediaNodeConfig {
        shards: ShardConfig {
            shards,
            backend,
            pin: false,
            ..ShardConfig::default()
        },
        max_peers_per_shard,
        ..MediaNodeConfig::default()
    })
    .expect("media node starts")
}

impl Call {
    pub fn new(node: MediaNode) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let events = node.events();
        Call {
            rt,
            node,
            events,
            seen: Vec::new(),
            peers: Vec::new(),
        }
    }

    /// Joins a client (publishing audio + one VP8 layer when `publish`) to `room`.
    pub fn join(&mut self, room: &str, name: &str, seed: u64, publish: bool) -> usize {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        self.join_over(room, name, seed, publish, Link::Udp(socket))
            .0
    }

    /// Joins a client over ICE-TCP only: it connects to the ICE-TCP listener of `shard`
    /// first (where the room must land) and offers only an active TCP candidate. Returns the
    /// peer and the node's answer.
    pub fn join_tcp(
        &mut self,
        room: &str,
        name: &str,
        seed: u64,
        publish: bool,
        shard: usize,
    ) -> (usize, String) {
        let server = self.node.shard_tcp_addrs()[shard].expect("ice-tcp is on");
        let stream = TcpStream::connect(server).unwrap();
        self.join_tcp_stream(room, name, seed, publish, stream)
    }

    /// `join_tcp` over a stream the test connected itself (to a shard's ICE-TCP address),
    /// e.g. with socket options set before connect.
    pub fn join_tcp_stream(
        &mut self,
        room: &str,
        name: &str,
        seed: u64,
        publish: bool,
        stream: TcpStream,
    ) -> (usize, String) {
        let server = stream.peer_addr().unwrap();
        stream.set_nonblocking(true).unwrap();
        stream.set_nodelay(true).unwrap();
        let link = Link::Tcp {
            stream,
            server,
            rx: Vec::new(),
            reading: true,
        };
        self.join_over(room, name, seed, publish, link)
    }

    fn join_over(
        &mut self,
        room: &str,
        name: &str,
        seed: u64,
        publish: bool,
        link: Link,
    ) -> (usize, String) {
        let mut config = ClientConfig::new(name, seed, TimeBase::real());
        if publish {
            config = config.with_audio().with_video(VideoSpec::single(400_000));
        }
        let now = Instant::now();
        let local = link.local_addr();
        let mut client = match link {
            Link::Udp(_) => Client::new(config, local, now).unwrap(),
            Link::Tcp { .. } => Client::new_tcp(config, local, now).unwrap(),
        };
        let offer = client.create_offer(now).unwrap();
        let created = self
            .rt
            .block_on(self.node.create_peer(CreatePeer {
                room: RoomId::new(room),
                identity: name.into(),
                role: if publish {
                    PeerRole::Both
                } else {
                    PeerRole::Subscribe
                },
                offer,
                bind_tracks: Vec::new(),
                can_send_data: true,
                video_codecs: Vec::new(),
            }))
            .expect("create_peer");
        client
            .accept_answer(Instant::now(), &created.answer)
            .unwrap();
        self.peers.push(Peer {
            id: created.peer,
            client,
            link,
        });
        (self.peers.len() - 1, created.answer)
    }

    /// Tracks `peer` published, from the events seen so far.
    pub fn published(&self, peer: usize) -> Vec<TrackId> {
        let id = self.peers[peer].id;
        self.seen
            .iter()
            .filter_map(|e| match e {
                NodeEvent::TrackPublished { peer, track, .. } if *peer == id => Some(*track),
                _ => None,
            })
            .collect()
    }

    pub fn subscribe_all(&mut self, subscriber: usize, publisher: usize) {
        for track in self.published(publisher) {
            let sub = self.peers[subscriber].id;
            self.rt
                .block_on(self.node.subscribe(sub, track))
                .expect("subscribe");
        }
    }

    /// One round: node events, client output, incoming datagrams, client timers.
    pub fn turn(&mut self) {
        while let Ok(e) = self.events.try_recv() {
            if let NodeEvent::Offer { peer, sdp } = &e {
                if let Some(p) = self.peers.iter_mut().find(|p| p.id == *peer) {
                    let answer = p.client.accept_offer(Instant::now(), sdp).unwrap();
                    self.rt
                        .block_on(self.node.accept_answer(*peer, answer))
                        .expect("accept_answer");
                }
            }
            self.seen.push(e);
        }
        let mut buf = [0u8; 4096];
        for p in &mut self.peers {
            let local = p.link.local_addr();
            loop {
                match p.client.poll_output() {
                    ClientOutput::Transmit {
                        destination,
                        contents,
                        ..
                    } => match &mut p.link {
                        Link::Udp(socket) => {
                            let _ = socket.send_to(&contents, destination);
                        }
                        Link::Tcp { stream, server, .. } => {
                            // Only the pair on this connection exists (no UDP candidate).
                            if destination == *server {
                                let mut frame = (contents.len() as u16).to_be_bytes().to_vec();
                                frame.extend_from_slice(&contents);
                                write_all_nonblocking(stream, &frame);
                            }
                        }
                    },
                    ClientOutput::Timeout(at) => {
                        if at <= Instant::now() {
                            p.client.handle_timeout(Instant::now());
                            continue;
                        }
                        break;
                    }
                }
            }
            match &mut p.link {
                Link::Udp(socket) => {
                    while let Ok((n, from)) = socket.recv_from(&mut buf) {
                        p.client
                            .handle_datagram(Instant::now(), from, local, &buf[..n]);
                    }
                }
                Link::Tcp {
                    stream,
                    server,
                    rx,
                    reading,
                } => {
                    // A client that stopped reading leaves the bytes in its socket.
                    if *reading {
                        while let Ok(n) = stream.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            rx.extend_from_slice(&buf[..n]);
                        }
                    }
                    while rx.len() >= 2 {
                        let len = u16::from_be_bytes([rx[0], rx[1]]) as usize;
                        if rx.len() < 2 + len {
                            break;
                        }
                        p.client
                            .handle_datagram(Instant::now(), *server, local, &rx[2..2 + len]);
                        rx.drain(..2 + len);
                    }
                }
            }
        }
    }

    /// Runs turns until `cond` holds or `limit` passes; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Call) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            self.turn();
            if cond(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        cond(self)
    }

    pub fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// Decodable video frames and audio packets `subscriber` received from `publisher`.
    pub fn received(&self, subscriber: usize, publisher: usize) -> (u64, u64) {
        let source = self.peers[publisher].client.config().source_id();
        let stats = self.peers[subscriber].client.stats();
        let video = stats
            .tracks_from(source)
            .filter(|t| t.kind == shardcast_client::TrackKind::Video)
            .map(|t| t.frames_decodable)
            .sum();
        let audio = stats
            .tracks_from(source)
            .filter(|t| t.kind == shardcast_client::TrackKind::Audio)
            .map(|t| t.packets)
            .sum();
        (video, audio)
    }

    pub fn shard_addr(&self, peer: usize) -> SocketAddr {
        self.node.shard_addrs()[self.peers[peer].id.shard().0 as usize]
    }
}

/// Writes all of `bytes` to a non-blocking stream (a test peer's uplink is small: spinning
/// on a full socket buffer is brief).
pub fn write_all_nonblocking(stream: &mut TcpStream, mut bytes: &[u8]) {
    let end = Instant::now() + Duration::from_secs(5);
    while !bytes.is_empty() && Instant::now() < end {
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(200))
            }
            Err(_) => return,
        }
    }
}
