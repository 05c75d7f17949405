// Shardcast demo page.
//
// Owns: the browser side of one call — the signaling WebSocket (docs/PROTOCOL.md, the
// only interface it may use), one RTCPeerConnection carrying both directions, the tile
// grid, chat, the participant list and host controls.
// Never: call the REST API (apart from the dev-mode token endpoint), or assume anything
// about the server beyond the protocol document.
//
// Automation hooks (used by the end-to-end tests in tests/e2e):
//   URL parameters  ?room=R&name=N[&identity=I][&token=T][&password=P][&autojoin=1]
//                   [&width=W&height=H] (camera capture size, default 1280x720)
//                   [&publish=0] (join receive-only)
//                   [&screen=1] (share the screen too, once joined)
//   window.shardcastStats()  -> Promise of a JSON-able summary (per remote track and per
//                               participant getStats() figures, chat log, room data
//                               received, participants)
//   window.shardcastSendData(text, lossy) -> whether it went out on the room-data channel
//   console line every second: "SHARDCAST_STATS {json}"
"use strict";

const params = new URLSearchParams(location.search);
const $ = (sel) => document.querySelector(sel);

// All mutable state of the page. Kept in one object so shardcastStats() can read it.
const S = {
  room: "", name: "", identity: "", token: "", password: "",
  ws: null, pc: null, session: null, me: null, joined: false, leaving: false,
  reconnects: 0,
  nodeLost: 0, // times the media node under our peer connection died or was drained (node_lost)
  participants: new Map(), // identity -> participant object
  tracks: new Map(), // track id -> { id, identity, kind, rids, muted }
  receivers: new Map(), // mid -> { mid, kind, track (MediaStreamTrack) }
  hidden: new Set(), // identities whose video we asked the server to pause
  bandwidthPaused: new Set(), // track ids whose video the server paused: our downlink is too thin
  codecMissing: new Set(), // track ids whose codec we did not negotiate: no video from them
  knocks: new Map(), // identity -> name (hosts only)
  egresses: new Map(), // egress id -> the room's recordings and HLS streams (docs/PROTOCOL.md, "Egress")
  chat: [], errors: [], events: [],
  data: [], // room data received: { from, label, text } (docs/PROTOCOL.md, "Data channels")
  channels: {}, // label -> our RTCDataChannel ("shardcast", "shardcast-lossy")
  localStream: null,
  screenStream: null, // our shared screen (getDisplayMedia), while sharing
  screenSenders: [], // its senders on S.pc
  renegotiate: false, // local tracks changed since our last offer
  sdpChain: Promise.resolve(), // serialises every SDP operation
};

// ---------------------------------------------------------------- status and helpers

function setStatus(text, state) {
  const el = $("#status");
  el.textContent = text;
  el.dataset.state = state || "idle";
}

function send(msg) {
  if (S.ws && S.ws.readyState === WebSocket.OPEN) S.ws.send(JSON.stringify(msg));
}

function isHost() {
  return !!S.me && S.me.role === "host";
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

function randomSuffix() {
  return Math.random().toString(36).slice(2, 6);
}

// The server queues SDP work per session; so do we, so an offer never overtakes an answer.
function queueSdp(fn) {
  S.sdpChain = S.sdpChain.then(fn).catch((e) => {
    console.error("sdp", e);
    S.errors.push({ code: "client_sdp", message: String(e) });
  });
  return S.sdpChain;
}

// Trickle ICE (docs/PROTOCOL.md): descriptions go out at once, candidates follow as they
// are gathered (TURN allocations take a while), each in a `candidate` message sent after
// the description that started the gathering.
function trickle(pc) {
  pc.onicecandidate = (ev) => {
    if (pc !== S.pc) return;
    const c = ev.candidate;
    send({ type: "candidate", candidate: c ? c.candidate : "", sdp_mid: c ? c.sdpMid : null });
  };
}

// mid -> { identity, track } from the a=msid lines of the remote description: the
// server writes msid "<participant identity> <track id>" (docs/PROTOCOL.md).
function msidByMid() {
  const out = new Map();
  const sdp = S.pc && S.pc.remoteDescription ? S.pc.remoteDescription.sdp : "";
  let mid = null;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith("m=")) mid = null;
    else if (line.startsWith("a=mid:")) mid = line.slice(6).trim();
    else if (line.startsWith("a=msid:") && mid !== null) {
      const [identity, track] = line.slice(7).trim().split(/\s+/);
      out.set(mid, { identity, track });
    }
  }
  return out;
}

// Which published track (and so which participant) a received transceiver carries.
function describeReceiver(r, msids) {
  const m = msids.get(r.mid);
  let info = m ? S.tracks.get(m.track) : undefined;
  if (!info && S.tracks.has(r.track.id)) info = S.tracks.get(r.track.id);
  if (!info && m) info = { id: m.track, identity: m.identity, kind: r.kind };
  return info;
}

// ---------------------------------------------------------------- joining

