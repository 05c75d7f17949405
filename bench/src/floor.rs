//! The floor: the least work any SFU must do per forwarded packet, with no WebRTC logic.
//!
//! Receive a batch of SRTP packets, open each once (the server decrypts each incoming packet
//! once too), then seal it once per destination with str0m's own SRTP and queue it; one
//! sendmmsg per batch. No ICE, no DTLS, no RTCP, no routing tables, no rewriting: whatever the
//! real server spends above this is the price of being an SFU. Must never grow features that
//! the server lacks, or the ratio stops meaning anything.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use str0m::crypto::CryptoProvider;
use str0m::rtp::{ExtensionMap, RtpHeader};

use crate::probe::ExtSeq;
use crate::srtp::{Profile, SrtpReceiver, SrtpSender};
use crate::udp::{self, RecvBatch, SendBatch};

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
    /// Not RTP, or the SRTP tag did not verify.
    pub dropped_bad: AtomicU64,
    /// Sealed but refused by the kernel (full socket buffers).
    pub dropped_send: AtomicU64,
}

/// One incoming stream: its SRTP context and sequence extension.
struct Inbound {
    srtp: SrtpReceiver,
    seq: ExtSeq,
}

/// One destination: its own SRTP context, as a real SFU has per subscriber.
struct Outbound {
    to: SocketAddrV4,
    srtp: SrtpSender,
}

/// The per-packet work of the floor, independent of the I/O loop around it.
pub struct Forwarder<'a> {
    crypto: &'a CryptoProvider,
    profile: Profile,
    exts: ExtensionMap,
    inbound: HashMap<u32, Inbound>,
    outbound: Vec<Outbound>,
}

impl<'a> Forwarder<'a> {
    pub fn new(config: &FloorConfig, crypto: &'a CryptoProvider) -> Self {
        Forwarder {
            crypto,
            profile: config.profile,
            exts: ExtensionMap::standard(),
            inbound: HashMap::new(),
            outbound: config
                .destinations
                .iter()
                .map(|&to| Outbound {
                    to,
                    srtp: SrtpSender::new(crypto, config.profile),
                })
                .collect(),
        }
    }

    pub fn fanout(&self) -> usize {
        self.outbound.len()
    }

    /// Opens `datagram` once and hands one sealed copy per destination to `send`.
    /// Returns false (and sends nothing) when it is not RTP or its tag does not verify.
    pub fn forward(
        &mut self,
        datagram: &[u8],
        send: &mut dyn FnMut(SocketAddrV4, Vec<u8>),
    ) -> bool {
        let Some(header) = RtpHeader::_parse(datagram, &self.exts) else {
            return false;
        };
        let ssrc = *header.ssrc;
        let (crypto, profile) = (self.crypto, self.profile);
        let stream = self.inbound.entry(ssrc).or_insert_with(|| Inbound {
            srtp: SrtpReceiver::new(crypto, profile),
            seq: ExtSeq::default(),
        });
        let index = stream.seq.extend(header.sequence_number);
        let Some(payload) = stream
            .srtp
            .unprotect(datagram, header.header_len, ssrc, index)
        else {
            return false;
        };
        // Re-sealed with an empty extension block: the floor keeps no per-destination
        // header state (the server writes mid / twcc extensions per subscriber).
        let mut out_header = header.clone();
        out_header.ext_vals = Default::default();
        for dest in &mut self.outbound {
            let sealed = dest.srtp.protect(out_header.clone(), index, payload);
            send(dest.to, sealed);
        }
        true
    }
}

/// Runs the forwarder on `socket` with its own recvmmsg/sendmmsg loop until `stop` is set.
pub fn serve(
    socket: &std::net::UdpSocket,
    config: &FloorConfig,
    crypto: &CryptoProvider,
    stop: &AtomicBool,
    counters: &FloorCounters,
) -> io::Result<()> {
    let mut forwarder = Forwarder::new(config, crypto);
    let mut rx = RecvBatch::new(config.batch);
    let mut tx = SendBatch::new(config.batch.max(forwarder.fanout()));

    while !stop.load(Ordering::Relaxed) {
        let n = rx.recv(socket)?;
        if n == 0 {
            continue;
        }
        counters.received.fetch_add(n as u64, Ordering::Relaxed);
        let mut forwarded = 0u64;
        let mut queued = 0u64;
        let mut failed: Option<io::Error> = None;
        for (_, datagram) in rx.iter() {
            let ok = forwarder.forward(datagram, &mut |to, sealed| {
                tx.push(&sealed, to);
                queued += 1;
                if tx.is_full() {
                    match tx.flush(socket) {
                        Ok(sent) => forwarded += sent as u64,
                        Err(e) => failed = Some(e),
                    }
                }
            });
            if !ok {
                counters.dropped_bad.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
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
    use std::net::{Ipv4Addr, UdpSocket};
    use std::sync::Arc;
    use std::thread::JoinHandle;
    use str0m::rtp::Ssrc;

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

    /// Sends garbage and five SRTP packets of `profile` through a floor started by `start`;
    /// checks that each of three sinks gets all five, decryptable, and that the counters add up.
    pub fn check_forwarding(profile: Profile, start: Box<Start>) {
        let crypto = str0m::crypto::from_feature_flags();
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
        let mut sender = SrtpSender::new(&crypto, profile);
        for seq in 0..5u16 {
            let header = RtpHeader {
                sequence_number: seq,
                ssrc: Ssrc::from(42),
                payload_type: 96.into(),
                ..Default::default()
            };
            let payload = vec![seq as u8; 300];
            let packet = sender.protect(header, seq as u64, &payload);
            source.send_to(&packet, floor_addr).unwrap();
        }

        for sink in &sinks {
            let mut opener = SrtpReceiver::new(&crypto, profile);
            let mut buf = [0u8; 2048];
            for seq in 0..5u16 {
                let len = sink.recv(&mut buf).expect("forwarded packet arrives");
                let header = RtpHeader::_parse(&buf[..len], &ExtensionMap::empty()).unwrap();
                assert_eq!(header.sequence_number, seq);
                let opened = opener.unprotect(&buf[..len], header.header_len, 42, seq as u64);
                assert_eq!(opened, Some(&vec![seq as u8; 300][..]));
            }
        }
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap().unwrap();
        assert_eq!(counters.received.load(Ordering::Relaxed), 6);
        assert_eq!(counters.forwarded.load(Ordering::Relaxed), 15);
        assert_eq!(counters.dropped_bad.load(Ordering::Relaxed), 1);
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
                    std::thread::spawn(move || {
                        let crypto = str0m::crypto::from_feature_flags();
                        serve(&socket, &config, &crypto, &stop, &counters)
                    })
                }),
            );
        }
    }
}
