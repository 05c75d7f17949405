//! A client that sends no consent checks of its own while media flows (shardcast-client, a
//! str0m agent whose binding requests are dropped once connected, as stacks that check only
//! an idle pair behave) publishes over WHIP and plays over WHEP through a real
//! `shardcast serve` for 60 s: it stays connected because the server checks consent itself
//! and the client answers. Meanwhile a stranger fires binding requests with the publisher's
//! credentials but a wrong password, and for a ufrag nobody has: none is answered, and each
//! is counted in /metrics (`stun_auth_failed`, `unknown_stun_user`).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use shardcast_client::{udp, Client, ClientConfig, TimeBase, VideoSpec};
use shardcast_tests::interop::{dev_token, metric_sum, peers, post_offer, scrape, MEDIA_SECS};
use shardcast_tests::server::Server;
use shardcast_tests::{free_tcp_port, wait_for};

fn attribute<'a>(sdp: &'a str, name: &str) -> anyhow::Result<&'a str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix(name))
        .with_context(|| format!("{name} in {sdp}"))
}

/// The server's UDP address: the host candidate of the answer.
fn media_addr(answer: &str) -> anyhow::Result<SocketAddr> {
    let c: Vec<&str> = attribute(answer, "a=candidate:")?.split(' ').collect();
    Ok(format!("{}:{}", c[4], c[5]).parse()?)
}

/// A binding request for `username` whose MESSAGE-INTEGRITY is not keyed by the server's
/// password (the HMAC is a constant).
fn forged_check(username: &str) -> anyhow::Result<Vec<u8>> {
    let msg = str0m::ice::StunMessage::binding_request(
        username,
        str0m::ice::TransId::new(),
        true,
        7,
        0x6e00_01ff,
        true,
    );
    let mut buf = vec![0u8; 300];
    let n = msg
        .to_bytes(Some(b"not-the-password"), &mut buf, |_, _| [0x5a; 20])
        .map_err(|e| anyhow::anyhow!("serialize: {e:?}"))?;
    buf.truncate(n);
    Ok(buf)
}

fn lock(c: &Mutex<Client>) -> anyhow::Result<std::sync::MutexGuard<'_, Client>> {
    c.lock()
        .map_err(|_| anyhow::anyhow!("a client thread panicked"))
}

/// A client on its own loopback socket.
fn client(config: ClientConfig) -> anyhow::Result<(Client, UdpSocket)> {
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let c = Client::new(config, sock.local_addr()?, Instant::now())?;
    Ok((c, sock))
}

