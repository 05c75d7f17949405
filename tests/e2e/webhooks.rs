//! Signed webhooks from a real `shardcast serve` to a real HTTP receiver on loopback:
//! a scripted call's events arrive once each, in order, signed; a receiver that fails first
//! gets retries and then the event; a receiver that never answers leaves `failed` in
//! /metrics and the call undisturbed; a stopping server delivers what it still holds; bad
//! webhook URLs are refused when set.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use aws_lc_rs::hmac;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use shardcast_tests::participant::Participant;
use shardcast_tests::server::Server;
use shardcast_tests::webhook_receiver::{Answer, Received, Receiver};
use shardcast_tests::{free_tcp_port, wait_for};

const ADMIN_KEY: &str = "webhook-test-admin-key";

/// A server with fast retries (the defaults wait seconds), the admin API and /metrics.
struct Setup {
    server: Server,
    metrics: String,
    http: Client,
    _dir: tempfile::TempDir,
}

fn start(webhooks_toml: &str) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("webhooks.toml");
    std::fs::write(&config, format!("[webhooks]\n{webhooks_toml}"))?;
    let metrics = format!("127.0.0.1:{}", free_tcp_port());
    let server = Server::start_with_args(&[
        "--config",
        config.to_str().context("utf-8 path")?,
        "--admin-key",
        ADMIN_KEY,
        "--metrics-listen",
        &metrics,
    ])?;
    Ok(Setup {
        server,
        metrics: format!("http://{metrics}/metrics"),
        http: Client::builder().timeout(Duration::from_secs(10)).build()?,
        _dir: dir,
    })
}

impl Setup {
    fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server.base_url))
            .bearer_auth(ADMIN_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send()?;
        let status = resp.status().as_u16();
        let text = resp.text()?;
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        Ok((status, v))
    }

    /// Sets the default tenant's webhook; returns the generated secret.
    fn set_webhook(&self, url: &str) -> anyhow::Result<String> {
        let (status, v) = self.admin(
            reqwest::Method::PUT,
            "/v1/tenants/default/webhook",
            Some(json!({ "url": url })),
        )?;
        ensure!(status == 200, "PUT webhook: {status} {v}");
        let secret = v["secret"]
            .as_str()
            .context("generated secret shown once")?;
        Ok(secret.to_string())
    }

    fn metric(&self, name: &str) -> anyhow::Result<u64> {
        let text = self
            .http
            .get(&self.metrics)
            .send()?
            .error_for_status()?
            .text()?;
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .with_context(|| format!("{name} not in /metrics"))?;
        Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
    }
}

/// Checks `Shardcast-Signature` as a receiver would, with HMAC from aws-lc-rs directly.
fn check_signature(r: &Received, secret: &str) -> anyhow::Result<()> {
    let header = r
        .header("shardcast-signature")
        .context("no Shardcast-Signature")?;
    let (t, mac) = header
        .split_once(",v1=")
        .and_then(|(t, mac)| Some((t.strip_prefix("t=")?, mac)))
        .with_context(|| format!("malformed signature header {header}"))?;
    let t: u64 = t.parse()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    ensure!(
        t.abs_diff(now) < 300,
        "signature timestamp {t} is not now ({now})"
    );
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&r.body);
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let expected: String = hmac::sign(&key, &signed)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ensure!(
        mac == expected,
        "bad signature on {}",
        String::from_utf8_lossy(&r.body)
    );
    let wrong = hmac::Key::new(hmac::HMAC_SHA256, b"not-the-secret-at-all");
    ensure!(
        hmac::verify(&wrong, &signed, &hex_bytes(mac)?).is_err(),
        "another secret verifies too"
    );
    Ok(())
}

/// Runs the Python `verify` example of docs/API.md ("Webhooks") on a received request, as a
/// reader would paste it: the documented example must accept what the server sends.
fn docs_example_verifies(r: &Received, secret: &str, body: &[u8]) -> anyhow::Result<bool> {
    let api = std::fs::read_to_string(shardcast_tests::repo_root().join("docs/API.md"))?;
    let from = api
        .find("**Signature.**")
        .context("no signature section in docs/API.md")?;
    let code = api[from..]
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .context("no python block after **Signature.**")?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("verify.py");
    std::fs::write(
        &script,
        format!(
            "{code}\nimport sys\nbody = open(sys.argv[3], 'rb').read()\n\
             print('valid' if verify(sys.argv[1], sys.argv[2], body) else 'invalid')\n"
        ),
    )?;
    let body_file = dir.path().join("body.json");
    std::fs::write(&body_file, body)?;
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(secret)
        .arg(r.header("shardcast-signature").context("no signature")?)
        .arg(&body_file)
        .output()?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    ensure!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(said == "valid")
}

