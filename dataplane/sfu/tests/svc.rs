//! VP9 on a simulated network: one publisher sends one VP9 stream with spatial and temporal
//! layers (L3T3, L3T3_KEY, L1T3), or three simulcast VP9 streams; three subscribers with
//! different downlink caps.
//! Each must get the layers its bandwidth carries and a stream a decoder can use: every
//! layer frame it got has all its references, picture ids and TL0PICIDX shifted by one
//! constant, one marker per picture on its last packet, no sequence gap, spatial layers added
//! only at keyframes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use shardcast_sfu::forward::vp9::Vp9Descriptor;
use support::{ClientOptions, SvcMode, Vp9Rx, World};

/// One received packet, decoded.
#[derive(Debug, Clone)]
struct Pkt {
    at: Instant,
    seq: u64,
    ts: u32,
    marker: bool,
    d: Vp9Descriptor,
    /// What the publisher wrote after the descriptor.
    orig_pid: u16,
    sid: u8,
    tid: u8,
    refs: Vec<(u16, u8)>,
    index: u8,
    count: u8,
}

fn decode(r: &Vp9Rx) -> Pkt {
    let d = Vp9Descriptor::parse(&r.payload).expect("forwarded descriptor parses");
    let b = &r.payload[d.header_len..];
    let n = usize::from(b[4]);
    let refs = (0..n)
        .map(|i| {
            let at = 5 + 3 * i;
            (u16::from_be_bytes([b[at], b[at + 1]]), b[at + 2])
        })
        .collect();
    let after = 5 + 3 * n;
    Pkt {
        at: r.at,
        seq: r.seq,
        ts: r.ts,
        marker: r.marker,
        d,
        orig_pid: u16::from_be_bytes([b[0], b[1]]),
        sid: b[2],
        tid: b[3],
        refs,
        index: b[after],
        count: b[after + 1],
    }
}

/// Every VP9 packet member `idx` received, once each (retransmissions removed), by seq,
/// without the newest picture (its last packets may still be on the way).
fn packets(w: &World, idx: usize) -> Vec<Pkt> {
    let mut by_seq = BTreeMap::new();
    for r in w.members[idx]
        .client
        .received
        .values()
        .flat_map(|r| r.vp9.iter())
    {
        by_seq.entry(r.seq).or_insert_with(|| decode(r));
    }
    let mut pkts: Vec<Pkt> = by_seq.into_values().collect();
    if let Some(newest) = pkts.last().map(|p| p.ts) {
        pkts.retain(|p| p.ts != newest);
    }
    pkts
}