async function fetchToken() {
  if (S.token) return S.token;
  const q = new URLSearchParams({ room: S.room, identity: S.identity, name: S.name });
  const res = await fetch("/dev/token?" + q.toString());
  const body = await res.text();
  if (!res.ok) throw new Error("token request failed: " + res.status + " " + body);
  try {
    const json = JSON.parse(body);
    if (typeof json === "string") return json;
    if (json.token) return json.token;
  } catch (_) {
    // not JSON: the body is the token itself
  }
  return body.trim();
}

async function join() {
  S.room = $("#room").value.trim();
  S.name = $("#name").value.trim();
  S.password = $("#password").value;
  S.identity = params.get("identity") || S.name.toLowerCase().replace(/[^a-z0-9_-]+/g, "-") + "-" + randomSuffix();
  S.leaving = false;
  $("#join-btn").disabled = true;
  setStatus("getting a token…");
  try {
    S.token = await fetchToken();
  } catch (e) {
    setStatus(String(e.message || e), "error");
    $("#join-btn").disabled = false;
    return;
  }
  connect(null);
}

function connect(resumeSession) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(proto + "//" + location.host + "/v1/rtc");
  S.ws = ws;
  setStatus(resumeSession ? "reconnecting…" : "connecting…");
  ws.onopen = () => {
    const msg = { type: "join", token: S.token };
    if (S.password) msg.password = S.password;
    if (resumeSession) msg.resume = resumeSession;
    ws.send(JSON.stringify(msg));
  };
  ws.onmessage = (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (_) {
      console.error("bad message from server", ev.data);
      return;
    }
    handleMessage(msg);
  };
  ws.onclose = () => {
    if (ws !== S.ws) return;
    if (S.leaving || !S.joined) {
      if (!S.joined && !S.leaving && $("#status").dataset.state !== "error") setStatus("disconnected", "error");
      return;
    }
    // Lost the socket mid-call: resume the session within the server's grace period.
    if (S.reconnects < 5) {
      S.reconnects += 1;
      setStatus("connection lost, reconnecting…", "error");
      setTimeout(() => connect(S.session), 500 * S.reconnects);
    } else {
      setStatus("disconnected", "error");
    }
  };
}

function leave() {
  S.leaving = true;
  send({ type: "leave" });
  teardown("left the room");
}

function teardown(text) {
  S.joined = false;
  if (S.ws) S.ws.close();
  if (S.pc) S.pc.close();
  S.pc = null;
  if (S.localStream) S.localStream.getTracks().forEach((t) => t.stop());
  S.localStream = null;
  S.receivers.clear();
  $("#grid").replaceChildren();
  $("#call").hidden = true;
  $("#join-form").hidden = false;
  $("#join-btn").disabled = false;
  setStatus(text, "idle");
}

// ---------------------------------------------------------------- signaling messages

function handleMessage(msg) {
  S.events.push(msg.type);
  if (S.events.length > 200) S.events.shift();
  switch (msg.type) {
    case "joined": return onJoined(msg);
    case "waiting": return setStatus("waiting for a host to let you in…");
    case "denied": S.leaving = true; return teardown("a host denied entry" + (msg.reason ? ": " + msg.reason : ""));
    case "kicked": S.leaving = true; return teardown("removed from the room" + (msg.reason ? ": " + msg.reason : ""));
    case "node_lost": return onNodeLost(msg.reason);
    // The instance is stopping and closes the socket; onclose joins again (through another
    // instance behind the load balancer) as a new session.
    case "server_shutdown": return setStatus("server restarting, rejoining…", "error");
    case "knock": S.knocks.set(msg.identity, msg.name || msg.identity); return renderKnocks();
    case "answer": return queueSdp(() => onAnswer(msg.sdp));
    case "offer": return queueSdp(() => onServerOffer(msg.sdp));
    case "participant_joined": return onParticipantJoined(msg.participant);
    case "participant_left": return onParticipantLeft(msg.identity);
    case "track_published": S.tracks.set(msg.track.id, msg.track); return renderAll();
    case "track_unpublished": S.tracks.delete(msg.id); return renderAll();
    case "muted": return onMuted(msg);
    case "active_speaker": return onActiveSpeaker(msg.identity);
    case "video_paused": {
      const set = msg.reason === "codec" ? S.codecMissing : S.bandwidthPaused;
      if (msg.paused) set.add(msg.track); else set.delete(msg.track);
      return renderAll();
    }
    case "chat": return addChat(msg.message);
    case "egress": return onEgress(msg.egress);
    case "resync": return onResync(msg);
    case "error": return onError(msg);
    case "pong": return;
    default: console.warn("unknown message", msg);
  }
}

// Room events may have been lost between control-plane instances: the room's state now
// replaces ours (docs/PROTOCOL.md, "Several control-plane instances"). Media goes on.
function onResync(msg) {
  S.participants = new Map((msg.participants || []).map((p) => [p.identity, p]));
  if (S.me) S.participants.set(S.me.identity, S.me);
  S.tracks = new Map((msg.tracks || []).map((t) => [t.id, t]));
  S.chat = [];
  $("#chat-log").replaceChildren();
  (msg.chat || []).forEach(addChat);
  renderAll();
}