fn hex_bytes(s: &str) -> anyhow::Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&s[i..i + 2], 16)?))
        .collect()
}

/// Waits until the receiver holds at least `n` requests.
fn wait_requests(rx: &Receiver, n: usize, what: &str) -> anyhow::Result<Vec<Received>> {
    wait_for(what, Duration::from_secs(30), || {
        let got = rx.requests();
        Ok((got.len() >= n).then_some(got))
    })
    .with_context(|| format!("received so far: {:?}", summary(&rx.requests())))
}

fn summary(reqs: &[Received]) -> Vec<String> {
    reqs.iter()
        .map(|r| match r.json() {
            Ok(v) => format!("{} {}", v["event"], v["payload"]),
            Err(_) => "(not json)".into(),
        })
        .collect()
}

#[test]
fn a_call_sends_each_event_once_in_order_and_signed() -> anyhow::Result<()> {
    let rx = Receiver::start(Answer::Ok)?;
    let s = start("max_attempts = 3\nbackoff_initial_ms = 100\nbackoff_max_ms = 400\n")?;
    let secret = s.set_webhook(&rx.url)?;

    // A read never shows the secret.
    let (status, got) = s.admin(reqwest::Method::GET, "/v1/tenants/default/webhook", None)?;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["url"], rx.url.as_str());
    assert!(got.get("secret").is_none(), "{got}");
    assert!(!got.to_string().contains(&secret), "{got}");
    assert_eq!(
        got["secret_hint"].as_str().unwrap().chars().count(),
        5,
        "{got}"
    );

    // The script: the room is created, ann joins and publishes audio and video, bob joins,
    // ann leaves, bob leaves, the room is deleted. Each step waits for the previous step's
    // events, so the expected order is exact.
    let ann_token = s.server.dev_token("standup", "ann")?;
    wait_requests(&rx, 1, "room_started")?;
    let ann = Participant::join(&s.server.base_url, &ann_token, "ann", true)?;
    wait_requests(&rx, 4, "ann joined and published two tracks")?;
    let bob_token = s.server.dev_token("standup", "bob")?;
    let bob = Participant::join(&s.server.base_url, &bob_token, "bob", false)?;
    wait_requests(&rx, 5, "bob joined")?;
    ann.leave()?;
    wait_requests(&rx, 8, "ann's tracks and ann left")?;
    bob.leave()?;
    wait_requests(&rx, 9, "bob left")?;
    let (status, key) = s.admin(reqwest::Method::POST, "/v1/tenants/default/keys", None)?;
    assert_eq!(status, 201, "{key}");
    let deleted = s
        .http
        .delete(format!("{}/v1/rooms/standup", s.server.base_url))
        .basic_auth(key["id"].as_str().unwrap(), key["secret"].as_str())
        .send()?;
    assert_eq!(deleted.status().as_u16(), 204);
    wait_requests(&rx, 10, "room_finished")?;
    // Nothing more comes: no duplicate of an event the receiver acknowledged.
    std::thread::sleep(Duration::from_secs(2));
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 10, "{:?}", summary(&reqs));

    let bodies: Vec<Value> = reqs.iter().map(Received::json).collect::<Result<_, _>>()?;
    let events: Vec<&str> = bodies
        .iter()
        .map(|b| b["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "room_started",
            "participant_joined",
            "track_published",
            "track_published",
            "participant_joined",
            "track_unpublished",
            "track_unpublished",
            "participant_left",
            "participant_left",
            "room_finished",
        ],
        "{:?}",
        summary(&reqs)
    );
    assert_eq!(bodies[1]["payload"]["participant"]["identity"], "ann");
    let mut kinds: Vec<String> = bodies[2..4]
        .iter()
        .map(|b| {
            format!(
                "{} {}",
                b["payload"]["track"]["kind"], b["payload"]["track"]["source"]
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, [r#""audio" "microphone""#, r#""video" "camera""#]);
    assert!(bodies[2..4]
        .iter()
        .all(|b| b["payload"]["track"]["identity"] == "ann"));
    assert_eq!(bodies[4]["payload"]["participant"]["identity"], "bob");
    let mut published: Vec<&str> = bodies[2..4]
        .iter()
        .map(|b| b["payload"]["track"]["id"].as_str().unwrap())
        .collect();
    let mut unpublished: Vec<&str> = bodies[5..7]
        .iter()
        .map(|b| b["payload"]["track_id"].as_str().unwrap())
        .collect();
    published.sort();
    unpublished.sort();
    assert_eq!(
        published, unpublished,
        "the tracks that went are the ones published"
    );
    assert_eq!(bodies[7]["payload"]["identity"], "ann");
    assert_eq!(bodies[8]["payload"]["identity"], "bob");

    let mut ids = std::collections::HashSet::new();
    let mut last_ts = 0;
    for (r, b) in reqs.iter().zip(&bodies) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/hooks/shardcast");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("shardcast-event"), b["event"].as_str());
        assert_eq!(r.header("shardcast-event-id"), b["id"].as_str());
        assert_eq!(r.header("shardcast-attempt"), Some("1"));
        assert_eq!(b["tenant"], "default");
        assert_eq!(b["room"], "standup");
        assert!(
            ids.insert(b["id"].as_str().unwrap().to_string()),
            "duplicate id {b}"
        );
        let ts = b["timestamp"].as_u64().context("timestamp")?;
        assert!(ts >= last_ts, "timestamps go back: {b}");
        last_ts = ts;
        check_signature(r, &secret)?;
    }
    // The docs' own example accepts a real request, and refuses it changed or misread.
    let r = &reqs[1];
    assert!(docs_example_verifies(r, &secret, &r.body)?);
    let mut changed = r.body.clone();
    changed[10] ^= 1;
    assert!(!docs_example_verifies(r, &secret, &changed)?);
    assert!(!docs_example_verifies(
        r,
        "whsec_not-the-right-one",
        &r.body
    )?);

    assert_eq!(s.metric("shardcast_webhooks_delivered_total")?, 10);
    assert_eq!(s.metric("shardcast_webhooks_retried_total")?, 0);
    assert_eq!(s.metric("shardcast_webhooks_failed_total")?, 0);
    assert_eq!(s.metric("shardcast_webhooks_dropped_total")?, 0);
    Ok(())
}

#[test]
fn a_receiver_that_fails_first_gets_retries_then_the_event() -> anyhow::Result<()> {
    let rx = Receiver::start(Answer::FailFirst(2))?;
    let s = start("max_attempts = 5\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n")?;
    let secret = s.set_webhook(&rx.url)?;
    s.server.dev_token("retried", "ann")?;
    let reqs = wait_requests(&rx, 3, "two failed attempts and a third")?;
    std::thread::sleep(Duration::from_secs(1));
    let reqs = if rx.requests().len() > reqs.len() {
        rx.requests()
    } else {
        reqs
    };
    assert_eq!(reqs.len(), 3, "{:?}", summary(&reqs));
    let answered: Vec<u16> = reqs.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [500, 500, 200]);
    let attempts: Vec<&str> = reqs
        .iter()
        .map(|r| r.header("shardcast-attempt").unwrap())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    // The same event each time: same id and body, a fresh signature for each attempt.
    let first = reqs[0].json()?;
    assert_eq!(first["event"], "room_started");
    assert_eq!(first["room"], "retried");
    for r in &reqs {
        assert_eq!(r.body, reqs[0].body);
        check_signature(r, &secret)?;
    }
    assert_eq!(s.metric("shardcast_webhooks_retried_total")?, 2);
    assert_eq!(s.metric("shardcast_webhooks_delivered_total")?, 1);
    assert_eq!(s.metric("shardcast_webhooks_failed_total")?, 0);
    Ok(())
}

/// SIGTERM while events wait for a retry: the stopping server closes its session, then keeps
/// delivering (the retry included) before it exits. The receiver fails `room_started` once
/// and the retry comes 3 s later, after the 1 s linger at which the process used to exit
/// with `participant_joined` and `participant_left` still queued behind it (in order per
/// room), lost.
#[test]
fn a_stopping_server_delivers_the_events_it_still_holds() -> anyhow::Result<()> {
    let rx = Receiver::start(Answer::FailFirst(1))?;
    let mut s = start("max_attempts = 3\nbackoff_initial_ms = 3000\nbackoff_max_ms = 3000\n")?;
    s.set_webhook(&rx.url)?;
    let token = s.server.dev_token("closing", "ann")?;
    wait_requests(&rx, 1, "room_started, answered 500")?;
    let ann = Participant::join(&s.server.base_url, &token, "ann", false)?;
    s.server.terminate();
    let code = s.server.wait_exit(Duration::from_secs(15))?;
    assert_eq!(code, Some(0), "{}", s.server.log_tail(20));
    drop(ann);
    let reqs = rx.requests();
    let events: Vec<String> = reqs
        .iter()
        .map(|r| Ok(r.json()?["event"].as_str().unwrap_or("?").to_string()))
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(
        events,
        [
            "room_started",
            "room_started",
            "participant_joined",
            "participant_left"
        ],
        "{:?}\n{}",
        summary(&reqs),
        s.server.log_tail(20)
    );
    let answered: Vec<u16> = reqs.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [500, 200, 200, 200]);
    Ok(())
}

