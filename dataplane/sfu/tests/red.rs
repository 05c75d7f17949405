//! Opus RED (RFC 2198) on a simulated network: a publisher sends its audio as RED (each
//! packet: the previous frame as a redundant block, then the current one), with a stretch
//! of DTX and one malformed RED packet in the middle. A subscriber that negotiated RED gets
//! RED; one that did not gets the primary Opus frame alone. Both get every frame the
//! publisher encoded, in order, as one gapless stream.

mod support;

use std::time::Duration;

use shardcast_sfu::forward::red;
use shardcast_sfu::DropReason;
use str0m::format::Codec;
use support::client::{audio_frame, AudioRx};
use support::{ClientOptions, World};

/// One frame as a subscriber got it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Frame {
    n: u64,
    ts: u32,
    dtx: bool,
}

/// The frame each packet carries (its payload, or what `primary` takes out of it), sorted by
/// seq, after checking that the seqs have no gap.
fn frames(
    name: &str,
    packets: &[AudioRx],
    mut primary: impl FnMut(&AudioRx) -> Vec<u8>,
) -> Vec<Frame> {
    let mut p = packets.to_vec();
    p.sort_by_key(|a| a.seq);
    p.dedup_by_key(|a| a.seq);
    for w in p.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "{name}: sequence gap after {}",
            w[0].seq
        );
    }
    p.iter()
        .map(|a| {
            let frame = primary(a);
            let n = u64::from_be_bytes(frame[..8].try_into().expect("frame number"));
            let dtx = frame.len() < 80;
            assert_eq!(
                frame,
                audio_frame(n, dtx),
                "{name}: frame {n} arrived altered"
            );
            Frame { n, ts: a.ts, dtx }
        })
        .collect()
}

fn opus_pt(w: &World, idx: usize) -> u8 {
    *w.members[idx]
        .client
        .rtc
        .codec_config()
        .find(|p| p.spec().codec == Codec::Opus)
        .expect("opus")
        .pt()
}

#[test]
fn red_is_kept_for_a_red_subscriber_and_cut_to_opus_for_another() {
    let mut w = World::new(7);
    let red_opts = ClientOptions {
        red: true,
        ..ClientOptions::default()
    };
    let alice = w.add_publisher_with("alice", &[(None, 300)], red_opts);
    let bob = w.add_subscriber_with("bob", red_opts);
    let carol = w.add_subscriber("carol");
    assert!(
        w.run_until(Duration::from_secs(5), |w| w.all_connected()),
        "connect"
    );
    let alice_red = w.members[alice]
        .client
        .red_pt()
        .expect("RED negotiated with the publisher");
    w.subscribe_all(bob, alice);
    w.subscribe_all(carol, alice);
    let bob_red = *w.members[bob]
        .client
        .red_pt()
        .expect("RED negotiated with bob");
    assert!(
        w.members[carol].client.red_pt().is_none(),
        "carol offered no RED"
    );

    w.run_for(Duration::from_secs(2));
    // One malformed RED packet: a redundant block header cut short.
    let (mid, now) = (w.members[alice].client.audio_mid.unwrap(), w.now);
    let alice_opus = opus_pt(&w, alice);
    w.members[alice]
        .client
        .send_raw_audio(mid, now, 0, alice_red, vec![0x80 | alice_opus, 0x00]);
    w.run_for(Duration::from_secs(1));
    // Silence: Opus DTX, one tiny frame every 400 ms.
    w.members[alice].client.dtx = true;
    w.run_for(Duration::from_secs(2));
    w.members[alice].client.dtx = false;
    w.run_for(Duration::from_secs(2));

    assert!(
        w.core.stats().drops_for(DropReason::RtpPayloadMalformed) >= 1,
        "the malformed RED packet was counted"
    );
    let audio = |idx: usize| -> Vec<AudioRx> {
        w.members[idx]
            .client
            .received
            .values()
            .flat_map(|r| r.audio_packets.iter().cloned())
            .collect()
    };

    // Bob: RED under his RED payload type, the blocks naming his Opus payload type, the
    // previous frame as the redundant block.
    let (bob_pkts, bob_opus) = (audio(bob), opus_pt(&w, bob));
    assert!(
        bob_pkts.len() > 100,
        "bob got {} audio packets",
        bob_pkts.len()
    );
    let mut redundant_blocks = 0;
    let bob_frames = frames("bob", &bob_pkts, |a| {
        assert_eq!(a.pt, bob_red, "bob: RED payload type");
        let l = red::parse(&a.payload, bob_opus).expect("bob: RED with his Opus payload type");
        redundant_blocks += usize::from(l.blocks) - 1;
        l.primary(&a.payload).to_vec()
    });
    assert!(
        redundant_blocks > 100,
        "bob: redundancy kept ({redundant_blocks} blocks)"
    );

    // Carol: plain Opus, payload bytes equal to the primary block.
    let (carol_pkts, carol_opus) = (audio(carol), opus_pt(&w, carol));
    let carol_frames = frames("carol", &carol_pkts, |a| {
        assert_eq!(a.pt, carol_opus, "carol: Opus payload type");
        a.payload.clone()
    });

    // The same frames, in order, with the same timestamps apart; none missing: between two
    // frames only those DTX left out (fewer than 20, next to a DTX frame).
    let numbers = |f: &[Frame]| f.iter().map(|x| x.n).collect::<Vec<_>>();
    assert_eq!(
        numbers(&bob_frames),
        numbers(&carol_frames),
        "bob and carol heard the same"
    );
    let dtx_frames = carol_frames.iter().filter(|f| f.dtx).count();
    assert!(dtx_frames >= 4, "DTX frames passed through ({dtx_frames})");
    for w in carol_frames.windows(2) {
        let skipped_for_dtx = (w[0].dtx || w[1].dtx) && w[1].n - w[0].n <= 20;
        assert!(
            w[1].n == w[0].n + 1 || skipped_for_dtx,
            "frames {:?} -> {:?}: audio lost on the way",
            w[0],
            w[1]
        );
    }
    for f in [&bob_frames, &carol_frames] {
        for w in f.windows(2) {
            let frames_apart = (w[1].n - w[0].n) as u32;
            assert_eq!(
                w[1].ts.wrapping_sub(w[0].ts),
                frames_apart * 960,
                "timestamps"
            );
        }
    }
}