function onError(msg) {
  S.errors.push({ code: msg.code, message: msg.message });
  console.warn("server error", msg.code, msg.message);
  if (msg.code === "offer_glare") return; // our offer is re-sent after answering theirs
  if (msg.code === "server_shutdown" && S.joined && S.ws) {
    // Rejoining reached an instance that is still stopping: close, onclose tries again.
    S.ws.close();
    return;
  }
  if (!S.joined) {
    setStatus(msg.code + ": " + (msg.message || ""), "error");
    $("#join-btn").disabled = false;
    $("#join-form").hidden = false;
  }
}

async function onJoined(msg) {
  const resumed = S.joined && S.pc && msg.session === S.session;
  S.session = msg.session;
  S.me = msg.me;
  S.joined = true;
  S.reconnects = 0;
  S.participants = new Map((msg.participants || []).map((p) => [p.identity, p]));
  S.participants.set(msg.me.identity, msg.me);
  S.identity = msg.me.identity;
  S.tracks = new Map((msg.tracks || []).map((t) => [t.id, t]));
  S.iceServers = msg.ice_servers || [];
  if (!resumed) {
    S.chat = [];
    $("#chat-log").replaceChildren();
    (msg.chat || []).forEach(addChat);
  }
  $("#join-form").hidden = true;
  $("#call").hidden = false;
  setStatus("in room " + (msg.room && msg.room.name ? msg.room.name : msg.room || S.room) + " as " + S.me.name, "joined");
  renderAll();
  if (resumed) {
    // Same session, new socket: the network may have changed, so restart ICE.
    queueSdp(() => sendOffer(true));
    return;
  }
  if (S.pc) S.pc.close();
  S.receivers.clear();
  createPeerConnection();
  const published = await publishLocalMedia();
  if (!published) addReceiveOnly();
  queueSdp(() => sendOffer(false));
  if (published && params.get("screen") === "1") startScreenShare();
}

// The first offer creates our peer on the media node, so send one even with nothing to
// publish: receive-only transceivers (docs/PROTOCOL.md, session flow).
function addReceiveOnly() {
  S.pc.addTransceiver("audio", { direction: "recvonly" });
  S.pc.addTransceiver("video", { direction: "recvonly" });
}

// The media node under our peer connection died, or is drained and the room moves
// (docs/PROTOCOL.md, node_lost). We are still in the room: a fresh peer connection with the
// same camera and microphone offers again, and the server places it on a live node.
function onNodeLost(reason) {
  S.nodeLost += 1;
  if (reason === "draining") setStatus("moving to another media server…", "joined");
  else setStatus("media server lost, reconnecting media…", "error");
  // The old peer goes now, so nothing (stats included) reads it any more.
  if (S.pc) S.pc.close();
  S.pc = null;
  S.receivers.clear();
  endScreenShare();
  renderAll();
  queueSdp(async () => {
    createPeerConnection();
    if (!addLocalTracks()) addReceiveOnly();
    await sendOffer(false);
    setStatus("in room " + S.room + " as " + (S.me ? S.me.name : S.name), "joined");
  });
}

function createPeerConnection() {
  // TURN/STUN servers with the credentials the server handed out in `joined`; `?relay=1`
  // uses TURN only (to check that a TURN deployment works, as a firewalled user would).
  const pc = new RTCPeerConnection({
    iceServers: S.iceServers || [],
    iceTransportPolicy: params.get("relay") === "1" ? "relay" : "all",
    bundlePolicy: "max-bundle",
    rtcpMuxPolicy: "require",
  });
  S.pc = pc;
  pc.ontrack = (ev) => {
    const mid = ev.transceiver.mid;
    S.receivers.set(mid, { mid, kind: ev.track.kind, track: ev.track, transceiver: ev.transceiver });
    ev.track.onended = () => { S.receivers.delete(mid); renderAll(); };
    renderAll();
  };
  pc.onconnectionstatechange = () => console.log("pc connection", pc.connectionState);
  openDataChannels(pc);
  trickle(pc);
}

// ---------------------------------------------------------------- room data

// The two room-data channels, opened before the first offer so it negotiates SCTP: what
// we send on one reaches everyone else in the room who opened the same label, each
// message wrapped in an envelope naming its sender (docs/PROTOCOL.md, "Data channels").
function openDataChannels(pc) {
  S.channels = {
    shardcast: pc.createDataChannel("shardcast"),
    "shardcast-lossy": pc.createDataChannel("shardcast-lossy", { ordered: false, maxRetransmits: 0 }),
  };
  for (const [label, ch] of Object.entries(S.channels)) {
    ch.binaryType = "arraybuffer";
    ch.onmessage = (ev) => onRoomData(label, ev.data);
  }
}

