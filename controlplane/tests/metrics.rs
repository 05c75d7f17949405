//! The Prometheus endpoint of the real `shardcast serve` binary: off unless asked for, on
//! its own listener, a parseable text exposition whose request counters follow the REST
//! calls made (by route template, never the raw path), whose shard counters show media
//! that really flowed (a WHIP publisher and a WHEP player from shardcast-client over real
//! UDP) and whose signaling gauges follow a real WebSocket session.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::{json, Value};
use shardcast_client::{Client, ClientConfig, TimeBase, VideoSpec};
use support::ports::free_tcp_port;
use support::serve::{spawn, Server};
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "metrics-test-admin-key-0123456789";

/// Starts `shardcast serve` on loopback with `extra` flags and `env`; returns the guard, the
/// HTTP base URL and the metrics base URL if the server printed one.
fn start(
    data: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Server, String, Option<String>) {
    let data = data.to_str().unwrap();
    let mut args = vec!["serve", "--dev", "--listen", "127.0.0.1:0", "--shards", "1"];
    args.extend([
        "--io-backend",
        "portable",
        "--admin-key",
        ADMIN,
        "--data-dir",
        data,
    ]);
    args.extend(extra);
    spawn(&args, env, "shardcast: listening on ")
}

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A parsed scrape.
struct Scrape {
    samples: Vec<Sample>,
}

/// Parses `{k="v",...}` starting after `{`; returns the labels and the rest after `}`.
fn parse_labels(s: &str) -> (BTreeMap<String, String>, &str) {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return (labels, r);
        }
        let eq = rest.find('=').expect("label has =");
        let key = rest[..eq].to_string();
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name {key:?}"
        );
        let mut chars = rest[eq + 1..].char_indices();
        assert_eq!(
            chars.next().map(|c| c.1),
            Some('"'),
            "label value is quoted"
        );
        let mut value = String::new();
        let end = loop {
            match chars.next().expect("unterminated label value") {
                (_, '\\') => match chars.next().unwrap().1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => panic!("bad escape \\{c}"),
                },
                (i, '"') => break eq + 1 + i + 1,
                (_, '\n') => panic!("raw newline in a label value"),
                (_, c) => value.push(c),
            }
        };
        assert!(labels.insert(key, value).is_none(), "duplicate label");
        rest = &rest[end..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses a text exposition and checks its shape: every sample line is
/// `name{labels} value`, every family has HELP and TYPE before its samples, and no family
/// appears twice.
fn parse(text: &str) -> Scrape {
    let mut help: HashMap<String, ()> = HashMap::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("# HELP ") {
            let name = h.split(' ').next().unwrap().to_string();
            assert!(
                help.insert(name.clone(), ()).is_none(),
                "family {name} twice"
            );
            current = name;
        } else if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut it = t.split(' ');
            let (name, kind) = (it.next().unwrap(), it.next().unwrap());
            assert_eq!(name, current, "TYPE right after HELP");
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name}");
            }
            types.insert(name.to_string(), kind.to_string());
        } else {
            assert!(!line.starts_with('#'), "stray comment {line:?}");
            let name_end = line.find(['{', ' ']).expect("sample has a value");
            let name = &line[..name_end];
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "bad name in {line:?}"
            );
            assert_eq!(name, current, "sample {line:?} outside its family");
            assert!(types.contains_key(name), "{name} has no TYPE");
            let (labels, rest) = match line[name_end..].strip_prefix('{') {
                Some(r) => parse_labels(r),
                None => (BTreeMap::new(), &line[name_end..]),
            };
            let value = rest.strip_prefix(' ').expect("one space before the value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            samples.push((name.to_string(), labels, value));
        }
    }
    assert!(text.ends_with('\n'));
    Scrape { samples }
}

impl Scrape {
    /// Samples of `name` whose labels include `want`.
    fn find<'a>(
        &'a self,
        name: &'a str,
        want: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |(n, l, _)| {
            n == name
                && want
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum over the samples `find` returns (0 when none).
    fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.find(name, want).map(|s| s.2).sum()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.0 == name)
    }
}

async fn scrape(http: &reqwest::Client, metrics: &str) -> Scrape {
    let r = http.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse(&r.text().await.unwrap())
}

