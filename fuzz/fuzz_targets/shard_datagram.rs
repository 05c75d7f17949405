//! UDP datagrams into a `ShardCore` with two connected peers, through its sans-IO input
//! (`handle_datagram`), in virtual time: the simulated call of the sfu crate's scenario
//! tests (`dataplane/sfu/tests/support`, included below), a VP8 simulcast publisher and a
//! subscriber of its tracks, real str0m clients, DTLS done, media flowing.
//!
//! Each input is a sequence of records (see `shardcast_fuzz::records`); the tag's low three
//! bits say what the bytes are:
//!   0, 1, 2  a raw datagram from the publisher's, the subscriber's, or an unknown address
//!            (STUN, DTLS, forged SRTP, garbage: all must be counted and dropped or handled);
//!   3, 4     plaintext RTP / compound RTCP that the publisher seals with its own SRTP keys,
//!            so the bytes get past authentication into RTP, RTCP, codec and routing code;
//!   5, 6     the same from the subscriber;
//!   7        time passes (the first byte, in ms) with the clients running.
//! In bytes that get sealed, every 4-byte-aligned word 0x535355xx becomes the publisher's
//! xx-th SSRC and 0x535344xx the xx-th SSRC the subscriber receives: SSRCs are random per
//! run, and this lets seeds and mutations name the real streams.
//!
//! The core's output is drained and dropped after each input; every 32 inputs the call runs
//! for 20 ms of virtual time with its clients.
//!
//! The call is built once per process and carries on from input to input (building it costs
//! a DTLS handshake per client), so a crash may depend on earlier inputs as well: libFuzzer
//! keeps the crashing input, and `-runs` over the corpus in the same order reproduces it.
//! The call is rebuilt when a peer is gone. A panic anywhere, including one inside a peer's
//! str0m that the core would catch and count, aborts the run as a crash.
#![no_main]

#[allow(dead_code, unused_imports)]
#[path = "../../dataplane/sfu/tests/support/mod.rs"]
mod support;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use shardcast_fuzz::records;
use shardcast_rtp::rtp::RtpHeader;
use shardcast_sfu::Output;
use support::World;

const LAYERS: [(Option<&str>, u64); 3] = [(Some("l"), 150), (Some("m"), 500), (Some("h"), 1_500)];
const PUBLISHER: usize = 0;
const SUBSCRIBER: usize = 1;
/// Inputs between two runs of the call (20 ms of virtual time each).
const RUN_EVERY: u64 = 32;
const STRANGER: &str = "10.0.9.9:9999";

struct Call {
    world: World,
    /// SSRCs the publisher sends on (media and RTX), and those the subscriber receives.
    uplink: Vec<u32>,
    downlink: Vec<u32>,
    inputs: u64,
}

fn rtp_ssrcs(tap: &[support::net::Tapped], from: SocketAddr, to: SocketAddr) -> Vec<u32> {
    let mut out: Vec<u32> = tap
        .iter()
        .filter(|(_, s, d, b)| *s == from && *d == to && b.len() >= 12 && b[0] >> 6 == 2)
        .filter(|(_, _, _, b)| !(192..=223).contains(&b[1]))
        .map(|(_, _, _, b)| u32::from_be_bytes([b[8], b[9], b[10], b[11]]))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn build() -> Call {
    let mut w = World::new(1);
    let alice = w.add_publisher("alice", &LAYERS);
    let bob = w.add_subscriber("bob");
    assert_eq!((alice, bob), (PUBLISHER, SUBSCRIBER));
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    w.net.wiretap = Some(Vec::new());
    w.run_for(Duration::from_secs(2));
    let tap = w.net.wiretap.take().unwrap_or_default();
    let (server, a, b) = (
        w.server,
        w.members[alice].client.addr,
        w.members[bob].client.addr,
    );
    let uplink = rtp_ssrcs(&tap, a, server);
    let downlink = rtp_ssrcs(&tap, server, b);
    assert!(!uplink.is_empty() && !downlink.is_empty(), "media flows");
    Call {
        world: w,
        uplink,
        downlink,
        inputs: 0,
    }
}

/// `bytes` with the SSRC placeholders replaced (see the module docs).
fn with_ssrcs(bytes: &[u8], call: &Call) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for word in out.chunks_exact_mut(4) {
        let list = match word[..3] {
            [0x53, 0x53, 0x55] => &call.uplink,
            [0x53, 0x53, 0x44] => &call.downlink,
            _ => continue,
        };
        let ssrc = list[usize::from(word[3]) % list.len()];
        word.copy_from_slice(&ssrc.to_be_bytes());
    }
    out
}

thread_local! {
    static CALL: RefCell<Option<Call>> = const { RefCell::new(None) };
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    CALL.with(|cell| {
        let mut slot = cell.borrow_mut();
        let alive = slot.as_ref().is_some_and(|c| {
            let w = &c.world;
            w.members.iter().all(|m| w.core.has_peer(m.peer))
        });
        if !alive {
            *slot = Some(build());
        }
        let call = slot.as_mut().expect("built");
        feed(call, data);
    });
});

fn feed(call: &mut Call, data: &[u8]) {
    let server = call.world.server;
    let stranger: SocketAddr = STRANGER.parse().expect("address");
    for (tag, bytes) in records(data) {
        let kind = tag & 7;
        let member = if matches!(kind, 1 | 5 | 6) {
            SUBSCRIBER
        } else {
            PUBLISHER
        };
        let w = &mut call.world;
        let from = match kind {
            2 => stranger,
            _ => w.members[member].client.addr,
        };
        let datagram = match kind {
            0..=2 => bytes.to_vec(),
            3 | 5 => {
                let mut plain = with_ssrcs(bytes, call);
                if plain.len() < 12 {
                    plain.resize(12, 0);
                }
                plain[0] = 0x80 | (plain[0] & 0x3f);
                let Ok(h) = RtpHeader::parse(&plain) else {
                    continue;
                };
                let (header, payload) = plain.split_at(h.header_len);
                call.world.members[member].client.seal_rtp(header, payload)
            }
            4 | 6 => {
                let mut plain = with_ssrcs(bytes, call);
                if plain.len() < 8 {
                    plain.resize(8, 0);
                }
                plain[0] = 0x80 | (plain[0] & 0x3f);
                call.world.members[member].client.seal_rtcp(&plain)
            }
            _ => {
                let ms = bytes.first().copied().unwrap_or(0);
                call.world.run_for(Duration::from_millis(u64::from(ms)));
                continue;
            }
        };
        let w = &mut call.world;
        w.core.handle_datagram(w.now, from, server, &datagram);
    }
    // What the core sends is lost on the way (the clients see only what the last run let
    // through); every few inputs the call runs on for a moment, so its clients answer consent
    // checks, send media and feedback, and time passes. Running it after every input would
    // cost most of the time per input.
    let w = &mut call.world;
    w.core.drain_datagrams(|_, _| {});
    while !matches!(w.core.poll_output(), Output::Timeout(_)) {}
    call.inputs += 1;
    if call.inputs % RUN_EVERY == 0 {
        w.run_for(Duration::from_millis(20));
        // Keep the simulated clients' records from growing over millions of inputs.
        w.events.clear();
        w.to_shards.clear();
        for m in &mut w.members {
            m.client.received.clear();
        }
    }
}