// An envelope: version 1 | flags (bit 0: text) | identity length (u16, big endian) |
// identity | payload.
function onRoomData(label, buf) {
  const b = new Uint8Array(buf);
  if (b.length < 4 || b[0] !== 1) return;
  const len = (b[2] << 8) | b[3];
  if (b.length < 4 + len) return;
  const dec = new TextDecoder();
  const from = dec.decode(b.subarray(4, 4 + len));
  const payload = b.subarray(4 + len);
  const text = b[1] & 1 ? dec.decode(payload) : null;
  S.data.push({ from, label, text, bytes: payload.length });
  if (S.data.length > 200) S.data.shift();
  let reaction = null;
  try { reaction = text && JSON.parse(text).reaction; } catch (e) { /* not ours */ }
  if (typeof reaction === "string") showReaction(from, reaction.slice(0, 8));
}

function sendRoomData(text, lossy) {
  const ch = S.channels[lossy ? "shardcast-lossy" : "shardcast"];
  if (!ch || ch.readyState !== "open") return false;
  ch.send(text);
  return true;
}
window.shardcastSendData = sendRoomData;

// A reaction floats over the sender's tile for two seconds.
function showReaction(identity, emoji) {
  const tile = [...document.querySelectorAll("#grid .tile")].find((t) => t.dataset.identity === identity);
  if (!tile) return;
  const badge = el("span", { class: "reaction", textContent: emoji });
  tile.append(badge);
  setTimeout(() => badge.remove(), 2000);
}

function canPublish() {
  const g = S.me && S.me.grants;
  if (S.me && S.me.role === "viewer") return false;
  return !(g && (g.canPublish === false || g.can_publish === false));
}

// Captures and adds camera + microphone; false when there is nothing to publish.
async function publishLocalMedia() {
  if (!canPublish() || params.get("publish") === "0") return false;
  const width = parseInt(params.get("width") || "1280", 10);
  const height = parseInt(params.get("height") || "720", 10);
  try {
    S.localStream = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 } },
    });
  } catch (e) {
    S.errors.push({ code: "client_media", message: String(e) });
    setStatus("in room without camera/microphone: " + e.name, "joined");
    return false;
  }
  addLocalTracks();
  renderAll();
  return true;
}

// Adds the captured camera and microphone to the peer connection; false without them.
function addLocalTracks() {
  if (!S.localStream) return false;
  const video = S.localStream.getVideoTracks()[0];
  const audio = S.localStream.getAudioTracks()[0];
  if (video) {
    // Three simulcast layers, quarter / half / full resolution (rids q, h, f); or, with
    // ?svc=MODE (e.g. L3T3_KEY, with ?codec=vp9), one encoding whose layers are SVC.
    const svc = params.get("svc");
    const tr = S.pc.addTransceiver(video, {
      direction: "sendonly",
      streams: [S.localStream],
      sendEncodings: svc
        ? [{ scalabilityMode: svc, maxBitrate: 1500000 }]
        : [
            { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150000 },
            { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500000 },
            { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1500000 },
          ],
    });
    preferCodec(tr, params.get("codec") || "vp8");
  }
  if (audio) S.pc.addTransceiver(audio, { direction: "sendonly", streams: [S.localStream] });
  return Boolean(video || audio);
}

// Offers `codec` (vp8 by default, ?codec=vp9 or h264) first: the SFU rewrites VP8 and VP9
// picture ids across layer switches.
function preferCodec(transceiver, codec) {
  if (!transceiver.setCodecPreferences || !RTCRtpSender.getCapabilities) return;
  const caps = RTCRtpSender.getCapabilities("video");
  if (!caps) return;
  const mime = "video/" + codec.toLowerCase();
  const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mime);
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== mime);
  if (first.length) transceiver.setCodecPreferences(first.concat(rest));
}

async function sendOffer(iceRestart) {
  const pc = S.pc;
  if (!pc || pc.signalingState !== "stable") return;
  S.renegotiate = false;
  const offer = await pc.createOffer({ iceRestart });
  await pc.setLocalDescription(offer);
  const msg = { type: "offer", sdp: pc.localDescription.sdp };
  if (iceRestart) msg.ice_restart = true;
  const sources = sourcesByMid();
  if (Object.keys(sources).length) msg.sources = sources;
  send(msg);
}

async function onAnswer(sdp) {
  const pc = S.pc;
  if (!pc || pc.signalingState !== "have-local-offer") return;
  await pc.setRemoteDescription({ type: "answer", sdp });
  // Tracks added or removed while that offer was out go in the next one.
  if (S.renegotiate || needsOffer(pc)) queueSdp(() => sendOffer(false));
}

// ---------------------------------------------------------------- screen share

