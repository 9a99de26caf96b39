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

/// The code block after `### The demo's inventory rule` in a guide.
fn guide_inventory(guide: &str, lang: &str) -> String {
    let text = std::fs::read_to_string(workspace().join(guide)).unwrap();
    let at = text
        .find("### The demo's inventory rule")
        .unwrap_or_else(|| panic!("{guide} has no inventory rule section"));
    let open = format!("```{lang}\n");
    let body = &text[at..];
    let start = body.find(&open).expect("a code block") + open.len();
    let end = start + body[start..].find("```").expect("the block's end");
    body[start..end].to_string()
}

/// Orders that take every branch of the inventory rule: a reservation,
/// insufficient stock, an unknown sku, a malformed order, the last units.
const ORDERS: &str = r#"{"entity":"order:1","scope":"shop","kind":"order.placed","payload":{"sku":"widget","qty":4}}
{"entity":"order:2","scope":"shop","kind":"order.placed","payload":{"sku":"widget","qty":7}}
{"entity":"order:3","scope":"shop","kind":"order.placed","payload":{"sku":"nope","qty":1}}
{"entity":"order:4","scope":"shop","kind":"order.placed","payload":{"qty":1}}
{"entity":"order:5","scope":"shop","kind":"order.placed","payload":{"sku":"gizmo","qty":2}}
{"entity":"order:6","scope":"shop","kind":"order.placed","payload":{"sku":"widget","qty":6}}
"#;

#[test]
fn the_c_guides_inventory_rule_reacts_like_the_rust_inventory() {
    crate::languages::lang_plugins_dir(); // builds batpak-build
    let tool = std::path::Path::new(crate::common::bin()).with_file_name("batpak-build");
    let dir = tempdir();
    let c = crate::common::write_file(
        dir.path(),
        "inventory.c",
        &guide_inventory("guest-sdk/docs/c.md", "c"),
    );
    let b = dir.path().join("bindings");
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("running a C build step");
        assert!(out.status.success(), "{cmd:?} failed:\n{}", show(&out));
    };
    run(Command::new(&tool)
        .arg("c-bindings")
        .arg(workspace().join("wit"))
        .arg(&b));
    let core = dir.path().join("inventory.core.wasm");
    run(Command::new(toolchains().bin().join("zig"))
        .args(["cc", "--target=wasm32-wasi", "-mexec-model=reactor", "-O2"])
        .args(["-Wall", "-Wextra", "-Werror=implicit-function-declaration"])
        .arg(format!("-I{}", b.display()))
        .arg(format!("-I{}", workspace().join("guest-sdk/c").display()))
        .arg("-o")
        .arg(&core)
        .arg(&c)
        .arg(b.join("reactor_plugin.c"))
        .arg(b.join("reactor_plugin_component_type.o")));
    let wasm = dir.path().join("inventory_c.wasm");
    run(Command::new(&tool).arg("component").arg(&core).arg(&wasm));

    let input = crate::common::write_file(dir.path(), "orders.jsonl", ORDERS);
    let reactions = |plugin: &std::path::Path| {
        let out = crate::common::host_ok(
            dir.path(),
            &[
                "test",
                plugin.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
            ],
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let rust = reactions(&crate::common::plugin("inventory"));
    assert_eq!(rust.lines().count(), 6, "{rust}");
    assert_eq!(reactions(&wasm), rust, "the C guide's inventory rule");
}
