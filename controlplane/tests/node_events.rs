//! The node API's event stream across connection losses: a real media node behind the real
//! node API server, a `RemoteNode` reaching it through a TCP relay that the test cuts (every
//! connection dropped, new ones refused) while a publisher connects over UDP and publishes.
//! The control plane must still see each event once, in order (resume from the replay
//! buffer), or — when the gap outgrew the buffer or the node restarted — the events that
//! reconcile it with the node's state (snapshot resync).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shardcast_client::{udp, Client, ClientConfig, TimeBase, VideoSpec};
use shardcast_controlplane::ids::NodeId;
use shardcast_controlplane::nodeapi::client::RemoteNode;
use shardcast_controlplane::nodeapi::credential::{Audience, Verifier};
use shardcast_controlplane::nodeapi::eventlog::DEFAULT_REPLAY;
use shardcast_controlplane::nodeapi::resync::{REASON_GONE, REASON_RESTARTED};
use shardcast_controlplane::nodeapi::server::router_with_replay;
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::node::{CreatePeer, MediaNodeApi, NodeEvent, PeerId, PeerRole, RoomId};
use shardcast_dataplane::{MediaNode, MediaNodeConfig};
use tokio::sync::broadcast;
use tokio::task::AbortHandle;

const SECRET: &str = "cluster-secret-for-tests";