// Shares a screen (getDisplayMedia) as one more video track, and its sound when the
// browser gives any; the offer's `sources` names them `screen` and `screen_audio`. One
// layer, no simulcast: a screen is mostly text, sent whole at a low frame rate.
async function startScreenShare() {
  if (S.screenStream || !S.pc || !canPublish()) return;
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 5, max: 15 } }, audio: true });
  } catch (e) {
    S.errors.push({ code: "client_screen", message: String(e) });
    return;
  }
  if (!S.pc) { stream.getTracks().forEach((t) => t.stop()); return; }
  S.screenStream = stream;
  S.screenSenders = [];
  for (const track of stream.getTracks()) {
    if (track.kind === "video") track.contentHint = "detail";
    const tr = S.pc.addTransceiver(track, {
      direction: "sendonly",
      streams: [stream],
      sendEncodings: track.kind === "video" ? [{ maxBitrate: 1500000, maxFramerate: 15 }] : undefined,
    });
    if (track.kind === "video") preferCodec(tr, params.get("codec") || "vp8");
    S.screenSenders.push(tr.sender);
    // The browser's own "Stop sharing" ends the track.
    track.onended = stopScreenShare;
  }
  S.renegotiate = true;
  renderAll();
  queueSdp(() => sendOffer(false));
}

// Stops sharing: the m-lines go inactive in the next offer and the server unpublishes them.
function stopScreenShare() {
  if (!S.screenStream) return;
  if (S.pc) for (const s of S.screenSenders) S.pc.removeTrack(s);
  endScreenShare();
  S.renegotiate = true;
  renderAll();
  if (S.pc) queueSdp(() => sendOffer(false));
}

function endScreenShare() {
  if (S.screenStream) S.screenStream.getTracks().forEach((t) => { t.onended = null; t.stop(); });
  S.screenStream = null;
  S.screenSenders = [];
}

// The offer's `sources` (docs/PROTOCOL.md): what our send m-lines carry, by mid, where it
// is not camera or microphone.
function sourcesByMid() {
  const out = {};
  if (!S.pc || !S.screenStream) return out;
  const screen = S.screenStream.getTracks();
  for (const tr of S.pc.getTransceivers()) {
    const t = tr.sender && tr.sender.track;
    if (tr.mid && t && screen.includes(t)) out[tr.mid] = t.kind === "video" ? "screen" : "screen_audio";
  }
  return out;
}

