//! Two clients connected directly (str0m peer to peer) in virtual time: a simulcast publisher
//! and a receiver. Checks what the receiver's statistics claim against what was sent.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use common::{rtp_info, Pair};
use shardcast_client::{ClientConfig, TrackStats, VideoSpec};

const OPUS_PT: u8 = 111;
const VP8_PT: u8 = 96;
const LATENCY: Duration = Duration::from_millis(20);

fn publisher(time: shardcast_client::TimeBase) -> ClientConfig {
    ClientConfig::new("pub", 1, time)
        .with_audio()
        .with_video(VideoSpec::simulcast3())
}

fn viewer(time: shardcast_client::TimeBase) -> ClientConfig {
    ClientConfig::new("view", 2, time)
}

fn video(p: &Pair) -> TrackStats {
    let v: Vec<_> = p.b.stats().video_tracks().cloned().collect();
    assert_eq!(v.len(), 1, "one video track received");
    v[0].clone()
}

fn audio(p: &Pair) -> TrackStats {
    let a: Vec<_> = p.b.stats().audio_tracks().cloned().collect();
    assert_eq!(a.len(), 1, "one audio track received");
    a[0].clone()
}

#[test]
fn receiver_decodes_every_simulcast_layer_and_audio() {
    let mut p = Pair::connect(publisher, viewer, LATENCY);
    p.run_for(Duration::from_secs(5));

    let v = video(&p);
    assert_eq!(v.ssrcs.len(), 3, "one SSRC per layer peer to peer: {v:?}");
    let sent = p.a.stats().published.clone();
    for layer in 0..3 {
        // ~150 frames per layer in 5 s; the last few may still be in flight.
        assert!(
            sent.video_frames[layer] >= 145,
            "sent {:?}",
            sent.video_frames
        );
        assert!(
            v.decodable_per_layer[layer] + 3 >= sent.video_frames[layer],
            "layer {layer}: decodable {} of {} sent",
            v.decodable_per_layer[layer],
            sent.video_frames[layer]
        );
    }
    assert_eq!(v.frames_decodable, v.frames_complete);
    assert!(
        v.keyframes >= 3 * 3,
        "keyframes every 2 s per layer: {}",
        v.keyframes
    );
    assert_eq!(v.missing, 0);
    assert_eq!(v.picture_id_violations, 0);
    assert_eq!(v.tl0_violations, 0);
    assert_eq!(v.payload_errors, 0);
    assert_eq!(v.layer_switches, 0, "each SSRC carries one layer");
    assert_eq!(v.source_ids, BTreeSet::from([p.a.config().source_id()]));

    let a = audio(&p);
    assert!(a.audio_packets >= 245, "50 packets/s: {}", a.audio_packets);
    assert!(a.audio_packets <= p.a.stats().published.audio_packets);
    assert!(
        a.last_audio_level.is_some(),
        "audio level extension arrives"
    );
    assert_eq!(a.missing, 0);
    assert_eq!(a.payload_errors, 0);
}

#[test]
fn latency_is_the_link_delay() {
    let mut p = Pair::connect(publisher, viewer, LATENCY);
    p.run_for(Duration::from_secs(2));
    let a = audio(&p);
    let lat = &a.latency;
    assert!(lat.count >= 90);
    // Virtual time: no clock skew, no queueing for audio; str0m may pace a little.
    assert!(lat.min_us >= 20_000, "min {} µs", lat.min_us);
    assert!(
        lat.quantile(0.5).unwrap() < 40_000,
        "p50 {:?}",
        lat.quantile(0.5)
    );
    let v = video(&p);
    assert!(v.latency.min_us >= 20_000 && v.latency.count > 0);
}

