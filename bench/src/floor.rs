//! The floor: the least work any SFU must do per forwarded packet, with no WebRTC logic.
//!
//! Receive a batch of SRTP packets, open each once with Shardcast's SRTP (`SrtpOpener`:
//! the server opens each incoming packet once too, with the same code), then per
//! destination do what the server's egress does per copy (`sfu::core::egress`): write the
//! RTP header with the extensions a str0m subscriber negotiates by default (transport-wide
//! sequence number from that destination's counter, abs-send-time, mid) and seal header and
//! payload with that destination's `SrtpSealer` straight into the send batch (the server's
//! `TxQueue` on the driver path); one sendmmsg per batch or one driver turn. So the floor
//! pays for exactly the code the server runs per destination to put a copy on the wire.
//!
//! It does not do what makes the server an SFU: no ICE, no DTLS, no RTCP, no routing
//! tables or subscription lookups; the copy keeps the publisher's SSRC, payload type,
//! sequence number and timestamp (the server rewrites them, maps the payload type and
//! patches VP8 picture ids); nothing is recorded for retransmission or for the bandwidth
//! estimate; no audio level (the input is one video-like stream). Whatever the real
//! server spends above this is the price of being an SFU. Must never grow features that
//! the server lacks, or the ratio stops meaning anything.

use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shardcast_rtp::rtp::{
    abs_send_time, write_header, ExtIds, HeaderFields, OutExtensions, RtpHeader,
};
use shardcast_rtp::srtp::{SrtpOpener, SrtpSealer, SEAL_SLACK};
use str0m::rtp::ExtensionMap;

use crate::srtp::{self, End, Profile};
use crate::udp::{self, RecvBatch, SendBatch, MAX_DATAGRAM};

/// What the floor forwarder is told.
#[derive(Debug, Clone)]
pub struct FloorConfig {
    pub listen: SocketAddr,
    pub destinations: Vec<SocketAddrV4>,
    pub profile: Profile,
    /// Datagrams per recvmmsg and per sendmmsg.
    pub batch: usize,
}

/// Counters the forwarder keeps; read by whoever runs it.
#[derive(Debug, Default)]
pub struct FloorCounters {
    pub received: AtomicU64,
    pub forwarded: AtomicU64,
    /// Not RTP, or the SRTP tag did not verify (or a replay).
    pub dropped_bad: AtomicU64,
    /// Sealed but refused by the kernel (full socket buffers).
    pub dropped_send: AtomicU64,
}

/// Where sealed copies go: the server's `TxQueue` or the floor's own send batch. The sealer
/// writes into the room `push_with` reserves, as the server's egress does.
pub trait SealQueue {
    /// Reserve `max` bytes for a datagram to `to`, let `fill` write it and return its
    /// length (0: nothing queued). Returns the length.
    fn push_with(
        &mut self,
        to: SocketAddrV4,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> usize;
}

impl SealQueue for shardcast_sfu::tx_queue::TxQueue {
    fn push_with(
        &mut self,
        to: SocketAddrV4,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> usize {
        shardcast_sfu::tx_queue::TxQueue::push_with(
            self,
            shardcast_sfu::tx_queue::Remote::udp(SocketAddr::V4(to)),
            max,
            fill,
        )
    }
}

/// The mid every copy carries: str0m names m-lines "0", "1", …; one byte, as a subscriber's
/// video m-line of a small session.
const MID: &[u8] = b"1";
/// Room for the header the floor writes (the server's egress reserves the same).
const MAX_HEADER: usize = 96;

/// One destination: its own SRTP, as a real SFU has per subscriber, and its own
/// transport-wide sequence number.
struct Outbound {
    to: SocketAddrV4,
    sealer: SrtpSealer,
    twcc: u16,
}

/// The per-packet work of the floor, independent of the I/O loop around it.
pub struct Forwarder {
    /// The input's SRTP, as the server has per publisher transport.
    opener: SrtpOpener,
    /// The opened packet (header and payload).
    plain: Box<[u8; MAX_DATAGRAM + SEAL_SLACK]>,
    /// The header extension ids a str0m peer offers (`ExtensionMap::standard()`).
    ext_ids: ExtIds,
    /// Where abs-send-time counts from (the server's shard epoch).
    epoch: Instant,
    outbound: Vec<Outbound>,
}

impl Forwarder {
    pub fn new(config: &FloorConfig) -> Self {
        Forwarder {
            opener: srtp::session(config.profile, End::Forwarder).opener,
            plain: Box::new([0; MAX_DATAGRAM + SEAL_SLACK]),
            ext_ids: ExtIds::from_str0m(&ExtensionMap::standard()),
            epoch: Instant::now(),
            outbound: config
                .destinations
                .iter()
                .map(|&to| Outbound {
                    to,
                    sealer: srtp::session(config.profile, End::Forwarder).sealer,
                    twcc: 0,
                })
                .collect(),
        }
    }

