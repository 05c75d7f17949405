#!/usr/bin/env python3
"""Writes the seed corpora, fuzz/corpus/<target>/<name>: a few real packets and messages per
target, taken from (or shaped as) the fixtures of the crates' tests. Run from anywhere:
`python3 fuzz/seeds.py`; the files are committed, this script is how to remake them.

Records (shardcast_fuzz::records): tag byte, big-endian u16 length, bytes."""

import base64
import hashlib
import hmac
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rec(*records):
    out = b""
    for tag, body in records:
        if isinstance(body, str):
            body = body.encode()
        out += bytes([tag]) + struct.pack(">H", len(body)) + body
    return out


def u16(v):
    return struct.pack(">H", v)


def u32(v):
    return struct.pack(">I", v)


# ---------------------------------------------------------------- RTP
def rtp(pt=96, seq=1, ts=3000, ssrc=0x5501A0B2, payload=b"", marker=False, ext=None,
        csrcs=(), padding=0):
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if ext else 0) | len(csrcs)
    out = bytes([b0, (0x80 if marker else 0) | pt]) + u16(seq) + u32(ts) + u32(ssrc)
    for c in csrcs:
        out += u32(c)
    if ext:
        profile, elems = ext
        while len(elems) % 4:
            elems += b"\0"
        out += u16(profile) + u16(len(elems) // 4) + elems
    out += payload
    if padding:
        out += b"\0" * (padding - 1) + bytes([padding])
    return out


# One-byte extensions (RFC 8285 §4.2): id << 4 | (len - 1). Ids as in rtp_packet.rs.
ONE_BYTE = (0xBEDE,
            bytes([0x10]) + b"0"                           # mid "0"
            + bytes([0x21]) + b"hi"                        # rid "hi"
            + bytes([0x51]) + u16(4242)                    # transport-cc seq
            + bytes([0x42]) + b"\x01\x02\x03"              # abs-send-time
            + bytes([0x60, 0xA5])                          # audio level: voice, 37 dBov
            + bytes([0x70, 0x01]))                         # video orientation
TWO_BYTE = (0x1000, bytes([1, 1]) + b"1" + bytes([5, 2]) + u16(7) + bytes([10, 3]) + b"\x80\x01\x02")

# RFC 7714 §16's plaintext (seq 0xf17b, SSRC 0x5501a0b2): the srtp unit tests' RTP_PLAIN.
RTP_PLAIN = bytes.fromhex("8040f17b8041f8d35501a0b2") + b"Gallia est omnis divisa in partes tres"
# ... and its AEAD_AES_128_GCM sealing (RTP_SEALED_128).
RTP_SEALED_128 = bytes.fromhex(
    "8040f17b8041f8d35501a0b2f24de3a3fb34de6cacba861c9d7e4bcabe633bd50d294e6f42a5f47a51c7d19b36de3adf"
    "8833899d7f27beb16a9152cf765ee4390cce")

# VP8 payloads (RFC 7741): X, S, PID 0; I (15-bit picture id), L, T; then a keyframe byte.
VP8_KEY = bytes([0x90, 0xE0, 0x80 | 0x12, 0x34, 0x05, 0x40]) + bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A])
VP8_DELTA = bytes([0x90, 0x80, 0x21]) + bytes([0x01, 0x00, 0x00])
VP8_SHORT = bytes([0x10]) + bytes([0x00, 0x02, 0x00])
# VP9 (draft-ietf-payload-vp9): I, B; 15-bit picture id; not P (keyframe), then the frame.
VP9_KEY = bytes([0x88, 0x80, 0x01, 0x82, 0x49, 0x83, 0x42, 0x00])
VP9_FLEX = bytes([0xD8, 0x80, 0x02, 0x01, 0x82, 0x49, 0x83])
# H.264 (RFC 6184): an IDR NAL, a STAP-A with SPS+PPS, FU-A start of an IDR, a non-IDR slice.
H264_IDR = bytes([0x65, 0x88, 0x84, 0x00])
H264_STAP = bytes([0x78]) + u16(4) + bytes([0x67, 0x42, 0xC0, 0x1F]) + u16(3) + bytes([0x68, 0xCE, 0x3C])
H264_FUA = bytes([0x7C, 0x85, 0x88, 0x84])
H264_P = bytes([0x41, 0x9A, 0x00])

