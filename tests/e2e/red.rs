//! Opus RED (RFC 2198) through the server with real browsers. A Chromium publisher sends
//! its microphone as RED (the server's answer lists RED first, which is what makes libwebrtc
//! send it); two receive-only Chromium viewers play it: one negotiates RED (Chromium's
//! default), the other has `audio/red` removed from its audio codec preferences
//! (`setCodecPreferences`, as an application would) and gets plain Opus, the primary
//! blocks the server cut out. Both must decode audio rather than conceal it.
//!
//! Which of them got RED is read from what arrived, not from getStats' codec: Chromium's
//! inbound-rtp (and outbound-rtp) `codecId` names the codec decoded (encoded), Opus in both
//! cases. A RED packet carries the frame and the one before it, so the RED viewer receives
//! about twice the payload bytes per packet the plain viewer does, and each viewer's own SDP
//! says what it negotiated.

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use shardcast_tests::chromium::Browser;
use shardcast_tests::server::Server;
use shardcast_tests::wait_for;

/// Audio RTP stats of the page's peer connection, with each stream's codec.
const AUDIO_STATS: &str = r#"(async () => {
  const out = [];
  if (!S.pc) return out;
  const r = await S.pc.getStats();
  r.forEach((s) => {
    if ((s.type !== "inbound-rtp" && s.type !== "outbound-rtp") || s.kind !== "audio") return;
    const c = s.codecId && r.get(s.codecId);
    out.push({
      type: s.type, codec: c ? c.mimeType.toLowerCase() : null,
      packets: s.packetsReceived || s.packetsSent || 0,
      bytes: s.bytesReceived || s.bytesSent || 0,
      samples: s.totalSamplesReceived || 0, concealed: s.concealedSamples || 0,
      energy: s.totalAudioEnergy || 0,
    });
  });
  return out;
})()"#;

/// Before joining: every offer and answer this page makes leaves RED out of its audio
/// transceivers' codecs.
const NO_RED: &str = r#"(() => {
  for (const m of ["createOffer", "createAnswer"]) {
    const orig = RTCPeerConnection.prototype[m];
    RTCPeerConnection.prototype[m] = function (...args) {
      const codecs = RTCRtpReceiver.getCapabilities("audio").codecs
        .filter((c) => c.mimeType.toLowerCase() !== "audio/red");
      for (const t of this.getTransceivers()) {
        if (!t.stopped && t.receiver.track.kind === "audio") t.setCodecPreferences(codecs);
      }
      return orig.apply(this, args);
    };
  }
  return RTCRtpReceiver.getCapabilities("audio").codecs.some((c) => c.mimeType.toLowerCase() === "audio/red");
})()"#;

/// The one stream of `type` with bytes flowing (the page's audio from the publisher).
fn audio(b: &mut Browser, kind: &str) -> anyhow::Result<Value> {
    let all = b.eval(AUDIO_STATS)?;
    Ok(all
        .as_array()
        .and_then(|a| {
            a.iter()
                .filter(|s| s["type"] == kind)
                .max_by_key(|s| s["bytes"].as_u64().unwrap_or(0))
                .cloned()
        })
        .unwrap_or(Value::Null))
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

fn report(server: &Server, browsers: &[&Browser]) -> String {
    let mut out = format!("--- server log (last 40):\n{}\n", server.log_tail(40));
    for b in browsers {
        out.push_str(&b.diagnostics());
        out.push('\n');
    }
    out
}

#[test]
fn a_red_and_a_plain_opus_viewer_both_play_a_red_publisher() -> anyhow::Result<()> {
    let server = Server::start()?;
    let mut alice = Browser::launch("alice", &server.page_url("red", "alice", "Alice"))?;
    let bob_url = format!("{}&publish=0", server.page_url("red", "bob", "Bob"));
    let mut bob = Browser::launch("bob", &bob_url)?;
    // Carol joins by hand, after RED is taken out of her codec preferences.
    let carol_url = format!("{}&publish=0", server.page_url("red", "carol", "Carol"))
        .replace("&autojoin=1", "");
    let mut carol = Browser::launch("carol", &carol_url)?;
    let red_capable = carol.eval(NO_RED)?;
    assert_eq!(red_capable, Value::Bool(true), "Chromium offers audio/red");
    carol.eval("join(), true")?;

    // The publisher sends audio.
    wait_for("alice sending audio", Duration::from_secs(30), || {
        let s = audio(&mut alice, "outbound-rtp")?;
        Ok((num(&s, "packets") > 100.0).then_some(()))
    })
    .map_err(|e| e.context(report(&server, &[&alice])))?;
    // The server's answer puts RED before Opus: what makes libwebrtc send RED. (Its
    // outbound-rtp stats name the encoder, Opus, either way: what arrives at the viewers
    // below is what shows RED was sent.)
    let answer = alice.eval("S.pc.remoteDescription.sdp")?;
    let answer = answer.as_str().unwrap_or("");
    assert!(
        answer
            .lines()
            .any(|l| l.starts_with("m=audio") && l.contains(" 63 111")),
        "the server's answer to alice lists RED first:\n{answer}"
    );

    let mut bytes_per_packet = Vec::new();
    for b in [&mut bob, &mut carol] {
        let name = b.name.clone();
        let first = wait_for(
            &format!("{name} decoding alice's audio"),
            Duration::from_secs(30),
            || {
                let s = audio(b, "inbound-rtp")?;
                Ok((num(&s, "samples") > 48_000.0).then_some(s))
            },
        )
        .map_err(|e| e.context(report(&server, &[b])))?;
        std::thread::sleep(Duration::from_secs(5));
        let last = audio(b, "inbound-rtp")?;
        let samples = num(&last, "samples") - num(&first, "samples");
        let concealed = num(&last, "concealed") - num(&first, "concealed");
        let packets = num(&last, "packets") - num(&first, "packets");
        let bytes = num(&last, "bytes") - num(&first, "bytes");
        eprintln!(
            "{name}: codec {}, {packets} packets ({:.0} bytes each), {samples} samples, \
             {concealed} concealed in 5 s",
            last["codec"],
            bytes / packets.max(1.0)
        );
        // 5 s of 48 kHz audio, played from packets rather than concealment.
        assert!(
            samples > 4.0 * 48_000.0,
            "{name}: only {samples} samples in 5 s"
        );
        assert!(
            concealed < samples * 0.1,
            "{name}: {concealed} of {samples} samples concealed\n{}",
            report(&server, &[b])
        );
        assert!(packets > 200.0, "{name}: {packets} packets in 5 s");
        assert!(
            num(&last, "energy") > 0.0,
            "{name}: silence decoded ({last})"
        );
        bytes_per_packet.push(bytes / packets);
    }
    let (red, plain) = (bytes_per_packet[0], bytes_per_packet[1]);
    assert!(
        (1.6..2.6).contains(&(red / plain)),
        "bob (RED) gets {red:.0} payload bytes per packet, carol (Opus) {plain:.0}: \
         RED should carry each frame twice, Opus once"
    );
    // What each viewer's own SDP says it negotiated for the server's audio.
    let local = |b: &mut Browser| -> anyhow::Result<String> {
        b.eval("S.pc.localDescription.sdp")?
            .as_str()
            .map(str::to_string)
            .context("local description")
    };
    assert!(
        local(&mut bob)?.contains(" red/48000/2"),
        "bob's answer has RED"
    );
    assert!(
        !local(&mut carol)?.to_lowercase().contains(" red/48000"),
        "carol's SDP has no RED"
    );
    Ok(())
}
