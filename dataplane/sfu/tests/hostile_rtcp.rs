//! A subscriber's hostile RTCP during a call: forged and replayed SRTCP, NACKs for sequence
//! numbers long gone or never sent, transport-cc feedback claiming 65 535 packets, and a PLI
//! flood. Each is counted or bounded, nothing panics or grows, the estimate stays within its
//! limits and the call goes on.

mod support;

use std::time::Duration;

use shardcast_rtp::rtcp::{write_nack, write_pli, write_rr};
use shardcast_sfu::{CoreConfig, DropReason};
use support::World;

fn is_rtcp(d: &[u8]) -> bool {
    d.len() >= 2 && (192..=223).contains(&d[1])
}

/// A transport-cc feedback (RFC draft-holmer-01) reporting `count` packets as not received,
/// in run-length chunks: valid, and absurd.
fn twcc_all_lost(sender: u32, media: u32, count: u16) -> Vec<u8> {
    let mut chunks = Vec::new();
    let mut left = count;
    while left > 0 {
        let n = left.min(0x1fff);
        chunks.extend_from_slice(&n.to_be_bytes()); // T=0 run, symbol 00 (not received)
        left -= n;
    }
    let mut p = vec![0x8f, 205, 0, 0];
    p.extend_from_slice(&sender.to_be_bytes());
    p.extend_from_slice(&media.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes()); // base seq
    p.extend_from_slice(&count.to_be_bytes());
    p.extend_from_slice(&[0, 0, 1, 7]); // reference time, fb count
    p.extend_from_slice(&chunks);
    while p.len() % 4 != 0 {
        p.push(0);
    }
    let words = (p.len() / 4 - 1) as u16;
    p[2..4].copy_from_slice(&words.to_be_bytes());
    p
}

#[test]
fn hostile_rtcp_is_counted_and_bounded_and_the_call_goes_on() {
    let config = CoreConfig::default();
    let (min, max) = (config.bwe_min_kbps * 1000, config.bwe_max_kbps * 1000);
    let mut w = World::with_config(23, config);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    w.net.wiretap = Some(Vec::new());
    w.run_for(Duration::from_secs(2));
    let tap = w.net.wiretap.take().unwrap_or_default();
    // Let what was still on the wire arrive, so every tapped datagram has been received once.
    w.run_for(Duration::from_millis(100));
    let (server, bob_addr) = (w.server, w.members[bob].client.addr);
    let peer = w.members[bob].peer;
    let video_ssrc = *w.video(bob).ssrcs[0];
    let base = w.core.stats().clone();
    let gauges = |w: &World| {
        let s = w.core.stats();
        (s.peers, s.tracks, s.subscriptions, s.demux_entries)
    };
    let before = gauges(&w);
    let drops = |w: &World, r| w.core.stats().drops_for(r);

    // 1. Forged: random bytes shaped as SRTCP from the subscriber's own address.
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..200 {
        let mut d: Vec<u8> = (0..rng.usize(8..200)).map(|_| rng.u8(..)).collect();
        d[0] = 0x80;
        d[1] = 200 + rng.u8(0..8);
        w.core.handle_datagram(w.now, bob_addr, server, &d);
    }
    let dropped = w.core.stats().drops_total() - base.drops_total();
    let failed_auth =
        drops(&w, DropReason::SrtpAuthFailed) - base.drops_for(DropReason::SrtpAuthFailed);
    assert_eq!(
        dropped,
        200,
        "every forgery dropped: {:?}",
        w.core.stats().drops
    );
    assert!(
        failed_auth >= 150,
        "most fail authentication: {failed_auth}"
    );

    // 2. Replayed: the subscriber's own genuine SRTCP, again.
    let genuine: Vec<Vec<u8>> = tap
        .iter()
        .filter(|(_, s, d, b)| *s == bob_addr && *d == server && is_rtcp(b))
        .map(|t| t.3.clone())
        .collect();
    assert!(!genuine.is_empty(), "the subscriber sent RTCP");
    let replays = drops(&w, DropReason::SrtpReplay);
    for d in &genuine {
        w.core.handle_datagram(w.now, bob_addr, server, d);
    }
    assert_eq!(
        drops(&w, DropReason::SrtpReplay) - replays,
        genuine.len() as u64,
        "every replay counted"
    );

    // 3. NACKs for sequence numbers long gone or never sent: nothing resent, each counted.
    let (rtx, misses) = (w.core.stats().rtx_sent, w.core.stats().nack_misses);
    let client = &mut w.members[bob].client;
    let mut buf = [0u8; 1200];
    let rr = write_rr(&mut buf, 0x1234, &[]).unwrap();
    let lost: Vec<u16> = (0..200u16).map(|i| 30_000u16.wrapping_add(i * 7)).collect();
    let n = write_nack(&mut buf[rr..], 0x1234, video_ssrc, &lost).unwrap();
    let nack = client.seal_rtcp(&buf[..rr + n]);
    w.core.handle_datagram(w.now, bob_addr, server, &nack);
    let s = w.core.stats();
    assert_eq!(s.rtx_sent, rtx, "nothing to resend");
    assert!(
        s.nack_misses >= misses + 200,
        "each miss counted: {}",
        s.nack_misses - misses
    );

    // 4. Transport-cc feedback claiming 65 535 packets, twenty times over.
    for _ in 0..20 {
        let fb = twcc_all_lost(0x1234, video_ssrc, u16::MAX);
        let sealed = w.members[bob].client.seal_rtcp(&fb);
        w.core.handle_datagram(w.now, bob_addr, server, &sealed);
    }
    let estimate = w
        .core
        .downlink_estimate(peer)
        .expect("a transport-cc subscriber");
    assert!(
        (min..=max).contains(&estimate),
        "estimate {estimate} within [{min}, {max}]"
    );

    // 5. A PLI flood: 500 over 100 ms, then 200 ms more; the publisher hears of it at most
    //    once per coalescing interval (300 ms), keyframes or not.
    let kf = w.members[alice].client.keyframe_requests;
    for i in 0..500 {
        let n = write_pli(&mut buf, 0x1234, video_ssrc).unwrap();
        let pli = w.members[bob].client.seal_rtcp(&buf[..n]);
        w.core.handle_datagram(w.now, bob_addr, server, &pli);
        if i % 50 == 0 {
            w.run_for(Duration::from_millis(10));
        }
    }
    w.run_for(Duration::from_millis(200));
    let asked = w.members[alice].client.keyframe_requests - kf;
    assert!(
        (1..=2).contains(&asked),
        "{asked} keyframe requests reached the publisher"
    );

    // Nothing grew, nothing panicked, and media flows on.
    assert_eq!(gauges(&w), before);
    assert_eq!(w.core.stats().peer_panics, 0);
    let packets = w.video(bob).packets;
    w.run_for(Duration::from_secs(3));
    assert!(w.video(bob).packets > packets + 50, "the call goes on");
}
