//! The SDK's and the example plugins' own unit tests (native builds, the
//! SDK's mock host). They run in a separate cargo invocation: selecting
//! these crates in the top-level `cargo test` would unify wit-bindgen's
//! proc-macro features with wasmtime's and compile wasmtime a second time.

use crate::common::workspace;
use std::process::Command;

#[test]
fn sdk_and_plugin_unit_tests_pass() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace())
        .args(["test", "--release", "-p", "batpak-guest"])
        .args(["-p", "inventory", "-p", "low-stock", "-p", "shipping"])
        .args(["-p", "hostile", "-p", "passthrough"])
        .output()
        .expect("running cargo test for the SDK and plugins");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK/plugin unit tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each crate's harness prints one `test result:` line; a run that
    // silently selected nothing would print none.
    let results = stdout.matches("test result: ok").count();
    assert!(
        results >= 6,
        "expected the unit tests of 6 crates to run, saw {results}:\n{stdout}"
    );
}