#[test]
fn a_client_that_sends_no_consent_checks_stays_connected_and_forged_checks_are_counted(
) -> anyhow::Result<()> {
    let metrics_addr = format!("127.0.0.1:{}", free_tcp_port());
    let server = Server::start_with_args(&["--metrics-listen", metrics_addr.as_str()])?;
    let metrics = format!("http://{metrics_addr}");
    let base = server.base_url.clone();
    let stop = Arc::new(AtomicBool::new(false));

    // Publisher: WHIP, audio + one video layer, no consent checks once connected.
    let (mut cam, cam_sock) = client(
        ClientConfig::new("cam", 11, TimeBase::real())
            .with_audio()
            .with_video(VideoSpec::single(300_000))
            .without_consent_checks(),
    )?;
    let offer = cam.create_offer(Instant::now())?;
    let token = dev_token(&base, "quiet", "cam")?;
    let (status, _, answer) = post_offer(&format!("{base}/whip/quiet"), &token, &offer)?;
    ensure!(status == 201, "WHIP {status}: {answer}");
    cam.accept_answer(Instant::now(), &answer)?;
    let victim = format!(
        "{}:{}",
        attribute(&answer, "a=ice-ufrag:")?,
        attribute(&offer, "a=ice-ufrag:")?
    );
    let server_udp = media_addr(&answer)?;
    let cam = Arc::new(Mutex::new(cam));
    let cam_thread = udp::spawn_driver(cam.clone(), cam_sock, stop.clone());

    wait_for("the publisher to connect", Duration::from_secs(15), || {
        Ok(lock(&cam)?.is_connected().then_some(()))
    })?;

    // Player: WHEP, no consent checks either. It binds the tracks listed at POST time, and the
    // control plane lists them as the node reports them (404 before the first): a session
    // that got audio only is ended and asked for again.
    let (mut viewer, viewer_sock) = client(
        ClientConfig::new("viewer", 12, TimeBase::real())
            .with_receive_offer()
            .without_consent_checks(),
    )?;
    let offer = viewer.create_offer(Instant::now())?;
    let token = dev_token(&base, "quiet", "viewer")?;
    let answer = wait_for(
        "WHEP to play audio and video",
        Duration::from_secs(15),
        || {
            let (status, location, answer) =
                post_offer(&format!("{base}/whep/quiet"), &token, &offer)?;
            ensure!(status == 201 || status == 404, "WHEP {status}: {answer}");
            if status == 201 && answer.matches("a=sendonly").count() < 2 {
                reqwest::blocking::Client::new()
                    .delete(format!("{base}{location}"))
                    .bearer_auth(&token)
                    .send()?
                    .error_for_status()?;
                return Ok(None);
            }
            Ok((status == 201).then_some(answer))
        },
    )?;
    viewer.accept_answer(Instant::now(), &answer)?;
    let viewer = Arc::new(Mutex::new(viewer));
    let viewer_thread = udp::spawn_driver(viewer.clone(), viewer_sock, stop.clone());
    wait_for("the player to connect", Duration::from_secs(15), || {
        Ok(lock(&viewer)?.is_connected().then_some(()))
    })?;

    let stranger = UdpSocket::bind("127.0.0.1:0")?;
    stranger.set_nonblocking(true)?;
    let start = Instant::now();
    let mut forged = 0u64;
    let mut last_video = 0u64;
    let mut next_mark = Duration::from_secs(10);
    let result = (|| -> anyhow::Result<()> {
        while start.elapsed() < Duration::from_secs(MEDIA_SECS) {
            stranger.send_to(&forged_check(&victim)?, server_udp)?;
            stranger.send_to(&forged_check("nobody:x")?, server_udp)?;
            forged += 1;
            std::thread::sleep(Duration::from_secs(1));
            let mut buf = [0u8; 1500];
            match stranger.recv_from(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => anyhow::bail!("the stranger got an answer: {other:?}"),
            }
            if start.elapsed() < next_mark {
                continue;
            }
            next_mark += Duration::from_secs(10);
            let (open, closed) = peers(&metrics)?;
            ensure!(
                open == 2.0 && closed == 0.0,
                "after {:?} the server has {open} peers open, {closed} closed",
                start.elapsed()
            );
            for c in [&cam, &viewer] {
                let c = lock(c)?;
                ensure!(c.error().is_none(), "client failed: {:?}", c.error());
                ensure!(c.is_connected() && c.stats().ice_disconnected_at.is_none());
            }
            let video: u64 = lock(&viewer)?
                .stats()
                .video_tracks()
                .map(|t| t.packets)
                .sum();
            ensure!(
                video >= last_video + 100,
                "video stalled at {:?}: {last_video} -> {video} packets",
                start.elapsed()
            );
            last_video = video;
        }
        for c in [&cam, &viewer] {
            let c = lock(c)?;
            ensure!(
                c.stats().consent_checks_dropped >= 10,
                "{} sent its checks after all: {} dropped",
                c.config().name,
                c.stats().consent_checks_dropped
            );
        }
        // The shard counters reach /metrics about once a second.
        let text = wait_for("the drops in /metrics", Duration::from_secs(5), || {
            let text = scrape(&metrics)?;
            let unknown = metric_sum(&text, "shardcast_drops_total", &["unknown_stun_user"]);
            Ok((unknown >= forged as f64).then_some(text))
        })?;
        let auth = metric_sum(&text, "shardcast_drops_total", &["stun_auth_failed"]);
        ensure!(
            auth >= forged as f64,
            "{forged} forged checks, {auth} counted as stun_auth_failed"
        );
        Ok(())
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = cam_thread.join();
    let _ = viewer_thread.join();
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- server ---\n{}", server.log_tail(30)))
}