for name, pkt in [
    ("plain", RTP_PLAIN),
    ("vp8_key_one_byte_ext", rtp(96, 100, 9000, payload=VP8_KEY, ext=ONE_BYTE, marker=True)),
    ("two_byte_ext", rtp(111, 7, 960, payload=b"\xfc\xff\xfe", ext=TWO_BYTE)),
    ("csrcs_padding", rtp(96, 8, 9000, payload=VP8_DELTA, csrcs=(1, 2), padding=4)),
    ("rtx", rtp(97, 9, 9000, payload=u16(100) + VP8_KEY, ext=ONE_BYTE)),
]:
    write("rtp_packet", name, pkt)


# ---------------------------------------------------------------- RTCP
def rtcp(pt, count, body):
    while len(body) % 4:
        body += b"\0"
    return bytes([0x80 | count, pt]) + u16(len(body) // 4) + body


def report_block(ssrc):
    return u32(ssrc) + bytes([0x10, 0, 0, 5]) + u32(0x10010) + u32(20) + u32(0x12345678) + u32(0x100)


SR = rtcp(200, 1, u32(0x4D617273) + u32(0x4E545031) + u32(0x4E545032) + u32(0x2A) + u32(0xE930)
          + u32(0x4C756E61) + report_block(0x5501A0B2))
RR = rtcp(201, 1, u32(0x1234) + report_block(0x5501A0B2))
SDES = rtcp(202, 1, u32(0x1234) + bytes([1, 8]) + b"cname-01" + b"\0")
BYE = rtcp(203, 2, u32(0x1234) + u32(0x5678))
NACK = rtcp(205, 1, u32(0x1234) + u32(0x5501A0B2) + u16(30000) + u16(0xA005) + u16(30100) + u16(0))
PLI = rtcp(206, 1, u32(0x1234) + u32(0x5501A0B2))
FIR = rtcp(206, 4, u32(0x1234) + u32(0) + u32(0x5501A0B2) + bytes([7, 0, 0, 0]))
REMB = rtcp(206, 15, u32(0x1234) + u32(0) + b"REMB" + bytes([1, 0x0B, 0xD0, 0x90]) + u32(0x5501A0B2))


def twcc(base, chunks_and_deltas):
    # transport-cc (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1).
    chunks, deltas, count = chunks_and_deltas
    return rtcp(205, 15, u32(0x1234) + u32(0x5501A0B2) + u16(base) + u16(count)
                + bytes([0, 0, 1, 7]) + chunks + deltas)


# A run of 3 "received, small delta", a 2-bit status vector chunk of 7, and a run of
# 0x1fff "not received" (the hostile_rtcp test's absurd count).
TWCC = twcc(1000, (u16(0x2003) + u16(0xC000 | 0x1555), bytes([4, 8, 12]) + bytes([1] * 7), 10))
TWCC_ALL_LOST = twcc(0, (u16(0x1FFF), b"", 0x1FFF))
for name, pkt in [("sr", SR), ("rr_sdes", RR + SDES), ("bye", BYE), ("nack_pli", RR + NACK + PLI),
                  ("fir_remb", RR + FIR + REMB), ("twcc", TWCC), ("twcc_all_lost", RR + TWCC_ALL_LOST)]:
    write("rtcp_compound", name, pkt)

# ---------------------------------------------------------------- SRTP
# Profile byte (0 AES-CM-SHA1-80, 1 AES-128-GCM, 2 AES-256-GCM), then records:
# 0 open SRTP, 1 open SRTCP, 2 seal RTP + open, 3 seal RTCP + open.
for p in range(3):
    write("srtp_open", f"roundtrip_{p}", bytes([p]) + rec(
        (2, RTP_PLAIN), (2, rtp(96, 0xFFFF, 1, payload=VP8_KEY)), (2 | 4, rtp(96, 0, 2, payload=VP8_KEY)),
        (3, SR), (3, RR + NACK), (2, RTP_PLAIN)))
    write("srtp_open", f"forged_{p}", bytes([p]) + rec(
        (0, RTP_SEALED_128), (1, SR + b"\x80\x00\x05\xd4" + bytes(16)), (0, RTP_PLAIN)))

# ---------------------------------------------------------------- codecs
# Records: 0 keyframe detection, 1 VP8 descriptor + rewrite (bit 2: new segment),
# 2 stream rewriter packet (ssrc index, ms, seq, ts; bit 2: switch), 3 skip (ssrc index, seq).
write("codec_payload", "keyframes", rec(*[(0, p) for p in
                                           (VP8_KEY, VP8_DELTA, VP9_KEY, VP9_FLEX, H264_IDR, H264_STAP, H264_FUA, H264_P)]))
write("codec_payload", "vp8_switch", rec((1, VP8_KEY), (1, VP8_DELTA), (1 | 4, VP8_KEY), (1, VP8_SHORT)))
write("codec_payload", "rewrite_switch", rec(
    (2, bytes([0, 33]) + u16(100) + u32(3000)), (2, bytes([0, 33]) + u16(101) + u32(6000)),
    (3, bytes([0]) + u16(102)), (2, bytes([0, 33]) + u16(103) + u32(9000)),
    (2 | 4, bytes([1, 0]) + u16(50000) + u32(123456)), (2, bytes([0, 1]) + u16(104) + u32(12000)),
    (2, bytes([1, 33]) + u16(50001) + u32(126456)), (2, bytes([1, 33]) + u16(49990) + u32(120000))))

# ---------------------------------------------------------------- VP9 SVC
# vp9_payload records: tag 0 | step << 2 a VP9 payload (step * 750 ticks later), 1 a budget,
# 2 a preference, 3 time passes. An L3T3 publisher: keyframe picture (SS with three spatial
# layers and the T0 T2 T1 T2 group of frames), then inter pictures of each temporal layer.
def vp9(pid, sid, tid, key=False, begin=True, end=True, u=True, ss=False, tl0=1):
    b0 = 0x80 | 0x20 | (0 if key else 0x40) | (0x08 if begin else 0) | (0x04 if end else 0)
    b0 |= 0x02 if ss else 0
    out = bytes([b0, 0x80 | (pid >> 8), pid & 0xFF, tid << 5 | (0x10 if u else 0) | sid << 1 | (1 if sid else 0), tl0])
    if ss:
        out += bytes([2 << 5 | 0x10 | 0x08])
        for s in range(3):
            out += u16(320 << s) + u16(180 << s)
        out += bytes([4])
        for t, d in ((0, 4), (2, 1), (1, 2), (2, 1)):
            out += bytes([t << 5 | (0x10 if t < 2 else 0) | 1 << 2, d << 1])
    return out + b"\x33" * 6


SVC = [(0 | 4 << 2, vp9(100, 0, 0, key=True, ss=True)), (0, vp9(100, 1, 0, key=True)),
       (0, vp9(100, 2, 0, key=True))]
for i, tid in enumerate((2, 1, 2, 0, 2, 1, 2)):
    pid = 101 + i
    tl0 = 1 + (i + 1) // 4
    SVC += [(0 | 4 << 2, vp9(pid, 0, tid, tl0=tl0, begin=True, end=False)),
            (0, vp9(pid, 0, tid, tl0=tl0, begin=False, end=True)),
            (0, vp9(pid, 1, tid, tl0=tl0)), (0, vp9(pid, 2, tid, tl0=tl0)), (3, bytes([33]))]
write("vp9_payload", "l3t3", rec(*SVC))
write("vp9_payload", "budgets", rec(
    (1, bytes([0]) + u32(200_000)), (1, bytes([1]) + u32(700_000)), (2, bytes([2, 1, 0])),
    *SVC, (1, bytes([1]) + u32(50_000)), (3, bytes([250])), (2, bytes([2, 9, 1])), *SVC))
write("vp9_payload", "flexible", rec(
    (0 | 4 << 2, bytes([0x98, 0x80, 7, 0x00]) + b"\x33" * 4),
    (0 | 4 << 2, bytes([0xF8, 0x80, 8, 0x40, 0x03, 0x04]) + b"\x33" * 4),
    (0 | 4 << 2, bytes([0xD0, 9, 0x02]) + b"\x33" * 4)))

# red_payload: primary payload type, subscriber's payload type, then an RFC 2198 payload
# (libwebrtc's one redundant block, several blocks, primary only, an empty primary).
def red(pt, redundant, primary):
    hdr = b"".join(bytes([0x80 | pt]) + (off << 10 | len(d)).to_bytes(3, "big") for off, d in redundant)
    return hdr + bytes([pt]) + b"".join(d for _, d in redundant) + primary


OPUS_FRAME = bytes([0xFC, 0xFF, 0xFE]) + b"\x55" * 60
write("red_payload", "one_redundant", bytes([111, 109]) + red(111, [(960, OPUS_FRAME)], OPUS_FRAME))
write("red_payload", "two_redundant", bytes([111, 111]) + red(111, [(1920, OPUS_FRAME), (960, b"\xfc")], OPUS_FRAME))
write("red_payload", "primary_only", bytes([100, 96]) + red(100, [], OPUS_FRAME))
write("red_payload", "dtx_empty_primary", bytes([111, 63]) + red(111, [(960, b"\xf8")], b""))

# ---------------------------------------------------------------- shard datagrams
# Records: 0/1/2 raw from publisher/subscriber/stranger, 3/4 RTP/RTCP sealed by the publisher,
# 5/6 by the subscriber, 7 time passes. 0x535355xx: the publisher's xx-th SSRC; 0x535344xx:
# the xx-th SSRC the subscriber receives.
PUB, SUB = 0x53535500, 0x53534400
# RFC 5769 §2.1 sample binding request (USERNAME "evtj:h6vY", MESSAGE-INTEGRITY, FINGERPRINT).
STUN = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74"
    "002400046e0001ff80290008932ff9b151263b36000600096576746a3a68367659202020000800149aeaa70cbfd8"
    "cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf")