/// The checks of the module docs on one subscriber's whole stream.
fn check_decodable(name: &str, pkts: &[Pkt]) {
    assert!(!pkts.is_empty(), "{name}: received VP9");

    // No sequence gap: dropped layers left no hole (all repaired by now).
    for w in pkts.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "{name}: sequence gap after {}",
            w[0].seq
        );
    }
    // Picture ids and TL0PICIDX: one constant shift from the publisher's.
    let pid_shift = pkts[0]
        .d
        .picture_id
        .unwrap()
        .0
        .wrapping_sub(pkts[0].orig_pid)
        & 0x7fff;
    for p in pkts {
        let out = p.d.picture_id.expect("picture id").0;
        assert_eq!(
            out.wrapping_sub(p.orig_pid) & 0x7fff,
            pid_shift,
            "{name}: picture id continuity at seq {}",
            p.seq
        );
        assert_eq!(
            (p.d.layers.unwrap().sid, p.d.layers.unwrap().tid),
            (p.sid, p.tid)
        );
    }
    // Layer frames (picture, sid) received whole.
    let mut frames: BTreeMap<(u16, u8), BTreeSet<u8>> = BTreeMap::new();
    for p in pkts {
        frames
            .entry((p.orig_pid, p.sid))
            .or_default()
            .insert(p.index);
    }
    let complete =
        |k: &(u16, u8), count: u8| frames.get(k).is_some_and(|s| s.len() == usize::from(count));
    // The first forwarded picture is a keyframe; every frame has what it references.
    assert!(pkts[0].d.is_keyframe(), "{name}: starts on a keyframe");
    for p in pkts.iter().filter(|p| p.index == 0) {
        assert!(
            complete(&(p.orig_pid, p.sid), p.count),
            "{name}: layer frame {:?} incomplete",
            (p.orig_pid, p.sid)
        );
        for r in &p.refs {
            assert!(
                frames.contains_key(r),
                "{name}: picture {} S{} T{} references {:?}, never forwarded",
                p.orig_pid,
                p.sid,
                p.tid,
                r
            );
        }
    }
    // One marker per picture, on its last packet, which ends the top layer frame forwarded.
    let mut pictures: BTreeMap<u16, Vec<&Pkt>> = BTreeMap::new();
    for p in pkts {
        pictures.entry(p.orig_pid).or_default().push(p);
    }
    for (pid, ps) in &pictures {
        let marked: Vec<&&Pkt> = ps.iter().filter(|p| p.marker).collect();

        assert_eq!(
            marked.len(),
            1,
            "{name}: picture {pid} has {} markers",
            marked.len()
        );
        let last = ps.iter().max_by_key(|p| p.seq).unwrap();
        assert!(
            last.marker && last.d.ends_frame,
            "{name}: marker on the last packet of {pid}"
        );
        assert_eq!(last.sid, ps.iter().map(|p| p.sid).max().unwrap());
        assert!(ps.iter().all(|p| p.ts == last.ts));
    }
    // Spatial layers are added only at keyframes.
    let mut top = None;
    for ps in pictures.values() {
        let s = ps.iter().map(|p| p.sid).max().unwrap();
        if top.is_some_and(|t| s > t) {
            assert!(
                ps.iter().any(|p| p.d.is_keyframe()),
                "{name}: up to S{s} at picture {} without a keyframe",
                ps[0].orig_pid
            );
        }
        top = Some(s);
    }
}

/// The (spatial, temporal) layers received after `since`.
fn layers_since(pkts: &[Pkt], since: Instant) -> (u8, u8) {
    let recent = pkts.iter().filter(|p| p.at >= since);
    recent.fold((0, 0), |(s, t), p| (s.max(p.sid), t.max(p.tid)))
}

struct Call {
    w: World,
    subs: Vec<usize>,
}

/// A publisher of `mode` at `kbps`, three subscribers capped at `caps`, 12 s of call.
fn call(seed: u64, mode: SvcMode, kbps: u64, caps: [u64; 3]) -> Call {
    let mut w = World::new(seed);
    let vp9 = ClientOptions {
        vp9: Some(mode),
        ..Default::default()
    };
    let alice = w.add_publisher_with("alice", &[(None, kbps)], vp9);
    let mut subs = Vec::new();
    for (i, cap) in caps.iter().enumerate() {
        let s = w.add_subscriber_with(&format!("viewer{i}"), vp9);
        w.downlink(s).rate_bps = Some(*cap);
        subs.push(s);
    }
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    for s in &subs {
        w.subscribe_all(*s, alice);
    }
    for _ in 0..24 {
        w.run_for(Duration::from_millis(500));
        if std::env::var("SIM_DEBUG").is_ok() {
            let track = w.video_track(alice);
            for s in &subs {
                let p = w.members[*s].peer;
                eprintln!(
                    "{:?} viewer{s} estimate {:?} layer {:?}",
                    w.elapsed(),
                    w.core.downlink_estimate(p),
                    w.core.forwarded_layer(p, track)
                );
            }
        }
    }
    Call { w, subs }
}

fn steady_layers(c: &Call) -> Vec<(u8, u8)> {
    let since = c.w.now - Duration::from_secs(3);
    c.subs
        .iter()
        .map(|s| layers_since(&packets(&c.w, *s), since))
        .collect()
}