    pub fn fanout(&self) -> usize {
        self.outbound.len()
    }

    /// Opens `datagram` once and queues one sealed copy per destination into `queue`;
    /// `now` is the loop turn's time (abs-send-time). Returns false (and queues nothing)
    /// when it is not SRTP that opens with the floor's keys.
    pub fn forward(&mut self, now: Instant, datagram: &[u8], queue: &mut impl SealQueue) -> bool {
        let Ok(opened) = self.opener.open_rtp(datagram, &mut self.plain[..]) else {
            return false;
        };
        let packet = &self.plain[..opened.len];
        let Ok(parsed) = RtpHeader::parse(packet) else {
            return false;
        };
        let fields = HeaderFields {
            marker: parsed.marker,
            payload_type: parsed.payload_type,
            seq: parsed.seq,
            timestamp: parsed.timestamp,
            ssrc: parsed.ssrc,
        };
        // The copy's payload is everything after the header, padding included, as the
        // server forwards it.
        let payload = &packet[parsed.header_len..];
        let roc = (opened.ext_seq >> 16) as u32;
        let mut header = [0u8; MAX_HEADER];
        for dest in &mut self.outbound {
            dest.twcc = dest.twcc.wrapping_add(1);
            let ext = OutExtensions {
                mid: Some(MID),
                transport_cc: Some(dest.twcc),
                abs_send_time: Some(abs_send_time(now.saturating_duration_since(self.epoch))),
                ..OutExtensions::default()
            };
            // Cannot fail for fields parsed from a packet; the server skips such a copy too.
            let Ok(hlen) = write_header(&mut header, &fields, &ext, &self.ext_ids) else {
                continue;
            };
            let sealer = &mut dest.sealer;
            let max = hlen + payload.len() + sealer.profile().rtp_overhead() + SEAL_SLACK;
            queue.push_with(dest.to, max, |buf| {
                sealer
                    .seal_rtp(&header[..hlen], payload, roc, buf)
                    .unwrap_or(0)
            });
        }
        true
    }
}

/// The floor's own send batch: flushes with sendmmsg whenever it fills, counting what the
/// kernel took.
struct Flushing<'a> {
    batch: &'a mut SendBatch,
    socket: &'a std::net::UdpSocket,
    queued: u64,
    forwarded: u64,
    failed: Option<io::Error>,
}

impl SealQueue for Flushing<'_> {
    fn push_with(
        &mut self,
        to: SocketAddrV4,
        max: usize,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> usize {
        let n = self.batch.push_with(to, max, fill);
        self.queued += u64::from(n > 0);
        if self.batch.is_full() {
            match self.batch.flush(self.socket) {
                Ok(sent) => self.forwarded += sent as u64,
                Err(e) => self.failed = Some(e),
            }
        }
        n
    }
}

/// Runs the forwarder on `socket` with its own recvmmsg/sendmmsg loop until `stop` is set.
pub fn serve(
    socket: &std::net::UdpSocket,
    config: &FloorConfig,
    stop: &AtomicBool,
    counters: &FloorCounters,
) -> io::Result<()> {
    let mut forwarder = Forwarder::new(config);
    let mut rx = RecvBatch::new(config.batch);
    let mut tx = SendBatch::new(config.batch.max(forwarder.fanout()));

    while !stop.load(Ordering::Relaxed) {
        let n = rx.recv(socket)?;
        if n == 0 {
            continue;
        }
        counters.received.fetch_add(n as u64, Ordering::Relaxed);
        let now = Instant::now();
        let mut out = Flushing {
            batch: &mut tx,
            socket,
            queued: 0,
            forwarded: 0,
            failed: None,
        };
        for (_, datagram) in rx.iter() {
            if !forwarder.forward(now, datagram, &mut out) {
                counters.dropped_bad.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(e) = out.failed {
            return Err(e);
        }
        let (queued, mut forwarded) = (out.queued, out.forwarded);
        if !tx.is_empty() {
            forwarded += tx.flush(socket)? as u64;
        }
        counters.forwarded.fetch_add(forwarded, Ordering::Relaxed);
        counters
            .dropped_send
            .fetch_add(queued - forwarded, Ordering::Relaxed);
    }
    Ok(())
}

/// Binds the floor's socket; a short read timeout lets `serve` notice `stop`.
pub fn bind(listen: SocketAddr) -> io::Result<std::net::UdpSocket> {
    udp::bind(listen, Some(Duration::from_millis(100)))
}

#[cfg(test)]
pub(crate) mod testkit {
    use super::*;
    use shardcast_rtp::rtp::read_extensions;
    use std::net::{Ipv4Addr, UdpSocket};
    use std::sync::Arc;
    use std::thread::JoinHandle;

    fn v4(socket: &UdpSocket) -> SocketAddrV4 {
        match socket.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to IPv4"),
        }
    }

    pub type Start = dyn FnOnce(
        UdpSocket,
        FloorConfig,
        Arc<AtomicBool>,
        Arc<FloorCounters>,
    ) -> JoinHandle<io::Result<()>>;

    /// Sends garbage, five SRTP packets of `profile` and a replay of the last one through a
    /// floor started by `start`; checks that each of three sinks gets all five, decryptable,
    /// with the header the server would write (the publisher's fields, the destination's
    /// own transport-wide sequence number, abs-send-time, mid), and that the counters add up.
    pub fn check_forwarding(profile: Profile, start: Box<Start>) {
        let sinks: Vec<UdpSocket> = (0..3)
            .map(|_| {
                udp::bind(
                    (Ipv4Addr::LOCALHOST, 0).into(),
                    Some(Duration::from_secs(2)),
                )
                .unwrap()
            })
            .collect();
        let config = FloorConfig {
            listen: (Ipv4Addr::LOCALHOST, 0).into(),
            destinations: sinks.iter().map(v4).collect(),
            profile,
            batch: 8,
        };
        let socket = bind(config.listen).unwrap();
        let floor_addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(FloorCounters::default());
        let server = start(socket, config, stop.clone(), counters.clone());

        let source = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        source.send_to(b"not rtp at all", floor_addr).unwrap();
        let mut sealer = srtp::session(profile, End::Peer).sealer;
        let mut sealed = [0u8; 512];
        let mut last = 0;
        for seq in 0..5u16 {
            let mut header = [0u8; 12];
            let fields = HeaderFields {
                marker: seq == 4,
                payload_type: 96,
                seq,
                timestamp: 3000 * u32::from(seq),
                ssrc: 42,
            };
            write_header(
                &mut header,
                &fields,
                &OutExtensions::default(),
                &ExtIds::default(),
            )
            .unwrap();
            let payload = vec![seq as u8; 300];
            last = sealer.seal_rtp(&header, &payload, 0, &mut sealed).unwrap();
            source.send_to(&sealed[..last], floor_addr).unwrap();
        }
        // The same packet again: the floor's opener refuses a replay, as the server's does.
        source.send_to(&sealed[..last], floor_addr).unwrap();

        let ids = ExtIds::from_str0m(&ExtensionMap::standard());
        for sink in &sinks {
            let mut opener = srtp::session(profile, End::Peer).opener;
            let mut buf = [0u8; 2048];
            let mut plain = [0u8; 2048 + SEAL_SLACK];
            for seq in 0..5u16 {
                let len = sink.recv(&mut buf).expect("forwarded packet arrives");
                let opened = opener.open_rtp(&buf[..len], &mut plain).unwrap();
                let packet = &plain[..opened.len];
                let h = RtpHeader::parse(packet).unwrap();
                assert_eq!((h.seq, h.ssrc, h.payload_type), (seq, 42, 96));
                assert_eq!((h.timestamp, h.marker), (3000 * u32::from(seq), seq == 4));
                assert_eq!(h.payload(packet), &vec![seq as u8; 300][..]);
                let ext = read_extensions(packet, &h, &ids).unwrap();
                assert_eq!(ext.transport_cc, Some(seq + 1), "per destination, from 1");
                assert_eq!(ext.mid, Some(MID));
                assert!(ext.abs_send_time.is_some());
                assert_eq!(len, h.header_len + 300 + profile.overhead());
            }
        }
        // The replay may still be on its way through the floor: wait for it, then stop.
        let deadline = Instant::now() + Duration::from_secs(5);
        while counters.dropped_bad.load(Ordering::Relaxed) < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap().unwrap();
        assert_eq!(counters.received.load(Ordering::Relaxed), 7);
        assert_eq!(counters.forwarded.load(Ordering::Relaxed), 15);
        assert_eq!(counters.dropped_bad.load(Ordering::Relaxed), 2);
        assert_eq!(counters.dropped_send.load(Ordering::Relaxed), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_each_packet_to_every_destination_decryptable_and_drops_garbage() {
        for profile in Profile::ALL {
            testkit::check_forwarding(
                profile,
                Box::new(|socket, config, stop, counters| {
                    std::thread::spawn(move || serve(&socket, &config, &stop, &counters))
                }),
            );
        }
    }
}