DTLS_HELLO = bytes([22, 0xFE, 0xFD, 0, 0]) + bytes(6) + u16(12) + bytes([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
write("shard_datagram", "raw", rec((0, STUN), (2, STUN), (0, DTLS_HELLO), (1, RTP_SEALED_128),
                                    (0, b"\x80\xc8" + bytes(30)), (2, b"\xff" * 40)))
write("shard_datagram", "publisher_media", rec(
    (3, rtp(96, 40000, 90000, PUB, VP8_KEY, ext=ONE_BYTE, marker=True)),
    (3, rtp(96, 40001, 93000, PUB, VP8_DELTA, ext=ONE_BYTE)),
    (3, rtp(97, 500, 93000, PUB + 1, u16(40000) + VP8_KEY, ext=ONE_BYTE)),
    (3, rtp(111, 300, 960, PUB + 2, b"\xfc\xff\xfe", ext=ONE_BYTE)),
    (4, rtcp(200, 0, u32(PUB) + bytes(20))),
    (7, bytes([20]))))
write("shard_datagram", "subscriber_feedback", rec(
    (6, rtcp(201, 1, u32(0x1234) + report_block(SUB))),
    (6, rtcp(201, 0, u32(0x1234)) + rtcp(205, 1, u32(0x1234) + u32(SUB) + u16(1) + u16(0xFFFF))),
    (6, rtcp(206, 1, u32(0x1234) + u32(SUB))),
    (6, rtcp(206, 4, u32(0x1234) + u32(0) + u32(SUB) + bytes([3, 0, 0, 0]))),
    (6, rtcp(206, 15, u32(0x1234) + u32(0) + b"REMB" + bytes([1, 0x0B, 0xD0, 0x90]) + u32(SUB))),
    (6, twcc(1, (u16(0x2003), bytes([4, 8, 12]), 3))[:4] + u32(0x1234) + u32(SUB) + twcc(1, (u16(0x2003), bytes([4, 8, 12]), 3))[12:]),
    (5, rtp(96, 1, 1, SUB, VP8_KEY)),
    (7, bytes([100]))))

# ---------------------------------------------------------------- SDP
FP = "sha-256 " + ":".join(["AB"] * 32)
CHROME = "\r\n".join([
    "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "a=group:BUNDLE 0 1", "a=extmap-allow-mixed", "a=msid-semantic: WMS stream",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:1 1 udp 2122260223 192.168.1.10 54321 typ host generation 0 network-id 1",
    "a=ice-ufrag:Zx9e", "a=ice-pwd:8ShSRhgsWjUVEqYxRgKsEMz4", "a=ice-options:trickle",
    f"a=fingerprint:{FP}", "a=setup:actpass", "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid", "a=sendrecv", "a=msid:stream audio0",
    "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1", "a=rtpmap:63 red/48000/2", "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000", "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000", "a=rtpmap:126 telephone-event/8000", "a=ssrc:1001 cname:abc",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Zx9e", "a=ice-pwd:8ShSRhgsWjUVEqYxRgKsEMz4", "a=ice-options:trickle",
    f"a=fingerprint:{FP}", "a=setup:actpass", "a=mid:1",
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:13 urn:3gpp:video-orientation",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    "a=sendrecv", "a=msid:stream video0", "a=rtcp-mux", "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 goog-remb", "a=rtcp-fb:96 transport-cc", "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack", "a=rtcp-fb:96 nack pli", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
    "a=rtpmap:98 VP9/90000", "a=rtcp-fb:98 nack", "a=rtcp-fb:98 nack pli", "a=fmtp:98 profile-id=0",
    "a=rtpmap:99 rtx/90000", "a=fmtp:99 apt=98",
    "a=rtpmap:102 H264/90000", "a=rtcp-fb:102 nack", "a=rtcp-fb:102 nack pli",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102",
    "a=rid:q send", "a=rid:h send", "a=rid:f send", "a=simulcast:send q;h;f", ""])
WHEP = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=ice-ufrag:abcd",
    "a=ice-pwd:abcdefghijklmnopqrstuvwx", f"a=fingerprint:{FP}", "a=setup:actpass", "a=mid:0",
    "a=recvonly", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "c=IN IP4 0.0.0.0", "a=ice-ufrag:abcd",
    "a=ice-pwd:abcdefghijklmnopqrstuvwx", f"a=fingerprint:{FP}", "a=setup:actpass", "a=mid:1",
    "a=recvonly", "a=rtcp-mux", "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96", ""])
