//! Command parity (issue 17): `append` (one event and `--jsonl`),
//! `events`, `verify`, `parked` and `trace` run against a local data
//! directory and through a running host on an identical copy of it print
//! the same bytes and exit with the same code — they are one implementation
//! over one trait, served by the store or by the host's socket.
//!
//! Normalised before comparing, because they must differ:
//! - receipts of new appends: `timestamp_us` and `hash` (the time of the
//!   append, which the hash covers) and, for an event without an explicit
//!   id, `id` (derived from that time);
//! - `parked replay`: the `replay_requested` id (a new event) and the
//!   stderr clause saying when the replay happens ("the next run" without a
//!   host, "now" with one);
//! - `verify`'s stderr: " (checked by the running host)".
//!
//! Everything else — stdout, stderr, exit codes, and the stored payload
//! bytes a read returns — must be equal byte for byte. Also here: reads
//! through a running host keep each payload's stored bytes (issue 16's
//! leftover), by the socket and by HTTP.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A payload serde_json would change: a 29-digit integer, an exponent, a
/// negative zero, spacing, keys out of order.
const PAYLOAD: &str = r#"{"z": 12345678901234567890123456789, "f":1.0e2,"a":-0}"#;

/// `run PLUGIN --quiet [--listen]` on `data`, until dropped.
struct RunningHost {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl RunningHost {
    /// A host whose only reactor (the null reactor, which consumes
    /// `bench.in`, absent here) writes nothing: the store stays as copied.
    fn start(data: &Path, listen: bool) -> RunningHost {
        let null = workspace().join("plugins/null-wat/reactor.wat");
        let mut cmd = Command::new(bin());
        cmd.arg("--data")
            .arg(data)
            .args(["run", "--quiet", null.to_str().unwrap()]);
        if listen {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning run");
        let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
        let lines = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
        let h = RunningHost { child, stderr };
        let sock = data.join("run").join("host.sock");
        h.wait_for("the control socket", || UnixStream::connect(&sock).is_ok());
        h
    }

    fn wait_for(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no {what} within 120 s; run's stderr:\n{}",
                self.stderr.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The HTTP address `run --listen` printed.
    fn http_addr(&self) -> String {
        let mut addr = None;
        self.wait_for("HTTP address", || {
            addr = self.stderr.lock().unwrap().iter().find_map(|l| {
                l.strip_prefix("http: listening on http://")
                    .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
            });
            addr.is_some()
        });
        addr.unwrap()
    }

    fn stop(mut self) {
        sigterm(&self.child);
        assert!(wait_exit(&mut self.child, Duration::from_secs(60)).success());
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the store in `from` to `to` (segments, index, checkpoints),
/// leaving out `run/` (a host's socket and token).
fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_name() == "run" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_store(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Receipt and replay lines with the fields that must differ replaced.
fn normalise_lines(stdout: &[u8], keys: &[&str]) -> String {
    text(stdout)
        .lines()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(mut m)) => {
                for k in keys {
                    if m.contains_key(*k) {
                        m.insert(k.to_string(), Value::from("…"));
                    }
                }
                Value::Object(m).to_string()
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn normalise_stderr(s: &[u8]) -> String {
    text(s)
        .replace(" (checked by the running host)", "")
        .replace("the running host re-delivers them now", "WHEN")
        .replace(
            "the next `batpak-host run` of the reactor re-delivers them first",
            "WHEN",
        )
}

/// Runs `args` on both stores and asserts the same exit code, stdout
/// (after `keys` are normalised) and stderr.
fn same(local: &Path, served: &Path, args: &[&str], keys: &[&str], stdin: Option<&str>) -> Output {
    let l = run(local, args, stdin);
    let r = run(served, args, stdin);
    let what = format!("batpak-host {args:?}");
    assert_eq!(
        l.status.code(),
        r.status.code(),
        "{what}: exit codes differ\nlocal stderr: {}\nhost stderr: {}",
        text(&l.stderr),
        text(&r.stderr)
    );
    if keys.is_empty() {
        assert!(
            l.stdout == r.stdout,
            "{what}: stdout differs\nlocal:\n{}\nthrough the host:\n{}",
            text(&l.stdout),
            text(&r.stdout)
        );
    } else {
        assert_eq!(
            normalise_lines(&l.stdout, keys),
            normalise_lines(&r.stdout, keys),
            "{what}: stdout differs"
        );
    }
    assert_eq!(
        normalise_stderr(&l.stderr),
        normalise_stderr(&r.stderr),
        "{what}: stderr differs"
    );
    l
}

/// A store with what the commands show: a payload serde_json would
/// change, a text payload, causal chains (inventory's reactions to orders)
/// and a parked event (hostile's trap).
fn seeded_store(data: &Path) {
    host_ok(
        data,
        &[
            "append",
            "--entity",
            "acct:1",
            "--scope",
            "bank",
            "--kind",
            "money.deposited",
            "--payload",
            PAYLOAD,
        ],
    );
    host_ok(
        data,
        &[
            "append",
            "--entity",
            "note:1",
            "--scope",
            "bank",
            "--kind",
            "note.written",
            "--payload-text",
            "not JSON: {\"x\"",
        ],
    );
    append(
        data,
        &[
            order(1, "widget", 2),
            order(2, "gizmo", 1),
            serde_json::json!({"entity": "h:1", "scope": "lab", "kind": "hostile.cmd", "payload": {"do": "trap"}}),
        ],
    );
    let (inv, hostile) = (plugin("inventory"), plugin("hostile"));
    host_ok(
        data,
        &[
            "run",
            "--until-idle",
            "--quiet",
            "--attempts",
            "1",
            "--backoff-ms",
            "1",
            inv.to_str().unwrap(),
            hostile.to_str().unwrap(),
        ],
    );
}

#[test]
fn store_commands_print_the_same_locally_and_through_a_running_host() {
    let dir = tempdir();
    let local = dir.path().join("local");
    let served = dir.path().join("served");
    seeded_store(&local);
    copy_store(&local, &served);
    let host = RunningHost::start(&served, false);

    let order =
        json_lines(&host_ok(&local, &["events", "--kind", "order.placed"]).stdout)[0].clone();
    let order_id = order["id"].as_str().unwrap().to_string();
    let corr = order["correlation"].as_str().unwrap().to_string();
    let parked = json_lines(&host_ok(&local, &["parked"]).stdout);
    assert_eq!(parked.len(), 1, "the seeded store has one parked event");
    let parked_event = parked[0]["event"].as_str().unwrap().to_string();

    // Reads: byte for byte.
    for args in [
        vec!["events"],
        vec!["events", "--system"],
        vec!["events", "--format", "pretty"],
        vec!["events", "--entity", "acct:1"],
        vec!["events", "--entity-prefix", "order:", "--limit", "1"],
        vec!["events", "--kind", "inventory.reserved", "--after", "2"],
        vec!["events", "--correlation", &corr],
        vec!["events", "--caused-by", &order_id],
        vec!["events", "--scope", "bank", "--system"],
        vec!["events", "--correlation", "not-an-id"],
        vec!["events", "--kind", "Not A Kind"],
        vec!["verify"],
        vec!["parked"],
        vec!["parked", "--plugin", "hostile"],
        vec!["parked", "--plugin", "no such name!"],
        vec!["trace", &order_id],
        vec!["trace", &order_id, "--format", "json"],
        vec!["trace", "order:2", "--format", "dot"],
        vec!["trace", "order:1", "--format", "svg"],
        vec!["trace", "nothing:here"],
    ] {
        same(&local, &served, &args, &[], None);
    }

    // Appends: one event (its id is new), then --jsonl with explicit ids
    // and a causation to an earlier line, then refused inputs.
    let receipt_keys = ["id", "timestamp_us", "hash"];
    same(
        &local,
        &served,
        &[
            "append",
            "--entity",
            "acct:2",
            "--scope",
            "bank",
            "--kind",
            "money.deposited",
            "--payload",
            PAYLOAD,
        ],
        &receipt_keys,
        None,
    );
    same(
        &local,
        &served,
        &[
            "append",
            "--entity",
            "acct:2",
            "--scope",
            "bank",
            "--kind",
            "k",
            "--causation",
            "nope",
            "--payload",
            "{}",
        ],
        &[],
        None,
    );
    let a = "0000000000000000000000000000a001";
    let b = "0000000000000000000000000000a002";
    let jsonl = format!(
        "{{\"id\":\"{a}\",\"entity\":\"acct:3\",\"scope\":\"bank\",\"kind\":\"money.deposited\",\"payload\":{PAYLOAD}}}\n\
         {{\"id\":\"{b}\",\"entity\":\"acct:3\",\"scope\":\"bank\",\"kind\":\"money.withdrawn\",\"causation\":\"{a}\",\"payload\":{{\"n\":1}}}}\n"
    );
    same(
        &local,
        &served,
        &["append", "--jsonl", "-"],
        &["timestamp_us", "hash"],
        Some(&jsonl),
    );
    // A line that is not UTF-8, and one that is not JSON: refused the same
    // way, naming the line, nothing appended.
    let mut bad = b"{\"entity\":\"x:1\",\"scope\":\"s\",\"kind\":\"k\",\"payload\":\"".to_vec();
    bad.extend_from_slice(&[0xff, 0xfe]);
    bad.extend_from_slice(b"\"}\n{\"entity\":\"x:2\"}\n");
    let bad_file = dir.path().join("bad.jsonl");
    std::fs::write(&bad_file, &bad).unwrap();
    let out = same(
        &local,
        &served,
        &["append", "--jsonl", bad_file.to_str().unwrap()],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("bad.jsonl:1: line is not UTF-8"),
        "{}",
        text(&out.stderr)
    );
    // What was appended reads back the same (the ids differ for the one
    // event appended without an explicit id).
    same(
        &local,
        &served,
        &["events", "--entity", "acct:3"],
        &["timestamp_us"],
        None,
    );
    same(
        &local,
        &served,
        &["events", "--entity", "acct:2"],
        &["id", "correlation", "timestamp_us"],
        None,
    );
    // Replay requests for the parked event.
    same(
        &local,
        &served,
        &[
            "parked",
            "replay",
            "--plugin",
            "hostile",
            "--event",
            &parked_event,
        ],
        &["replay_requested"],
        None,
    );
    same(
        &local,
        &served,
        &["parked", "replay", "--event", "zz"],
        &[],
        None,
    );
    host.stop();
}

#[test]
fn reads_through_a_running_host_keep_payload_bytes() {
    let dir = tempdir();
    let data = dir.path().join("d");
    host_ok(
        &data,
        &[
            "append",
            "--entity",
            "acct:1",
            "--scope",
            "bank",
            "--kind",
            "k",
            "--payload",
            PAYLOAD,
        ],
    );
    let stored = format!(r#""payload":{PAYLOAD}"#);
    let local = text(&host_ok(&data, &["events"]).stdout);
    assert!(local.contains(&stored), "{local}");
    let host = RunningHost::start(&data, true);
    // Through the socket: the line as stored, digits, key order and spacing.
    let served = text(&host_ok(&data, &["events"]).stdout);
    assert_eq!(served, local);
    let traced = text(&host_ok(&data, &["trace", "acct:1", "--format", "text"]).stdout);
    assert!(traced.contains(PAYLOAD), "{traced}");
    // Through HTTP: the same bytes in the page.
    let addr = host.http_addr();
    let token = std::fs::read_to_string(data.join("run").join("http.token")).unwrap();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\r\n",
        token.trim()
    )
    .unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains(&stored), "{body}");
    host.stop();
}