/// Scrapes until `ok` holds (shard snapshots are about a second old; the node census is
/// cached for a few seconds), failing with the last scrape's samples of `name`.
async fn scrape_until(
    http: &reqwest::Client,
    metrics: &str,
    name: &str,
    ok: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = scrape(http, metrics).await;
        if ok(&s) {
            return s;
        }
        if Instant::now() > deadline {
            let seen: Vec<_> = s.find(name, &[]).collect();
            panic!("{name} never got there: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn requests(s: &Scrape, method: &str, route: &str, status: &str) -> f64 {
    s.sum(
        "shardcast_http_requests_total",
        &[("method", method), ("route", route), ("status", status)],
    )
}

async fn dev_token(http: &reqwest::Client, url: &str, room: &str, identity: &str) -> String {
    let v: Value = http
        .get(format!("{url}/dev/token?room={room}&identity={identity}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_string()
}

async fn post_sdp(http: &reqwest::Client, url: &str, token: &str, sdp: &str) -> (u16, String) {
    let r = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/sdp")
        .body(sdp.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[test]
fn serve_exports_requests_media_sessions_and_process_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url, metrics) = start(
        &dir.path().join("data"),
        &["--metrics-listen", "127.0.0.1:0"],
        &[],
    );
    let metrics = metrics.expect("the metrics line precedes the listening line");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();

        // Before any call: a well-formed exposition with the process, shard and node families.
        let s = scrape(&http, &metrics).await;
        let start = s.sum("process_start_time_seconds", &[]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            start > now - 600.0 && start <= now + 1.0,
            "{start} vs {now}"
        );
        assert!(s.sum("process_resident_memory_bytes", &[]) > 0.0);
        assert!(s.has("process_cpu_seconds_total"));
        assert_eq!(
            s.sum(
                "shardcast_media_info",
                &[("shard", "0"), ("backend", "portable")]
            ),
            1.0
        );
        assert_eq!(s.sum("shardcast_build_info", &[("role", "serve")]), 1.0);
        assert_eq!(requests(&s, "GET", "/v1/nodes", "200"), 0.0);

        // ICE-TCP (on by default): something that is not RFC 4571 on the shard's TCP port is
        // closed and counted by reason.
        let tcp_addr = s
            .find("shardcast_media_info", &[("shard", "0")])
            .next()
            .and_then(|(_, l, _)| l.get("tcp_addr").cloned())
            .expect("shard 0 has a tcp_addr label");
        {
            use std::io::Write;
            let mut junk = std::net::TcpStream::connect(tcp_addr.as_str()).unwrap();
            junk.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        }
        let closed = [("shard", "0"), ("reason", "bad_frame")];
        let t = scrape_until(&http, &metrics, "shardcast_tcp_closed_total", |s| {
            s.sum("shardcast_tcp_closed_total", &closed) == 1.0
        })
        .await;
        assert_eq!(
            t.sum("shardcast_tcp_accepted_total", &[("shard", "0")]),
            1.0
        );
        assert_eq!(t.sum("shardcast_tcp_connections", &[("shard", "0")]), 0.0);
        assert_eq!(
            t.find("shardcast_tcp_closed_total", &[("shard", "0")])
                .count(),
            6,
            "one series per close reason"
        );
        assert_eq!(
            s.find("shardcast_drops_total", &[("shard", "0")]).count(),
            shardcast_dataplane::DropReason::ALL.len(),
            "one series per drop reason"
        );

        // REST calls: counted per route template and status, exactly as made.
        for _ in 0..3 {
            let r = http
                .get(format!("{url}/v1/nodes"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        for room in ["alpha", "beta"] {
            let r = http
                .get(format!("{url}/v1/rooms/{room}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        let r = http
            .get(format!("{url}/no/such/thing"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let s = scrape(&http, &metrics).await;
        assert_eq!(requests(&s, "GET", "/v1/nodes", "200"), 3.0);
        assert_eq!(requests(&s, "GET", "/v1/rooms/{room}", "401"), 2.0);
        assert_eq!(requests(&s, "GET", "unmatched", "404"), 1.0);
        for (_, labels, _) in s.find("shardcast_http_requests_total", &[]) {
            let route = &labels["route"];
            assert!(
                !route.contains("alpha") && !route.contains("no/such"),
                "{route}"
            );
        }
        assert_eq!(s.sum("shardcast_media_nodes_registered", &[]), 1.0);
        assert_eq!(s.sum("shardcast_media_nodes_draining", &[]), 0.0);

        // The metrics listener serves only /metrics.
        let r = http
            .get(format!("{metrics}/v1/nodes"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);

        // Media: a WHIP publisher and a WHEP player over real UDP.
        let cam_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut cam = Client::new(
            ClientConfig::new("cam", 7, TimeBase::real())
                .with_audio()
                .with_video(VideoSpec::single(300_000)),
            cam_sock.local_addr().unwrap(),
            Instant::now(),
        )
        .unwrap();
        let offer = cam.create_offer(Instant::now()).unwrap();
        let token = dev_token(&http, &url, "live", "cam").await;
        let (status, answer) = post_sdp(&http, &format!("{url}/whip/live"), &token, &offer).await;
        assert_eq!(status, 201, "{answer}");
        cam.accept_answer(Instant::now(), &answer).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cam_stop = stop.clone();
        let cam_task = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(40);
            let until = |_: &Client| cam_stop.load(std::sync::atomic::Ordering::Relaxed);
            shardcast_client::udp::run_blocking(&mut cam, &cam_sock, until, deadline).unwrap();
        });
        let viewer_sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut viewer = Client::new(
            ClientConfig::new("viewer", 9, TimeBase::real()).with_receive_offer(),
            viewer_sock.local_addr().unwrap(),
            Instant::now(),
        )
        .unwrap();
        let offer = viewer.create_offer(Instant::now()).unwrap();
        let token = dev_token(&http, &url, "live", "viewer").await;
        // WHEP answers 404 until the publisher's tracks are listed in the room.
        let deadline = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            let (status, answer) =
                post_sdp(&http, &format!("{url}/whep/live"), &token, &offer).await;
            if status == 201 {
                break answer;
            }
            assert_eq!(status, 404, "{answer}");
            assert!(Instant::now() < deadline, "nothing to play: {answer}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        viewer.accept_answer(Instant::now(), &answer).unwrap();
        let viewer_stop = stop.clone();
        let viewer_task = tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(40);
            let until = |_: &Client| viewer_stop.load(std::sync::atomic::Ordering::Relaxed);
            shardcast_client::udp::run_blocking(&mut viewer, &viewer_sock, until, deadline)
                .unwrap();
            viewer
        });
        let s = scrape_until(&http, &metrics, "shardcast_rtp_forwarded_total", |s| {
            s.sum("shardcast_rtp_forwarded_total", &[("shard", "0")]) > 0.0
        })
        .await;
        assert!(s.sum("shardcast_rtp_in_total", &[("shard", "0")]) > 0.0);
        assert!(s.sum("shardcast_datagrams_in_total", &[("shard", "0")]) > 0.0);
        assert!(s.sum("shardcast_driver_tx_datagrams_total", &[("shard", "0")]) > 0.0);
        assert_eq!(s.sum("shardcast_peers", &[("shard", "0")]), 2.0);
        assert!(s.sum("shardcast_shard_snapshot_age_seconds", &[("shard", "0")]) >= 0.0);
        assert!(s.sum("shardcast_shard_cpu_seconds_total", &[("shard", "0")]) > 0.0);
        assert_eq!(
            s.sum("shardcast_signaling_participants", &[("state", "joined")]),
            2.0
        );
        assert_eq!(s.sum("shardcast_signaling_rooms", &[]), 1.0);
        assert_eq!(requests(&s, "POST", "/whip/{room}", "201"), 1.0);
        assert!(requests(&s, "POST", "/whep/{room}", "201") == 1.0);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        cam_task.await.unwrap();
        let viewer = viewer_task.await.unwrap();
        assert!(
            viewer.stats().audio_tracks().any(|t| t.audio_packets > 0)
                || viewer.stats().video_tracks().any(|t| t.packets > 0),
            "the player received nothing, yet the server counted forwards"
        );

        // A WebSocket session: open while its socket is connected.
        assert_eq!(s.sum("shardcast_signaling_websockets_open", &[]), 0.0);
        let addr = url.trim_start_matches("http://");
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/rtc"))
            .await
            .unwrap();
        let token = dev_token(&http, &url, "talk", "ann").await;
        let join = json!({"type": "join", "token": token}).to_string();
        ws.send(Message::Text(join.into())).await.unwrap();
        scrape_until(
            &http,
            &metrics,
            "shardcast_signaling_websockets_open",
            |s| {
                s.sum("shardcast_signaling_websockets_open", &[]) == 1.0
                    && s.sum("shardcast_signaling_rooms", &[]) >= 2.0
            },
        )
        .await;
        ws.close(None).await.unwrap();
        drop(ws);
        let s = scrape_until(
            &http,
            &metrics,
            "shardcast_signaling_websockets_open",
            |s| s.sum("shardcast_signaling_websockets_open", &[]) == 0.0,
        )
        .await;
        assert_eq!(requests(&s, "GET", "/v1/rtc", "101"), 1.0);
    });
    drop(server);
}

#[test]
fn metrics_listener_is_off_by_default_and_on_with_the_env_variable() {
    let dir = tempfile::tempdir().unwrap();
    // No flag, no env: the first line is the listening line and nothing else is printed.
    let (server, url, metrics) = start(&dir.path().join("a"), &[], &[]);
    assert_eq!(metrics, None);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The main listener does not serve metrics either.
        let r = reqwest::get(format!("{url}/metrics")).await.unwrap();
        assert_eq!(r.status(), 404);
    });
    drop(server);

    let (server, _url, metrics) = start(
        &dir.path().join("b"),
        &[],
        &[("SHARDCAST_METRICS_LISTEN", "127.0.0.1:0")],
    );
    let metrics = metrics.expect("SHARDCAST_METRICS_LISTEN turns the listener on");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let s = scrape(&http, &metrics).await;
        assert_eq!(s.sum("shardcast_build_info", &[("role", "serve")]), 1.0);
        let r = http.post(format!("{metrics}/other")).send().await.unwrap();
        assert_eq!(r.status(), 404);
    });
    drop(server);
}

/// The distributed roles as real processes on a real etcd: the control plane exports the
/// node registry (registered, then draining after the REST drain) and its requests; the
/// media node exports its shards; neither exports what it does not run.
#[test]
fn controlplane_and_medianode_export_their_own_parts() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd = rt.block_on(support::etcd::EtcdProcess::start());
    let dir = tempfile::tempdir().unwrap();
    let secret = "metrics-cluster-secret-0123456789";
    let node_listen = format!("127.0.0.1:{}", free_tcp_port());
    let node_data = dir.path().join("node");
    let (node, _, node_metrics) = spawn(
        &[
            "medianode",
            "--etcd",
            &etcd.endpoint,
            "--cluster-secret",
            secret,
            "--node-listen",
            &node_listen,
            "--node-id",
            "m1",
            "--shards",
            "1",
            "--io-backend",
            "portable",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
            node_data.to_str().unwrap(),
        ],
        &[],
        "shardcast: media node ",
    );
    let cp_data = dir.path().join("cp");
    let (cp, url, cp_metrics) = spawn(
        &[
            "controlplane",
            "--listen",
            "127.0.0.1:0",
            "--etcd",
            &etcd.endpoint,
            "--cluster-secret",
            secret,
            "--admin-key",
            ADMIN,
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
            cp_data.to_str().unwrap(),
        ],
        &[],
        "shardcast: listening on ",
    );
    let (node_metrics, cp_metrics) = (node_metrics.unwrap(), cp_metrics.unwrap());
    rt.block_on(async {
        let http = reqwest::Client::new();
        let s = scrape(&http, &node_metrics).await;
        assert_eq!(s.sum("shardcast_build_info", &[("role", "medianode")]), 1.0);
        assert_eq!(
            s.sum(
                "shardcast_media_info",
                &[("shard", "0"), ("backend", "portable")]
            ),
            1.0
        );
        assert!(s.has("shardcast_rtp_forwarded_total") && s.has("process_cpu_seconds_total"));
        assert!(!s.has("shardcast_http_requests_total"));
        assert!(!s.has("shardcast_media_nodes_registered"));

        let s = scrape_until(
            &http,
            &cp_metrics,
            "shardcast_media_nodes_registered",
            |s| s.sum("shardcast_media_nodes_registered", &[]) == 1.0,
        )
        .await;
        assert_eq!(
            s.sum("shardcast_build_info", &[("role", "controlplane")]),
            1.0
        );
        assert_eq!(s.sum("shardcast_media_nodes_draining", &[]), 0.0);
        assert!(
            !s.has("shardcast_media_info"),
            "no shards in a control plane"
        );
        let r = http
            .post(format!("{url}/v1/nodes/m1/drain"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let s = scrape_until(&http, &cp_metrics, "shardcast_media_nodes_draining", |s| {
            s.sum("shardcast_media_nodes_draining", &[]) == 1.0
        })
        .await;
        assert_eq!(s.sum("shardcast_media_nodes_registered", &[]), 1.0);
        assert_eq!(requests(&s, "POST", "/v1/nodes/{node}/drain", "200"), 1.0);
    });
    drop(cp);
    drop(node);
    drop(etcd);
}