#[test]
fn a_silent_receiver_counts_failures_and_disturbs_nothing() -> anyhow::Result<()> {
    let rx = Receiver::start(Answer::Silent)?;
    let s = start(
        "max_attempts = 2\ntimeout_ms = 500\nbackoff_initial_ms = 100\nbackoff_max_ms = 100\n",
    )?;
    s.set_webhook(&rx.url)?;
    // While every event of the room waits on the silent receiver, the call goes on: ann
    // joins and publishes, bob joins and receives her media, REST answers.
    let started = Instant::now();
    let ann = Participant::join(
        &s.server.base_url,
        &s.server.dev_token("quiet", "ann")?,
        "ann",
        true,
    )?;
    let mut bob = Participant::join(
        &s.server.base_url,
        &s.server.dev_token("quiet", "bob")?,
        "bob",
        false,
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while bob.received() < 50 {
        if Instant::now() > deadline {
            bail!("bob received {} packets only", bob.received());
        }
        bob.pump(Duration::from_millis(100))?;
    }
    let (status, _) = s.admin(reqwest::Method::GET, "/v1/tenants/default", None)?;
    assert_eq!(status, 200);
    // room_started, 2 × participant_joined, 2 × track_published: each tried twice, then failed.
    let failed = wait_for("5 failed events", Duration::from_secs(30), || {
        let n = s.metric("shardcast_webhooks_failed_total")?;
        Ok((n >= 5).then_some(n))
    })?;
    assert_eq!(failed, 5);
    assert_eq!(s.metric("shardcast_webhooks_delivered_total")?, 0);
    assert_eq!(s.metric("shardcast_webhooks_retried_total")?, 5);
    assert_eq!(s.metric("shardcast_webhooks_dropped_total")?, 0);
    assert_eq!(s.metric("shardcast_webhooks_queued")?, 0);
    // Two attempts of each, one event at a time (the room's order): ten requests.
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 10, "{:?}", summary(&reqs));
    assert!(reqs.iter().all(|r| r.answered == 0));
    drop(ann);
    drop(bob);
    assert!(started.elapsed() < Duration::from_secs(120));
    Ok(())
}