#[test]
fn drained_latency_samples_are_handed_over_once() {
    let mut p = Pair::connect(publisher, viewer, LATENCY);
    p.run_for(Duration::from_secs(1));
    let kept: u64 =
        p.b.stats()
            .tracks
            .values()
            .map(|t| t.latency.samples.len() as u64)
            .sum();
    let mut drained = Vec::new();
    p.b.drain_latency_samples(|us| drained.push(us));
    assert!(kept > 50, "{kept} samples kept");
    assert_eq!(drained.len() as u64, kept);
    assert!(
        drained.iter().all(|us| *us >= 20_000),
        "below the link delay"
    );
    // A second drain hands over only what arrived since; totals are untouched.
    let mut again = 0;
    p.b.drain_latency_samples(|_| again += 1);
    assert_eq!(again, 0);
    p.run_for(Duration::from_millis(200));
    p.b.drain_latency_samples(|_| again += 1);
    assert!(again > 0);
    let count: u64 = p.b.stats().tracks.values().map(|t| t.latency.count).sum();
    assert_eq!(count, kept + again);
}

#[test]
fn dropped_audio_packets_are_counted_as_gaps() {
    let mut p = Pair::connect(publisher, viewer, LATENCY);
    p.run_for(Duration::from_millis(500));
    // Drop audio packets 10, 30, 31, 32 and 70 counted from now: 3 gaps, 5 missing.
    let seen = Rc::new(RefCell::new(0u32));
    let dropped = Rc::new(RefCell::new(Vec::new()));
    let (s, d) = (seen.clone(), dropped.clone());
    p.drop_a_to_b = Some(Box::new(move |dg| {
        let Some(info) = rtp_info(dg).filter(|i| i.pt == OPUS_PT) else {
            return false;
        };
        let n = *s.borrow();
        *s.borrow_mut() += 1;
        let drop = [10, 30, 31, 32, 70].contains(&n);
        if drop {
            d.borrow_mut().push(info.seq);
        }
        drop
    }));
    p.run_for(Duration::from_secs(3));
    assert_eq!(dropped.borrow().len(), 5);
    let a = audio(&p);
    assert_eq!(a.missing, 5, "{a:?}");
    assert_eq!(a.gaps, 3);
    assert_eq!(a.max_gap, 3);
    assert_eq!(a.repaired, 0, "audio is not retransmitted");
}

#[test]
fn dropped_video_packets_are_counted_and_repaired_by_rtx() {
    let mut p = Pair::connect(publisher, viewer, LATENCY);
    p.run_for(Duration::from_millis(500));
    // Drop every 37th original VP8 packet (not RTX, which has its own payload type).
    let count = Rc::new(RefCell::new((0u32, 0u64)));
    let c = count.clone();
    p.drop_a_to_b = Some(Box::new(move |dg| {
        if rtp_info(dg).is_none_or(|i| i.pt != VP8_PT) {
            return false;
        }
        let mut c = c.borrow_mut();
        c.0 += 1;
        let drop = c.0.is_multiple_of(37);
        c.1 += u64::from(drop);
        drop
    }));
    p.run_for(Duration::from_secs(3));
    p.drop_a_to_b = None;
    p.run_for(Duration::from_secs(1));

    let dropped = count.borrow().1;
    assert!(dropped > 20, "dropped {dropped}");
    let v = video(&p);
    assert_eq!(v.missing, dropped, "{v:?}");
    assert_eq!(v.repaired, dropped, "NACK + RTX repairs every loss");
    assert_eq!(v.unrepaired(), 0);
    assert_eq!(v.frames_incomplete, 0, "{v:#?}");
    assert_eq!(v.frames_decodable, v.frames_complete);
    assert_eq!(v.picture_id_violations, 0);
}

#[test]
fn unrepaired_loss_breaks_the_chain_until_a_keyframe() {
    // Without RTX repair (the retransmissions are dropped too) frames go missing and the
    // decode chain waits for a keyframe, which the receiver requests with a PLI.
    let mut p = Pair::connect(publisher, viewer, LATENCY);
    p.run_for(Duration::from_millis(300));
    let n = Rc::new(RefCell::new(0u32));
    let c = n.clone();
    p.drop_a_to_b = Some(Box::new(move |dg| {
        let Some(info) = rtp_info(dg) else {
            return false;
        };
        if info.pt == 97 {
            return true; // all RTX
        }
        if info.pt != VP8_PT {
            return false;
        }
        *c.borrow_mut() += 1;
        *c.borrow() == 40
    }));
    p.run_for(Duration::from_secs(1));
    let v = video(&p);
    assert_eq!(v.missing, 1);
    assert_eq!(v.unrepaired(), 1);
    assert!(v.frames_complete > v.frames_decodable, "{v:?}");
    assert!(p.b.stats().keyframe_requests_sent >= 1);
    assert!(p.a.stats().published.keyframe_requests >= 1);
    // After the keyframe the chain resumes: decoding continues to the end.
    let before = video(&p).frames_decodable;
    p.run_for(Duration::from_secs(1));
    assert!(video(&p).frames_decodable >= before + 80);
}

