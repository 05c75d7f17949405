//! The node API server's event log falling behind the media node's own event channel: a real
//! node whose channel holds only 16 events closes 40 never-connected peers (connect timeout)
//! while the log's runtime is blocked, so the log loses most of those events. It must catch
//! up from the node's state: a `RemoteNode` listening through the node API still learns of
//! every close, and a fresh stream's snapshot no longer lists the dead peers.

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardcast_client::{Client, ClientConfig, TimeBase};
use shardcast_controlplane::ids::NodeId;
use shardcast_controlplane::nodeapi::client::RemoteNode;
use shardcast_controlplane::nodeapi::credential::{Audience, Signer, Verifier};
use shardcast_controlplane::nodeapi::eventlog::DEFAULT_REPLAY;
use shardcast_controlplane::nodeapi::server::router_with_replay;
use shardcast_controlplane::nodeapi::{StreamLine, EVENTS_PATH};
use shardcast_dataplane::driver::IoBackend;
use shardcast_dataplane::node::{CreatePeer, MediaNodeApi, NodeEvent, PeerRole, RoomId};
use shardcast_dataplane::{MediaNode, MediaNodeConfig};

const SECRET: &str = "cluster-secret-for-tests";
const PEERS: usize = 40;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An SDP offer (audio only) from a client that will never send a packet.
fn offer(i: usize, sock: &UdpSocket) -> String {
    let mut client = Client::new(
        ClientConfig::new(format!("p{i}"), i as u64, TimeBase::real()).with_audio(),
        sock.local_addr().unwrap(),
        Instant::now(),
    )
    .unwrap();
    client.create_offer(Instant::now()).unwrap()
}

// One thread: while the test blocks it, the event log cannot read the node's channel.
#[tokio::test(flavor = "current_thread")]
async fn a_lagging_event_log_resyncs_from_the_node() {
    let mut nc = MediaNodeConfig::default();
    nc.shards.shards = 1;
    nc.shards.pin = false;
    nc.shards.backend = IoBackend::Portable;
    nc.event_capacity = 16;
    nc.core.connect_timeout = CONNECT_TIMEOUT;
    let node: Arc<dyn MediaNodeApi> = Arc::new(MediaNode::start(nc).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let id = NodeId::parse("node-1").unwrap();
    let credentials = Verifier::new(Audience::new(id.clone(), &base), SECRET, None);
    let token = Signer::new(SECRET, credentials.audience().clone()).token();
    let app = router_with_replay(node.clone(), credentials, DEFAULT_REPLAY);
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let remote = RemoteNode::new(&id, &base, SECRET);
    assert!(remote.wait_connected(Duration::from_secs(10)).await);
    let mut seen = remote.events();

    let socks: Vec<UdpSocket> = (0..PEERS)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut created = BTreeSet::new();
    for (i, sock) in socks.iter().enumerate() {
        let peer = remote
            .create_peer(CreatePeer {
                room: RoomId::new("tenant/room"),
                identity: format!("p{i}"),
                role: PeerRole::Both,
                offer: offer(i, sock),
                bind_tracks: vec![],
                can_send_data: true,
                video_codecs: Vec::new(),
            })
            .await
            .unwrap()
            .peer;
        created.insert(peer);
    }
    // Block the runtime (log, server and remote alike) until every peer has timed out: the
    // node sends 40 closes into a channel of 16.
    std::thread::sleep(CONNECT_TIMEOUT + Duration::from_secs(3));
    assert_eq!(
        node.load().await.unwrap().peers,
        0,
        "peers outlived the block"
    );

    let mut closed = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while closed != created {
        let ev = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .unwrap_or_else(|_| {
                let missing: Vec<_> = created.difference(&closed).collect();
                panic!("no close seen for {} peers: {missing:?}", missing.len())
            })
            .unwrap();
        if let NodeEvent::PeerClosed { peer, .. } = ev {
            assert!(closed.insert(peer), "{peer} closed twice");
        }
    }

    // A client starting now gets a snapshot without the dead peers.
    let mut resp = reqwest::Client::new()
        .get(format!("{base}{EVENTS_PATH}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let mut buf = Vec::new();
    while !buf.contains(&b'\n') {
        buf.extend_from_slice(&resp.chunk().await.unwrap().unwrap());
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap();
    let head: StreamLine = serde_json::from_slice(line).unwrap();
    let StreamLine::Snapshot { peers, .. } = head else {
        panic!("expected a snapshot, got {head:?}")
    };
    assert!(peers.is_empty(), "stale peers in the snapshot: {peers:?}");
    server.abort();
}
