//! End to end through a real DTLS handshake: a plain str0m client `Rtc` and a server `Rtc`
//! built with `tap::build_rtc`, in memory and in virtual time. The tapped keys must let our
//! `SrtpSession` talk to the client in both directions, SRTP and SRTCP: the premise of
//! Shardcast owning RTP after str0m's DTLS. Then the client is rekeyed (str0m's own
//! `_set_srtp_keys`) to each profile in turn, to cross-check all three against str0m.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcast_rtp::srtp::{tap, DtlsKeys, Profile, SrtpSession, SEAL_SLACK};
use str0m::config::KeyingMaterial;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc};

const CLIENT: &str = "10.0.0.1:5000";
const SERVER: &str = "10.0.0.2:5000";
/// The SSRC our SRTCP is sent from: not one str0m's server uses.
const OUR_RTCP_SSRC: u32 = 0x5eed_0001;

/// Two `Rtc`s wired back to back; datagrams the client sends are also kept for inspection.
/// Every input is followed by draining that `Rtc` to its timeout, as str0m requires.
struct Pair {
    now: Instant,
    client: Rtc,
    server: Rtc,
    client_events: Vec<Event>,
    /// Every datagram the client sent since the last `take_client_sent`.
    client_sent: Vec<Vec<u8>>,
    to_server: Vec<Vec<u8>>,
    to_client: Vec<Vec<u8>>,
    client_wake: Instant,
    server_wake: Instant,
    /// Once we own the transport's SRTP (as the SFU will), what str0m's server seals itself
    /// is dropped, as the SFU must: only STUN and DTLS from it still reach the client.
    drop_server_srtp: bool,
    server_srtp_dropped: usize,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

impl Pair {
    /// Delivers everything in flight (and what that provokes), then advances virtual time
    /// to the earlier wake-up.
    fn step(&mut self) {
        self.drain_client();
        self.drain_server();
        self.deliver();
        let next = self.client_wake.min(self.server_wake);
        self.now = next.max(self.now + Duration::from_millis(1));
        self.client.handle_input(Input::Timeout(self.now)).unwrap();
        self.drain_client();
        self.server.handle_input(Input::Timeout(self.now)).unwrap();
        self.drain_server();
        self.deliver();
    }

    fn deliver(&mut self) {
        while !(self.to_server.is_empty() && self.to_client.is_empty()) {
            for bytes in std::mem::take(&mut self.to_server) {
                let rx = Receive::new(Protocol::Udp, addr(CLIENT), addr(SERVER), &bytes);
                self.server
                    .handle_input(Input::Receive(self.now, rx.unwrap()))
                    .unwrap();
                self.drain_server();
            }
            for bytes in std::mem::take(&mut self.to_client) {
                self.inject_to_client(&bytes);
            }
        }
    }

    fn drain_client(&mut self) {
        loop {
            match self.client.poll_output().unwrap() {
                Output::Timeout(t) => return self.client_wake = t,
                Output::Event(e) => self.client_events.push(e),
                Output::Transmit(t) => {
                    self.client_sent.push(t.contents.to_vec());
                    self.to_server.push(t.contents.to_vec());
                }
            }
        }
    }

    fn drain_server(&mut self) {
        loop {
            match self.server.poll_output().unwrap() {
                Output::Timeout(t) => return self.server_wake = t,
                Output::Event(_) => {}
                Output::Transmit(t) => {
                    if self.drop_server_srtp && (128..=191).contains(&t.contents[0]) {
                        self.server_srtp_dropped += 1;
                    } else {
                        self.to_client.push(t.contents.to_vec());
                    }
                }
            }
        }
    }

    /// Delivers a datagram to the client as if the server had sent it.
    fn inject_to_client(&mut self, bytes: &[u8]) {
        let rx = Receive::new(Protocol::Udp, addr(SERVER), addr(CLIENT), bytes).unwrap();
        self.client
            .handle_input(Input::Receive(self.now, rx))
            .unwrap();
        self.drain_client();
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.step();
        }
    }

    fn take_client_sent(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.client_sent)
    }
}

