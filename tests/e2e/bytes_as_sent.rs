//! Bytes stored as sent and idempotency conflicts (issue 16, findings 6
//! and 7), through the real binary: `append --payload`, `--jsonl` and
//! HTTP, with and without a running host. A payload comes back as the
//! client wrote it (a 29-digit integer, `1.0e2`, `-0`, its spacing); a key
//! given twice is refused; the same idempotency key with other content is
//! refused naming the original, and an identical retry is deduplicated.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A payload serde_json would change: a 29-digit integer (a float once
/// parsed), an exponent, a negative zero, spacing and key order.
const PAYLOAD: &str = r#"{"z": 12345678901234567890123456789, "f":1.0e2,"a":-0}"#;
/// The big integer as serde_json would have re-encoded it.
const AS_FLOAT: &str = "1.2345678901234568e28";

fn append_args<'a>(entity: &'a str, kind: &'a str, payload: &'a str) -> Vec<&'a str> {
    vec![
        "append",
        "--entity",
        entity,
        "--scope",
        "bank",
        "--kind",
        kind,
        "--payload",
        payload,
    ]
}

/// The `events` line of `entity`, as printed (raw text).
fn event_lines(data: &Path, entity: &str) -> Vec<String> {
    let out = host_ok(data, &["events", "--entity", entity]);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn payloads_come_back_byte_for_byte_and_repeated_keys_are_refused() {
    let dir = tempdir();
    let data = dir.path().join("d");
    // --payload, stored and printed as typed.
    host_ok(&data, &append_args("acct:1", "money.deposited", PAYLOAD));
    let lines = event_lines(&data, "acct:1");
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains(&format!(r#""payload":{PAYLOAD}"#)),
        "the payload was re-encoded: {}",
        lines[0]
    );
    let pretty = host_ok(
        &data,
        &["events", "--entity", "acct:1", "--format", "pretty"],
    );
    assert!(String::from_utf8_lossy(&pretty.stdout).contains(PAYLOAD));

    // --jsonl: the payload's text is sliced from the line as written.
    let line = format!(
        r#"{{"entity":"acct:2","scope":"bank","kind":"money.deposited","payload":  {PAYLOAD} ,"idempotency_key":"j1"}}"#
    );
    let file = write_file(dir.path(), "in.jsonl", &format!("{line}\n"));
    host_ok(&data, &["append", "--jsonl", file.to_str().unwrap()]);
    let lines = event_lines(&data, "acct:2");
    assert!(
        lines[0].contains(&format!(r#""payload":{PAYLOAD}"#)),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains(AS_FLOAT));

    // A key twice in the envelope: refused naming the line and the key,
    // nothing appended (serde_json would have kept the last one).
    let dup = r#"{"entity":"order:2","entity":"order:3","scope":"s","kind":"k","payload":{}}"#;
    let file = write_file(dir.path(), "dup.jsonl", &format!("{dup}\n"));
    let out = host(&data, &["append", "--jsonl", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("dup.jsonl:1:") && err.contains(r#"the key "entity" appears twice"#),
        "{err}"
    );
    assert!(event_lines(&data, "order:3").is_empty());
    assert!(event_lines(&data, "order:2").is_empty());
    // ... and inside a payload, through --jsonl and --payload.
    let dup = r#"{"entity":"order:4","scope":"s","kind":"k","payload":{"qty":1,"qty":2}}"#;
    let file = write_file(dir.path(), "dup2.jsonl", &format!("{dup}\n"));
    let out = host(&data, &["append", "--jsonl", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"the key "qty" appears twice"#),
        "{}",
        stderr(&out)
    );
    let out = host(&data, &append_args("order:4", "k", r#"{"qty":1,"qty":2}"#));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"--payload gives the key "qty" twice"#),
        "{}",
        stderr(&out)
    );
    assert!(event_lines(&data, "order:4").is_empty());
}

#[test]
fn a_reused_idempotency_key_with_other_content_exits_1_naming_the_original() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let keyed = |entity: &str, kind: &str, payload: &str| {
        let mut a = append_args(entity, kind, payload);
        a.extend(["--idempotency-key", "k1"]);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        host(&data, &a)
    };
    let first = run(keyed("acct:1", "money.deposited", r#"{"n":5}"#));
    assert!(first.status.success(), "{}", stderr(&first));
    let first = json_lines(&first.stdout).remove(0);
    let again = run(keyed("acct:1", "money.deposited", r#"{"n":5}"#));
    assert!(again.status.success(), "{}", stderr(&again));
    let again = json_lines(&again.stdout).remove(0);
    assert_eq!(again["deduplicated"], true);
    assert_eq!(again["seq"], first["seq"]);

    let out = run(keyed("acct:2", "money.withdrawn", r#"{"n":5}"#));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "a refused append printed a receipt");
    let err = stderr(&out);
    for part in [
        "idempotency key \"k1\"",
        first["id"].as_str().unwrap(),
        &format!("sequence {}", first["seq"]),
        "\"acct:1\"",
        "\"money.deposited\"",
    ] {
        assert!(err.contains(part), "{err} lacks {part}");
    }
    assert!(
        event_lines(&data, "acct:2").is_empty(),
        "acct:2 got an event"
    );

    // The same through --jsonl: the line is named, nothing is appended.
    let file = write_file(
        dir.path(),
        "in.jsonl",
        "{\"entity\":\"acct:3\",\"scope\":\"bank\",\"kind\":\"money.deposited\",\"payload\":{}}\n\
         {\"entity\":\"acct:2\",\"scope\":\"bank\",\"kind\":\"money.withdrawn\",\"payload\":{},\"idempotency_key\":\"k1\"}\n",
    );
    let out = host(&data, &["append", "--jsonl", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("in.jsonl:2:") && err.contains(first["id"].as_str().unwrap()),
        "{err}"
    );
    assert!(
        event_lines(&data, "acct:3").is_empty(),
        "part of a refused file was kept"
    );
}

/// A `run --listen` child with its stderr collected.
struct Host {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Host {
    fn start(data: &Path) -> Host {
        let mut child = Command::new(bin())
            .arg("--data")
            .arg(data)
            .args([
                "run",
                plugin("passthrough").to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--quiet",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning run");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let err = child.stderr.take().unwrap();
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        let h = Host { child, lines };
        h.wait_for(|| UnixStream::connect(data.join("run").join("host.sock")).is_ok());
        h
    }

    fn wait_for(&self, mut ok: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out; run's stderr:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self) -> String {
        let mut addr = None;
        self.wait_for(|| {
            addr = self.lines.lock().unwrap().iter().find_map(|l| {
                l.strip_prefix("http: listening on http://")
                    .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
            });
            addr.is_some()
        });
        addr.unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
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
        .unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn over_http_and_through_a_running_host_payloads_keep_their_digits_and_conflicts_are_409() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let h = Host::start(&data);
    let addr = h.addr();
    let token = std::fs::read_to_string(data.join("run").join("http.token")).unwrap();
    let token = token.trim();
    let event = |entity: &str, kind: &str, payload: &str| {
        format!(
            r#"{{"entity":"{entity}","scope":"bank","kind":"{kind}","payload":{payload},"idempotency_key":"h1"}}"#
        )
    };
    let (code, body) = http(
        &addr,
        "POST",
        "/v1/events",
        token,
        &event("acct:1", "money.deposited", PAYLOAD),
    );
    assert_eq!(code, 200, "{body}");
    let first: Value = serde_json::from_str(&body).unwrap();
    let first = &first["receipts"][0];
    // An identical retry: the original receipt, deduplicated.
    let (code, body) = http(
        &addr,
        "POST",
        "/v1/events",
        token,
        &event("acct:1", "money.deposited", PAYLOAD),
    );
    assert_eq!(code, 200, "{body}");
    let again: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(again["receipts"][0]["deduplicated"], true);
    assert_eq!(again["receipts"][0]["seq"], first["seq"]);
    // Other content under the key: 409 naming the original.
    let (code, body) = http(
        &addr,
        "POST",
        "/v1/events",
        token,
        &event("acct:2", "money.withdrawn", "{}"),
    );
    assert_eq!(code, 409, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "idempotency_conflict", "{body}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(first["id"].as_str().unwrap())
            && msg.contains("\"acct:1\"")
            && msg.contains("\"money.deposited\""),
        "{msg}"
    );
    // A key twice in the envelope: 400, nothing appended.
    let dup = r#"{"entity":"order:2","entity":"order:3","scope":"s","kind":"k","payload":{}}"#;
    let (code, body) = http(&addr, "POST", "/v1/events", token, dup);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains(r#"duplicate key \"entity\""#), "{body}");
    // Through the socket: the conflict exits 1 naming the original.
    let mut args = append_args("acct:2", "money.withdrawn", "{}");
    args.extend(["--idempotency-key", "h1"]);
    let out = host(&data, &args);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(first["id"].as_str().unwrap()),
        "{}",
        stderr(&out)
    );
    // --payload and --jsonl through the host store the bytes as sent.
    host_ok(&data, &append_args("acct:3", "money.deposited", PAYLOAD));
    let line = format!(r#"{{"entity":"acct:4","scope":"bank","kind":"k","payload":{PAYLOAD}}}"#);
    let file = write_file(dir.path(), "in.jsonl", &format!("{line}\n"));
    host_ok(&data, &["append", "--jsonl", file.to_str().unwrap()]);
    // Served reads keep every digit (never a float).
    for entity in ["acct:1", "acct:3", "acct:4"] {
        let (code, body) = http(
            &addr,
            "GET",
            &format!("/v1/events?entity={entity}"),
            token,
            "",
        );
        assert_eq!(code, 200, "{body}");
        assert!(
            body.contains("12345678901234567890123456789") && !body.contains(AS_FLOAT),
            "{body}"
        );
        let lines = event_lines(&data, entity);
        assert!(
            lines[0].contains("12345678901234567890123456789"),
            "{}",
            lines[0]
        );
    }
    assert!(event_lines(&data, "acct:2").is_empty());
    assert!(event_lines(&data, "order:3").is_empty());
    let mut h = h;
    sigterm(&h.child);
    assert!(wait_exit(&mut h.child, Duration::from_secs(60)).success());
    drop(h);
    // The log holds the bytes as sent: read without the host.
    for entity in ["acct:1", "acct:3", "acct:4"] {
        let lines = event_lines(&data, entity);
        assert!(
            lines[0].contains(&format!(r#""payload":{PAYLOAD}"#)),
            "{}",
            lines[0]
        );
    }
}
