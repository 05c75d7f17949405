//! The transport's RTCP on a simulated network in virtual time: NACKs answered from the
//! shared history (with RTX, and with plain resends where RTX is not negotiated), keyframe
//! requests of many subscribers coalesced toward the publisher, sender reports that carry the
//! publisher's clock, and video paused (audio going on) while a subscriber's downlink cannot
//! carry the lowest layer.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use shardcast_rtp::rtcp::{parse_compound, RtcpPacket};
use shardcast_sfu::api::PauseReason;
use shardcast_sfu::CoreEvent;
use support::{ClientOptions, World};

/// Unique packets received over the span of sequence numbers seen (1.0: nothing missing).
fn delivered(seqs: &[u64]) -> f64 {
    let unique: BTreeSet<u64> = seqs.iter().copied().collect();
    let (Some(lo), Some(hi)) = (unique.first(), unique.last()) else {
        return 0.0;
    };
    unique.len() as f64 / (hi - lo + 1) as f64
}

#[test]
fn nacks_are_answered_from_the_history_with_rtx_or_plain_resends() {
    let mut w = World::new(5);
    let alice = w.add_publisher("alice", &[(None, 600)]);
    let with_rtx = w.add_subscriber("rtx");
    let plain = w.add_subscriber_with(
        "plain",
        ClientOptions {
            rtx: false,
            ..Default::default()
        },
    );
    for s in [with_rtx, plain] {
        w.downlink(s).loss = 0.05;
    }
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(with_rtx, alice);
    w.subscribe_all(plain, alice);
    w.run_for(Duration::from_secs(10));
    let s = w.core.stats();
    assert!(s.rtx_sent > 20, "lost packets were resent: {s:?}");
    for (idx, name) in [(with_rtx, "with RTX"), (plain, "without RTX")] {
        let v = w.video(idx);
        let ratio = delivered(&v.seqs);
        // 5% loss each way: without repair ~95% would arrive.
        assert!(ratio > 0.995, "{name}: {:.4} of the video delivered", ratio);
        assert_eq!(
            v.ssrcs.len(),
            1,
            "{name}: repairs arrive on the stream, not beside it"
        );
    }
}

#[test]
fn keyframe_requests_of_many_subscribers_reach_the_publisher_once() {
    let mut w = World::new(9);
    let alice = w.add_publisher("alice", &[(None, 300)]);
    let viewers: Vec<usize> = (0..5).map(|i| w.add_subscriber(&format!("v{i}"))).collect();
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    for v in &viewers {
        w.subscribe_all(*v, alice);
    }
    w.run_for(Duration::from_secs(2));
    let before = w.members[alice].client.keyframe_requests;
    // Every viewer loses its picture at the same moment and sends a PLI.
    for v in &viewers {
        let mid = *w.members[*v]
            .client
            .received
            .iter()
            .find(|(_, r)| !r.layers.is_empty())
            .expect("video")
            .0;
        w.members[*v].client.request_keyframe(mid);
    }
    w.run_for(Duration::from_millis(250));
    let after = w.members[alice].client.keyframe_requests;
    assert_eq!(after - before, 1, "five PLIs, one request to the publisher");
}

/// Sender reports (NTP, RTP timestamp) per SSRC found in SRTCP opened by `open`.
fn sender_reports(
    datagrams: &[Vec<u8>],
    mut open: impl FnMut(&[u8]) -> Option<Vec<u8>>,
) -> HashMap<u32, (u64, u32)> {
    let mut out = HashMap::new();
    for d in datagrams {
        let Some(plain) = open(d) else {
            continue;
        };
        for p in parse_compound(&plain).flatten() {
            if let RtcpPacket::SenderReport {
                ssrc, ntp, rtp_ts, ..
            } = p
            {
                out.insert(ssrc, (ntp, rtp_ts));
            }
        }
    }
    out
}

/// NTP time (2^-32 s units) a sender report maps RTP timestamp `x` to.
fn ntp_of(sr: (u64, u32), rate: u64, x: u32) -> i128 {
    let ticks = i128::from(x.wrapping_sub(sr.1) as i32);
    i128::from(sr.0) + (ticks << 32) / i128::from(rate)
}

