//! Room events across control-plane instances (issue 15, item 2), as real processes: a real
//! etcd, three `shardcast controlplane`s, one media node. A room's participants are spread
//! over the instances; every event (join, chat, mute, leave) reaches every other participant
//! exactly once, costs no etcd write of its own (etcd's revision counts writes), and never
//! reaches an instance without sessions in the room (its `/metrics` say it received nothing).
//! When the link between two instances is cut (one frozen past the link's retries, one killed
//! and restarted) events flow again and the receiving sessions get a `resync`: nothing is
//! lost silently.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use shardcast_tests::cluster::{ControlPlane, MediaNodeProcess, Rest};
use shardcast_tests::etcd::Etcd;
use shardcast_tests::free_tcp_port;
use shardcast_tests::participant::Participant;
use tokio_tungstenite::tungstenite::{self, stream::MaybeTlsStream, Message, WebSocket};

/// A control plane with its `/metrics` listener.
struct Instance {
    cp: ControlPlane,
    metrics_url: String,
}

fn instance(etcd: &Etcd, bus_lease_secs: u64) -> anyhow::Result<Instance> {
    let port = free_tcp_port();
    let cp = ControlPlane::start_with_config(
        etcd,
        &format!(
            "[cluster]\nbus_lease_secs = {bus_lease_secs}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )?;
    Ok(Instance {
        cp,
        metrics_url: format!("http://127.0.0.1:{port}/metrics"),
    })
}

impl Instance {
    /// The sum of a metric family's samples (all labels, or those with `label`).
    fn metric(&self, name: &str, label: Option<&str>) -> anyhow::Result<u64> {
        let text = reqwest::blocking::get(&self.metrics_url)?.text()?;
        let mut sum = 0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let family = series.split('{').next().unwrap_or_default();
            if family == name && label.is_none_or(|l| series.contains(l)) {
                sum += value.parse::<u64>().with_context(|| line.to_string())?;
            }
        }
        Ok(sum)
    }
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// A signaling-only participant (no media) that keeps every message it receives.
struct Watcher {
    identity: String,
    ws: Socket,
    log: Vec<Value>,
}

impl Watcher {
    fn join(base_url: &str, token: &str, identity: &str) -> anyhow::Result<Self> {
        let url = format!("{}/v1/rtc", base_url.replacen("http://", "ws://", 1));
        let (ws, _) = tungstenite::connect(&url).with_context(|| format!("connect {url}"))?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
        }
        let mut w = Self {
            identity: identity.to_string(),
            ws,
            log: Vec::new(),
        };
        w.send(json!({"type": "join", "token": token}))?;
        w.until("joined", Duration::from_secs(15), |l| {
            l.iter().any(|m| m["type"] == "joined")
        })?;
        Ok(w)
    }

    fn send(&mut self, v: Value) -> anyhow::Result<()> {
        self.ws.send(Message::text(v.to_string()))?;
        Ok(())
    }

    fn pump(&mut self, d: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Text(t)) => self.log.push(serde_json::from_str(&t)?),
                Ok(Message::Close(c)) => bail!("{}: closed: {c:?}", self.identity),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e).context("signaling read"),
            }
        }
        Ok(())
    }

    fn until(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !done(&self.log) {
            if Instant::now() > deadline {
                bail!(
                    "{}: no {what} within {timeout:?}; got {:?}",
                    self.identity,
                    self.log
                );
            }
            self.pump(Duration::from_millis(100))?;
        }
        Ok(())
    }

    /// Messages of type `ty` whose `field` (a JSON pointer) is `value`.
    fn count(&self, ty: &str, field: &str, value: &str) -> usize {
        self.log
            .iter()
            .filter(|m| m["type"] == ty && m.pointer(field).and_then(Value::as_str) == Some(value))
            .count()
    }

    fn types(&self, ty: &str) -> usize {
        self.log.iter().filter(|m| m["type"] == ty).count()
    }
}

fn pump_all(ws: &mut [&mut Watcher], d: Duration) -> anyhow::Result<()> {
    for w in ws.iter_mut() {
        w.pump(d)?;
    }
    Ok(())
}

/// Waits until every watcher's log satisfies `done`, pumping all of them.
fn all_until(
    ws: &mut [&mut Watcher],
    what: &str,
    timeout: Duration,
    done: impl Fn(&Watcher) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ws.iter().all(|w| done(w)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = ws
                .iter()
                .map(|w| format!("{}: {:?}", w.identity, w.log))
                .collect();
            bail!("no {what} within {timeout:?}:\n{}", logs.join("\n"));
        }
        pump_all(ws, Duration::from_millis(50))?;
    }
}

const NODE_KEY: &str = "/shardcast/nodes/node-a";

/// etcd writes between two readings, less the media node's own heartbeat (it refreshes its
/// record every third of its lease, whatever the room does).
fn writes_since(etcd: &Etcd, before: (u64, u64)) -> anyhow::Result<u64> {
    let after = etcd.revision_and(NODE_KEY)?;
    let heartbeat = u64::from(after.1 != before.1);
    Ok(after.0 - before.0 - heartbeat)
}

