//! Every committed fuzz input (host/fuzz/corpus: the seeds; host/fuzz/
//! regressions: each input a fuzzer found a defect with) through its
//! target in a plain build, so `cargo test --release` keeps every found
//! defect fixed. The fuzz crate is outside the workspace (its instrumented
//! builds must not touch this one): its tests run in their own cargo
//! invocation, built into target/fuzz.

use crate::common::workspace;
use std::process::Command;

#[test]
fn every_committed_fuzz_input_passes_its_target() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = workspace();
    let out = Command::new(cargo)
        .current_dir(&root)
        .args([
            "test",
            "--release",
            "--manifest-path",
            "host/fuzz/Cargo.toml",
        ])
        .arg("--target-dir")
        .arg(root.join("target/fuzz"))
        // A plain build: whatever instrumentation the caller's environment
        // asks for belongs to tools/fuzz.sh only.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .expect("running cargo test for host/fuzz");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the fuzz corpus regression test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("test every_committed_input_passes_its_target ... ok"),
        "the corpus test did not run:\n{stdout}"
    );
}