// The client is polite: a server offer during our own offer rolls ours back, then we
// answer theirs and offer again.
async function onServerOffer(sdp) {
  const pc = S.pc;
  if (!pc) return;
  let reoffer = false;
  if (pc.signalingState === "have-local-offer") {
    await pc.setLocalDescription({ type: "rollback" });
    reoffer = true;
  }
  await pc.setRemoteDescription({ type: "offer", sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  send({ type: "answer", sdp: pc.localDescription.sdp });
  renderAll();
  if (reoffer || S.renegotiate || needsOffer(pc)) queueSdp(() => sendOffer(false));
}

// True when a local track has not been negotiated yet (e.g. after a rollback).
function needsOffer(pc) {
  return pc.getTransceivers().some((t) => t.sender.track && !t.mid && !t.stopped);
}

function onParticipantJoined(p) {
  S.participants.set(p.identity, p);
  S.knocks.delete(p.identity);
  renderAll();
  renderKnocks();
}

function onParticipantLeft(identity) {
  S.participants.delete(identity);
  S.hidden.delete(identity);
  for (const [id, t] of S.tracks) if (t.identity === identity) S.tracks.delete(id);
  renderAll();
}

function onMuted(msg) {
  const t = S.tracks.get(msg.track);
  if (t) t.muted = msg.muted;
  if (msg.identity === S.identity && msg.by && msg.by !== S.identity && S.localStream) {
    // A host muted us: reflect it locally so the buttons tell the truth.
    for (const lt of S.localStream.getTracks()) if (t && lt.kind === t.kind) lt.enabled = !msg.muted;
    renderControls();
  }
  renderAll();
}

function onActiveSpeaker(identity) {
  document.querySelectorAll(".tile").forEach((t) => t.classList.toggle("speaking", t.dataset.identity === identity));
}

function addChat(m) {
  S.chat.push({ id: m.id, identity: m.identity, name: m.name, text: m.text, ts: m.ts });
  const log = $("#chat-log");
  log.append(el("li", { "data-id": String(m.id ?? "") }, el("span", { class: "who", textContent: (m.name || m.identity) + ":" }), m.text));
  log.scrollTop = log.scrollHeight;
}

// ---------------------------------------------------------------- local controls

// Our camera's or microphone's track id (not the screen's).
function ownTrackId(kind) {
  for (const t of S.tracks.values()) {
    if (t.identity === S.identity && t.kind === kind && !isScreen(t)) return t.id;
  }
  return null;
}

function isScreen(t) {
  return Boolean(t) && (t.source === "screen" || t.source === "screen_audio");
}

function toggleLocal(kind) {
  if (!S.localStream) return;
  const tracks = kind === "audio" ? S.localStream.getAudioTracks() : S.localStream.getVideoTracks();
  const muted = tracks.some((t) => t.enabled);
  tracks.forEach((t) => (t.enabled = !muted));
  const id = ownTrackId(kind);
  if (id) send({ type: "mute", track: id, muted });
  renderControls();
}

function renderControls() {
  const a = S.localStream ? S.localStream.getAudioTracks()[0] : null;
  const v = S.localStream ? S.localStream.getVideoTracks()[0] : null;
  $("#mic-btn").textContent = a && !a.enabled ? "Unmute mic" : "Mute mic";
  $("#cam-btn").textContent = v && !v.enabled ? "Start camera" : "Stop camera";
  $("#screen-btn").textContent = S.screenStream ? "Stop sharing" : "Share screen";
  // Hosts record themselves or go live (HLS); everyone sees that the room is recorded.
  for (const [id, kind, on, off] of [["#record-btn", "record", "Stop recording", "Record me"], ["#live-btn", "hls", "End live", "Go live"]]) {
    $(id).hidden = !isHost();
    $(id).textContent = myEgress(kind) ? on : off;
  }
  const live = [...S.egresses.values()].filter((e) => e.state !== "complete" && e.state !== "failed");
  const badge = $("#egress-badge");
  badge.hidden = !live.length;
  badge.textContent = [live.some((e) => e.kind === "record") ? "\u25CF REC" : "", live.some((e) => e.kind === "hls") ? "\u25CF LIVE" : ""].filter(Boolean).join(" ");
  const hls = live.find((e) => e.kind === "hls" && e.playlist);
  const link = $("#live-link");
  link.hidden = !(hls && isHost());
  if (hls) link.href = hls.playlist;
}

// Our own running egress of `kind`, if any.
function myEgress(kind) {
  return [...S.egresses.values()].find((e) => e.kind === kind && e.participant === S.identity
    && e.state !== "complete" && e.state !== "failed" && e.state !== "ending");
}

function onEgress(egress) {
  S.egresses.set(egress.id, egress);
  S.events.push({ type: "egress", id: egress.id, kind: egress.kind, state: egress.state });
  renderControls();
}

function toggleEgress(kind) {
  const running = myEgress(kind);
  if (running) send({ type: "stop_egress", id: running.id });
  else send({ type: "start_egress", kind, participant: S.identity });
}

function setHidden(identity, hidden) {
  if (hidden) S.hidden.add(identity);
  else S.hidden.delete(identity);
  for (const t of S.tracks.values()) {
    if (t.identity === identity && t.kind === "video") send({ type: "set_subscription", track: t.id, visible: !hidden });
  }
  renderAll();
}

// Caps the layer of `identity`'s video (`set_subscription` with `max_layer`: a simulcast
// layer, or an SVC track's spatial layer or, with one spatial layer, its frame rate).
// For automation: window.shardcastSetMaxLayer("alice", 0).
function setMaxLayer(identity, maxLayer) {
  for (const t of S.tracks.values()) {
    if (t.identity === identity && t.kind === "video") {
      send({ type: "set_subscription", track: t.id, visible: !S.hidden.has(identity), max_layer: maxLayer });
    }
  }
}
window.shardcastSetMaxLayer = setMaxLayer;

// ---------------------------------------------------------------- rendering

function renderAll() {
  renderTiles();
  renderParticipants();
  renderControls();
}

// A tile per participant (camera and microphone), and one per shared screen, shown first
// and larger.
function renderTiles() {
  const grid = $("#grid");
  const want = new Map(); // tile key -> tile element
  if (S.joined) {
    const sharing = new Set([...S.tracks.values()].filter((t) => t.source === "screen").map((t) => t.identity));
    if (S.screenStream) sharing.add(S.identity);
    for (const identity of sharing) {
      const p = S.participants.get(identity);
      if (p) want.set(screenKey(identity), screenTileFor(p));
    }
    for (const p of S.participants.values()) want.set(p.identity, tileFor(p));
  }
  for (const t of [...grid.children]) if (!want.has(t.dataset.key)) t.remove();
  let i = 0;
  for (const t of want.values()) {
    if (grid.children[i] !== t) grid.insertBefore(t, grid.children[i] || null);
    i += 1;
  }
  attachMedia();
}

function screenKey(identity) {
  return identity + "#screen";
}

function screenTileFor(p) {
  const key = screenKey(p.identity);
  let tile = document.querySelector('.tile[data-key="' + CSS.escape(key) + '"]');
  if (!tile) {
    const video = el("video", { autoplay: true, playsInline: true, muted: p.identity === S.identity });
    tile = el("div", { class: "tile screen", "data-key": key, "data-identity": p.identity, "data-source": "screen" }, video,
      el("div", { class: "label" }, el("span", { class: "name" })));
  }
  tile.querySelector(".name").textContent = (p.name || p.identity) + (p.identity === S.identity ? " (you)" : "") + ": screen";
  return tile;
}

function tileFor(p) {
  let tile = document.querySelector('.tile[data-key="' + CSS.escape(p.identity) + '"]');
  const mine = p.identity === S.identity;
  if (!tile) {
    const video = el("video", { autoplay: true, playsInline: true, muted: mine });
    const hideBtn = el("button", { class: "secondary hide-btn", type: "button", onclick: () => setHidden(p.identity, !S.hidden.has(p.identity)) });
    tile = el("div", { class: "tile", "data-key": p.identity, "data-identity": p.identity }, video,
      el("div", { class: "label" }, el("span", { class: "name" }), el("span", { class: "muted-flag" }),
        el("span", { class: "bandwidth-flag" }), mine ? "" : hideBtn));
  }
  const hidden = S.hidden.has(p.identity);
  tile.classList.toggle("hidden-video", hidden);
  tile.querySelector(".name").textContent = (p.name || p.identity) + (mine ? " (you)" : "");
  const hb = tile.querySelector(".hide-btn");
  if (hb) hb.textContent = hidden ? "Show" : "Hide";
  const muted = [...S.tracks.values()].filter((t) => t.identity === p.identity && t.muted && !isScreen(t)).map((t) => t.kind);
  tile.querySelector(".muted-flag").textContent = muted.length ? "muted " + muted.join("+") : "";
  const own = [...S.tracks.values()].filter((t) => t.identity === p.identity && !isScreen(t));
  const starved = own.some((t) => S.bandwidthPaused.has(t.id));
  const noCodec = own.some((t) => S.codecMissing.has(t.id));
  tile.querySelector(".bandwidth-flag").textContent =
    noCodec ? "no video: its codec is not one this browser offered" : starved ? "video paused: low bandwidth" : "";
  return tile;
}

// Put each participant's received tracks (or our own camera) into their tile's <video>.
function attachMedia() {
  const byKey = new Map();
  const msids = msidByMid();
  for (const r of S.receivers.values()) {
    // An m-line the server stopped sending on (its track was unpublished) shows nothing.
    if (r.transceiver && (r.transceiver.stopped || r.transceiver.currentDirection === "inactive")) continue;
    const info = describeReceiver(r, msids);
    if (!info) continue;
    const key = isScreen(info) ? screenKey(info.identity) : info.identity;
    if (!byKey.has(key)) byKey.set(key, []);
    byKey.get(key).push(r.track);
  }
  if (S.localStream) byKey.set(S.identity, S.localStream.getVideoTracks());
  if (S.screenStream) byKey.set(screenKey(S.identity), S.screenStream.getVideoTracks());
  for (const tile of document.querySelectorAll(".tile")) {
    const video = tile.querySelector("video");
    const tracks = byKey.get(tile.dataset.key) || [];
    const current = video.srcObject ? video.srcObject.getTracks() : [];
    const same = current.length === tracks.length && tracks.every((t) => current.includes(t));
    if (same) continue;
    video.srcObject = tracks.length ? new MediaStream(tracks) : null;
    if (tracks.length) video.play().catch((e) => console.warn("play", e.name));
  }
}

function renderParticipants() {
  const list = $("#participants");
  list.replaceChildren();
  for (const p of S.participants.values()) {
    const li = el("li", { "data-identity": p.identity },
      el("span", { textContent: p.name || p.identity }), el("span", { class: "role", textContent: p.role || "" }));
    if (isHost() && p.identity !== S.identity) {
      li.append(
        el("button", { class: "secondary", type: "button", textContent: "Mute audio", onclick: () => send({ type: "mute_participant", identity: p.identity, kind: "audio" }) }),
        el("button", { class: "secondary", type: "button", textContent: "Mute video", onclick: () => send({ type: "mute_participant", identity: p.identity, kind: "video" }) }),
        el("button", { class: "danger", type: "button", textContent: "Kick", onclick: () => send({ type: "kick", identity: p.identity }) }),
      );
    }
    list.append(li);
  }
}

function renderKnocks() {
  const list = $("#knocks");
  list.replaceChildren();
  for (const [identity, name] of S.knocks) {
    const done = () => { S.knocks.delete(identity); renderKnocks(); };
    list.append(el("li", { "data-identity": identity }, el("span", { textContent: name }),
      el("button", { type: "button", textContent: "Admit", onclick: () => { send({ type: "admit", identity }); done(); } }),
      el("button", { class: "danger", type: "button", textContent: "Deny", onclick: () => { send({ type: "deny", identity }); done(); } })));
  }
  $("#knocks-panel").hidden = !(isHost() && S.knocks.size);
}

// ---------------------------------------------------------------- statistics

// The mime type (e.g. "video/VP9") of an RTP stats entry's codec, or null.
function codecOf(report, s) {
  const c = s.codecId && report.get(s.codecId);
  return c ? c.mimeType : null;
}

async function shardcastStats() {
  const out = {
    joined: S.joined, room: S.room, identity: S.identity, session: S.session, nodeLost: S.nodeLost,
    status: $("#status").textContent,
    participants: [...S.participants.values()].map((p) => ({ identity: p.identity, name: p.name, role: p.role })),
    chat: S.chat.slice(), errors: S.errors.slice(), hidden: [...S.hidden], data: S.data.slice(),
    dataChannels: Object.fromEntries(Object.entries(S.channels).map(([l, c]) => [l, c.readyState])),
    bandwidthPaused: [...S.bandwidthPaused], codecMissing: [...S.codecMissing],
    egresses: [...S.egresses.values()], egressBadge: $("#egress-badge").hidden ? "" : $("#egress-badge").textContent,
    tracks: [], remote: {}, outbound: [],
    // What each tile shows: the size of the video its <video> element plays.
    tiles: [...document.querySelectorAll("#grid .tile")].map((t) => {
      const v = t.querySelector("video");
      return { identity: t.dataset.identity, source: t.dataset.source || "camera", videoWidth: v.videoWidth, videoHeight: v.videoHeight };
    }),
    // Our shared screen's capture size (and whether its sound is shared), while sharing.
    screen: S.screenStream ? {
      width: S.screenStream.getVideoTracks()[0].getSettings().width,
      height: S.screenStream.getVideoTracks()[0].getSettings().height,
      audio: S.screenStream.getAudioTracks().length > 0,
    } : null,
    connectionState: S.pc ? S.pc.connectionState : "none",
  };
  if (!S.pc) return out;
  const report = await S.pc.getStats();
  const msids = msidByMid();
  report.forEach((s) => {
    if (s.type === "outbound-rtp") {
      out.outbound.push({ kind: s.kind, rid: s.rid || null, bytesSent: s.bytesSent || 0, framesEncoded: s.framesEncoded || 0, frameWidth: s.frameWidth || 0,
        codec: codecOf(report, s), scalabilityMode: s.scalabilityMode || null });
    }
    if (s.type !== "inbound-rtp") return;
    const r = S.receivers.get(s.mid) || [...S.receivers.values()].find((x) => x.track.id === s.trackIdentifier);
    const info = r ? describeReceiver(r, msids) : undefined;
    const t = {
      mid: s.mid, kind: s.kind, track: info ? info.id : null, identity: info ? info.identity : null,
      source: info && info.source ? info.source : null,
      bytesReceived: s.bytesReceived || 0, packetsReceived: s.packetsReceived || 0, packetsLost: s.packetsLost || 0,
      framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0, frameHeight: s.frameHeight || 0,
      totalSamplesReceived: s.totalSamplesReceived || 0, totalAudioEnergy: s.totalAudioEnergy || 0, audioLevel: s.audioLevel || 0,
      codec: codecOf(report, s),
    };
    out.tracks.push(t);
    if (!t.identity) return;
    const p = out.remote[t.identity] || (out.remote[t.identity] = {
      video: { bytesReceived: 0, packetsReceived: 0, framesDecoded: 0, frameWidth: 0 },
      audio: { bytesReceived: 0, packetsReceived: 0, totalSamplesReceived: 0, totalAudioEnergy: 0 },
    });
    const k = t.kind === "video" ? p.video : p.audio;
    k.bytesReceived += t.bytesReceived;
    k.packetsReceived += t.packetsReceived;
    if (t.kind === "video") {
      k.framesDecoded += t.framesDecoded;
      k.frameWidth = Math.max(k.frameWidth, t.frameWidth);
      if (t.codec) k.codec = t.codec;
    } else {
      k.totalSamplesReceived += t.totalSamplesReceived;
      k.totalAudioEnergy += t.totalAudioEnergy;
    }
  });
  // How the call connects: "host" (directly), "relay" (through TURN), ...
  out.candidateType = null;
  report.forEach((s) => {
    if (s.type !== "transport" || !s.selectedCandidatePairId) return;
    const pair = report.get(s.selectedCandidatePairId);
    const local = pair && report.get(pair.localCandidateId);
    out.candidateType = local ? local.candidateType : null;
  });
  return out;
}
window.shardcastStats = shardcastStats;

setInterval(async () => {
  try {
    console.log("SHARDCAST_STATS " + JSON.stringify(await shardcastStats()));
  } catch (e) {
    console.warn("stats", e);
  }
}, 1000);

setInterval(() => { if (S.joined) send({ type: "ping" }); }, 15000);

// ---------------------------------------------------------------- wiring

$("#join-form").addEventListener("submit", (ev) => { ev.preventDefault(); join(); });
$("#chat-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const input = $("#chat-input");
  const text = input.value.trim();
  if (!text) return;
  send({ type: "chat", text });
  input.value = "";
});
$("#mic-btn").addEventListener("click", () => toggleLocal("audio"));
$("#cam-btn").addEventListener("click", () => toggleLocal("video"));
$("#screen-btn").addEventListener("click", () => (S.screenStream ? stopScreenShare() : startScreenShare()));
$("#react-btn").addEventListener("click", () => {
  if (sendRoomData(JSON.stringify({ reaction: "\u{1F44D}" }), true)) showReaction(S.identity, "\u{1F44D}");
});
$("#leave-btn").addEventListener("click", leave);
$("#record-btn").addEventListener("click", () => toggleEgress("record"));
$("#live-btn").addEventListener("click", () => toggleEgress("hls"));
window.addEventListener("beforeunload", () => send({ type: "leave" }));

$("#room").value = params.get("room") || $("#room").value;
$("#name").value = params.get("name") || "";
$("#password").value = params.get("password") || "";
if (params.get("token")) S.token = params.get("token");
if (params.get("autojoin") === "1" && $("#room").value && $("#name").value) join();
