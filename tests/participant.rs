//! A native participant: a shardcast-client (str0m, synthetic media) on its own UDP socket,
//! driven by a thread, signaled over the control plane's WebSocket (`/v1/rtc`, blocking
//! tungstenite). It answers server offers and remembers the tracks it was told about. Told
//! `node_lost` (its media node died), it does what a client must: drops its peer connection
//! and offers again from a fresh one (a new client on a new socket), as a page rejoins.
//!
//! Never: talk to anything but the loopback addresses the server hands out.

use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use shardcast_client::{udp, Client, ClientConfig, TimeBase, VideoSpec};
use tokio_tungstenite::tungstenite::{self, stream::MaybeTlsStream, Message, WebSocket};

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

pub struct Participant {
    pub identity: String,
    publish: bool,
    client: Arc<Mutex<Client>>,
    ws: Socket,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// `track_published` messages received, in order.
    pub tracks_seen: Vec<Value>,
    /// The `joined` message.
    pub joined: Value,
    /// When each `node_lost` arrived.
    pub node_lost_at: Vec<Instant>,
    /// Each `node_lost`'s `reason` (`lost`, `draining`).
    pub node_lost_reasons: Vec<String>,
    /// When each media restart after `node_lost` got its answer.
    pub media_restarted_at: Vec<Instant>,
    /// Packets the clients replaced by a media restart had received.
    received_before: u64,
}

fn new_client(identity: &str, publish: bool, sock: &UdpSocket) -> anyhow::Result<Client> {
    let seed = identity.bytes().map(u64::from).sum::<u64>();
    let mut config = ClientConfig::new(identity, seed, TimeBase::real());
    if publish {
        config = config.with_audio().with_video(VideoSpec::single(300_000));
    }
    Client::new(config, sock.local_addr()?, Instant::now()).map_err(|e| anyhow!("client: {e}"))
}

fn connect(base_url: &str) -> anyhow::Result<Socket> {
    let url = format!("{}/v1/rtc", base_url.replacen("http://", "ws://", 1));
    let (ws, _) = tungstenite::connect(&url).with_context(|| format!("connect {url}"))?;
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        // Short reads so `pump` can interleave the socket with its deadline.
        s.set_read_timeout(Some(Duration::from_millis(50)))?;
    }
    Ok(ws)
}

/// Sends `join` with `token` on a new socket and returns the first `joined`, `waiting` or
/// `error` message the server answers with (to test refused joins).
pub fn try_join(base_url: &str, token: &str, timeout: Duration) -> anyhow::Result<Value> {
    let mut ws = connect(base_url)?;
    ws.send(Message::text(
        json!({"type": "join", "token": token}).to_string(),
    ))?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t)?;
                if matches!(v["type"].as_str(), Some("joined" | "waiting" | "error")) {
                    let _ = ws.close(None);
                    return Ok(v);
                }
            }
            Ok(Message::Close(c)) => bail!("signaling closed before an answer: {c:?}"),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e).context("signaling read"),
        }
    }
    bail!("no answer to join within {timeout:?}")
}

