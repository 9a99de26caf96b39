//! Files that are not reactors are refused with a message naming the file
//! and the reason, and nothing runs.

use crate::common::*;
use std::path::Path;

fn refused(data: &Path, args: &[&str], file: &Path, needles: &[&str]) {
    let out = host(data, args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1 for {args:?}\n{err}"
    );
    assert!(
        err.contains(&file.display().to_string()),
        "message does not name {}:\n{err}",
        file.display()
    );
    for n in needles {
        assert!(err.contains(n), "message lacks {n:?}:\n{err}");
    }
}

fn run_args<'a>(plugins: &'a [&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--until-idle"];
    v.extend_from_slice(plugins);
    v
}

#[test]
fn missing_and_non_wasm_files_are_refused() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let missing = dir.path().join("missing.wasm");
    refused(
        &data,
        &run_args(&[missing.to_str().unwrap()]),
        &missing,
        &["no such file"],
    );
    let junk = write_file(dir.path(), "junk.wasm", "this is not wasm at all\n");
    refused(
        &data,
        &run_args(&[junk.to_str().unwrap()]),
        &junk,
        &["not a WebAssembly file"],
    );
    let bad_text = write_file(dir.path(), "bad.wat", "(component (this is not valid))");
    refused(
        &data,
        &run_args(&[bad_text.to_str().unwrap()]),
        &bad_text,
        &["does not parse"],
    );
    // inspect refuses the same way.
    refused(
        &data,
        &["inspect", junk.to_str().unwrap()],
        &junk,
        &["not a WebAssembly file"],
    );
}

#[test]
fn a_core_module_is_refused_with_the_fix() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let wat = write_file(dir.path(), "core.wat", "(module (func (export \"react\")))");
    refused(
        &data,
        &run_args(&[wat.to_str().unwrap()]),
        &wat,
        &["core wasm module, not a component", "wasm32-wasip2"],
    );
    // The same module as a binary.
    let bin = dir.path().join("core.wasm");
    std::fs::write(&bin, [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]).unwrap();
    refused(
        &data,
        &run_args(&[bin.to_str().unwrap()]),
        &bin,
        &["core wasm module"],
    );
}

#[test]
fn components_of_another_world_or_version_are_refused() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // A component that exports nothing a reactor needs.
    let empty = write_file(dir.path(), "empty.wat", "(component)");
    refused(
        &data,
        &run_args(&[empty.to_str().unwrap()]),
        &empty,
        &[
            "must export batpak:reactor/reactor@0.2.0",
            "batpak:reactor@0.1.0, batpak:reactor@0.2.0",
        ],
    );
    // A component built against a version this host does not offer.
    let other = write_file(
        dir.path(),
        "v3.wat",
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $api (export "describe" (func $f)))
            (export "batpak:reactor/reactor@0.3.0" (instance $api))
        )"#,
    );
    refused(
        &data,
        &run_args(&[other.to_str().unwrap()]),
        &other,
        &[
            "targets batpak:reactor@0.3.0",
            "offers batpak:reactor@0.1.0, batpak:reactor@0.2.0",
            "batpak-host wit --list",
        ],
    );
    // The right export name, but a shape that is not the reactor interface.
    let shape = write_file(
        dir.path(),
        "shape.wat",
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $f (canon lift (core func $i "f")))
            (instance $api (export "describe" (func $f)))
            (export "batpak:reactor/reactor@0.1.0" (instance $api))
        )"#,
    );
    refused(
        &data,
        &run_args(&[shape.to_str().unwrap()]),
        &shape,
        &["exports do not match"],
    );
    // Nothing was run: plugins are checked before the store is even opened.
    assert!(!data.join("segments").exists());
}