#[test]
fn l3t3_each_subscriber_gets_the_spatial_layers_its_downlink_carries() {
    // Spatial layers cost 150, 350 and 1050 kbit/s (cumulative 150, 500, 1550).
    let mut c = call(21, SvcMode::L3T3, 1500, [400_000, 1_200_000, 5_000_000]);
    assert_eq!(steady_layers(&c), vec![(0, 2), (1, 2), (2, 2)]);
    for (i, s) in c.subs.iter().enumerate() {
        check_decodable(&format!("viewer{i}"), &packets(&c.w, *s));
    }

    // The top viewer's downlink drops: down to a lower spatial layer at a picture start (no
    // keyframe needed), and back up at a keyframe once it recovers.
    let top = c.subs[2];
    c.w.downlink(top).rate_bps = Some(400_000);
    let drop_at = c.w.now;
    c.w.run_for(Duration::from_secs(4));
    let after_drop = layers_since(&packets(&c.w, top), drop_at + Duration::from_secs(3));
    assert!(
        after_drop.0 < 2,
        "spatial layer after the drop: {after_drop:?}"
    );
    c.w.downlink(top).rate_bps = Some(5_000_000);
    let up_at = c.w.now;
    let up = c.w.run_until(Duration::from_secs(10), |w| {
        packets(w, top).iter().any(|p| p.at > up_at && p.sid == 2)
    });
    assert!(up, "back to the top spatial layer after the recovery");
    c.w.run_for(Duration::from_secs(2));
    // The congested link lost packets for good while it was capped (the repairs queued
    // behind the media): check the stream from the keyframe that took it back up.
    let pkts = packets(&c.w, top);
    let back = pkts
        .iter()
        .position(|p| p.at > up_at && p.sid == 2)
        .unwrap();
    let key = pkts[..=back]
        .iter()
        .rposition(|p| p.d.is_keyframe())
        .expect("the way up starts at a keyframe");
    assert_eq!(
        pkts[key].ts, pkts[back].ts,
        "S2 starts in the keyframe's picture"
    );
    check_decodable("viewer2 after the recovery", &pkts[key..]);
}

#[test]
fn l3t3_key_forwards_by_spatial_layer() {
    let c = call(22, SvcMode::L3T3Key, 1500, [400_000, 1_200_000, 5_000_000]);
    assert_eq!(steady_layers(&c), vec![(0, 2), (1, 2), (2, 2)]);
    for (i, s) in c.subs.iter().enumerate() {
        check_decodable(&format!("viewer{i}"), &packets(&c.w, *s));
    }
}

#[test]
fn l1t3_each_subscriber_gets_the_frame_rate_its_downlink_carries() {
    // One spatial layer; frames of T0, T1, T2 weigh 1, 2 and 8 (T2 is half the frames):
    // about 60, 190 and 1190 kbit/s.
    let c = call(23, SvcMode::L1T3, 500, [200_000, 1_000_000, 5_000_000]);
    assert_eq!(steady_layers(&c), vec![(0, 0), (0, 1), (0, 2)]);
    for (i, s) in c.subs.iter().enumerate() {
        check_decodable(&format!("viewer{i}"), &packets(&c.w, *s));
    }
}