#[test]
fn sender_reports_carry_the_publishers_clock_for_audio_and_video_alike() {
    let mut w = World::new(13);
    let alice = w.add_publisher("alice", &[(None, 400)]);
    // Its encoder holds each frame 40 ms: video leaves 40 ms after capture, audio at once.
    // Reports made from arrival times would put the two 40 ms apart; the publisher's own
    // reports keep them together.
    w.members[alice].client.video_capture_lag = Duration::from_millis(40);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    w.net.wiretap = Some(Vec::new());
    let timeouts_before = w.core.stats().peer_timeouts;
    w.run_for(Duration::from_secs(6));
    let tap = w.net.wiretap.take().unwrap_or_default();
    // The reports below are sent from peer timers; two peers' timers fire a bounded number
    // of times (str0m's, reports, feedback, NACKs), never once per turn.
    let fired = w.core.stats().peer_timeouts - timeouts_before;
    assert!(
        (6..=6 * 2 * 200).contains(&fired),
        "{fired} peer timeouts in 6 s for two peers"
    );
    let (server, alice_addr, bob_addr) = (
        w.server,
        w.members[alice].client.addr,
        w.members[bob].client.addr,
    );
    // Which SSRC is audio: the payload type in the clear RTP header (Opus is 111 here).
    let mut audio_ssrcs = BTreeSet::new();
    for (_, _, _, d) in &tap {
        if d.len() >= 12 && !(192..=223).contains(&d[1]) && d[1] & 0x7f == 111 {
            audio_ssrcs.insert(u32::from_be_bytes([d[8], d[9], d[10], d[11]]));
        }
    }
    let rtcp = |from, to| -> Vec<Vec<u8>> {
        tap.iter()
            .filter(|(_, s, d, b)| {
                *s == from && *d == to && b.len() > 1 && (192..=223).contains(&b[1])
            })
            .map(|t| t.3.clone())
            .collect()
    };
    let published = rtcp(alice_addr, server);
    let forwarded = rtcp(server, bob_addr);
    let theirs = sender_reports(&published, |d| {
        w.members[alice].client.open_rtcp_from_client(d)
    });
    let ours = sender_reports(&forwarded, |d| {
        w.members[bob].client.open_rtcp_from_server(d)
    });
    let pick = |m: &HashMap<u32, (u64, u32)>, audio: bool| {
        m.iter()
            .find(|(s, _)| audio_ssrcs.contains(s) == audio)
            .map(|(_, v)| *v)
            .expect("a sender report of each kind")
    };
    let (pa, pv) = (pick(&theirs, true), pick(&theirs, false));
    let (sa, sv) = (pick(&ours, true), pick(&ours, false));
    // Single layer, one segment: outgoing timestamps equal incoming ones, so each of our
    // reports must map a timestamp to the publisher's capture time plus one clock offset,
    // the same for audio and video.
    let offset_audio = ntp_of(sa, 48_000, pa.1) - ntp_of(pa, 48_000, pa.1);
    let offset_video = ntp_of(sv, 90_000, pv.1) - ntp_of(pv, 90_000, pv.1);
    let ms = |ntp: i128| ntp as f64 * 1000.0 / 4_294_967_296.0;
    assert!(
        (ms(offset_audio) - ms(offset_video)).abs() < 1.0,
        "audio and video map onto one clock: offsets {:.3} ms vs {:.3} ms",
        ms(offset_audio),
        ms(offset_video)
    );
}

#[test]
fn video_pauses_while_the_downlink_cannot_carry_the_lowest_layer_and_audio_goes_on() {
    let mut w = World::new(17);
    let alice = w.add_publisher("alice", &[(None, 400)]);
    let bob = w.add_subscriber("bob");
    assert!(w.run_until(Duration::from_secs(5), |w| w.all_connected()));
    w.subscribe_all(bob, alice);
    w.run_for(Duration::from_secs(3));
    let track = w.video_track(alice);
    let peer = w.members[bob].peer;
    let paused = |w: &World, want: bool| {
        w.events.iter().any(|(_, e)| {
            matches!(e, CoreEvent::VideoPaused { peer: p, track: t, paused, reason: PauseReason::Bandwidth } if *p == peer && *t == track && *paused == want)
        })
    };
    assert!(!paused(&w, true), "a clean link carries the video");
    // 150 kbit/s: audio (~40 kbit/s) fits, a 400 kbit/s video does not.
    w.downlink(bob).rate_bps = Some(150_000);
    assert!(
        w.run_until(Duration::from_secs(10), |w| paused(w, true)),
        "video paused for bandwidth"
    );
    w.run_for(Duration::from_secs(1));
    let audio = |w: &World| -> u64 {
        w.members[bob]
            .client
            .received
            .values()
            .filter(|r| r.audio)
            .map(|r| r.packets)
            .sum()
    };
    let (video_before, audio_before) = (w.video(bob).packets, audio(&w));
    w.run_for(Duration::from_secs(3));
    assert!(
        w.video(bob).packets - video_before < 5,
        "no video while paused: {} packets",
        w.video(bob).packets - video_before
    );
    assert!(
        audio(&w) - audio_before > 100,
        "audio goes on: {} packets in 3 s",
        audio(&w) - audio_before
    );
    // The link recovers: the video resumes (probes find the room again).
    w.downlink(bob).rate_bps = None;
    assert!(
        w.run_until(Duration::from_secs(15), |w| paused(w, false)),
        "video resumed"
    );
    let resumed = w.video(bob).packets;
    w.run_for(Duration::from_secs(2));
    assert!(w.video(bob).packets > resumed + 50, "video flows again");
}
