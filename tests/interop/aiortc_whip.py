"""A WHIP publisher or WHEP player with aiortc (PyPI, pinned in requirements.txt), for the
interop tests (tests/e2e/interop_aiortc.rs). Run with the interop venv's python.

  aiortc_whip.py publish URL TOKEN SECONDS POLICY   synthetic video (VP8 or H.264, as the
                                                     answer picks) + audio (Opus)
  aiortc_whip.py play    URL TOKEN SECONDS POLICY   recvonly audio + video, decoded

POLICY is the RTCConfiguration bundle policy: balanced (aiortc's default) or max-bundle.
No ICE servers (aiortc's default is a public STUN server) and ICE gathers 127.0.0.1 only,
so nothing leaves the machine.

Prints one JSON object per line on stdout: {"event": ...} on state changes and
{"event": "tick", "t": seconds since the answer, "frames": video frames decoded or sent,
"audio": audio frames, "ice": ..., "pc": ...} every second; exits 0 after SECONDS, 2 on an
HTTP or negotiation error, 3 if the connection failed or closed. Never retries.
"""

import asyncio
import fractions
import json
import sys
import time
import urllib.request

import aioice.ice
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame

# aioice gathers every interface address but 127.0.0.1; the test server is on loopback
# and nothing else may be a target, so loopback is the only host address.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

VIDEO_RATE = 90000
AUDIO_RATE = 48000


def say(**kv):
    print(json.dumps(kv), flush=True)


class Counter:
    frames = 0
    audio = 0


class PacedTrack(MediaStreamTrack):
    """A track whose frames are due every `interval` seconds of real time."""

    def __init__(self, counter, interval):
        super().__init__()
        self.counter = counter
        self.interval = interval
        self.n = 0
        self.start = None

    async def next_frame(self):
        """Waits until frame number `self.n` (counted from 1) is due."""
        if self.start is None:
            self.start = time.monotonic()
        self.n += 1
        wait = self.start + self.n * self.interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)


class MovingPicture(PacedTrack):
    """320x240 at 30 fps, each frame one grey level that changes, so every frame differs."""

    kind = "video"

    def __init__(self, counter):
        super().__init__(counter, 1 / 30)

    async def recv(self):
        await self.next_frame()
        frame = VideoFrame(width=320, height=240, format="yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(self.n * 4) % 256]) * plane.buffer_size)
        frame.pts = self.n * (VIDEO_RATE // 30)
        frame.time_base = fractions.Fraction(1, VIDEO_RATE)
        self.counter.frames += 1
        return frame


class Tone(PacedTrack):
    """20 ms frames of a quiet square wave, paced in real time."""

    kind = "audio"

    def __init__(self, counter):
        super().__init__(counter, 0.02)

    async def recv(self):
        await self.next_frame()
        samples = AUDIO_RATE // 50
        frame = AudioFrame(format="s16", layout="mono", samples=samples)
        tone = b"".join(
            (2000 if (i // 24) % 2 else -2000).to_bytes(2, "little", signed=True)
            for i in range(samples)
        )
        frame.planes[0].update(tone)
        frame.sample_rate = AUDIO_RATE
        frame.pts = self.n * samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.counter.audio += 1
        return frame


async def consume(track, counter):
    while True:
        try:
            await track.recv()
        except MediaStreamError:
            say(event="track_ended", kind=track.kind)
            return
        if track.kind == "video":
            counter.frames += 1
        else:
            counter.audio += 1


def post(url, token, sdp):
    req = urllib.request.Request(
        url,
        data=sdp.encode(),
        method="POST",
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/sdp"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.headers.get("Location"), r.read().decode()


async def run(mode, url, token, seconds, policy):
    bundle = {"balanced": RTCBundlePolicy.BALANCED, "max-bundle": RTCBundlePolicy.MAX_BUNDLE}
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=bundle[policy]))
    counter = Counter()
    failed = asyncio.Event()
    tasks = []

    @pc.on("connectionstatechange")
    def on_state():
        say(event="state", ice=pc.iceConnectionState, pc=pc.connectionState)
        if pc.connectionState in ("failed", "closed"):
            failed.set()

    @pc.on("track")
    def on_track(track):
        say(event="decoding", kind=track.kind)
        tasks.append(asyncio.ensure_future(consume(track, counter)))

    if mode == "publish":
        pc.addTrack(Tone(counter))
        pc.addTrack(MovingPicture(counter))
    else:
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")

    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    say(event="offer", sdp=offer)
    try:
        status, location, answer = await asyncio.get_running_loop().run_in_executor(
            None, post, url, token, offer
        )
    except Exception as e:  # an HTTP error or refused connection ends the run
        say(event="error", where="POST", error=str(e))
        await pc.close()
        return 2
    say(event="answer", status=status, location=location, sdp=answer)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    except Exception as e:
        say(event="error", where="setRemoteDescription", error=str(e))
        await pc.close()
        return 2

    answered = time.monotonic()
    code = 0
    while True:
        try:
            await asyncio.wait_for(failed.wait(), timeout=1.0)
            code = 3
            break
        except asyncio.TimeoutError:
            pass
        t = time.monotonic() - answered
        say(
            event="tick",
            t=round(t, 1),
            frames=counter.frames,
            audio=counter.audio,
            ice=pc.iceConnectionState,
            pc=pc.connectionState,
        )
        if t >= seconds:
            break
    for task in tasks:
        task.cancel()
    await pc.close()
    return code


def main():
    if len(sys.argv) != 6 or sys.argv[1] not in ("publish", "play"):
        print(__doc__, file=sys.stderr)
        return 64
    if sys.argv[5] not in ("balanced", "max-bundle"):
        print("POLICY is balanced or max-bundle", file=sys.stderr)
        return 64
    mode, url, token, seconds, policy = sys.argv[1:]
    return asyncio.run(run(mode, url, token, float(seconds), policy))


if __name__ == "__main__":
    sys.exit(main())