#[test]
fn an_inactive_layer_stops_arriving() {
    let mut p = Pair::connect(publisher, viewer, LATENCY);
    p.run_for(Duration::from_secs(1));
    p.a.set_layer_active(2, false);
    p.run_for(Duration::from_millis(200));
    let before = video(&p).packets_per_layer;
    p.run_for(Duration::from_secs(1));
    let after = video(&p).packets_per_layer;
    assert_eq!(after[2], before[2], "layer f stopped");
    assert!(after[0] > before[0] && after[1] > before[1], "others go on");
    p.a.set_layer_active(2, true);
    p.run_for(Duration::from_secs(1));
    let v = video(&p);
    assert!(v.packets_per_layer[2] > after[2], "layer f resumed");
    assert_eq!(
        v.frames_decodable, v.frames_complete,
        "resumes with a keyframe"
    );
}

#[test]
fn single_layer_video_has_no_rids() {
    let mut p = Pair::connect(
        |t| ClientConfig::new("pub", 5, t).with_video(VideoSpec::single(800_000)),
        viewer,
        LATENCY,
    );
    p.run_for(Duration::from_secs(2));
    let v = video(&p);
    assert_eq!(v.ssrcs.len(), 1);
    assert!(v.frames_decodable >= 55, "{v:?}");
    assert_eq!(p.b.stats().audio_tracks().count(), 0);
}

#[test]
fn a_subscribe_only_client_receives_media_added_by_renegotiation() {
    // The SFU flow: the viewer offers first with nothing to publish (a data channel), and
    // media arrives later in an offer from the other side.
    let mut p = Pair::new(publisher, viewer, LATENCY);
    p.offer_from_b();
    p.wait_connected();
    assert!(p.a.video_mid().is_none());
    p.offer_from_a();
    assert!(p.a.video_mid().is_some() && p.a.audio_mid().is_some());
    p.run_for(Duration::from_secs(2));
    let v = video(&p);
    assert_eq!(v.track_id.as_deref(), Some("pub-video"));
    assert!(p.b.stats().track_by_id("pub-audio").is_some());
    assert_eq!(p.b.stats().tracks_from(p.a.config().source_id()).count(), 2);
    assert!(v.decodable_per_layer[..3].iter().all(|n| *n >= 50), "{v:?}");
    assert!(audio(&p).audio_packets >= 90);
    assert!(matches!(
        p.a.create_offer(p.now),
        Err(shardcast_client::ClientError::NothingToOffer)
    ));
}

#[test]
fn offer_declares_simulcast_rtx_transport_cc_and_audio_level() {
    let start = std::time::Instant::now();
    let time = shardcast_client::TimeBase::virtual_at(start);
    let mut c =
        shardcast_client::Client::new(publisher(time), common::A_ADDR.parse().unwrap(), start)
            .unwrap();
    let sdp = c.create_offer(start).unwrap();
    for needle in [
        "a=simulcast:send q;h;f",
        "a=rid:q send",
        "a=rid:f send",
        "a=rtpmap:111 opus/48000/2",
        "a=rtpmap:96 VP8/90000",
        "a=fmtp:97 apt=96",
        "transport-wide-cc",
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=sendonly",
        "a=msid:pub pub-video",
    ] {
        assert!(sdp.contains(needle), "offer lacks {needle}:\n{sdp}");
    }
    assert!(
        !sdp.contains("m=application"),
        "a publisher needs no data channel"
    );
}

