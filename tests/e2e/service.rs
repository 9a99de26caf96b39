//! A running host is a service (issue 8): producers append through the CLI
//! (control socket) and HTTP while `run` runs; followers, operators and
//! hostile clients talk to it; every wait is bounded.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

/// A `run` child whose stderr is collected line by line.
pub(crate) struct Running {
    pub(crate) child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    data: PathBuf,
}

impl Running {
    pub(crate) fn start(data: &Path, args: &[&str]) -> Running {
        let mut child = Command::new(bin())
            .arg("--data")
            .arg(data)
            .arg("run")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning run");
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let err = child.stderr.take().expect("stderr");
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        let r = Running {
            child,
            lines,
            data: data.to_path_buf(),
        };
        // Serving once the socket answers.
        r.wait_for("the control socket", || {
            UnixStream::connect(data.join("run").join("host.sock")).is_ok()
        });
        r
    }

    /// `run passthrough.wasm --listen 127.0.0.1:0 --quiet` on `data`: the
    /// host most HTTP tests talk to.
    pub(crate) fn passthrough_http(data: &Path) -> Running {
        Running::start(
            data,
            &[
                plugin("passthrough").to_str().unwrap(),
                "--listen",
                "127.0.0.1:0",
                "--quiet",
            ],
        )
    }

