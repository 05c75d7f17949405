//! RTP the core refuses during a call is counted by reason: a replayed SRTP packet, a forged
//! one (bad auth tag), an authentic packet for an SSRC no published track has, and a header
//! that cannot be parsed. The call keeps flowing and normal traffic counts none of them.

mod support;

use std::time::Duration;

use shardcast_sfu::DropReason;
use support::World;

const REASONS: [DropReason; 4] = [
    DropReason::SrtpReplay,
    DropReason::SrtpAuthFailed,
    DropReason::RtpUnknownSsrc,
    DropReason::RtpUndecodable,
];

fn counts(w: &World) -> [u64; 4] {
    REASONS.map(|r| w.core.stats().drops_for(r))
}

fn is_rtp(d: &[u8]) -> bool {
    d.len() >= 12 && d[0] >> 6 == 2 && !(192..=223).contains(&d[1])
}

#[test]
fn replayed_forged_and_unknown_rtp_raise_their_own_counters() {
    let mut w = World::new(31);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    w.run_for(Duration::from_secs(2));
    assert_eq!(
        counts(&w),
        [0; 4],
        "a clean call drops nothing by these reasons"
    );

    // Take the publisher's next SRTP datagrams off the wire ourselves.
    let (server, from) = (w.server, w.members[alice].client.addr);
    let mut captured = Vec::new();
    while captured.is_empty() {
        w.now = w.members[alice].client.next_wakeup().max(w.now);
        w.members[alice].client.handle_timeout(w.now);
        for (_, dst, d) in w.members[alice].client.poll(w.now) {
            if dst == server && is_rtp(&d) {
                captured.push(d);
            }
        }
    }
    let rtp_in = w.core.stats().rtp_in;
    for d in &captured {
        w.core.handle_datagram(w.now, from, server, d);
    }
    assert_eq!(
        w.core.stats().rtp_in,
        rtp_in + captured.len() as u64,
        "genuine packets are delivered"
    );
    assert_eq!(counts(&w), [0; 4]);

    let original = &captured[0];
    // 1. The same datagram again: a replay.
    w.core.handle_datagram(w.now, from, server, original);
    assert_eq!(counts(&w), [1, 0, 0, 0], "replay");

    // 2. A new sequence number with the old auth tag: forged.
    let mut forged = original.clone();
    let seq = u16::from_be_bytes([forged[2], forged[3]]).wrapping_add(500);
    forged[2..4].copy_from_slice(&seq.to_be_bytes());
    w.core.handle_datagram(w.now, from, server, &forged);
    // 3. The same packet with its payload corrupted: forged too.
    let mut corrupt = original.clone();
    let mid = corrupt.len() / 2 + 6;
    corrupt[mid] ^= 0x5a;
    let seq = u16::from_be_bytes([corrupt[2], corrupt[3]]).wrapping_add(501);
    corrupt[2..4].copy_from_slice(&seq.to_be_bytes());
    w.core.handle_datagram(w.now, from, server, &corrupt);
    assert_eq!(counts(&w), [1, 2, 0, 0], "forged SRTP");

    // 4. A bare RTP header (no mid extension) for an SSRC nobody sends: it does not
    //    authenticate, so it is forged like the others ...
    let mut stranger = vec![0u8; 60];
    stranger[0] = 0x80;
    stranger[1] = 96;
    stranger[8..12].copy_from_slice(&0x0bad_cafe_u32.to_be_bytes());
    w.core.handle_datagram(w.now, from, server, &stranger);
    assert_eq!(counts(&w), [1, 3, 0, 0], "unauthenticated stranger");
    //    ... and sealed with the publisher's own keys it is authentic, but maps to no track:
    //    no mid extension, an SSRC the offer never signalled, and a payload type the
    //    publisher never negotiated (so not even "its only m-line of that kind").
    let mut header = [0u8; 12];
    header[0] = 0x80;
    header[1] = 77;
    header[2..4].copy_from_slice(&7u16.to_be_bytes());
    header[8..12].copy_from_slice(&0x0bad_cafe_u32.to_be_bytes());
    let sealed = w.members[alice].client.seal_rtp(&header, &[1, 2, 3, 4]);
    w.core.handle_datagram(w.now, from, server, &sealed);
    assert_eq!(counts(&w), [1, 3, 1, 0], "authentic but unknown SSRC");

    // 5. 15 CSRCs announced in a 40-byte datagram.
    let mut broken = vec![0u8; 40];
    broken[0] = 0x8f;
    broken[1] = 96;
    w.core.handle_datagram(w.now, from, server, &broken);
    assert_eq!(counts(&w), [1, 3, 1, 1], "undecodable header");

    // The call goes on, and normal traffic adds nothing.
    let before = w.members[bob]
        .client
        .received
        .values()
        .map(|r| r.packets)
        .sum::<u64>();
    w.run_for(Duration::from_secs(2));
    let after = w.members[bob]
        .client
        .received
        .values()
        .map(|r| r.packets)
        .sum::<u64>();
    assert!(
        after > before + 50,
        "media keeps flowing: {before} → {after}"
    );
    assert_eq!(counts(&w), [1, 3, 1, 1]);
    assert_eq!(w.core.stats().peer_panics, 0);
}