#[test]
fn h264_simulcast_is_received_and_decoded() {
    let mut p = Pair::connect(
        |t| {
            ClientConfig::new("pub", 9, t)
                .with_video(VideoSpec::simulcast3().with_codec(shardcast_client::VideoCodec::H264))
        },
        viewer,
        LATENCY,
    );
    p.run_for(Duration::from_secs(2));
    let v = video(&p);
    assert_eq!(v.ssrcs.len(), 3);
    assert_eq!(v.payload_errors, 0, "{v:?}");
    assert!(v.decodable_per_layer[..3].iter().all(|n| *n >= 55), "{v:?}");
    assert!(v.keyframes >= 3);
}

#[test]
fn garbage_datagrams_are_counted_and_the_call_goes_on() {
    let mut p = Pair::connect(publisher, viewer, LATENCY);
    p.run_for(Duration::from_secs(1));
    let before = video(&p).frames_decodable;
    let (from, to) = (
        common::A_ADDR.parse().unwrap(),
        common::B_ADDR.parse().unwrap(),
    );
    let mut rng = fastrand::Rng::with_seed(3);
    for i in 0..200 {
        let len = rng.usize(0..1500);
        let mut junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        // Half of it looks like RTP or DTLS on the first byte, to reach deeper parsers.
        if i % 2 == 0 && !junk.is_empty() {
            junk[0] = if i % 4 == 0 { 0x80 } else { 22 };
        }
        let now = p.now;
        p.b.handle_datagram(now, from, to, &junk);
    }
    p.run_for(Duration::from_secs(1));
    assert!(p.b.stats().datagrams_rejected > 0);
    assert!(p.b.error().is_none(), "{:?}", p.b.error());
    assert!(
        video(&p).frames_decodable >= before + 80,
        "the call keeps flowing"
    );
}

/// Keeps only payload type `keep` (and its RTX) among the video codecs of `sdp`, as an
/// answerer that supports a single profile would answer.
fn keep_only_video_pt(sdp: &str, keep: &str) -> String {
    let rtx_of_keep: Vec<String> = sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a=fmtp:"))
        .filter(|l| l.ends_with(&format!("apt={keep}")))
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect();
    let mut kept = vec![keep.to_string()];
    kept.extend(rtx_of_keep);
    let mut in_video = false;
    let mut out = Vec::new();
    for line in sdp.split("\r\n") {
        if line.starts_with("m=") {
            in_video = line.starts_with("m=video");
            if in_video {
                let mut parts: Vec<&str> = line.split(' ').take(3).collect();
                parts.extend(kept.iter().map(String::as_str));
                out.push(parts.join(" "));
                continue;
            }
        }
        let pt_line = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .find_map(|p| line.strip_prefix(p))
            .and_then(|rest| rest.split(' ').next());
        if in_video && pt_line.is_some_and(|pt| !kept.iter().any(|k| k == pt)) {
            continue;
        }
        out.push(line.to_string());
    }
    out.join("\r\n")
}

#[test]
fn the_publisher_sends_the_payload_type_the_answer_kept() {
    let mut p = Pair::new(
        |t| {
            ClientConfig::new("pub", 9, t).with_video(
                VideoSpec::single(300_000).with_codec(shardcast_client::VideoCodec::H264),
            )
        },
        viewer,
        LATENCY,
    );
    let offer = p.a.create_offer(p.now).unwrap();
    // The last H264 payload type with packetization-mode 1 is not the publisher's first pick.
    let keep = offer
        .lines()
        .filter_map(|l| l.strip_prefix("a=fmtp:"))
        .filter(|l| l.contains("packetization-mode=1"))
        .filter_map(|l| l.split(' ').next())
        .next_back()
        .unwrap()
        .to_string();
    let answer = p.b.accept_offer(p.now, &offer).unwrap();
    let answer = keep_only_video_pt(&answer, &keep);
    p.a.accept_answer(p.now, &answer).unwrap();
    p.wait_connected();
    let sent_pts = Rc::new(RefCell::new(BTreeSet::new()));
    let s = sent_pts.clone();
    p.drop_a_to_b = Some(Box::new(move |dg| {
        if let Some(i) = rtp_info(dg) {
            s.borrow_mut().insert(i.pt.to_string());
        }
        false
    }));
    p.run_for(Duration::from_secs(1));
    assert!(
        sent_pts.borrow().contains(&keep),
        "{:?} vs {keep}",
        sent_pts.borrow()
    );
    let v = video(&p);
    assert!(v.frames_decodable >= 25, "{v:?}");
}