#[test]
fn room_events_reach_each_other_instance_once_and_only_where_needed() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let _node = MediaNodeProcess::start(&etcd, "node-a", 30)?;
    let (a, b, c) = (
        instance(&etcd, 3)?,
        instance(&etcd, 3)?,
        instance(&etcd, 3)?,
    );
    let mut rest = Rest::new(&a.cp.base_url)?;
    rest.create_tenant("acme")?;
    rest.create_room("r")?;
    let mut wa = Watcher::join(&a.cp.base_url, &rest.token("r", "wa")?, "wa")?;
    let mut wb = Watcher::join(&b.cp.base_url, &rest.token("r", "wb")?, "wb")?;
    all_until(
        &mut [&mut wa],
        "wb's join at wa",
        Duration::from_secs(10),
        |w| w.count("participant_joined", "/participant/identity", "wb") == 1,
    )?;

    // A publisher on A: its join and its two tracks reach wa (same instance) and wb (B).
    let mut publ = Participant::join(&a.cp.base_url, &rest.token("r", "pub")?, "pub", true)?;
    all_until(
        &mut [&mut wa, &mut wb],
        "pub's join and tracks",
        Duration::from_secs(20),
        |w| {
            w.count("participant_joined", "/participant/identity", "pub") == 1
                && w.count("track_published", "/track/identity", "pub") == 2
        },
    )?;
    let audio = wb
        .log
        .iter()
        .find(|m| m["type"] == "track_published" && m["track"]["kind"] == "audio")
        .and_then(|m| m["track"]["id"].as_str())
        .context("pub's audio track")?
        .to_string();

    // A mute: one store write (the participant record keeps the track's mute state); the
    // event itself writes nothing (before this bus: a put and a delete per event).
    publ.pump(Duration::from_millis(300))?;
    pump_all(&mut [&mut wa, &mut wb], Duration::from_millis(300))?;
    let before = etcd.revision_and(NODE_KEY)?;
    publ.send(json!({"type": "mute", "track": audio, "muted": true}))?;
    all_until(
        &mut [&mut wa, &mut wb],
        "the mute",
        Duration::from_secs(10),
        |w| w.count("muted", "/identity", "pub") == 1,
    )?;
    pump_all(&mut [&mut wa, &mut wb], Duration::from_millis(300))?;
    let mute_writes = writes_since(&etcd, before)?;
    println!("etcd writes for a mute: {mute_writes}");
    assert_eq!(mute_writes, 1, "a mute writes its participant record only");

    // A chat from B: one transaction (sequence counter, message, the message it pushes out
    // of the history), no bus writes.
    let before = etcd.revision_and(NODE_KEY)?;
    wb.send(json!({"type": "chat", "text": "from b"}))?;
    all_until(
        &mut [&mut wa, &mut wb],
        "the chat",
        Duration::from_secs(10),
        |w| w.count("chat", "/message/text", "from b") == 1,
    )?;
    pump_all(&mut [&mut wa, &mut wb], Duration::from_millis(300))?;
    let chat_writes = writes_since(&etcd, before)?;
    println!("etcd writes for a chat message: {chat_writes}");
    assert_eq!(
        chat_writes, 1,
        "a chat is one transaction of its state only"
    );

    // C holds no session of the room: it received none of its events and is not registered.
    assert_eq!(c.metric("shardcast_bus_events_received_total", None)?, 0);
    assert_eq!(c.metric("shardcast_bus_rooms_registered", None)?, 0);
    assert!(b.metric("shardcast_bus_events_received_total", None)? > 0);

    // A third participant on C; then the publisher leaves.
    let mut wc = Watcher::join(&c.cp.base_url, &rest.token("r", "wc")?, "wc")?;
    all_until(
        &mut [&mut wa, &mut wb],
        "wc's join",
        Duration::from_secs(10),
        |w| w.count("participant_joined", "/participant/identity", "wc") == 1,
    )?;
    wc.send(json!({"type": "chat", "text": "from c"}))?;
    publ.send(json!({"type": "leave"}))?;
    all_until(
        &mut [&mut wa, &mut wb, &mut wc],
        "the chat from C and pub's leave",
        Duration::from_secs(15),
        |w| {
            w.count("chat", "/message/text", "from c") == 1
                && w.count("participant_left", "/identity", "pub") == 1
                && w.count("track_unpublished", "/identity", "pub") == 2
        },
    )?;
    // Nothing arrives twice, however long one waits.
    pump_all(&mut [&mut wa, &mut wb, &mut wc], Duration::from_secs(1))?;
    for w in [&wa, &wb] {
        assert_eq!(
            w.count("participant_joined", "/participant/identity", "pub"),
            1,
            "{}",
            w.identity
        );
        assert_eq!(
            w.count("track_published", "/track/identity", "pub"),
            2,
            "{}",
            w.identity
        );
        assert_eq!(w.count("muted", "/identity", "pub"), 1, "{}", w.identity);
        assert_eq!(
            w.count("chat", "/message/text", "from b"),
            1,
            "{}",
            w.identity
        );
        assert_eq!(
            w.count("participant_joined", "/participant/identity", "wc"),
            1,
            "{}",
            w.identity
        );
    }
    for w in [&wa, &wb, &wc] {
        assert_eq!(
            w.count("chat", "/message/text", "from c"),
            1,
            "{}",
            w.identity
        );
        assert_eq!(
            w.count("participant_left", "/identity", "pub"),
            1,
            "{}",
            w.identity
        );
        assert_eq!(
            w.count("track_unpublished", "/identity", "pub"),
            2,
            "{}",
            w.identity
        );
        assert_eq!(w.types("resync"), 0, "{}: nothing was lost", w.identity);
    }
    for i in [&a, &b, &c] {
        assert_eq!(i.metric("shardcast_bus_resyncs_total", None)?, 0);
        assert_eq!(i.metric("shardcast_bus_events_dropped_total", None)?, 0);
    }
    Ok(())
}

