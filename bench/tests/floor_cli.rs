//! The `floor` subcommand end to end: the real binary spawns the floor as its own process,
//! drives it over loopback and writes a JSON report. Checks behaviour (packets forwarded,
//! decryptable, accounted), never speed.

use std::process::Command;

#[test]
fn floor_forwards_decryptable_packets_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("floor.json");
    let svg = dir.path().join("floor.svg");
    let status = Command::new(env!("CARGO_BIN_EXE_shardcast-bench"))
        .args([
            "floor",
            "--rate",
            "200",
            "--fanout",
            "3",
            "--duration",
            "2",
            "--warmup",
            "1",
            "--sample-every",
            "1",
            "--profile",
            "cm",
            "--json",
        ])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .status()
        .unwrap();
    assert!(status.success());
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let floor = &doc["floor"];
    assert_eq!(floor["fanout"], 3);
    assert_eq!(floor["profile"], "Aes128CmSha1_80");
    assert!(floor["forwarded_pps"].as_f64().unwrap() > 0.0, "{floor}");
    assert!(floor["floor_cpu_us_per_packet"].as_f64().unwrap() >= 0.0);
    // Every sampled packet opened with the floor's SRTP and carried a probe.
    assert!(
        floor["latency_us"]["samples"].as_u64().unwrap() > 0,
        "{floor}"
    );
    assert_eq!(floor["corrupt_samples"], 0, "{floor}");
    let counters = floor["floor_counters"].as_str().unwrap();
    assert!(counters.contains("dropped_bad=0"), "{counters}");
    assert!(!counters.contains("forwarded=0 "), "{counters}");
    assert_eq!(doc["runs"].as_array().unwrap().len(), 1);
    let per_second = floor["per_second"].as_array().unwrap();
    assert!(
        per_second.len() >= 3,
        "warm-up + window seconds: {per_second:?}"
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("forwarded packets/s"));
}

/// `--fps/--frame-packets`: the input comes as video frames; every packet is still forwarded
/// to every destination and decrypts, and the report says what the input was.
#[test]
fn floor_takes_input_as_video_frames() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("floor.json");
    let status = Command::new(env!("CARGO_BIN_EXE_shardcast-bench"))
        .args([
            "floor",
            "--rate",
            "200",
            "--fps",
            "30",
            "--frame-packets",
            "5",
        ])
        .args(["--fanout", "3", "--duration", "2", "--warmup", "1"])
        .args(["--sample-every", "1", "--profile", "gcm256", "--json"])
        .arg(&json)
        .status()
        .unwrap();
    assert!(status.success());
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let floor = &doc["floor"];
    assert_eq!(floor["frames"]["fps"], 30, "{floor}");
    assert_eq!(floor["frames"]["packets"], 5, "{floor}");
    assert!(floor["loss_ratio"].as_f64().unwrap() < 0.01, "{floor}");
    assert!(
        floor["latency_us"]["samples"].as_u64().unwrap() > 0,
        "{floor}"
    );
    assert_eq!(floor["corrupt_samples"], 0, "{floor}");

    // One flag without the other is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast-bench"))
        .args(["floor", "--fps", "30"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