    pub(crate) fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    pub(crate) fn wait_for(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ok() {
            assert!(
                start.elapsed() < WAIT,
                "timed out after {WAIT:?} waiting for {what}; run's stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The HTTP address printed at start.
    pub(crate) fn http_addr(&self) -> String {
        let mut addr = None;
        self.wait_for("the http line", || {
            addr = self.lines.lock().unwrap().iter().find_map(|l| {
                l.strip_prefix("http: listening on http://")
                    .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
            });
            addr.is_some()
        });
        addr.unwrap()
    }

    pub(crate) fn token(&self) -> String {
        std::fs::read_to_string(self.data.join("run").join("http.token"))
            .expect("generated token file")
            .trim()
            .to_string()
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub(crate) fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                assert!(st.success(), "run exited with {st:?}:\n{}", self.stderr());
                break;
            }
            assert!(
                start.elapsed() < WAIT,
                "run did not stop:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        self.stderr()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; (status, body).
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connecting to the HTTP API");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_response(&out)
}

pub(crate) fn parse_response(out: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

fn bench_in(n: u64) -> Value {
    json!({"entity": format!("e:{n}"), "scope": "bench", "kind": "bench.in", "payload": {"n": n}})
}

fn count(data: &Path, kind: &str) -> usize {
    json_lines(&host_ok(data, &["events", "--kind", kind]).stdout).len()
}

#[test]
fn producers_through_cli_and_http_are_reacted_to_exactly_once_and_followed_in_order() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let run = Running::passthrough_http(&data);
    let addr = run.http_addr();
    let token = run.token();
    // A follower started before anything is appended.
    let mut follower = Command::new(bin())
        .arg("--data")
        .arg(&data)
        .args(["events", "--follow", "--kind", "bench.in"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let fout = follower.stdout.take().unwrap();
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(fout).lines().map_while(Result::ok) {
            s2.lock().unwrap().push(serde_json::from_str(&l).unwrap());
        }
    });
    // CLI producer (through the socket) and HTTP producer, concurrently.
    let d2 = data.clone();
    let cli = std::thread::spawn(move || {
        let mut receipts = Vec::new();
        for b in 0..4u64 {
            let batch: Vec<Value> = (0..50).map(|i| bench_in(b * 50 + i)).collect();
            receipts.extend(append(&d2, &batch));
        }
        let single = host_ok(
            &d2,
            &[
                "append",
                "--entity",
                "e:single",
                "--scope",
                "bench",
                "--kind",
                "bench.in",
                "--payload-text",
                "one",
            ],
        );
        receipts.extend(json_lines(&single.stdout));
        receipts
    });
    let mut http_receipts = Vec::new();
    for i in 0..40u64 {
        let (code, body) = http(
            &addr,
            "POST",
            "/v1/events",
            Some(&token),
            bench_in(1000 + i).to_string().as_bytes(),
        );
        assert_eq!(code, 200, "{body}");
        http_receipts.extend(
            serde_json::from_str::<Value>(&body).unwrap()["receipts"]
                .as_array()
                .unwrap()
                .clone(),
        );
    }
    let batch: Vec<Value> = (0..60).map(|i| bench_in(2000 + i)).collect();
    let (code, body) = http(
        &addr,
        "POST",
        "/v1/events",
        Some(&token),
        Value::Array(batch).to_string().as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    http_receipts.extend(
        serde_json::from_str::<Value>(&body).unwrap()["receipts"]
            .as_array()
            .unwrap()
            .clone(),
    );
    let cli_receipts = cli.join().unwrap();
    assert_eq!(cli_receipts.len(), 201);
    assert_eq!(http_receipts.len(), 100);
    let total = 301;
    run.wait_for("every reaction", || count(&data, "bench.out") >= total);
    run.wait_for("the follower", || seen.lock().unwrap().len() >= total);
    // The follower saw every event, in log order, once.
    let seen = seen.lock().unwrap().clone();
    let seqs: Vec<u64> = seen.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "follower out of order: {seqs:?}"
    );
    let mut ids: Vec<String> = cli_receipts
        .iter()
        .chain(&http_receipts)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let mut followed: Vec<String> = seen
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    followed.sort();
    assert_eq!(followed, ids);
    let _ = follower.kill();
    let _ = follower.wait();
    run.stop();
    // Exactly one reaction per source event.
    let outs = json_lines(&host_ok(&data, &["events", "--kind", "bench.out"]).stdout);
    let mut causes: Vec<String> = outs
        .iter()
        .map(|e| e["causation"].as_str().unwrap().to_string())
        .collect();
    causes.sort();
    assert_eq!(causes, ids, "every event reacted to exactly once");
}

#[test]
fn http_needs_the_token_and_bad_requests_get_errors_while_the_host_keeps_serving() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let token_file = write_file(dir.path(), "token", "a-test-token-of-enough-length\n");
    // A secret file is owner-only, or the host refuses it (see http_hardening).
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = Running::start(
        &data,
        &[
            plugin("passthrough").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token_file.to_str().unwrap(),
            "--quiet",
        ],
    );
    let addr = run.http_addr();
    let good = "a-test-token-of-enough-length";
    let one = bench_in(1).to_string();
    // No token, a wrong token: 401 and nothing appended.
    assert_eq!(
        http(&addr, "POST", "/v1/events", None, one.as_bytes()).0,
        401
    );
    assert_eq!(
        http(
            &addr,
            "POST",
            "/v1/events",
            Some("a-test-token-of-enough-lengtX"),
            one.as_bytes()
        )
        .0,
        401
    );
    assert_eq!(http(&addr, "GET", "/v1/events", None, b"").0, 401);
    assert_eq!(
        count(&data, "bench.in"),
        0,
        "an unauthorised append appended something"
    );
    // /metrics needs no token and carries counts only.
    let (code, metrics) = http(&addr, "GET", "/metrics", None, b"");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("batpak_service_http_unauthorized_total 3"),
        "{metrics}"
    );
    // Malformed JSON, wrong types, unknown fields, bad queries.
    let cases: &[(&str, &str, &[u8], u16)] = &[
        ("POST", "/v1/events", b"{not json", 400),
        (
            "POST",
            "/v1/events",
            br#"{"entity":1,"scope":"bench","kind":"bench.in"}"#,
            400,
        ),
        (
            "POST",
            "/v1/events",
            br#"{"entity":"e:1","scope":"bench","kind":"bench.in","surprise":true}"#,
            400,
        ),
        (
            "POST",
            "/v1/events",
            br#"{"entity":"e:1","scope":"bench","kind":"batpak.fake","payload":{}}"#,
            400,
        ),
        (
            "POST",
            "/v1/events",
            br#"{"entity":"e:1","scope":"bench","kind":"bench.in","payload":{},"expected_entity_seq":5}"#,
            409,
        ),
        ("POST", "/v1/events", b"42", 400),
        ("GET", "/v1/events?surprise=1", b"", 400),
        ("GET", "/v1/events?after=-1", b"", 400),
        ("DELETE", "/v1/events", b"", 405),
        ("GET", "/nope", b"", 404),
    ];
    for (m, p, body, want) in cases {
        let (code, text) = http(&addr, m, p, Some(good), body);
        assert_eq!(
            code,
            *want,
            "{m} {p} {}: {text}",
            String::from_utf8_lossy(body)
        );
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("error body is not JSON: {text}"));
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{text}"
        );
    }
    // Oversized: refused from the Content-Length, before the body is read.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {good}\r\nContent-Length: 999999999\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert_eq!(parse_response(&out).0, 413);
    // An oversized head.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = write!(
        s,
        "GET /v1/events HTTP/1.1\r\nX-Big: {}\r\n",
        "y".repeat(40_000)
    );
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert_eq!(parse_response(&out).0, 431);
    // Slowloris: a head that never completes holds no one else up, and is
    // cut off with 408 (the head deadline is 10 s).
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    slow.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let (code, body) = http(&addr, "POST", "/v1/events", Some(good), one.as_bytes());
    assert_eq!(code, 200, "{body}");
    let mut stall = true;
    while stall && started.elapsed() < Duration::from_secs(12) {
        // Keep trickling a header byte now and then, as slowloris does.
        stall = slow.write_all(b"X").is_ok();
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut out = Vec::new();
    let _ = slow.read_to_end(&mut out);
    assert_eq!(
        parse_response(&out).0,
        408,
        "{}",
        String::from_utf8_lossy(&out)
    );
    // The control socket: garbage, a wrong version, unknown fields, a
    // hostile length prefix. Each gets an error; the host keeps serving.
    let sock = data.join("run").join("host.sock");
    let frame = |s: &mut UnixStream, body: &[u8]| -> Value {
        s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut b).unwrap();
        serde_json::from_slice(&b).unwrap()
    };
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(
        frame(&mut s, b"\xff\xfe garbage")["error"]["code"],
        "bad_request"
    );
    assert_eq!(
        frame(&mut s, br#"{"v":99,"op":"ping"}"#)["error"]["code"],
        "version"
    );
    assert_eq!(
        frame(&mut s, br#"{"v":1,"op":{"append":{"events":[],"x":1}}}"#)["error"]["code"],
        "bad_request"
    );
    assert_eq!(
        frame(
            &mut s,
            br#"{"v":1,"op":{"append":{"events":[{"entity":"e","scope":"s","kind":7}]}}}"#
        )["error"]["code"],
        "bad_request"
    );
    // A swap to a file that is not there is refused as bad input, naming
    // the file; the reactor keeps running.
    let refused = frame(
        &mut s,
        br#"{"v":1,"op":{"swap":{"name":"passthrough","file":"x.wasm"}}}"#,
    );
    assert_eq!(refused["error"]["code"], "bad_request", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("x.wasm")),
        "{refused}"
    );
    assert!(frame(&mut s, br#"{"v":1,"op":"ping"}"#)["ok"]["pid"].is_u64());
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut b).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&b).unwrap()["error"]["code"],
        "too_large"
    );
    // Still serving, and only the two good appends landed.
    host_ok(
        &data,
        &[
            "append", "--entity", "e:2", "--scope", "bench", "--kind", "bench.in",
        ],
    );
    assert_eq!(count(&data, "bench.in"), 2);
    run.stop();
}

