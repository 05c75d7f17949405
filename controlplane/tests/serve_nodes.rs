//! `shardcast serve` (all in one) lists its in-process media node in `GET /v1/nodes` as a
//! cluster lists its `medianode`s, and draining it through the REST call keeps new rooms off
//! it while rooms already on it go on — the real binary, real WHIP publishers (offers from
//! shardcast-client) over real HTTP.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use shardcast_client::{Client, ClientConfig, TimeBase, VideoSpec};
use support::serve::serve;

const ADMIN: &str = "serve-nodes-admin-key-0123456789";

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    async fn nodes(&self) -> Vec<Value> {
        let resp = self
            .http
            .get(format!("{}/v1/nodes", self.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        body["nodes"].as_array().unwrap().clone()
    }

    async fn drain(&self, node: &str, on: bool) -> Value {
        let url = format!("{}/v1/nodes/{node}/drain", self.url);
        let req = if on {
            self.http.post(url)
        } else {
            self.http.delete(url)
        };
        let resp = req.bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// A WHIP publish (audio + video) into `room` as `identity`: (status, error code).
    async fn publish(&self, room: &str, identity: &str) -> (u16, Option<String>) {
        let tok: Value = self
            .http
            .get(format!(
                "{}/dev/token?room={room}&identity={identity}",
                self.url
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut client = Client::new(
            ClientConfig::new(identity, 1, TimeBase::real())
                .with_audio()
                .with_video(VideoSpec::single(300_000)),
            sock.local_addr().unwrap(),
            Instant::now(),
        )
        .unwrap();
        let offer = client.create_offer(Instant::now()).unwrap();
        let resp = self
            .http
            .post(format!("{}/whip/{room}", self.url))
            .bearer_auth(tok["token"].as_str().unwrap())
            .header("content-type", "application/sdp")
            .body(offer)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let code = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["code"].as_str().map(String::from));
        (status, code)
    }
}

#[test]
fn serve_lists_its_node_and_draining_it_keeps_new_rooms_off() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = serve(&dir.path().join("data"), &["--admin-key", ADMIN]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let api = Api {
            http: reqwest::Client::new(),
            url,
        };
        let nodes = api.nodes().await;
        assert_eq!(nodes.len(), 1, "{nodes:?}");
        let n = &nodes[0];
        assert_eq!(n["id"], "local");
        assert_eq!(n["api_address"], "in-process");
        assert_eq!(n["draining"], false);
        assert_eq!(n["peers"], 0);
        assert!(n["utilization"].is_number() && n["updated_at_ms"].as_u64().unwrap() > 0);

        assert_eq!(api.publish("first", "ann").await, (201, None));
        let drained = api.drain("local", true).await;
        assert_eq!(
            (&drained["id"], &drained["draining"]),
            (&"local".into(), &true.into())
        );
        // The room already on the node goes on; a new room finds no node.
        assert_eq!(api.publish("first", "bob").await, (201, None));
        assert_eq!(
            api.publish("second", "cid").await,
            (503, Some("unavailable".into()))
        );
        // The registration reports the node's load (refreshed every third of the lease).
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let n = api.nodes().await.remove(0);
            assert_eq!(n["draining"], true);
            if n["peers"] == 2 && n["rooms"] == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "load never reported: {n}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        api.drain("local", false).await;
        assert_eq!(api.publish("second", "cid").await, (201, None));
        // Unknown nodes are still refused by name.
        let resp = api
            .http
            .post(format!("{}/v1/nodes/other/drain", api.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404);
    });
    drop(server);
}