#[test]
fn count_only_viewers_count_packets_and_gaps_but_skip_payloads() {
    let mut p = Pair::connect(
        publisher,
        |t| {
            let mut c = viewer(t);
            c.verify_payloads = false;
            c
        },
        LATENCY,
    );
    p.run_for(Duration::from_secs(1));
    let v = video(&p);
    assert!(v.packets > 200);
    assert_eq!(v.ssrcs.len(), 3);
    assert_eq!(v.missing, 0);
    assert_eq!(
        (v.frames_complete, v.latency.count),
        (0, 0),
        "payloads not parsed"
    );
    assert!(audio(&p).audio_packets >= 45);
}

#[test]
fn five_percent_loss_both_ways_is_repaired_for_video() {
    let mut p = Pair::connect(publisher, viewer, LATENCY);
    p.run_for(Duration::from_millis(500));
    p.drop_a_to_b = Some(common::random_loss(1, 0.05));
    p.drop_b_to_a = Some(common::random_loss(2, 0.05));
    p.run_for(Duration::from_secs(5));
    p.drop_a_to_b = None;
    p.drop_b_to_a = None;
    p.run_for(Duration::from_secs(1));

    let v = video(&p);
    assert!(v.missing > 50, "loss happened: {}", v.missing);
    let sent: u64 = p.a.stats().published.video_packets.iter().sum();
    let delivered = v.packets - v.duplicates;
    assert!(
        delivered * 100 >= sent * 99,
        "delivered {delivered} of {sent}, unrepaired {}",
        v.unrepaired()
    );
    let a = audio(&p);
    assert!(
        a.missing > 0 && a.repaired == 0,
        "audio loss is not repaired"
    );
}

#[test]
fn glare_drops_our_offer_and_the_next_offer_carries_the_media_again() {
    let mut p = Pair::new(publisher, viewer, LATENCY);
    let _lost = p.a.create_offer(p.now).unwrap();
    // The viewer's offer arrives first and wins.
    p.offer_from_b();
    p.wait_connected();
    assert!(
        p.a.video_mid().is_none(),
        "the dropped offer's m-lines are gone"
    );
    p.offer_from_a();
    p.run_for(Duration::from_secs(1));
    assert!(video(&p).frames_decodable >= 25);
}

#[test]
fn media_keeps_flowing_across_an_ice_restart() {
    let mut p = Pair::connect(publisher, viewer, LATENCY);
    p.run_for(Duration::from_secs(1));
    let offer = p.b.ice_restart_offer(p.now).unwrap();
    assert!(offer.contains("a=ice-ufrag:"));
    let answer = p.a.accept_offer(p.now, &offer).unwrap();
    p.b.accept_answer(p.now, &answer).unwrap();
    let before = video(&p).frames_decodable;
    p.run_for(Duration::from_secs(1));
    assert!(video(&p).frames_decodable >= before + 80);
    assert!(p.a.is_connected() && p.b.is_connected());
}

#[test]
fn the_audio_level_follows_loudness_and_silence() {
    let mut p = Pair::connect(
        |t| ClientConfig::new("pub", 1, t).with_audio(),
        viewer,
        LATENCY,
    );
    p.a.set_loudness(5);
    p.run_for(Duration::from_millis(500));
    // RFC 6464 carries -dBov: 5..20 dB below full scale while speaking loudly.
    let loud = audio(&p).last_audio_level.unwrap();
    assert!((-20..=-5).contains(&loud), "{loud}");
    p.a.set_speaking(false);
    p.run_for(Duration::from_millis(500));
    let quiet = audio(&p).last_audio_level.unwrap();
    assert!(quiet <= -100, "{quiet}");
}
