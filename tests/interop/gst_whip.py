#!/usr/bin/python3
"""A WHIP publisher or WHEP player around GStreamer's webrtcbin (Debian 12's GStreamer 1.22
has no whipsink/whepsrc), for the interop tests (tests/e2e/interop_gst.rs).

  gst_whip.py publish URL TOKEN SECONDS   VP8 (vp8enc) + Opus from test sources
  gst_whip.py play    URL TOKEN SECONDS   recvonly audio + video, decoded (decodebin)

URL is the WHIP or WHEP endpoint. The offer is sent complete (non-trickle, as RFC 9725
clients do without PATCH), with bundle-policy max-bundle. ICE uses only 127.0.0.1 (libnice
is given that one local address) and no STUN server, so nothing leaves the machine.

DTLS certificate: GStreamer 1.22 generates RSA certificates only, and Shardcast's DTLS
(str0m 0.25 / dimpl 0.9) accepts ECDSA ones only (its CertificateRequest offers ECDSA
signature algorithms, and the handshake fails with an RSA one). So this client makes an
ECDSA P-256 certificate with openssl(1) and hands it to webrtcbin's DTLS decoder ("pem").
webrtcbin 1.22 then writes a wrong a=fingerprint (it hashes the key too), so the offer sent
carries the certificate's real SHA-256 fingerprint instead.

Prints one JSON object per line on stdout: {"event": ...} on state changes and
{"event": "tick", "t": seconds since the answer, "frames": video frames decoded or sent,
"audio": audio buffers, "ice": ..., "pc": ...} every second; exits 0 after SECONDS, 2 on
an HTTP or negotiation error, 3 if the connection failed or closed. Never retries.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("Nice", "0.1")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC, Nice  # noqa: E402


def say(**kv):
    print(json.dumps(kv), flush=True)


def ecdsa_certificate():
    """A fresh self-signed ECDSA P-256 certificate and key (PEM), and its SHA-256
    fingerprint as SDP writes it."""
    with tempfile.TemporaryDirectory() as d:
        key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
             "-days", "2", "-subj", "/CN=shardcast-interop"],
            check=True, capture_output=True,
        )
        cert_pem, key_pem = open(cert).read(), open(key).read()
    body = cert_pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
    digest = hashlib.sha256(base64.b64decode("".join(body.split()))).hexdigest().upper()
    fingerprint = ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))
    return cert_pem + key_pem, fingerprint


class Session:
    def __init__(self, mode, url, token, seconds):
        self.mode, self.url, self.token, self.seconds = mode, url, token, seconds
        self.loop = GLib.MainLoop()
        self.frames = 0
        self.audio = 0
        self.answered_at = None
        self.exit_code = 0
        self.offered = False
        self.pem, self.fingerprint = ecdsa_certificate()
        self.pipe = Gst.Pipeline.new("interop")
        self.pipe.connect("deep-element-added", self.on_element)
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        self.pipe.add(self.webrtc)
        # Kept for the whole run: PyGObject drops a reference too many when its wrapper of
        # the ICE agent is collected, and webrtcbin then crashes on a freed agent.
        self.ice = self.webrtc.get_property("ice-agent")
        self.ice.set_property("ice-tcp", False)
        self.nice = self.ice.get_property("agent")
        loopback = Nice.Address.new()
        loopback.set_from_string("127.0.0.1")
        self.nice.add_local_address(loopback)
        if mode == "publish":
            self.add_sources()
        else:
            self.add_receivers()
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::ice-connection-state", self.on_state)
        self.webrtc.connect("notify::connection-state", self.on_state)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    def add_sources(self):
        video = Gst.parse_bin_from_description(
            "videotestsrc is-live=true pattern=ball ! "
            "video/x-raw,width=320,height=240,framerate=30/1 ! "
            "identity name=sent signal-handoffs=true ! "
            "vp8enc deadline=1 target-bitrate=300000 keyframe-max-dist=60 ! "
            "rtpvp8pay pt=96 ! "
            'capsfilter caps="application/x-rtp,media=video,encoding-name=VP8,payload=96"',
            True,
        )
        audio = Gst.parse_bin_from_description(
            "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! "
            "opusenc ! rtpopuspay pt=111 ! "
            'capsfilter caps="application/x-rtp,media=audio,encoding-name=OPUS,payload=111"',
            True,
        )
        for bin_ in (video, audio):
            self.pipe.add(bin_)
            bin_.link(self.webrtc)
        video.get_by_name("sent").connect("handoff", self.count_video)

    def add_receivers(self):
        for caps in (
            "application/x-rtp,media=video,encoding-name=VP8,payload=96,clock-rate=90000",
            "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,"
            "encoding-params=(string)2",
        ):
            self.webrtc.emit(
                "add-transceiver",
                GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY,
                Gst.Caps.from_string(caps),
            )
        self.webrtc.connect("pad-added", self.on_pad)

    def on_pad(self, _webrtc, pad):
        if pad.direction != Gst.PadDirection.SRC:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self.on_decoded)
        self.pipe.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def on_decoded(self, _decodebin, pad):
        name = pad.get_current_caps().get_structure(0).get_name()
        if name.startswith("video/"):
            desc = "videoconvert ! fakesink name=sink signal-handoffs=true sync=false"
            count = self.count_video
        else:
            desc = "audioconvert ! fakesink name=sink signal-handoffs=true sync=false"
            count = self.count_audio
        sink = Gst.parse_bin_from_description(desc, True)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        sink.get_by_name("sink").connect("handoff", count)
        say(event="decoding", caps=name)

    def count_video(self, *_):
        self.frames += 1

    def count_audio(self, *_):
        self.audio += 1

    def on_element(self, _bin, _parent, element):
        factory = element.get_factory()
        if factory is not None and factory.get_name() == "dtlsdec":
            element.set_property("pem", self.pem)

    def on_negotiation_needed(self, _webrtc):
        # Linking each source pad asks again; one complete offer is all WHIP takes.
        if self.offered:
            return
        self.offered = True
        promise = Gst.Promise.new_with_change_func(self.on_offer, None)
        self.webrtc.emit("create-offer", None, promise)

    def on_offer(self, promise, _):
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        if offer is None:
            say(event="error", where="create-offer", error=reply.to_string() if reply else None)
            self.stop(2)
            return
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())

    def on_gathering(self, *_):
        state = self.webrtc.get_property("ice-gathering-state")
        if state == GstWebRTC.WebRTCICEGatheringState.COMPLETE and self.answered_at is None:
            GLib.idle_add(self.post_offer)

    def post_offer(self):
        offer = self.webrtc.get_property("local-description").sdp.as_text()
        offer = "".join(
            "a=fingerprint:sha-256 " + self.fingerprint + "\r\n"
            if line.startswith("a=fingerprint:")
            else line
            for line in offer.splitlines(keepends=True)
        )
        say(event="offer", sdp=offer)
        req = urllib.request.Request(
            self.url,
            data=offer.encode(),
            method="POST",
            headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/sdp"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                answer = r.read().decode()
                say(event="answer", status=r.status, location=r.headers.get("Location"), sdp=answer)
        except Exception as e:  # an HTTP error or refused connection ends the run
            say(event="error", where="POST", error=str(e))
            self.stop(2)
            return False
        ok, sdp = GstSdp.SDPMessage.new_from_text(answer)
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        self.webrtc.emit("set-remote-description", desc, Gst.Promise.new())
        self.answered_at = time.monotonic()
        GLib.timeout_add(1000, self.tick)
        return False

    def on_state(self, *_):
        ice = self.webrtc.get_property("ice-connection-state").value_nick
        pc = self.webrtc.get_property("connection-state").value_nick
        say(event="state", ice=ice, pc=pc)
        if ice in ("failed", "closed") or pc in ("failed", "closed"):
            self.stop(3)

    def tick(self):
        t = time.monotonic() - self.answered_at
        say(
            event="tick",
            t=round(t, 1),
            frames=self.frames,
            audio=self.audio,
            ice=self.webrtc.get_property("ice-connection-state").value_nick,
            pc=self.webrtc.get_property("connection-state").value_nick,
        )
        if t >= self.seconds:
            self.stop(0)
            return False
        return True

    def on_error(self, _bus, msg):
        err, debug = msg.parse_error()
        say(event="error", where="pipeline", error=str(err), debug=debug)
        self.stop(2)

    def stop(self, code):
        if self.exit_code == 0:
            self.exit_code = code
        GLib.idle_add(self.loop.quit)

    def run(self):
        self.pipe.set_state(Gst.State.PLAYING)
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        return self.exit_code


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("publish", "play"):
        print(__doc__, file=sys.stderr)
        return 64
    Gst.init(None)
    mode, url, token, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    return Session(mode, url, token, seconds).run()


if __name__ == "__main__":
    sys.exit(main())
