//! What a build of the binaries links: no workspace crate may enable str0m's
//! `_internal_test_exports` outside its dev-dependencies. Cargo unifies features across one
//! build, so one that did would give every server built next to it (`cargo build --release
//! -p shardcast-bench -p shardcast-controlplane`, as docs/PERFORMANCE.md says) str0m's test
//! DTLS, seeded with a constant. The server refuses to start then; this says which crate
//! did it before anyone builds.

use std::process::Command;

#[test]
fn no_workspace_crate_enables_str0m_test_exports_outside_dev_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--offline", "--workspace", "-i", "str0m"])
        .args(["-e", "normal,build,features", "--prefix", "none"])
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tree.contains("str0m feature"), "unexpected output:\n{tree}");
    assert!(
        !tree.contains("_internal_test_exports"),
        "a workspace crate enables str0m's test exports in a normal or build dependency \
         (move it to [dev-dependencies]):\n{tree}"
    );
}
