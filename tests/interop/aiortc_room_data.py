"""A room member whose data channels are aiortc's (PyPI, pinned in requirements.txt), for the
data-channel interop test (tests/e2e/data_channels.rs). Run with the interop venv's python.

  aiortc_room_data.py WS_URL TOKEN SECONDS TEXT

Joins over the signaling WebSocket (docs/PROTOCOL.md), offers a peer connection that carries
only the `shardcast` data channel (its SCTP is aiortc's own, in Python), sends TEXT on it
once it opens, and reports what the room sends back. Meant for a token without canSubscribe,
so that no server offers come; one that does come is answered all the same.

Prints one JSON object per line on stdout: {"event": "open"} when the channel opens,
{"event": "data", "from": identity, "text": ..., "binary": ...} per room-data message
(`binary`: how it arrived; `text`: the payload if the envelope says text, else null),
{"event": "garbage", ...} for a message that is not an envelope; exits 0 after SECONDS,
2 on a signaling error. ICE gathers 127.0.0.1 only, with no STUN server.
"""

import asyncio
import json
import sys

import aioice.ice
import websockets
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def say(**kv):
    print(json.dumps(kv), flush=True)


def open_envelope(b):
    """version 1 | flags (bit 0: text) | u16 identity length | identity | payload."""
    if len(b) < 4 or b[0] != 1:
        return None
    n = int.from_bytes(b[2:4], "big")
    if len(b) < 4 + n:
        return None
    return b[4 : 4 + n].decode(), bool(b[1] & 1), b[4 + n :]


async def run(url, token, seconds, text):
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "join", "token": token}))
        while True:
            m = json.loads(await ws.recv())
            if m["type"] == "joined":
                break
            if m["type"] == "error":
                say(event="error", message=m)
                return 2
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        channel = pc.createDataChannel("shardcast")

        @channel.on("open")
        def on_open():
            say(event="open")
            channel.send(text)

        @channel.on("message")
        def on_message(msg):
            binary = isinstance(msg, bytes)
            e = open_envelope(msg if binary else msg.encode())
            if e is None:
                say(event="garbage", binary=binary)
                return
            who, is_text, payload = e
            say(
                event="data",
                binary=binary,
                text=payload.decode() if is_text else None,
                **{"from": who},
            )

        await pc.setLocalDescription(await pc.createOffer())
        await ws.send(json.dumps({"type": "offer", "sdp": pc.localDescription.sdp}))
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        next_ping = loop.time() + 10
        while loop.time() < end:
            if loop.time() >= next_ping:
                await ws.send(json.dumps({"type": "ping"}))
                next_ping += 10
            try:
                m = json.loads(await asyncio.wait_for(ws.recv(), timeout=1.0))
            except asyncio.TimeoutError:
                continue
            kind = m.get("type")
            if kind == "answer":
                await pc.setRemoteDescription(RTCSessionDescription(m["sdp"], "answer"))
                say(event="answered")
            elif kind == "offer":
                await pc.setRemoteDescription(RTCSessionDescription(m["sdp"], "offer"))
                await pc.setLocalDescription(await pc.createAnswer())
                await ws.send(json.dumps({"type": "answer", "sdp": pc.localDescription.sdp}))
            elif kind == "error":
                say(event="error", message=m)
        say(event="done", pc=pc.connectionState)
        await ws.send(json.dumps({"type": "leave"}))
        await pc.close()
        return 0


if __name__ == "__main__":
    url, token, seconds, text = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    sys.exit(asyncio.run(run(url, token, seconds, text)))