#[test]
fn the_socket_is_owner_only_and_a_stale_one_is_replaced_after_kill_9() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let mut run = Running::start(&data, &[plugin("passthrough").to_str().unwrap(), "--quiet"]);
    let run_dir = data.join("run");
    let sock = run_dir.join("host.sock");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // Tests may run as root, who passes any permission check: assert the
    // bits that keep other users out (0700 directory, 0600 socket).
    assert_eq!(mode(&run_dir), 0o700);
    assert_eq!(mode(&sock), 0o600);
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    if uid.trim() != "0" {
        // Not root: with the data directory unreadable, nothing connects.
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o000)).unwrap();
        let out = host(&data, &["status"]);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!out.status.success());
    } else {
        eprintln!("running as root: checked the permission bits instead of a refused connection");
    }
    // kill -9 leaves the socket file behind; nobody listens on it.
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    assert!(sock.exists(), "a killed host cannot remove its socket");
    // The CLI sees a refused connection and opens the store itself.
    host_ok(
        &data,
        &[
            "append", "--entity", "e:1", "--scope", "bench", "--kind", "bench.in",
        ],
    );
    // A new host replaces the stale socket and serves.
    let run = Running::start(&data, &[plugin("passthrough").to_str().unwrap(), "--quiet"]);
    run.wait_for("the reaction", || count(&data, "bench.out") == 1);
    let st: Value = serde_json::from_slice(&host_ok(&data, &["status", "--json"]).stdout).unwrap();
    assert_eq!(st[0]["name"], "passthrough");
    assert_eq!(st[0]["state"], "running");
    run.stop();
    assert!(!sock.exists(), "a clean stop removes the socket");
}