/// A plain client offers one sendrecv video m-line to `server`, which answers.
fn negotiated(mut server: Rtc, now: Instant) -> (Pair, Mid) {
    let mut client = Rtc::builder().set_rtp_mode(true).build(now);
    client
        .add_local_candidate(Candidate::host(addr(CLIENT), "udp").unwrap())
        .unwrap();
    server
        .add_local_candidate(Candidate::host(addr(SERVER), "udp").unwrap())
        .unwrap();

    let mut sdp = client.sdp_api();
    let mid = sdp.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, pending) = sdp.apply().unwrap();
    let answer = server.sdp_api().accept_offer(offer).unwrap();
    client.sdp_api().accept_answer(pending, answer).unwrap();

    let pair = Pair {
        now,
        client,
        server,
        client_events: vec![],
        client_sent: vec![],
        to_server: vec![],
        to_client: vec![],
        client_wake: now,
        server_wake: now,
        drop_server_srtp: false,
        server_srtp_dropped: 0,
    };
    (pair, mid)
}

impl Pair {
    /// ICE and DTLS until both say connected.
    fn connect(&mut self) {
        let deadline = self.now + Duration::from_secs(10);
        while !(self.client.is_connected() && self.server.is_connected()) {
            assert!(self.now < deadline, "the pair did not connect");
            self.step();
        }
    }
}

/// A tapped server and a plain client, connected.
fn connect() -> (Pair, Arc<tap::KeySlot>, Mid) {
    let now = Instant::now();
    let (server, slot) = tap::build_rtc(Rtc::builder().set_rtp_mode(true), now);
    let (mut pair, mid) = negotiated(server, now);
    assert!(slot.take().is_none(), "no keys before the handshake");
    pair.connect();
    (pair, slot, mid)
}

/// An RTP header with the mid one-byte extension (RFC 8285), as the SFU would write it.
fn header_with_mid(pt: u8, seq: u16, ts: u32, ssrc: u32, mid_id: u8, mid: &[u8]) -> Vec<u8> {
    let mut h = vec![0x90, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    let mut ext = vec![(mid_id << 4) | (mid.len() as u8 - 1)];
    ext.extend_from_slice(mid);
    while ext.len() % 4 != 0 {
        ext.push(0);
    }
    h.extend_from_slice(&[0xbe, 0xde]);
    h.extend_from_slice(&((ext.len() / 4) as u16).to_be_bytes());
    h.extend_from_slice(&ext);
    h
}

fn is_rtcp(datagram: &[u8]) -> bool {
    // RFC 5761 §4 (RTP/RTCP mux) within RFC 7983's SRTP range.
    datagram.len() >= 8 && (128..=191).contains(&datagram[0]) && (192..=223).contains(&datagram[1])
}

fn is_rtp(datagram: &[u8]) -> bool {
    datagram.len() >= 12 && (128..=191).contains(&datagram[0]) && !is_rtcp(datagram)
}

/// What the test checks in each keying (the handshake's, then each rekeyed profile).
struct Exchange<'a> {
    pair: &'a mut Pair,
    session: SrtpSession,
    mid: Mid,
    /// Next sequence numbers of our stream and of the client's.
    our_seq: u16,
    client_seq: u64,
}