impl Participant {
    /// Joins with `token` at `base_url` (`http://host:port`) and negotiates media. A publisher
    /// sends audio and one video layer; otherwise it only receives.
    pub fn join(
        base_url: &str,
        token: &str,
        identity: &str,
        publish: bool,
    ) -> anyhow::Result<Self> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        let client = new_client(identity, publish, &sock)?;
        let ws = connect(base_url)?;
        let mut p = Self {
            identity: identity.to_string(),
            publish,
            client: Arc::new(Mutex::new(client)),
            ws,
            stop: Arc::default(),
            thread: None,
            tracks_seen: Vec::new(),
            joined: Value::Null,
            node_lost_at: Vec::new(),
            node_lost_reasons: Vec::new(),
            media_restarted_at: Vec::new(),
            received_before: 0,
        };
        p.send(json!({"type": "join", "token": token}))?;
        p.joined = p.wait_for("joined", Duration::from_secs(15))?;
        p.negotiate(sock)?;
        Ok(p)
    }

    /// Offers from the current client, takes the answer and starts driving `sock`.
    fn negotiate(&mut self, sock: UdpSocket) -> anyhow::Result<()> {
        let p = self;
        let offer = p
            .client
            .lock()
            .unwrap()
            .create_offer(Instant::now())
            .map_err(|e| anyhow!("offer: {e}"))?;
        p.send(json!({"type": "offer", "sdp": offer}))?;
        let answer = p.wait_for("answer", Duration::from_secs(15))?;
        let sdp = answer["sdp"].as_str().context("answer without sdp")?;
        p.client
            .lock()
            .unwrap()
            .accept_answer(Instant::now(), sdp)
            .map_err(|e| anyhow!("answer: {e}"))?;
        p.drive(sock);
        Ok(())
    }

    /// After `node_lost`: stop the old client, offer from a fresh one on a new socket.
    fn restart_media(&mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.received_before += self.client.lock().unwrap().stats().packets_received();
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        self.client = Arc::new(Mutex::new(new_client(&self.identity, self.publish, &sock)?));
        self.stop = Arc::default();
        self.negotiate(sock)?;
        self.media_restarted_at.push(Instant::now());
        Ok(())
    }

    /// After losing its control plane: connect to `base_url`, `join` with `token` (a new
    /// session there) and offer from a fresh client, as a page that reconnects elsewhere.
    pub fn rejoin_via(&mut self, base_url: &str, token: &str) -> anyhow::Result<()> {
        self.ws = connect(base_url)?;
        self.send(json!({"type": "join", "token": token}))?;
        self.joined = self.wait_for("joined", Duration::from_secs(15))?;
        self.restart_media()
    }

    /// Sends `leave` (the session ends at once, no reconnect grace) and closes the socket.
    pub fn leave(mut self) -> anyhow::Result<()> {
        self.send(json!({"type": "leave"}))?;
        let _ = self.ws.flush();
        Ok(())
    }

    /// Sends a chat message.
    pub fn chat(&mut self, text: &str) -> anyhow::Result<()> {
        self.send(json!({"type": "chat", "text": text}))
    }

    /// Sends one signaling message as is.
    pub fn send(&mut self, v: Value) -> anyhow::Result<()> {
        self.ws.send(Message::text(v.to_string()))?;
        Ok(())
    }

    /// One message, or `None` when nothing arrived within the socket's read timeout.
    fn read(&mut self) -> anyhow::Result<Option<Value>> {
        match self.ws.read() {
            Ok(Message::Text(t)) => Ok(Some(serde_json::from_str(&t)?)),
            Ok(Message::Close(c)) => bail!("{}: signaling closed: {c:?}", self.identity),
            Ok(_) => Ok(None),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("{}: signaling read", self.identity)),
        }
    }

    /// Handles what needs no caller: server offers are answered, announced tracks kept.
    fn handle(&mut self, v: &Value) -> anyhow::Result<()> {
        match v["type"].as_str() {
            Some("offer") => {
                let sdp = v["sdp"].as_str().context("offer without sdp")?;
                let answer = self
                    .client
                    .lock()
                    .unwrap()
                    .accept_offer(Instant::now(), sdp)
                    .map_err(|e| anyhow!("{}: server offer: {e}", self.identity))?;
                self.send(json!({"type": "answer", "sdp": answer}))?;
            }
            Some("track_published") => self.tracks_seen.push(v["track"].clone()),
            Some("node_lost") => {
                self.node_lost_at.push(Instant::now());
                let reason = v["reason"].as_str().unwrap_or_default();
                self.node_lost_reasons.push(reason.to_string());
                self.restart_media()?;
            }
            Some("error") => bail!("{}: server error: {v}", self.identity),
            _ => {}
        }
        Ok(())
    }

    /// Reads messages until one of type `ty` (handling the others), for at most `timeout`.
    pub fn wait_for(&mut self, ty: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(v) = self.read()? {
                if v["type"] == ty {
                    return Ok(v);
                }
                self.handle(&v)?;
            }
        }
        bail!("{}: no `{ty}` message within {timeout:?}", self.identity)
    }

    /// Keeps signaling going for `d`.
    pub fn pump(&mut self, d: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            if let Some(v) = self.read()? {
                self.handle(&v)?;
            }
        }
        Ok(())
    }

    /// RTP packets the current client received (since the last media restart).
    pub fn received_by_current_client(&self) -> u64 {
        self.client.lock().unwrap().stats().packets_received()
    }

    /// RTP packets received so far (by every client this participant used).
    pub fn received(&self) -> u64 {
        self.received_before + self.client.lock().unwrap().stats().packets_received()
    }

    fn drive(&mut self, sock: UdpSocket) {
        self.thread = Some(udp::spawn_driver(
            self.client.clone(),
            sock,
            self.stop.clone(),
        ));
    }
}

impl Drop for Participant {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = self.ws.close(None);
    }
}

/// Pumps every participant's signaling until `done` holds, for at most `timeout`.
pub fn pump_until(
    parts: &mut [&mut Participant],
    what: &str,
    timeout: Duration,
    done: impl Fn(&[&mut Participant]) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if done(parts) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let got: Vec<(String, u64)> = parts
                .iter()
                .map(|p| (p.identity.clone(), p.received()))
                .collect();
            bail!("timed out after {timeout:?} waiting for {what}; received {got:?}");
        }
        for p in parts.iter_mut() {
            p.pump(Duration::from_millis(20))?;
        }
    }
}