fn status_of(data: &Path) -> Value {
    let st: Value = serde_json::from_slice(&host_ok(data, &["status", "--json"]).stdout).unwrap();
    st[0].clone()
}

#[test]
fn pause_resume_and_reset_end_to_end() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let run = Running::start(&data, &[plugin("passthrough").to_str().unwrap(), "--quiet"]);
    append(&data, &(0..10).map(bench_in).collect::<Vec<_>>());
    run.wait_for("10 reactions", || count(&data, "bench.out") == 10);
    // Reset is refused while running.
    let out = host(&data, &["reset", "passthrough", "--to", "start"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("pause passthrough"),
        "{}",
        stderr(&out)
    );
    // Paused: appends are accepted, nothing is reacted to, lag counts them.
    let p: Value =
        serde_json::from_slice(&host_ok(&data, &["pause", "passthrough"]).stdout).unwrap();
    assert_eq!(p["state"], "paused");
    append(&data, &(10..15).map(bench_in).collect::<Vec<_>>());
    let s = status_of(&data);
    assert_eq!(
        (s["state"].as_str(), s["lag"].as_u64()),
        (Some("paused"), Some(5)),
        "{s}"
    );
    assert_eq!(count(&data, "bench.out"), 10);
    // Resume: the five are reacted to from the kept position.
    host_ok(&data, &["resume", "passthrough"]);
    run.wait_for("15 reactions", || count(&data, "bench.out") == 15);
    // Reset to end while paused skips what comes next.
    host_ok(&data, &["pause", "passthrough"]);
    append(&data, &(15..18).map(bench_in).collect::<Vec<_>>());
    let r: Value =
        serde_json::from_slice(&host_ok(&data, &["reset", "passthrough", "--to", "end"]).stdout)
            .unwrap();
    host_ok(&data, &["resume", "passthrough"]);
    append(&data, &[bench_in(18)]);
    run.wait_for("the reaction to 18", || count(&data, "bench.out") == 16);
    assert_eq!(status_of(&data)["lag"], 0);
    // Reset to start re-delivers history: the skipped three get reactions,
    // the others dedupe on their derived ids — nothing is duplicated.
    host_ok(&data, &["pause", "passthrough"]);
    host_ok(&data, &["reset", "passthrough", "--to", "start"]);
    host_ok(&data, &["resume", "passthrough"]);
    run.wait_for("19 reactions", || count(&data, "bench.out") == 19);
    run.wait_for("caught up", || status_of(&data)["lag"] == 0);
    assert_eq!(count(&data, "bench.out"), 19);
    // Reset to a sequence beyond the log is refused.
    host_ok(&data, &["pause", "passthrough"]);
    let out = host(&data, &["reset", "passthrough", "--to", "999999"]);
    assert!(
        !out.status.success() && stderr(&out).contains("beyond the end"),
        "{}",
        stderr(&out)
    );
    host_ok(&data, &["resume", "passthrough"]);
    run.stop();
    let resets: Vec<Value> =
        json_lines(&host_ok(&data, &["events", "--kind", "batpak.reactor.reset"]).stdout)
            .into_iter()
            .filter(|e| e["kind"] == "batpak.reactor.reset")
            .collect();
    assert_eq!(resets.len(), 2, "each reset is recorded");
    assert_eq!(resets[0]["id"], r["event"]);
    assert_eq!(resets[0]["payload"]["requested"], "end");
    assert_eq!(resets[1]["payload"]["to"], 0);
}

