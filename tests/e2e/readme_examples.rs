//! The README's first examples, as a new user meets them (issue 15): the
//! quick start run word for word from a directory laid out like a checkout
//! after the demo (`plugins/` as shipped plus the demo's three components),
//! and the HTTP API's optimistic-concurrency example against a running host.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

/// A directory laid out like a checkout after `demo`: the binary at
/// `target/release/batpak-host`, and in `plugins/` the files the repository
/// ships there (the WAT reactor, the operator config) beside the demo's
/// three Rust components.
fn checkout_after_demo() -> tempfile::TempDir {
    let w = tempdir();
    let release = w.path().join("target").join("release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(bin(), release.join("batpak-host")).unwrap();
    let plugins = w.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    // As shipped: every top-level file of plugins/ except built components
    // (a developer's checkout may hold some from an earlier demo).
    for e in std::fs::read_dir(workspace().join("plugins")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() && p.extension().is_none_or(|x| x != "wasm") {
            std::fs::copy(&p, plugins.join(p.file_name().unwrap())).unwrap();
        }
    }
    // What the demo leaves (demo.rs copies these three).
    for stem in ["inventory", "low_stock", "shipping"] {
        std::fs::copy(plugin(stem), plugins.join(format!("{stem}.wasm"))).unwrap();
    }
    w
}

/// The commands of the README's quick start: the `sh` block after "The
/// demo also leaves".
fn quick_start_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let at = readme
        .find("The demo also leaves")
        .expect("README has the quick start");
    let block = &readme[at..];
    let start = block.find("```sh\n").expect("a sh block") + "```sh\n".len();
    let end = start + block[start..].find("```").expect("the block ends");
    block[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn sh(dir: &Path, line: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(line).current_dir(dir).stdin(Stdio::null());
    c
}

fn wait_exit_ok(mut child: Child, what: &str, err: &Path) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(
                st.success(),
                "{what} exited with {st:?}:\n{}",
                std::fs::read_to_string(err).unwrap_or_default()
            );
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_quick_start_runs_four_reactors_and_the_gate_denies_from_plugins_as_shipped() {
    let w = checkout_after_demo();
    let commands = quick_start_commands();
    let (run_line, appends) = commands.split_last().expect("commands");
    assert!(
        run_line.contains(" run "),
        "the last command runs: {run_line}"
    );
    for line in appends {
        let out = sh(w.path(), line).output().unwrap();
        assert!(
            out.status.success(),
            "{line}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // `run` until Ctrl-C: stopped with SIGTERM once the flow is in the log.
    let err = w.path().join("run.stderr");
    let child = sh(w.path(), &format!("exec {run_line}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let data = w.path().join("batpak-data");
    let deadline = Instant::now() + WAIT;
    let events = loop {
        let ev = json_lines(&host(&data, &["events", "--system"]).stdout);
        let has = |k: &str| ev.iter().any(|e| e["kind"] == k);
        if has("batpak.gate.denied") && has("customer.notified") && has("shipment.requested") {
            break ev;
        }
        assert!(
            Instant::now() < deadline,
            "the quick start's flow did not complete within {WAIT:?}; run's stderr:\n{}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    sigterm(&child);
    wait_exit_ok(child, "run", &err);

    // Four reactors ran: each appended something, and each has a summary.
    let reactors: BTreeSet<&str> = events
        .iter()
        .filter(|e| !e["kind"].as_str().unwrap().starts_with("batpak."))
        .filter_map(|e| e["meta"]["reactor"].as_str())
        .collect();
    assert_eq!(
        reactors,
        BTreeSet::from(["inventory", "low-stock", "notify", "shipping"]),
        "{events:?}"
    );
    let stderr = std::fs::read_to_string(&err).unwrap();
    for name in ["inventory", "low-stock", "notify", "shipping"] {
        assert!(
            stderr.contains(&format!("summary | {name}: ")),
            "no summary for {name}:\n{stderr}"
        );
    }
    // The gate denied low-stock's restock request, as the README says.
    let denied: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "batpak.gate.denied")
        .collect();
    assert!(!denied.is_empty());
    assert!(
        denied.iter().all(|d| d["entity"] == "reactor:low-stock"
            && d["payload"]["code"] == "kind-not-granted"
            && d["payload"]
                .to_string()
                .contains("inventory.restock-requested")),
        "{denied:?}"
    );
    assert!(events
        .iter()
        .all(|e| e["kind"] != "inventory.restock-requested"));
}

/// One HTTP/1.1 request with `Connection: close`; (status, body as JSON).
fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).expect("connecting to the HTTP API");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    (code, json)
}

/// Reads stderr lines of `run` into a file until it finds the HTTP address.
fn http_addr(err: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(err).unwrap_or_default();
        if let Some(a) = text.lines().find_map(|l| {
            l.strip_prefix("http: listening on http://")
                .and_then(|r| r.split_whitespace().next())
        }) {
            return a.to_string();
        }
        assert!(Instant::now() < deadline, "no http address:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_optimistic_concurrency_example_appends_at_the_sequence_read_then_conflicts() {
    // The README's example, request for request.
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    assert!(
        readme.contains("\"expected_entity_seq\":'\"$SEQ\"'")
            && readme.contains("/v1/events?entity=order:2\" \\\n  | python3"),
        "the README's example reads the sequence, then appends with it"
    );
    let w = checkout_after_demo();
    let p = |f: &str| -> PathBuf { w.path().join("plugins").join(f) };
    let data = w.path().join("batpak-data");
    let err = w.path().join("run.stderr");
    let child = Command::new(bin())
        .arg("--data")
        .arg(&data)
        .arg("run")
        .arg("--plugin-config")
        .arg(p("shop.json"))
        .args(
            [
                "inventory.wasm",
                "low_stock.wasm",
                "shipping.wasm",
                "notify.wat",
            ]
            .map(p),
        )
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let addr = http_addr(&err);
    let token = std::fs::read_to_string(data.join("run").join("http.token"))
        .unwrap()
        .trim()
        .to_string();
    let post = |body: &str| http(&addr, "POST", "/v1/events", &token, body);
    let read = || http(&addr, "GET", "/v1/events?entity=order:2", &token, "");

    let (code, r) = post(
        r#"{"entity":"order:2","scope":"shop","kind":"order.placed","payload":{"sku":"widget","qty":1},"idempotency_key":"order-2"}"#,
    );
    assert_eq!(code, 200, "{r}");
    // The README reads after the reactors have answered the order (a person
    // types the next command): wait, bounded, for the shipment on order:2.
    let deadline = Instant::now() + WAIT;
    let seq = loop {
        let (code, page) = read();
        assert_eq!(code, 200, "{page}");
        let events = page["events"].as_array().unwrap().clone();
        if events.iter().any(|e| e["kind"] == "shipment.requested") {
            break events.last().unwrap()["entity_seq"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "no shipment for order:2: {page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        seq, 2,
        "order.placed and the reactors' shipment.requested, as the README says"
    );
    let cancel = json!({"entity":"order:2","scope":"shop","kind":"order.cancelled","payload":{},"expected_entity_seq":seq}).to_string();
    let (code, r) = post(&cancel);
    assert_eq!(code, 200, "appending at the sequence read succeeds: {r}");
    let receipt = r
        .as_array()
        .and_then(|a| a.first())
        .or_else(|| r["receipts"].as_array().and_then(|a| a.first()))
        .cloned()
        .unwrap_or(r.clone());
    assert_eq!(receipt["entity_seq"], seq + 1, "{r}");
    let (code, r) = post(&cancel);
    assert_eq!(code, 409, "the same request again conflicts: {r}");
    assert_eq!(r["error"]["code"], "conflict", "{r}");
    let (_, page) = read();
    let cancelled = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "order.cancelled")
        .count();
    assert_eq!(cancelled, 1, "the refused append wrote nothing: {page}");
    sigterm(&child);
    wait_exit_ok(child, "run --listen", &err);
}