/// A TCP relay in front of the node API server that can drop every connection at once. The
/// node advertises the relay's address (as a node behind a proxy would): that is the address
/// its tokens name.
struct Relay {
    addr: SocketAddr,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Relay {
    /// A relay that drops every connection until [`Relay::restore`] names its upstream.
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(Mutex::new(None));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let (up, conns) = (up.clone(), conns.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut down, _)) = listener.accept().await else {
                        return;
                    };
                    let Some(target) = *up.lock().unwrap() else {
                        continue; // cut: the connection is dropped at once
                    };
                    let task = tokio::spawn(async move {
                        if let Ok(mut upc) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut down, &mut upc).await;
                        }
                    });
                    conns.lock().unwrap().push(task.abort_handle());
                }
            })
            .abort_handle()
        };
        Self {
            addr,
            upstream: up,
            conns,
            accept,
        }
    }

    /// The node API base URL through the relay.
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every open connection and refuses new ones.
    fn cut(&self) {
        *self.upstream.lock().unwrap() = None;
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = Some(upstream);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

fn node_id() -> NodeId {
    NodeId::parse("node-1").unwrap()
}

/// A real media node (one shard, portable driver) behind the node API server, advertised at
/// `relay` and connected to it.
async fn node_server(replay: usize, relay: &Relay) -> (Arc<dyn MediaNodeApi>, SocketAddr) {
    let mut nc = MediaNodeConfig::default();
    nc.shards.shards = 1;
    nc.shards.pin = false;
    nc.shards.backend = IoBackend::Portable;
    let node: Arc<dyn MediaNodeApi> = Arc::new(MediaNode::start(nc).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let credentials = Verifier::new(Audience::new(node_id(), &relay.url()), SECRET, None);
    let router = router_with_replay(node.clone(), credentials, replay);
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    relay.restore(addr);
    (node, addr)
}

/// A publisher (audio + one video layer) on its own UDP socket, driven by a thread once
/// `drive` is called.
struct Publisher {
    client: Arc<Mutex<Client>>,
    sock: Option<UdpSocket>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Publisher {
    fn new() -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = Client::new(
            ClientConfig::new("a", 1, TimeBase::real())
                .with_audio()
                .with_video(VideoSpec::single(300_000)),
            sock.local_addr().unwrap(),
            Instant::now(),
        )
        .unwrap();
        Self {
            client: Arc::new(Mutex::new(client)),
            sock: Some(sock),
            stop: Arc::default(),
            thread: None,
        }
    }

    /// Offers through `api`, applies the answer; nothing flows until `drive`.
    async fn create(&self, api: &dyn MediaNodeApi) -> PeerId {
        let offer = self
            .client
            .lock()
            .unwrap()
            .create_offer(Instant::now())
            .unwrap();
        let created = api
            .create_peer(CreatePeer {
                room: RoomId::new("tenant/room"),
                identity: "a".into(),
                role: PeerRole::Both,
                offer,
                bind_tracks: vec![],
                can_send_data: true,
                video_codecs: Vec::new(),
            })
            .await
            .unwrap();
        self.client
            .lock()
            .unwrap()
            .accept_answer(Instant::now(), &created.answer)
            .unwrap();
        created.peer
    }

    fn drive(&mut self) {
        let sock = self.sock.take().unwrap();
        self.thread = Some(udp::spawn_driver(
            self.client.clone(),
            sock,
            self.stop.clone(),
        ));
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Events from `rx` up to and including the first that satisfies `last`.
async fn collect_until(
    rx: &mut broadcast::Receiver<NodeEvent>,
    what: &str,
    last: impl Fn(&NodeEvent, &[NodeEvent]) -> bool,
) -> Vec<NodeEvent> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; got {got:?}"))
            .expect("event channel open");
        let done = last(&ev, &got);
        got.push(ev);
        if done {
            return got;
        }
    }
}

fn published_count(evs: &[NodeEvent]) -> usize {
    evs.iter()
        .filter(|e| matches!(e, NodeEvent::TrackPublished { .. }))
        .count()
}

/// Connected and both tracks published.
async fn until_published(rx: &mut broadcast::Receiver<NodeEvent>) -> Vec<NodeEvent> {
    collect_until(rx, "two published tracks", |ev, before| {
        matches!(ev, NodeEvent::TrackPublished { .. }) && published_count(before) == 1
    })
    .await
}

async fn until_closed(rx: &mut broadcast::Receiver<NodeEvent>) -> Vec<NodeEvent> {
    collect_until(rx, "the peer closed", |ev, _| {
        matches!(ev, NodeEvent::PeerClosed { .. })
    })
    .await
}

/// Waits until the remote's stream is down (the relay was cut).
async fn until_disconnected(remote: &RemoteNode) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while remote.is_connected() {
        assert!(
            Instant::now() < deadline,
            "event stream still up after the cut"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The events a snapshot resync reproduces: no active-speaker or video-paused moments, no
/// close reasons.
fn stateful(evs: &[NodeEvent]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match e {
            NodeEvent::PeerConnected { peer } => Some(format!("connected {peer}")),
            NodeEvent::PeerClosed { peer, .. } => Some(format!("closed {peer}")),
            NodeEvent::TrackPublished { peer, track, .. } => {
                Some(format!("published {peer} {track}"))
            }
            NodeEvent::TrackUnpublished { peer, track, .. } => {
                Some(format!("unpublished {peer} {track}"))
            }
            NodeEvent::Offer { peer, .. } => Some(format!("offer {peer}")),
            NodeEvent::ActiveSpeaker { .. } | NodeEvent::VideoPaused { .. } => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_during_a_dropped_stream_arrive_once_in_order() {
    let relay = Relay::start().await;
    let (node, server) = node_server(DEFAULT_REPLAY, &relay).await;
    let remote = RemoteNode::new(&node_id(), &relay.url(), SECRET);
    assert!(remote.wait_connected(Duration::from_secs(10)).await);
    let mut direct = node.events();
    let mut seen = remote.events();

    let mut publisher = Publisher::new();
    let peer = publisher.create(&remote).await;
    relay.cut();
    until_disconnected(&remote).await;
    // The peer connects, publishes and is closed (by another control plane) while this one
    // cannot hear the node.
    publisher.drive();
    let mut expected = until_published(&mut direct).await;
    assert!(expected.contains(&NodeEvent::PeerConnected { peer }));
    node.close_peer(peer).await.unwrap();
    expected.extend(until_closed(&mut direct).await);
    relay.restore(server);

    // Replayed, not resynced: the close keeps the node's own reason.
    let got = until_closed(&mut seen).await;
    assert_eq!(got, expected, "events seen through the node API differ");
    // Nothing is delivered twice afterwards either.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(matches!(
        seen.try_recv(),
        Err(broadcast::error::TryRecvError::Empty)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gap_older_than_the_replay_buffer_is_resynced_from_a_snapshot() {
    let relay = Relay::start().await;
    let (node, server) = node_server(1, &relay).await;
    let remote = RemoteNode::new(&node_id(), &relay.url(), SECRET);
    assert!(remote.wait_connected(Duration::from_secs(10)).await);
    let mut direct = node.events();
    let mut seen = remote.events();

    let mut publisher = Publisher::new();
    let peer = publisher.create(&remote).await;
    relay.cut();
    until_disconnected(&remote).await;
    publisher.drive();
    let expected = until_published(&mut direct).await;
    relay.restore(server);
    let got = until_published(&mut seen).await;
    assert_eq!(stateful(&got), stateful(&expected));

    // Second gap: another control plane closes the peer while this one is cut off.
    relay.cut();
    until_disconnected(&remote).await;
    node.close_peer(peer).await.unwrap();
    let expected = until_closed(&mut direct).await;
    relay.restore(server);
    let got = until_closed(&mut seen).await;
    assert_eq!(stateful(&got), stateful(&expected));
    assert_eq!(
        got.last(),
        Some(&NodeEvent::PeerClosed {
            peer,
            reason: REASON_GONE.into()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_of_a_restarted_node_are_closed() {
    let relay = Relay::start().await;
    let (_old, _) = node_server(DEFAULT_REPLAY, &relay).await;
    let remote = RemoteNode::new(&node_id(), &relay.url(), SECRET);
    assert!(remote.wait_connected(Duration::from_secs(10)).await);
    let mut seen = remote.events();
    let publisher = Publisher::new();
    let peer = publisher.create(&remote).await;

    // The node process is replaced: same address, a fresh node API server (new epoch).
    relay.cut();
    until_disconnected(&remote).await;
    let (_new, _) = node_server(DEFAULT_REPLAY, &relay).await;
    let got = until_closed(&mut seen).await;
    assert_eq!(
        got,
        vec![NodeEvent::PeerClosed {
            peer,
            reason: REASON_RESTARTED.into()
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_current_active_speaker_is_resynced_after_a_gap() {
    let relay = Relay::start().await;
    let (node, server) = node_server(1, &relay).await;
    let remote = RemoteNode::new(&node_id(), &relay.url(), SECRET);
    assert!(remote.wait_connected(Duration::from_secs(10)).await);
    let mut direct = node.events();
    let mut seen = remote.events();

    let mut publisher = Publisher::new();
    let peer = publisher.create(&remote).await;
    relay.cut();
    until_disconnected(&remote).await;
    // The publisher connects, publishes and becomes the room's speaker unheard; the node
    // names a speaker only when it changes, so no later event would tell.
    publisher.drive();
    let spoke = |ev: &NodeEvent, _: &[NodeEvent]| matches!(ev, NodeEvent::ActiveSpeaker { .. });
    let expected = collect_until(&mut direct, "an active speaker", spoke).await;
    let speaker = NodeEvent::ActiveSpeaker {
        room: RoomId::new("tenant/room"),
        peer,
    };
    assert_eq!(expected.last(), Some(&speaker));
    relay.restore(server);
    let got = collect_until(&mut seen, "the active speaker", spoke).await;
    assert_eq!(got.last(), Some(&speaker));
    // Snapshot resync (the gap outgrew a replay of 1): the state came with it.
    assert!(stateful(&got).contains(&format!("connected {peer}")));
    assert_eq!(published_count(&got), 2);
}

/// A node whose address refuses connections (its process is gone) is lost after
/// `lost_after`: the client stops, and calls fail at once instead of being sent; while a
/// link that only drops connections (the cuts above, a reset) is resumed, never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_refuses_reconnects_is_lost_and_not_retried() {
    let relay = Relay::start().await;
    let (_node, server) = node_server(DEFAULT_REPLAY, &relay).await;
    let lost_after = Duration::from_millis(400);
    let remote = RemoteNode::with_lost_after(&node_id(), &relay.url(), SECRET, lost_after);
    assert!(remote.wait_connected(Duration::from_secs(10)).await);
    let mut lost = remote.lost();

    // Connections dropped, new ones accepted then dropped: not lost, however long.
    relay.cut();
    until_disconnected(&remote).await;
    tokio::time::sleep(lost_after * 4).await;
    assert!(!*lost.borrow(), "a broken link is not a lost node");
    relay.restore(server);
    assert!(remote.wait_connected(Duration::from_secs(10)).await);

    // Nothing listens any more: connection refused.
    relay.cut();
    relay.accept.abort();
    let gone = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), lost.wait_for(|l| *l))
        .await
        .expect("lost within 10 s")
        .unwrap();
    assert!(
        gone.elapsed() >= lost_after,
        "lost after {:?}",
        gone.elapsed()
    );
    let at = Instant::now();
    let err = remote.load().await.unwrap_err();
    assert!(
        matches!(err, shardcast_dataplane::node::NodeError::Unavailable(_)),
        "{err}"
    );
    assert!(
        at.elapsed() < Duration::from_secs(1),
        "the call went out: {:?}",
        at.elapsed()
    );
}
