//! `shardcast-bench run` end to end against the real `shardcast serve` (which must be built
//! in the same target directory: scripts/test builds it first), and the pieces it stands on
//! (server process, REST set-up). Checks behaviour — media forwarded, accounted and reported
//! — never speed.

use std::process::Command;

use shardcast_bench::run::server::{locate_binary, Server, ServerSpec};
use shardcast_bench::run::setup::{Credentials, Setup};

fn bench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shardcast-bench"))
}

fn scenario(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"))
}

#[test]
fn started_server_takes_rooms_and_mints_tokens() {
    let bin = locate_binary(None, false).expect("build the server: scripts/test does");
    let server = Server::start(&ServerSpec {
        bin,
        io_backend: "portable".into(),
        shards: 1,
        cpus: Some("0".into()),
    })
    .unwrap();
    let pid = server.pid();
    assert!(server.base_url.starts_with("http://127.0.0.1:"));
    assert_eq!(server.backend().as_deref(), Some("portable"));
    // Pinned: the process may run on CPU 0 only.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let allowed = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))
        .unwrap();
    assert!(allowed.trim().ends_with('0'), "{allowed}");
    let reading = server.reading();
    assert!(reading.rss_bytes.unwrap() > 0);
    assert!(reading.cpu.is_some());

    let setup = Setup::new(
        &server.base_url,
        Credentials::ApiKey {
            id: server.api_key.api_key.clone(),
            secret: server.api_key.api_secret.clone(),
        },
    )
    .unwrap();
    setup.create_room("bench-test-0").unwrap();
    // Creating it again is fine (a reused --target).
    setup.create_room("bench-test-0").unwrap();
    let token = setup
        .token("bench-test-0", "viewers-r0-s0-g0", false)
        .unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert!(setup.token("no-such-room", "x", true).is_err());
    let rooms = ["bench-test-0".to_string()];
    assert_eq!(setup.joined_participants(&rooms), Some(0));

    // Dev mode (a --target without an API key) mints tokens too.
    let dev = Setup::new(&server.base_url, Credentials::Dev).unwrap();
    assert!(dev.token("bench-test-1", "p-r0-s0-g0", true).is_ok());
    assert_eq!(dev.joined_participants(&rooms), None);

    drop(server);
    let gone = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(gone.is_empty() || gone.contains(") Z"), "{gone}");
}
#[test]
fn ramp_needs_a_ramp_section_and_bad_files_are_named() {
    let out = bench()
        .args(["run", "--ramp", "--no-floor"])
        .arg(scenario("conference-8"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[ramp]"), "{err}");

    let out = bench()
        .args(["run", "/nonexistent/scenario.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/scenario.toml"), "{err}");
}

#[test]
fn smoke_run_forwards_measures_and_compares_to_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let svg = dir.path().join("run.svg");
    let out = bench()
        .arg("run")
        .arg(scenario("smoke"))
        .args(["--duration", "3", "--json"])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("forwarded"), "the table: {stdout}");
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let f = |key: &str| r[key].as_f64().unwrap_or_else(|| panic!("{key} in {r}"));
    assert_eq!(r["scenario"], "smoke");
    assert!(["io_uring", "portable"].contains(&r["io_backend"].as_str().unwrap()));
    // Two viewers receive the publisher's audio and one video layer each.
    assert!(f("forwarded_pps") > 0.0, "{r}");
    assert!(f("published_pps") > 0.0, "{r}");
    assert!(f("loss_ratio") < 0.05, "{r}");
    assert!(r["join_ms"]["p50"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["join_ms"]["joined"], 3, "{r}");
    assert_eq!(r["join_ms"]["failed"], 0, "{r}");
    assert!(f("cpu_us_per_forwarded_packet") > 0.0, "{r}");
    assert!(f("floor_cpu_us_per_packet") > 0.0, "{r}");
    assert!(f("ratio_to_floor") > 0.0, "{r}");
    assert!(f("rss_bytes_per_participant") > 0.0, "{r}");
    // The verifying viewer measured latency; the server saw everyone the harness did.
    assert!(r["latency_us"]["samples"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["window"]["connected"], 3, "{r}");
    assert_eq!(r["server_participants"], 3, "{r}");
    let phases: Vec<&str> = r["per_second"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases.iter().filter(|p| **p == "measure").count(), 3);
    assert!(phases.contains(&"warmup"), "{phases:?}");
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("forwarded packets/s"));
}