#[test]
fn failing_init_and_duplicate_names_are_refused() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let hostile = plugin("hostile");
    let cfg = write_file(
        dir.path(),
        "cfg.json",
        r#"{"plugins": {"hostile": {"config": {"fail_init": true}}}}"#,
    );
    refused(
        &data,
        &run_args(&[
            "--plugin-config",
            cfg.to_str().unwrap(),
            hostile.to_str().unwrap(),
        ]),
        &hostile,
        &["refused to start", "hostile: init refused by config"],
    );
    let inv = plugin("inventory");
    let copy = dir.path().join("inventory-copy.wasm");
    std::fs::copy(&inv, &copy).unwrap();
    refused(
        &data,
        &run_args(&[inv.to_str().unwrap(), copy.to_str().unwrap()]),
        &copy,
        &["already used", &inv.display().to_string()],
    );
}

#[test]
fn parked_never_creates_a_store() {
    let dir = tempdir();
    let data = dir.path().join("nothing-here");
    for args in [&["parked"][..], &["parked", "replay"][..]] {
        let out = host(&data, args);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains("no store"), "{}", stderr(&out));
    }
    assert!(!data.exists());
}

#[test]
fn a_reactor_that_imports_http_is_refused_with_the_componentize_js_fix() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // The hand-written reactor, plus the wasi:http import componentize-js
    // adds by default.
    let wat = NULL_REACTOR_WAT.replacen(
        "(component",
        "(component\n  (import \"wasi:http/types@0.2.0\" (instance $http (export \"f\" (func))))",
        1,
    );
    let file = write_file(dir.path(), "js-like.wat", &wat);
    refused(
        &data,
        &run_args(&[file.to_str().unwrap()]),
        &file,
        &["wasi:http/types@0.2.0", "-d http fetch-event"],
    );
}

/// Runs the host, killing it if it has not finished within `secs` (so a
/// regression that reads a FIFO or /dev/zero forever fails instead of
/// hanging the suite).
fn host_within(data: &Path, args: &[&str], secs: u64) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin())
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{args:?} still running after {secs} s:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn fifos_and_devices_are_refused_before_reading() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let fifo = dir.path().join("plugin.wasm");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let zero = Path::new("/dev/zero");
    for (file, what) in [(fifo.as_path(), "a FIFO"), (zero, "a character device")] {
        let f = file.to_str().unwrap();
        for args in [vec!["inspect", f], vec!["run", "--until-idle", f]] {
            let out = host_within(&data, &args, 60);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{args:?}\n{err}");
            assert!(
                err.contains(f) && err.contains("not a regular file") && err.contains(what),
                "{args:?}\n{err}"
            );
        }
    }
    assert!(!data.join("segments").exists());
}

#[test]
fn inspect_exits_nonzero_when_init_fails() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let h = plugin("hostile");
    let out = host(
        &data,
        &[
            "inspect",
            "--config",
            r#"{"fail_init": true}"#,
            h.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["init"]["ok"], false);
    assert!(stderr(&out).contains("hostile: init refused by config"));
    let ok = host(&data, &["inspect", h.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn an_import_the_host_does_not_offer_is_named() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let wat = NULL_REACTOR_WAT.replacen(
        "(component",
        "(component\n  (import \"acme:db/query@1.0.0\" (instance $db (export \"get\" (func))))",
        1,
    );
    let file = write_file(dir.path(), "db.wat", &wat);
    refused(
        &data,
        &run_args(&[file.to_str().unwrap()]),
        &file,
        &["imports acme:db/query@1.0.0", "does not offer"],
    );
}

#[test]
fn an_async_component_is_refused_with_the_sync_fix() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // What componentize-qjs emits without --sync: async canonical builtins.
    let wat = NULL_REACTOR_WAT.replacen(
        "(core module $m",
        "(core func $cancel (canon task.cancel))\n  (core module $m",
        1,
    );
    let file = write_file(dir.path(), "qjs-async.wat", &wat);
    for args in [
        vec!["inspect", file.to_str().unwrap()],
        run_args(&[file.to_str().unwrap()]),
    ] {
        refused(&data, &args, &file, &["async", "--sync", "task.cancel"]);
    }
}