DATA = "\r\n".join([
    "v=0", "o=- 2 2 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0", "a=ice-ufrag:wxyz",
    "a=ice-pwd:abcdefghijklmnopqrstuvwx", f"a=fingerprint:{FP}", "a=setup:active", "a=mid:0",
    "a=sctp-port:5000", "a=max-message-size:262144", ""])
write("sdp_offer", "chrome_simulcast", CHROME)
write("sdp_offer", "whep_recvonly", WHEP)
write("sdp_offer", "datachannel", DATA)
write("sdp_offer", "garbage", "v=0 nonsense")

# ---------------------------------------------------------------- WHIP
FRAG_TRICKLE = ("a=ice-options:trickle\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
                "a=mid:0\r\na=candidate:2 1 udp 2122260223 10.0.0.3 6000 typ host\r\na=end-of-candidates\r\n")
FRAG_RESTART = ("a=ice-options:trickle\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
                "a=mid:0\r\na=ice-ufrag:newu\r\na=ice-pwd:newpasswordnewpassword00\r\n"
                "a=candidate:3 1 udp 2122260223 10.0.0.4 7000 typ host\r\na=end-of-candidates\r\n")
write("whip_body", "post", rec((0, CHROME)))
write("whip_body", "trickle", rec((1, FRAG_TRICKLE),
                                   (1, "a=candidate:4 1 tcp 1518280447 10.0.0.5 9 typ host tcptype active\r\n")))