fn summary_in(stderr: &str, name: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with(&format!("summary | {name}: in ")))
        .unwrap_or_else(|| panic!("no summary for {name} in:\n{stderr}"));
    line[format!("summary | {name}: in ").len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_region_change_continues_or_redelivers_through_reset() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let v1 = write_file(dir.path(), "v1.wat", NULL_REACTOR_WAT);
    // Same reactor, same length of text, another consumed kind: a new region.
    let v2 = write_file(
        dir.path(),
        "v2.wat",
        &NULL_REACTOR_WAT.replace("\"bench.in\"", "\"bench.ix\""),
    );
    let ev = |k: &str, n: u64| json!({"entity": format!("e:{n}"), "scope": "bench", "kind": k, "payload": {}});
    append(
        &data,
        &[ev("bench.in", 1), ev("bench.ix", 2), ev("bench.in", 3)],
    );
    let out = host_ok(
        &data,
        &["run", v1.to_str().unwrap(), "--until-idle", "--quiet"],
    );
    assert_eq!(summary_in(&stderr(&out), "null"), 2);
    append(&data, &[ev("bench.ix", 4), ev("bench.ix", 5)]);
    // The new region cannot use the old checkpoint as is.
    let out = host(
        &data,
        &["run", v2.to_str().unwrap(), "--until-idle", "--quiet"],
    );
    assert!(
        !out.status.success() && stderr(&out).contains("another region"),
        "{}",
        stderr(&out)
    );
    // Continue from the old position: only bench.ix after it.
    host_ok(
        &data,
        &[
            "reset",
            "null",
            "--to",
            "current",
            "--plugin",
            v2.to_str().unwrap(),
        ],
    );
    let out = host_ok(
        &data,
        &["run", v2.to_str().unwrap(), "--until-idle", "--quiet"],
    );
    assert_eq!(
        summary_in(&stderr(&out), "null"),
        2,
        "continues after the old position"
    );
    // Or re-deliver the new region's history from the start.
    host_ok(
        &data,
        &[
            "reset",
            "null",
            "--to",
            "start",
            "--plugin",
            v2.to_str().unwrap(),
        ],
    );
    let out = host_ok(
        &data,
        &["run", v2.to_str().unwrap(), "--until-idle", "--quiet"],
    );
    assert_eq!(
        summary_in(&stderr(&out), "null"),
        3,
        "re-delivers every bench.ix"
    );
    // A plugin of another name is refused.
    let other = write_file(
        dir.path(),
        "other.wat",
        &NULL_REACTOR_WAT.replace("\"null\"", "\"nulx\""),
    );
    let out = host(
        &data,
        &[
            "reset",
            "null",
            "--to",
            "start",
            "--plugin",
            other.to_str().unwrap(),
        ],
    );
    assert!(
        !out.status.success() && stderr(&out).contains("the name keys the checkpoint"),
        "{}",
        stderr(&out)
    );
}

