//! `shardcast-bench run` end to end against the real `shardcast serve` (which must be built
//! in the same target directory: scripts/test builds it first), and the pieces it stands on
//! (server process, REST set-up). Checks behaviour — media forwarded, accounted and reported
//! — never speed.

use std::process::Command;

use shardcast_bench::run::server::{locate_binary, Server, ServerSpec};
use shardcast_bench::run::setup::{Credentials, Setup};

/// `cargo test --workspace` links target/<profile>/shardcast with str0m's test DTLS (a
/// dev-dependency feature of shardcast-rtp), which the server refuses unless told this is a
/// test (controlplane/src/cli/guard.rs); a server built on its own ignores the variable.
const ALLOW_TEST_DTLS: (&str, &str) = ("SHARDCAST_ALLOW_TEST_DTLS", "1");

fn bench() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardcast-bench"));
    // The server `run` starts inherits it.
    cmd.env(ALLOW_TEST_DTLS.0, ALLOW_TEST_DTLS.1);
    cmd
}

fn allow_test_dtls() -> Vec<(String, String)> {
    vec![(ALLOW_TEST_DTLS.0.into(), ALLOW_TEST_DTLS.1.into())]
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
        extra_args: Vec::new(),
        cpus: Some("0".into()),
        log_filter: None,
        env: allow_test_dtls(),
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

/// `--server-arg` reaches `shardcast serve`: a value the server refuses stops the run with
/// the server's own words, before any client joins.
#[test]
fn server_args_reach_the_started_server() {
    let out = bench()
        .args([
            "run",
            "--no-floor",
            "--server-arg=--congestion-control=maybe",
        ])
        .arg(scenario("smoke"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exited before listening"), "{err}");
    assert!(err.contains("maybe"), "the server's complaint: {err}");
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

/// `--repeat 2` against a server whose own log names the SRTP profile each DTLS handshake
/// chose (str0m at debug there): two settled-or-capped runs folded into medians, and the
/// floor sealing with the profile the server negotiated.
#[test]
fn repeat_settles_and_floors_on_the_profile_the_server_negotiated() {
    use shardcast_bench::srtp::Profile;
    let bin = locate_binary(None, false).expect("build the server: scripts/test does");
    let server = Server::start(&ServerSpec {
        bin,
        io_backend: "portable".into(),
        shards: 1,
        extra_args: Vec::new(),
        cpus: None,
        log_filter: Some("info,str0m=debug".into()),
        env: allow_test_dtls(),
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("repeat.json");
    let out = bench()
        .arg("run")
        .arg(scenario("smoke"))
        .args(["--target", &server.base_url])
        .arg("--api-key")
        .arg(format!(
            "{}:{}",
            server.api_key.api_key, server.api_key.api_secret
        ))
        .args(["--server-pid", &server.pid().to_string()])
        .args([
            "--io-backend",
            "portable",
            "--repeat",
            "2",
            "--duration",
            "2",
        ])
        .args(["--warmup", "1", "--settle-max", "6", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 runs: medians"), "the table: {stdout}");

    // What the server's side of each handshake chose, from its own log.
    let log = server.log_text();
    let chosen: Vec<Profile> = log
        .lines()
        .filter_map(|l| {
            l.split("DTLS set SRTP keying material and profile: ")
                .nth(1)
        })
        .map(|name| Profile::from_log_name(name).unwrap_or_else(|| panic!("{name}")))
        .collect();
    // 3 participants per run, 2 runs.
    assert!(
        chosen.len() >= 6,
        "{} handshakes in the server log",
        chosen.len()
    );
    assert!(chosen.iter().all(|p| *p == chosen[0]), "{chosen:?}");
    let server_profile = serde_json::to_value(chosen[0]).unwrap();

    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(r["repeat"], 2, "{r}");
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(r["floor"]["profile"], server_profile, "{}", r["floor"]);
    assert_eq!(r["srtp_profile"], server_profile);
    for run in runs {
        assert_eq!(run["floor"]["profile"], server_profile);
        assert!(run["settled"].is_boolean(), "{run}");
        let settle_s = run["settle_s"].as_f64().unwrap();
        // The cap bounds settling (a second of slack for the sampling interval).
        assert!(settle_s <= 7.5, "{settle_s}");
        if run["settled"] == true {
            assert!(settle_s >= 2.5, "3 steady seconds at least: {settle_s}");
        }
        assert!(run["forwarded_pps"].as_f64().unwrap() > 0.0, "{run}");
        let phases: Vec<&str> = run["per_second"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["phase"].as_str().unwrap())
            .collect();
        assert_eq!(phases.iter().filter(|p| **p == "measure").count(), 2);
        // Settling sits between the warm-up and the window.
        let first = |name: &str| phases.iter().position(|p| *p == name);
        let last_settling = phases.iter().rposition(|p| *p == "settling");
        assert!(first("warmup") < first("settling"), "{phases:?}");
        assert!(last_settling < first("measure"), "{phases:?}");
    }
    assert!(r["settled"].is_boolean());
    assert_eq!(
        r["settled"].as_bool().unwrap(),
        runs.iter().all(|x| x["settled"] == true)
    );
    // Every folded figure: the median lies between the runs' min and max, the top-level
    // field holds it, and min/max are the runs' own extremes.
    let spread = r["spread"].as_object().unwrap();
    for key in [
        "forwarded_pps",
        "loss_ratio",
        "settle_s",
        "floor_cpu_us_per_packet",
    ] {
        assert!(spread.contains_key(key), "{key} in {spread:?}");
    }
    for (key, s) in spread {
        let (min, median, max) = (
            s["min"].as_f64().unwrap(),
            s["median"].as_f64().unwrap(),
            s["max"].as_f64().unwrap(),
        );
        assert!(min <= median && median <= max, "{key}: {s}");
        if !key.contains('.') {
            let top = r[key.as_str()].as_f64().unwrap();
            assert!(
                (top - median).abs() <= 1e-9 * median.abs().max(1.0),
                "{key}"
            );
            let per_run: Vec<f64> = runs
                .iter()
                .filter_map(|x| x[key.as_str()].as_f64())
                .collect();
            let lo = per_run.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = per_run.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!((lo, hi), (min, max), "{key}");
        }
    }
}