write("whip_body", "restart", rec((1, FRAG_RESTART), (1, FRAG_TRICKLE)))
write("whip_body", "bad", rec((0, b"\xff\xfe"), (1, "a=ice-ufrag:ab\r\na=ice-pwd:newpasswordnewpassword00"),
                               (1, "hello")))

# ---------------------------------------------------------------- signaling (docs/PROTOCOL.md)
for name, msg in [
    ("join", {"type": "join", "token": "eyJhbGciOiJIUzI1NiJ9.e30.sig", "password": "pw"}),
    ("offer", {"type": "offer", "sdp": WHEP, "ice_restart": False}),
    ("answer", {"type": "answer", "sdp": WHEP}),
    ("candidate", {"type": "candidate", "candidate": "candidate:1 1 udp 2122260223 10.0.0.2 5000 typ host",
                   "sdp_mid": "0"}),
    ("set_subscription", {"type": "set_subscription", "track": "1000000002a", "visible": True, "max_layer": 1}),
    ("chat", {"type": "chat", "text": "hello \u00e9\u4e16"}),
    ("mute", {"type": "mute", "track": "2a", "muted": True}),
    ("mute_participant", {"type": "mute_participant", "identity": "bob", "kind": "video"}),
    ("admit", {"type": "admit", "identity": "carol"}),
    ("ping", {"type": "ping"}),
    ("leave", {"type": "leave"}),
]:
    write("signaling_msg", name, json.dumps(msg))