#[test]
fn malformed_vp9_descriptors_are_counted_and_dropped() {
    use shardcast_sfu::DropReason;
    let mut c = call(24, SvcMode::L3T3, 1500, [5_000_000, 5_000_000, 5_000_000]);
    let before = c.w.core.stats().drops_for(DropReason::RtpPayloadMalformed);
    assert_eq!(before, 0, "the synthetic stream is well formed");
    // The publisher sends packets whose descriptor ends early (a 15-bit picture id cut off,
    // layer indices without TL0PICIDX, flexible mode without a picture id).
    let alice = 0;
    let viewer = c.subs[0];
    let got_before = packets(&c.w, viewer).len();
    c.w.members[alice]
        .client
        .send_raw_vp9(&[&[0x80, 0x81][..], &[0xA0, 0x01], &[0x10]]);
    c.w.run_for(Duration::from_millis(500));
    let after = c.w.core.stats().drops_for(DropReason::RtpPayloadMalformed);
    assert_eq!(after, 3, "each malformed packet counted");
    // The stream goes on, and what the viewer got is still decodable.
    c.w.run_for(Duration::from_secs(1));
    let pkts = packets(&c.w, viewer);
    assert!(pkts.len() > got_before);
    check_decodable("viewer0", &pkts);
}

#[test]
fn simulcast_vp9_picture_ids_continue_across_layer_switches() {
    let mut w = World::new(25);
    let vp9 = ClientOptions {
        vp9: Some(SvcMode::L1T3),
        ..Default::default()
    };
    let layers = [(Some("l"), 150), (Some("m"), 500), (Some("h"), 1_500)];
    let alice = w.add_publisher_with("alice", &layers, vp9);
    let caps = [400_000u64, 1_200_000, 5_000_000];
    let mut subs = Vec::new();
    for (i, cap) in caps.iter().enumerate() {
        let s = w.add_subscriber_with(&format!("viewer{i}"), vp9);
        w.downlink(s).rate_bps = Some(*cap);
        subs.push(s);
    }
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    for s in &subs {
        w.subscribe_all(*s, alice);
    }
    w.run_for(Duration::from_secs(12));
    let since = w.now - Duration::from_secs(3);
    let got: Vec<u8> = subs
        .iter()
        .map(|s| layers_since(&packets(&w, *s), since).0)
        .collect();
    assert_eq!(
        got,
        vec![0, 1, 2],
        "simulcast layer (SID field) per subscriber"
    );
    // The top viewer goes down and back up: two switches, each on a keyframe.
    let top = subs[2];
    w.downlink(top).rate_bps = Some(400_000);
    w.run_for(Duration::from_secs(4));
    w.downlink(top).rate_bps = Some(5_000_000);
    let up_at = w.now;
    assert!(w.run_until(Duration::from_secs(10), |w| {
        packets(w, top).iter().any(|p| p.at > up_at && p.sid == 2)
    }));
    w.run_for(Duration::from_secs(1));
    for (i, s) in subs.iter().enumerate() {
        let pkts = packets(&w, *s);
        let name = format!("viewer{i}");
        // By picture, in order: (outgoing picture id, layer, keyframe, first and last seq).
        let mut pictures: Vec<(u16, u8, bool, u64, u64)> = Vec::new();
        for p in &pkts {
            let out = p.d.picture_id.unwrap().0;
            match pictures.last_mut() {
                Some(l) if l.0 == out => l.4 = p.seq,
                _ => pictures.push((out, p.sid, p.d.is_keyframe(), p.seq, p.seq)),
            }
            assert_eq!(p.d.tl0_pic_idx, None);
        }
        assert!(pictures[0].2, "{name}: starts on a keyframe");
        for w2 in pictures.windows(2) {
            let (a, b) = (w2[0], w2[1]);
            if b.3 != a.4 + 1 {
                continue; // lost on the capped link for good: nothing to compare
            }
            assert_eq!(
                b.0,
                (a.0 + 1) & 0x7fff,
                "{name}: picture id after {a:?} is {b:?}"
            );
            if b.1 != a.1 {
                assert!(b.2, "{name}: switch to layer {} without a keyframe", b.1);
            }
        }
        if *s == top {
            // Both switches checked: their pictures follow each other without a seq gap.
            let switches = pictures
                .windows(2)
                .filter(|x| x[0].1 != x[1].1 && x[1].3 == x[0].4 + 1)
                .count();
            assert!(
                switches >= 2,
                "{name}: went down and back up ({switches} switches)"
            );
        }
    }
}