/// `append --jsonl` through a running host keeps the promise it keeps
/// without one: a bad causation at line 4501 of 5000 appends nothing; a file
/// whose later lines name earlier lines' explicit ids as causation is
/// appended whole, as one atomic batch.
#[test]
fn jsonl_through_a_running_host_is_all_or_nothing() {
    let dir = tempdir();
    let data = dir.path().join("data");
    append(
        &data,
        &[json!({"entity":"seed","scope":"s","kind":"seed","payload":{}})],
    );
    let run = Running::start(&data, &[plugin("passthrough").to_str().unwrap(), "--quiet"]);
    let before = all_events(&data).len();

    let mut text = String::new();
    for i in 0..5000 {
        let causation = if i == 4500 {
            // No such event anywhere: only the store can tell.
            ",\"causation\":\"0123456789abcdef0123456789abcdef\"".to_string()
        } else {
            String::new()
        };
        text.push_str(&format!(
            "{{\"entity\":\"j:{i}\",\"scope\":\"s\",\"kind\":\"bench.in\",\"payload\":{{\"i\":{i}}}{causation}}}\n"
        ));
    }
    let bad = write_file(dir.path(), "bad.jsonl", &text);
    let out = host(&data, &["append", "--jsonl", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was appended"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty(), "no receipt for a refused file");
    assert_eq!(all_events(&data).len(), before, "nothing appended");

    // Causation to an earlier line of the same file, by explicit id.
    let parent = "00000000000000000000000000000abc";
    let good = write_file(
        dir.path(),
        "good.jsonl",
        &format!(
            "{{\"id\":\"{parent}\",\"entity\":\"p\",\"scope\":\"s\",\"kind\":\"bench.in\",\"payload\":1}}\n\
             {{\"entity\":\"c\",\"scope\":\"s\",\"kind\":\"bench.in\",\"payload\":2,\"causation\":\"{parent}\"}}\n"
        ),
    );
    let out = host_ok(&data, &["append", "--jsonl", good.to_str().unwrap()]);
    let receipts = json_lines(&out.stdout);
    assert_eq!(receipts.len(), 2);
    assert_eq!(receipts[0]["id"], parent);
    run.stop();
    let child = all_events(&data)
        .into_iter()
        .find(|e| e["entity"] == "c")
        .expect("the child event");
    assert_eq!(child["causation"], parent);
}

/// Bad payloads through a running host: a CLI `--payload` that is not JSON
/// gets the same refusal as without a host (exit 2, nothing appended); an
/// HTTP event without `payload` is a 400 naming the field (a batch with
/// one such event appends nothing); `"payload": null` is the JSON null.
#[test]
fn bad_payloads_are_refused_through_the_socket_and_over_http() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let run = Running::passthrough_http(&data);
    let (addr, token) = (run.http_addr(), run.token());
    let cli = |flag: &str, payload: &str| {
        host(
            &data,
            &[
                "append", "--entity", "e:1", "--scope", "bench", "--kind", "bench.in", flag,
                payload,
            ],
        )
    };
    let out = cli("--payload", r#"{sku:"widget"}"#);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("--payload is not valid JSON: key must be a string at line 1, column 2"),
        "{err}"
    );
    assert!(err.contains("--payload-text"), "{err}");
    assert_eq!(count(&data, "bench.in"), 0);
    let out = cli("--payload-text", r#"{sku:"widget"}"#);
    assert!(out.status.success(), "{}", stderr(&out));

    // HTTP: no payload, alone or in a batch.
    let missing = br#"{"entity":"e:2","scope":"bench","kind":"bench.in"}"#;
    let (code, body) = http(&addr, "POST", "/v1/events", Some(&token), missing);
    assert_eq!(code, 400, "{body}");
    let v: Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(v["error"]["code"], "bad_request", "{body}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("event 0: missing field \"payload\""), "{msg}");
    let batch = format!("[{},{}]", bench_in(3), String::from_utf8_lossy(missing));
    let (code, body) = http(&addr, "POST", "/v1/events", Some(&token), batch.as_bytes());
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("event 1: missing field"), "{body}");
    assert_eq!(
        count(&data, "bench.in"),
        1,
        "a refused batch appended something"
    );
    // `"payload": null` is a payload: the JSON null.
    let null = br#"{"entity":"e:4","scope":"bench","kind":"bench.in","payload":null}"#;
    let (code, body) = http(&addr, "POST", "/v1/events", Some(&token), null);
    assert_eq!(code, 200, "{body}");
    let stored =
        json_lines(&host_ok(&data, &["events", "--entity", "e:4", "--kind", "bench.in"]).stdout);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["payload"], Value::Null);
    let raw = host_ok(
        &data,
        &[
            "events", "--entity", "e:4", "--kind", "bench.in", "--format", "pretty",
        ],
    );
    assert!(
        String::from_utf8_lossy(&raw.stdout)
            .trim_end()
            .ends_with(" null"),
        "{}",
        String::from_utf8_lossy(&raw.stdout)
    );
    run.stop();
}