write("signaling_msg", "unknown", '{"type":"join","token":"t","extra":1}')

# ---------------------------------------------------------------- REST (docs/API.md)
# First byte: body type (0 create room, 1 update room, 2 mute/pause, 3 permissions,
# 4 create tenant, 5 token request, 6 query string / path segment); bit 3: not JSON.
for name, kind, body in [
    ("create_room", 0, {"name": "standup", "password": "pw", "max_participants": 10,
                        "ask_before_join": True, "empty_timeout_secs": 300}),
    ("update_room", 1, {"password": None, "max_participants": 20, "ask_before_join": False}),
    ("mute", 2, {"muted": True}),
    ("permissions", 3, {"role": "host", "canPublish": True, "canSubscribe": True, "canChat": False,
                        "roomAdmin": True}),
    ("tenant", 4, {"id": "acme", "name": "Acme Inc."}),
    ("token", 5, {"identity": "alice", "name": "Alice", "role": "participant",
                  "grants": {"canPublish": True, "canSubscribe": True, "canChat": True, "roomAdmin": False},
                  "ttl_secs": 600}),
]:
    write("rest_body", name, bytes([kind]) + json.dumps(body).encode())
write("rest_body", "query", bytes([6]) + b"limit=50")
write("rest_body", "not_json", bytes([8]) + b'{"name":"x"}')

# ---------------------------------------------------------------- tokens
KID, SECRET = "AKfuzz0000000000000000", b"fuzz-signing-secret-0123456789abcdef"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(header, claims):
    msg = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    sig = hmac.new(SECRET, msg.encode(), hashlib.sha256).digest()
    return msg + "." + b64(sig)


HEADER = {"alg": "HS256", "typ": "JWT", "kid": KID}
CLAIMS = {"sub": "alice", "name": "Alice", "room": "room", "role": "participant",
          "grants": {"canPublish": True, "canSubscribe": True, "canChat": True, "roomAdmin": False},
          "exp": 4102444800, "nbf": 0, "iat": 0, "iss": KID}
write("token_verify", "valid", bytes([0x80]) + jwt(HEADER, CLAIMS).encode())
write("token_verify", "expired", bytes([0]) + jwt(HEADER, dict(CLAIMS, exp=1)).encode())
write("token_verify", "alg_none", bytes([0]) + (b64(b'{"alg":"none","kid":"%s"}' % KID.encode()) + "."
                                                 + b64(json.dumps(CLAIMS).encode()) + ".").encode())
write("token_verify", "claims", bytes([1]) + json.dumps(dict(CLAIMS, room="other")).encode())
write("token_verify", "header_claims", bytes([2]) + json.dumps(HEADER).encode() + b"\0"
      + json.dumps(CLAIMS).encode())
