//! `shadow` compares a candidate with the running version only (issue 15):
//! when the window reaches back past a swap, what the earlier version
//! appended is not the running version's behaviour, so the running version
//! shadowed against itself reports no difference.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// The hand-written null reactor (proposes nothing) renamed `passthrough`:
/// a version of passthrough with another behaviour.
fn silent_passthrough() -> String {
    let name = "passthrough";
    NULL_REACTOR_WAT
        .replace(
            "(data (i32.const 1024) \"null\")",
            &format!("(data (i32.const 1200) \"{name}\")"),
        )
        .replace(
            "\"\\00\\04\\00\\00\\04\\00\\00\\00\"   ;; name ptr=1024 len=4",
            &format!("\"\\b0\\04\\00\\00\\{:02x}\\00\\00\\00\"", name.len()),
        )
}

fn inputs(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| serde_json::json!({"entity": format!("e:{tag}:{i}"), "scope": "bench", "kind": "bench.in", "payload": {"i": i}}))
        .collect()
}

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lag(data: &Path) -> Option<u64> {
    let out = host(data, &["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v[0]["lag"].as_u64()
}

fn shadow_json(data: &Path, candidate: &Path) -> (Option<i32>, Value, String) {
    let out = host(
        data,
        &[
            "shadow",
            "passthrough",
            candidate.to_str().unwrap(),
            "--json",
        ],
    );
    let r = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no report ({e}): {}", stderr(&out)));
    (out.status.code(), r, stderr(&out))
}

#[test]
fn shadow_of_the_running_version_over_a_window_with_a_swap_reports_no_difference() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let live = dir.path().join("passthrough.wasm");
    std::fs::copy(plugin("passthrough"), &live).unwrap();
    let silent = write_file(dir.path(), "silent.wat", &silent_passthrough());
    append(&data, &inputs(100, "a"));
    let log = dir.path().join("run.stderr");
    let mut child: Child = Command::new(bin())
        .arg("--data")
        .arg(&data)
        .args(["run", "--quiet", "--max-batch", "16"])
        .arg(&live)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until("v1 to handle the first 100", || {
        events_of(&data, "bench.out").len() == 100
    });
    // The swap lands inside the window shadow will read.
    let out = host(&data, &["swap", "passthrough", silent.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    append(&data, &inputs(100, "b"));
    wait_until("the silent version to handle the next 100", || {
        lag(&data) == Some(0)
    });
    sigterm(&child);
    let st = wait_exit(&mut child, WAIT);
    assert!(
        st.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(events_of(&data, "batpak.plugin.swapped").len(), 1);

    // The running version against itself: the 100 events it handled are
    // identical; the 100 before the swap are counted apart, not "missing".
    let (code, r, err) = shadow_json(&data, &silent);
    assert_eq!(code, Some(0), "{r}\n{err}");
    assert_eq!(
        (
            r["events"].as_u64(),
            r["identical"].as_u64(),
            r["missing"].as_u64(),
            r["other_version"].as_u64()
        ),
        (Some(100), Some(100), Some(0), Some(100)),
        "{r}"
    );
    assert!(
        err.contains("100 handled event(s) in the window were handled by an earlier version"),
        "{err}"
    );
    // A candidate that behaves like the earlier version still differs from
    // the running one on every event the running one handled.
    let (code, r, err) = shadow_json(&data, &live);
    assert_eq!(code, Some(1), "{r}\n{err}");
    assert_eq!(
        (r["events"].as_u64(), r["added"].as_u64()),
        (Some(100), Some(100)),
        "{r}"
    );
}