/// `/metrics`: counts that only grow are Prometheus counters named
/// `*_total`; positions and lag stay gauges.
#[test]
fn metrics_type_growing_counts_as_counters_named_total() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let run = Running::passthrough_http(&data);
    let addr = run.http_addr();
    append(&data, &[bench_in(1), bench_in(2), bench_in(3)]);
    run.wait_for("three reactions", || count(&data, "bench.out") == 3);
    let metrics = || http(&addr, "GET", "/metrics", None, b"").1;
    // The counters land with the reactions' commit; read until they show.
    let mut text = metrics();
    let start = Instant::now();
    while !text.contains("batpak_reactor_reactions_out_total{reactor=\"passthrough\"} 3") {
        assert!(start.elapsed() < WAIT, "{text}");
        std::thread::sleep(Duration::from_millis(50));
        text = metrics();
    }
    for (name, kind) in [
        ("batpak_reactor_events_in_total", "counter"),
        ("batpak_reactor_reactions_out_total", "counter"),
        ("batpak_reactor_parked_total", "counter"),
        ("batpak_reactor_position", "gauge"),
        ("batpak_reactor_lag", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} is not a {kind}:\n{text}"
        );
    }
    assert!(
        text.contains("batpak_reactor_events_in_total{reactor=\"passthrough\"} 3"),
        "{text}"
    );
    // Every counter follows the `_total` convention; no old name is left.
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut f = l.split_whitespace().skip(2);
        let (name, kind) = (f.next().unwrap(), f.next().unwrap());
        assert_eq!(kind == "counter", name.ends_with("_total"), "{l}");
    }
    assert!(!text.contains("batpak_reactor_events_in{"), "{text}");
    run.stop();
}

/// `POST /v1/reactors/NAME/pause` and `/resume` operate the reactor as the
/// `pause` and `resume` commands do (the token needed, GET refused, an
/// unknown name 404).
#[test]
fn http_pause_and_resume_operate_a_reactor_like_the_commands() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let run = Running::passthrough_http(&data);
    let (addr, token) = (run.http_addr(), run.token());
    let path = "/v1/reactors/passthrough/pause";
    assert_eq!(http(&addr, "POST", path, None, b"").0, 401);
    assert_eq!(http(&addr, "GET", path, Some(&token), b"").0, 405);
    let (code, body) = http(&addr, "POST", path, Some(&token), b"");
    assert_eq!(code, 200, "{body}");
    let p: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (p["name"].as_str(), p["state"].as_str()),
        (Some("passthrough"), Some("paused")),
        "{p}"
    );
    append(&data, &[bench_in(1)]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&data, "bench.out"), 0, "a paused reactor reacted");
    let (code, body) = http(
        &addr,
        "POST",
        "/v1/reactors/passthrough/resume",
        Some(&token),
        b"",
    );
    assert_eq!(code, 200, "{body}");
    // As `resume` prints it: the runner is starting or already running.
    let state = serde_json::from_str::<Value>(&body).unwrap()["state"].clone();
    assert!(state == "starting" || state == "running", "{body}");
    run.wait_for("the reaction after resume", || {
        count(&data, "bench.out") == 1
    });
    let (code, body) = http(
        &addr,
        "POST",
        "/v1/reactors/nothing/pause",
        Some(&token),
        b"",
    );
    assert_eq!(code, 404, "{body}");
    run.stop();
}
