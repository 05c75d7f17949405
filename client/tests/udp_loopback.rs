//! Two clients over real loopback UDP sockets, each on its own thread with `run_blocking`:
//! DTLS-SRTP handshake, simulcast video and audio, receive statistics.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use shardcast_client::udp::run_blocking;
use shardcast_client::{Client, ClientConfig, TimeBase, VideoSpec};

#[test]
fn publisher_to_viewer_over_loopback_udp() {
    let time = TimeBase::real();
    let pub_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let view_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let now = Instant::now();
    let mut publisher = Client::new(
        ClientConfig::new("pub", 11, time)
            .with_audio()
            .with_video(VideoSpec::simulcast3()),
        pub_sock.local_addr().unwrap(),
        now,
    )
    .unwrap();
    let mut viewer = Client::new(
        ClientConfig::new("view", 12, time),
        view_sock.local_addr().unwrap(),
        now,
    )
    .unwrap();
    let offer = publisher.create_offer(now).unwrap();
    let answer = viewer.accept_offer(now, &offer).unwrap();
    publisher.accept_answer(now, &answer).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(30);
    let stop = done.clone();
    let pub_thread = thread::spawn(move || {
        let ok = run_blocking(
            &mut publisher,
            &pub_sock,
            |_| stop.load(Ordering::Relaxed),
            deadline,
        );
        (publisher, ok)
    });
    let view_thread = thread::spawn(move || {
        // Two seconds of media on every layer: 60 frames per layer, 100 audio packets.
        let ok = run_blocking(
            &mut viewer,
            &view_sock,
            |c| {
                let s = c.stats();
                let video_ok = s
                    .video_tracks()
                    .any(|t| t.decodable_per_layer[..3].iter().all(|n| *n >= 60));
                let audio_ok = s.audio_tracks().any(|t| t.audio_packets >= 100);
                video_ok && audio_ok
            },
            deadline,
        );
        done.store(true, Ordering::Relaxed);
        (viewer, ok)
    });
    let (viewer, view_ok) = view_thread.join().unwrap();
    let (publisher, pub_ok) = pub_thread.join().unwrap();
    assert!(
        pub_ok.unwrap(),
        "publisher stopped by the viewer, not the deadline"
    );
    assert!(
        view_ok.unwrap(),
        "viewer received enough: {:?}",
        viewer.stats()
    );
    assert!(publisher.is_connected() && viewer.is_connected());

    let stats = viewer.stats();
    let video = stats.video_tracks().next().unwrap();
    assert_eq!(video.ssrcs.len(), 3);
    assert_eq!(video.payload_errors, 0);
    assert_eq!(video.picture_id_violations, 0);
    assert_eq!(stats.datagrams_rejected, 0);
    // Same machine, shared clock: latency is small but never negative (saturates at 0).
    assert!(video.latency.count > 0);
    assert!(
        video.latency.max_us < 5_000_000,
        "{:?}",
        video.latency.max_us
    );
}