impl Exchange<'_> {
    /// Our sealed RTP on the server's announced SSRC reaches the client's application.
    fn we_send_rtp(&mut self) {
        let server_ssrc = *self
            .pair
            .server
            .direct_api()
            .stream_tx_by_mid(self.mid, None)
            .expect("the server's SDP announced a send stream")
            .ssrc();
        let vp8 = self.vp8_pt();
        let mid_id = self
            .pair
            .server
            ._exts()
            .id_of(Extension::RtpMid)
            .expect("mid negotiated");
        self.pair.client_events.clear();
        let mut sent = vec![];
        for i in 0..5u16 {
            let payload: Vec<u8> = (0..1000 + i).map(|b| (b as u8) ^ (i as u8)).collect();
            let seq = self.our_seq;
            self.our_seq += 1;
            let header = header_with_mid(
                vp8,
                seq,
                90_000 + u32::from(i) * 3000,
                server_ssrc,
                mid_id,
                self.mid.to_string().as_bytes(),
            );
            let mut out = vec![0u8; 1500 + SEAL_SLACK];
            let n = self
                .session
                .sealer
                .seal_rtp(&header, &payload, 0, &mut out)
                .unwrap();
            let profile = self.session.sealer.profile();
            assert_eq!(n, header.len() + payload.len() + profile.rtp_overhead());
            self.pair.inject_to_client(&out[..n]);
            sent.push((seq, payload));
        }
        self.pair.run_for(Duration::from_millis(50));
        let got: Vec<(u16, Vec<u8>)> = self
            .pair
            .client_events
            .iter()
            .filter_map(|e| match e {
                Event::RtpPacket(p) => Some((p.header.sequence_number, p.payload.to_vec())),
                _ => None,
            })
            .collect();
        assert!(
            got == sent,
            "the client's application got exactly our payloads: {}",
            brief(&got)
        );
    }

    /// What the client's str0m seals, our opener opens, byte-exact.
    fn client_sends_rtp(&mut self) {
        let vp8 = str0m::media::Pt::from(self.vp8_pt());
        self.pair.take_client_sent();
        let mut written = vec![];
        for i in 0..5u8 {
            let payload: Vec<u8> = (0..900u32).map(|b| (b as u8).wrapping_mul(i + 3)).collect();
            let seq = self.client_seq;
            self.client_seq += 1;
            let wallclock = self.pair.now;
            let mut api = self.pair.client.direct_api();
            let tx = api.stream_tx_by_mid(self.mid, None).unwrap();
            tx.write_rtp(RtpWrite::new(
                vp8,
                seq.into(),
                u32::from(i) * 3000,
                wallclock,
                payload.clone(),
            ));
            written.push((seq, payload));
        }
        self.pair.run_for(Duration::from_millis(100));
        let mut opened = vec![];
        let mut out = vec![0u8; 2000 + SEAL_SLACK];
        for d in self.pair.take_client_sent() {
            if !is_rtp(&d) {
                continue;
            }
            let o = self
                .session
                .opener
                .open_rtp(&d, &mut out)
                .expect("our opener opens the client's SRTP");
            opened.push((o.ext_seq, out[o.header_len..o.len].to_vec()));
        }
        assert!(
            opened == written,
            "our opener got the client's payloads: {}",
            brief(&opened)
        );
    }

    /// Our sealed PLI is accepted by the client as a keyframe request on its stream.
    fn we_send_pli(&mut self) {
        let client_ssrc = *self
            .pair
            .client
            .direct_api()
            .stream_tx_by_mid(self.mid, None)
            .unwrap()
            .ssrc();
        let mut pli = vec![0x81, 206, 0, 2];
        pli.extend_from_slice(&OUR_RTCP_SSRC.to_be_bytes());
        pli.extend_from_slice(&client_ssrc.to_be_bytes());
        let mut out = [0u8; 64 + SEAL_SLACK];
        self.pair.client_events.clear();
        for _ in 0..2 {
            let n = self.session.sealer.seal_rtcp(&pli, &mut out).unwrap();
            let profile = self.session.sealer.profile();
            assert_eq!(n, pli.len() + profile.rtcp_overhead());
            let sealed = out[..n].to_vec();
            self.pair.inject_to_client(&sealed);
            self.pair.run_for(Duration::from_millis(300));
        }
        let requests = self
            .pair
            .client_events
            .iter()
            .filter(|e| {
                matches!(e, Event::KeyframeRequest(r)
                    if r.mid == self.mid && r.kind == KeyframeRequestKind::Pli)
            })
            .count();
        assert!(requests >= 1, "the client saw our PLI");
    }

    /// The client's own SRTCP (its receiver/sender reports) opens with our opener.
    fn client_sends_rtcp(&mut self) {
        self.pair.take_client_sent();
        self.pair.run_for(Duration::from_secs(3));
        let mut out = vec![0u8; 2000 + SEAL_SLACK];
        let mut opened = 0;
        for d in self.pair.take_client_sent() {
            if !is_rtcp(&d) {
                continue;
            }
            let n = self
                .session
                .opener
                .open_rtcp(&d, &mut out)
                .expect("our opener opens the client's SRTCP");
            // A plain compound packet: version 2, a report or feedback type, and its first
            // length field inside what we got.
            assert_eq!(out[0] >> 6, 2);
            assert!((200..=207).contains(&out[1]), "RTCP type {}", out[1]);
            let first_len = 4 * (usize::from(u16::from_be_bytes([out[2], out[3]])) + 1);
            assert!(first_len <= n);
            opened += 1;
        }
        assert!(opened > 0, "the client sent SRTCP in 3 s");
    }

    fn vp8_pt(&self) -> u8 {
        *self
            .pair
            .server
            .codec_config()
            .find(|p| p.spec().codec == Codec::Vp8)
            .unwrap()
            .pt()
    }
}

