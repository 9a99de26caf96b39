//! The Python and C SDKs' own unit tests, in their languages' runners,
//! against the worked example of `guest-sdk/WIT.md`: Python's `unittest`
//! with the provisioned venv's interpreter, and the C tests compiled
//! natively with the provisioned `zig cc` and run. (The constants both SDKs
//! carry are checked against `batpak-layout` by its `sdk_layout` test; the
//! SDKs inside real components by `languages.rs`.)

use crate::common::{tempdir, workspace};
use crate::toolchains::toolchains;
use std::process::{Command, Output};

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn python_sdk_unit_tests_pass() {
    let python = toolchains().bin().join("../python/bin/python");
    let out = Command::new(&python)
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(workspace().join("guest-sdk/python/tests"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    let text = show(&out);
    assert!(out.status.success(), "python unittest failed:\n{text}");
    // A discovery that finds nothing also exits 0: make sure tests ran.
    assert!(
        text.contains("test_reads_every_field") && text.contains("OK"),
        "{text}"
    );
}

#[test]
fn c_sdk_unit_tests_pass() {
    let dir = tempdir();
    let exe = dir.path().join("worked_example");
    let sdk = workspace().join("guest-sdk/c");
    let out = Command::new(toolchains().bin().join("zig"))
        .args(["cc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(&sdk)
        .arg(sdk.join("tests/worked_example.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("running the provisioned zig");
    assert!(
        out.status.success(),
        "compiling guest-sdk/c/tests failed:\n{}",
        show(&out)
    );
    let out = Command::new(&exe).output().expect("running the C tests");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("all checks passed"),
        "the C SDK's tests failed:\n{}",
        show(&out)
    );
}