#[test]
fn bad_webhooks_are_refused_when_set() -> anyhow::Result<()> {
    let s = start("timeout_ms = 1000\n")?;
    let put = |body: Value| {
        s.admin(
            reqwest::Method::PUT,
            "/v1/tenants/default/webhook",
            Some(body),
        )
    };
    for url in [
        "ftp://127.0.0.1/hook",
        "file:///etc/passwd",
        "not a url",
        "http://user:pw@127.0.0.1/",
    ] {
        let (status, v) = put(json!({ "url": url }))?;
        assert_eq!(
            (status, v["code"].as_str()),
            (400, Some("invalid_webhook_url")),
            "{url}: {v}"
        );
    }
    // Nothing listens on a port that was free a moment ago.
    let closed = format!("http://127.0.0.1:{}/hook", free_tcp_port());
    let (status, v) = put(json!({ "url": closed }))?;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("webhook_unreachable")),
        "{v}"
    );
    assert!(
        v["message"].as_str().unwrap().contains("cannot connect"),
        "{v}"
    );
    let rx = Receiver::start(Answer::Ok)?;
    let (status, v) = put(json!({ "url": rx.url, "secret": "short" }))?;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("invalid_webhook_secret")),
        "{v}"
    );
    // None of those was stored.
    let (status, v) = s.admin(reqwest::Method::GET, "/v1/tenants/default/webhook", None)?;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("webhook_not_found")),
        "{v}"
    );
    let (status, v) = s.admin(
        reqwest::Method::PUT,
        "/v1/tenants/nobody/webhook",
        Some(json!({ "url": rx.url })),
    )?;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("tenant_not_found")),
        "{v}"
    );
    // Without the admin key: refused.
    let no_admin = s
        .http
        .put(format!("{}/v1/tenants/default/webhook", s.server.base_url))
        .json(&json!({ "url": rx.url }))
        .send()?;
    assert_eq!(no_admin.status().as_u16(), 401);
    // A given secret is used, and never shown; removing works once.
    let (status, v) = put(json!({ "url": rx.url, "secret": "0123456789abcdef-given" }))?;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("secret").is_none(), "{v}");
    assert_eq!(v["secret_hint"], "…iven");
    let (status, _) = s.admin(reqwest::Method::DELETE, "/v1/tenants/default/webhook", None)?;
    assert_eq!(status, 204);
    let (status, v) = s.admin(reqwest::Method::DELETE, "/v1/tenants/default/webhook", None)?;
    assert_eq!(
        (status, v["code"].as_str()),
        (404, Some("webhook_not_found")),
        "{v}"
    );
    Ok(())
}