#[test]
fn a_cut_link_resyncs_the_receiving_sessions_and_events_flow_again() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let a = instance(&etcd, 10)?;
    let mut b = instance(&etcd, 10)?;
    let mut rest = Rest::new(&a.cp.base_url)?;
    rest.create_tenant("acme")?;
    rest.create_room("r")?;
    let mut wa = Watcher::join(&a.cp.base_url, &rest.token("r", "wa")?, "wa")?;
    let mut wb = Watcher::join(&b.cp.base_url, &rest.token("r", "wb")?, "wb")?;
    all_until(&mut [&mut wa], "wb's join", Duration::from_secs(10), |w| {
        w.count("participant_joined", "/participant/identity", "wb") == 1
    })?;

    // B hangs longer than A's link retries a batch (3 s), not longer than its lease: A gives
    // the chat up towards B, and tells B so once B answers again.
    b.cp.freeze();
    wa.send(json!({"type": "chat", "text": "while b hangs"}))?;
    wa.until("its own chat", Duration::from_secs(5), |l| {
        l.iter().any(|m| m["message"]["text"] == "while b hangs")
    })?;
    std::thread::sleep(Duration::from_secs(6));
    b.cp.thaw();
    wb.until("a resync", Duration::from_secs(15), |l| {
        l.iter().any(|m| m["type"] == "resync")
    })?;
    let resync = wb
        .log
        .iter()
        .find(|m| m["type"] == "resync")
        .unwrap()
        .clone();
    let history: Vec<&str> = resync["chat"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert!(history.contains(&"while b hangs"), "{resync}");
    assert!(b.metric("shardcast_bus_resyncs_total", Some("sender_lost"))? >= 1);
    // And the link works again: a new chat arrives once.
    wa.send(json!({"type": "chat", "text": "after the hang"}))?;
    wb.until("the next chat", Duration::from_secs(10), |l| {
        l.iter().any(|m| m["message"]["text"] == "after the hang")
    })?;
    wb.pump(Duration::from_millis(500))?;
    assert_eq!(wb.count("chat", "/message/text", "after the hang"), 1);

    // B dies: its interest lease (10 s) ends without a `bye`: A resyncs its sessions of the
    // room, since whatever B had not sent yet is lost.
    let before = wa.types("resync");
    b.cp.kill();
    wa.until("a resync after B died", Duration::from_secs(25), |l| {
        l.iter().filter(|m| m["type"] == "resync").count() > before
    })?;
    assert!(a.metric("shardcast_bus_resyncs_total", Some("sender_vanished"))? >= 1);

    // A new instance in B's place: its participant's join and chat reach A once, and A's
    // chat reaches it once.
    let b2 = instance(&etcd, 3)?;
    let mut wb2 = Watcher::join(&b2.cp.base_url, &rest.token("r", "wb")?, "wb2")?;
    wb2.send(json!({"type": "chat", "text": "from the new b"}))?;
    wa.until("the new b's chat", Duration::from_secs(10), |l| {
        l.iter().any(|m| m["message"]["text"] == "from the new b")
    })?;
    wa.send(json!({"type": "chat", "text": "to the new b"}))?;
    wb2.until("a's chat", Duration::from_secs(10), |l| {
        l.iter().any(|m| m["message"]["text"] == "to the new b")
    })?;
    pump_all(&mut [&mut wa, &mut wb2], Duration::from_millis(500))?;
    assert_eq!(wa.count("chat", "/message/text", "from the new b"), 1);
    assert_eq!(wb2.count("chat", "/message/text", "to the new b"), 1);
    let joined_after_kill = wa
        .log
        .iter()
        .filter(|m| m["type"] == "participant_joined" && m["participant"]["identity"] == "wb")
        .count();
    assert_eq!(
        joined_after_kill, 2,
        "wb's first join, then its new session's, once each"
    );
    Ok(())
}