#[test]
fn tapped_keys_talk_to_a_plain_str0m_client_for_every_profile() {
    let (mut pair, slot, mid) = connect();
    let keys = slot.take().expect("the tap captured the server's keys");
    assert!(slot.take().is_none(), "taken once");
    assert_eq!(keys.material.len(), keys.profile.keying_material_len());
    // dimpl prefers AEAD_AES_256_GCM and str0m offers all three.
    assert_eq!(keys.profile, Profile::AeadAes256Gcm);
    let server_is_client = keys.dtls_client;
    pair.drop_server_srtp = true;

    let provider = str0m::crypto::from_feature_flags();
    let session = SrtpSession::new(&provider, &keys).unwrap();
    let mut x = Exchange {
        pair: &mut pair,
        session,
        mid,
        our_seq: 1000,
        client_seq: 500,
    };
    x.we_send_rtp();
    x.client_sends_rtp();
    x.we_send_pli();
    x.client_sends_rtcp();

    // Rekey the client with str0m's own key installation to each profile, and ourselves
    // with the same material, from the server's side of it.
    for (round, profile) in Profile::ALL.into_iter().enumerate() {
        let material: Vec<u8> = (0..profile.keying_material_len())
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(round as u8))
            .collect();
        x.pair.rekey_client(&material, profile, !server_is_client);
        let keys = DtlsKeys {
            profile,
            material,
            dtls_client: server_is_client,
        };
        x.session = SrtpSession::new(&provider, &keys).unwrap();
        x.we_send_rtp();
        x.client_sends_rtp();
        x.we_send_pli();
        x.client_sends_rtcp();
    }
    assert!(
        pair.server_srtp_dropped > 0,
        "str0m's own SRTCP was there to drop"
    );
}

impl Pair {
    fn rekey_client(&mut self, material: &[u8], profile: Profile, client_active: bool) {
        self.client._set_srtp_keys(
            KeyingMaterial::new(material),
            profile.to_dtls(),
            client_active,
        );
    }
}

/// Sequence numbers and payload lengths, for failure messages.
fn brief<T: std::fmt::Debug + Copy>(packets: &[(T, Vec<u8>)]) -> String {
    let v: Vec<String> = packets
        .iter()
        .map(|(s, p)| format!("{s:?}:{}B", p.len()))
        .collect();
    v.join(" ")
}

#[test]
fn each_tapped_peer_gets_its_own_keys() {
    let now = Instant::now();
    let (server_a, slot_a) = tap::build_rtc(Rtc::builder().set_rtp_mode(true), now);
    let (server_b, slot_b) = tap::build_rtc(Rtc::builder().set_rtp_mode(true), now);
    let (mut a, mid_a) = negotiated(server_a, now);
    let (mut b, mid_b) = negotiated(server_b, now);
    b.connect();
    assert!(slot_a.take().is_none(), "A has not shaken hands yet");
    let keys_b = slot_b.take().expect("B's keys in B's slot");
    a.connect();
    let keys_a = slot_a.take().expect("A's keys in A's slot");
    assert!(slot_b.take().is_none());

    let provider = str0m::crypto::from_feature_flags();
    let mut x = Exchange {
        pair: &mut a,
        session: SrtpSession::new(&provider, &keys_a).unwrap(),
        mid: mid_a,
        our_seq: 1,
        client_seq: 1,
    };
    x.client_sends_rtp();
    let mut y = Exchange {
        pair: &mut b,
        session: SrtpSession::new(&provider, &keys_b).unwrap(),
        mid: mid_b,
        our_seq: 1,
        client_seq: 1,
    };
    y.we_send_rtp();
    assert_ne!(keys_a.material, keys_b.material, "two handshakes, two keys");
}
