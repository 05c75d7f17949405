//! The `shardcast` binary: help lists every flag, config errors name the key, and `serve`
//! with zero config answers on its HTTP port, mints dev tokens and keeps its default tenant
//! for `token create` and `room list`.

use std::process::Command;
use std::time::Duration;

mod support;

use support::serve::{serve, serve_args, BIN};

#[test]
fn help_lists_every_flag_with_its_env() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--config",
        "--data-dir",
        "--listen",
        "--web-dir",
        "--dev",
        "--admin-key",
        "--log",
        "--media-ip",
        "--media-port",
        "--shards",
        "--io-backend",
        "--etcd",
        "--cluster-secret",
        "--node-listen",
        "--node-advertise",
        "--node-id",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
    assert!(help.contains("SHARDCAST_LISTEN"));
    let out = Command::new(BIN)
        .args(["token", "create", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in ["--room", "--identity", "--role", "--name", "--ttl"] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[media]\nbackend = \"epoll\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("media.backend"), "{err}");
    std::fs::write(&cfg, "[http]\nlisten_addr = \"x\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("listen_addr"), "{err}");
    // Distributed roles need a cluster secret.
    let out = Command::new(BIN).args(["controlplane"]).output().unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cluster.secret"), "{err}");
}

/// Dev mode is off unless asked for, even on loopback: no `/dev/token` to mint host tokens.
#[test]
fn serve_without_dev_has_no_dev_token() {
    let dir = tempfile::tempdir().unwrap();
    let (server, url) = serve_args(&dir.path().join("data"), &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let r = reqwest::get(format!("{url}/dev/token?room=demo&identity=ann"))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(reqwest::get(format!("{url}/")).await.unwrap().status(), 200);
    });
    drop(server);
}

#[test]
fn serve_zero_config_then_token_and_room_list() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, url) = serve(&data, &[]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let page = reqwest::get(format!("{url}/")).await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("<html"));
        let tok: serde_json::Value =
            reqwest::get(format!("{url}/dev/token?room=demo&identity=ann"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert!(tok["token"].as_str().unwrap().split('.').count() == 3);
    });

    // Offline token minting from the same data directory.
    let out = Command::new(BIN)
        .args([
            "token",
            "create",
            "--room",
            "demo",
            "--identity",
            "bob",
            "--role",
            "viewer",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .split('.')
            .count(),
        3
    );

    // The REST client sees the room the dev token created.
    let out = Command::new(BIN)
        .args(["room", "list", "--url", &url])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout).unwrap().contains("demo"));
    let out = Command::new(BIN)
        .args([
            "room",
            "create",
            "standup",
            "--password",
            "pw",
            "--video-codecs",
            "vp9,vp8",
            "--url",
            &url,
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let room: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(room["has_password"], true);
    assert_eq!(room["video_codecs"], serde_json::json!(["vp9", "vp8"]));
    drop(server);
    std::thread::sleep(Duration::from_millis(100));
}
