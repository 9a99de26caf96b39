//! The HTTP API and `/metrics` of a cluster host: a real 3-node JetStream
//! cluster on loopback (the provisioned `nats-server`, see
//! `host/nats/tests/cluster/`) and a real `batpak-host run --store nats://…
//! --listen 127.0.0.1:0 --token-file FILE` running the `passthrough`
//! reactor (one `bench.out` per `bench.in`, on the input's entity) over 2
//! partitions. Every wait has a deadline.

use crate::common::{bin, plugin, spawn_cluster_host, tempdir, wait_exit, KeptLines};
use crate::harness::{serial, Cluster};
use crate::nats_shared::init;
use crate::service::{http, parse_response};
use batpak_nats::NatsLog;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 2;
const WAIT: Duration = Duration::from_secs(90);
const TOKEN: &str = "cluster-http-test-token-0123456789abcdef";

/// `run --store … --listen 127.0.0.1:0` with its stderr collected.
struct ClusterHost {
    child: Child,
    lines: KeptLines,
}

impl ClusterHost {
    fn start(cluster: &Cluster, extra: &[&str]) -> ClusterHost {
        let (child, lines) = spawn_cluster_host(
            None,
            &cluster.servers().join(","),
            &[plugin("passthrough")],
            "web",
            ["--listen", "127.0.0.1:0"].iter().chain(extra),
        );
        ClusterHost { child, lines }
    }

    fn text(&self) -> String {
        self.lines.text()
    }

    /// The first line `pred` finds within [`WAIT`].
    fn wait_line(&self, what: &str, pred: impl Fn(&str) -> Option<String>) -> String {
        self.lines.wait_map("host web", 0, what, WAIT, pred)
    }

    fn acquired(&self) -> usize {
        self.lines
            .lock()
            .iter()
            .filter(|l| l.starts_with("cluster | web acquired reactor/"))
            .count()
    }
}

impl Drop for ClusterHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("http.token");
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap()
        .write_all(format!("{TOKEN}\n").as_bytes())
        .unwrap();
    path
}

/// Polls `GET path` (with the token) until `done` accepts the body.
fn poll(
    addr: &str,
    path: &str,
    what: &str,
    host: &ClusterHost,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (code, body) = http(addr, "GET", path, Some(TOKEN), b"");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if code == 200 && done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: GET {path} never matched within {WAIT:?}; last {code} {body}\nhost:\n{}",
            host.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads a chunked follow stream until a line satisfies `pred` (bounded by
/// the socket's read timeout and [`WAIT`]).
fn follow_until(s: &mut TcpStream, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Chunk framing aside, every event is one JSON line.
        let text = String::from_utf8_lossy(&buf).into_owned();
        for line in text.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
                if pred(&v) {
                    return v;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not followed; got {text}"
        );
        match s.read(&mut chunk) {
            Ok(0) => panic!("{what}: the follow stream ended; got {text}"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// An entity of partition `p`.
fn entity_in(log: &NatsLog, p: u32, tag: &str) -> String {
    (0..10_000)
        .map(|i| format!("{tag}:{i}"))
        .find(|e| log.partition_of(e) == p)
        .expect("an entity of every partition")
}

#[test]
fn cluster_http_run_listen_without_a_token_file_is_refused_naming_the_fix() {
    plugin("passthrough");
    // Refused before any connection: no cluster needed.
    let out = Command::new(bin())
        .arg("--store")
        .arg("nats://127.0.0.1:1")
        .arg("run")
        .arg(plugin("passthrough"))
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("needs --token-file FILE") && err.contains("/dev/urandom"),
        "{err}"
    );
}

#[test]
fn cluster_http_serves_appends_reads_follow_pause_and_metrics_against_the_cluster() {
    let _one = serial();
    plugin("passthrough");
    let cluster = Cluster::start(3);
    let log = init(&cluster, PARTITIONS, 3);
    let dir = tempdir();
    let token = token_file(dir.path());
    let host = ClusterHost::start(&cluster, &["--token-file", token.to_str().unwrap()]);
    let addr = host.wait_line("naming the HTTP address", |l| {
        l.strip_prefix("http: listening on http://")
            .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
    });
    let deadline = Instant::now() + WAIT;
    while host.acquired() < PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "slots not held:\n{}",
            host.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (e0, e1) = (entity_in(&log, 0, "a"), entity_in(&log, 1, "b"));
    let input = |e: &str, n: u64| json!({"entity": e, "scope": "bench", "kind": "bench.in", "payload": {"n": n}});

    // No token: 401, and nothing is stored.
    let body = serde_json::to_vec(&input(&e0, 0)).unwrap();
    let (code, text) = http(&addr, "POST", "/v1/events", None, &body);
    assert_eq!(code, 401, "{text}");
    let (code, text) = http(
        &addr,
        "POST",
        "/v1/events",
        Some("wrong-token-0123456789"),
        &body,
    );
    assert_eq!(code, 401, "{text}");
    let (code, text) = http(&addr, "GET", "/v1/events", None, b"");
    assert_eq!(code, 401, "{text}");
    let stored = log.read(0, 0, 1000).unwrap();
    assert!(
        stored
            .events
            .iter()
            .all(|e| e.header.coordinate.entity != e0),
        "a refused POST stored an event"
    );

    // With the token: a receipt naming the partition and the sequence there.
    let (code, text) = http(&addr, "POST", "/v1/events", Some(TOKEN), &body);
    assert_eq!(code, 200, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    let r0 = &reply["receipts"][0];
    assert_eq!(r0["partition"], 0, "{reply}");
    assert!(r0["seq"].as_u64().unwrap() > 0, "{reply}");
    assert_eq!(r0["entity"], e0.as_str());
    assert_eq!(r0["deduplicated"], false);
    let id0 = r0["id"].as_str().unwrap().to_string();
    // An array spans partitions: each event in its own, in order.
    let both = serde_json::to_vec(&json!([input(&e0, 1), input(&e1, 2)])).unwrap();
    let (code, text) = http(&addr, "POST", "/v1/events", Some(TOKEN), &both);
    assert_eq!(code, 200, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    let parts: Vec<u64> = reply["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["partition"].as_u64().unwrap())
        .collect();
    assert_eq!(parts, [0, 1], "{reply}");
    // A bad event anywhere in an array: nothing of it is written.
    let bad = serde_json::to_vec(
        &json!([input(&e1, 3), {"entity": e1, "scope": "bench", "kind": "bench.in"}]),
    )
    .unwrap();
    let (code, text) = http(&addr, "POST", "/v1/events", Some(TOKEN), &bad);
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("event 1"), "{text}");
    // A causation that names no event of the cluster: 404, nothing written.
    let orphan = serde_json::to_vec(&json!([
        input(&e1, 5),
        {"entity": e1, "scope": "bench", "kind": "bench.in", "payload": {},
         "causation": "000000000000000000000000000000ab"}
    ]))
    .unwrap();
    let (code, text) = http(&addr, "POST", "/v1/events", Some(TOKEN), &orphan);
    assert_eq!(code, 404, "{text}");
    assert!(
        text.contains("event 1") && text.contains("causation"),
        "{text}"
    );
    let inputs_of_e1 = |log: &NatsLog| {
        log.read(1, 0, 1000)
            .unwrap()
            .events
            .iter()
            .filter(|e| e.header.coordinate.entity == e1 && e.header.kind == "bench.in")
            .count()
    };
    assert_eq!(
        inputs_of_e1(&log),
        1,
        "a refused array stored some of its events"
    );

    // A figure: durable single-event POSTs, one at a time (a new connection
    // each, as `http` does), on 3 replicas.
    let mut took: Vec<Duration> = (0..30u64)
        .map(|n| {
            let body = serde_json::to_vec(&input(&e1, 100 + n)).unwrap();
            let t = Instant::now();
            let (code, text) = http(&addr, "POST", "/v1/events", Some(TOKEN), &body);
            assert_eq!(code, 200, "{text}");
            t.elapsed()
        })
        .collect();
    took.sort();
    eprintln!(
        "cluster http: 30 single-event POSTs, median {:?}, max {:?} (receipt once a quorum fsynced it)",
        took[15], took[29]
    );
    // The reactor's reaction is readable over GET, in the input's partition.
    let path = format!("/v1/events?entity={e0}&kind=bench.out");
    let page = poll(&addr, &path, "the reaction", &host, |v| {
        v["events"]
            .as_array()
            .is_some_and(|es| es.iter().any(|e| e["causation"] == id0.as_str()))
    });
    assert_eq!(page["order"], "partition", "{page}");
    assert_eq!(page["partitions"][0]["partition"], 0, "{page}");
    let reaction = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["causation"] == id0.as_str())
        .unwrap();
    assert_eq!(reaction["partition"], 0);
    assert_eq!(reaction["entity"], e0.as_str());
    // Sequences are per partition: `after` without `partition` is refused.
    let (code, text) = http(&addr, "GET", "/v1/events?after=3", Some(TOKEN), b"");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("partition=N"), "{text}");
    let p1 = poll(
        &addr,
        "/v1/events?partition=1&kind=bench.in",
        "partition 1",
        &host,
        |v| v["events"].as_array().is_some_and(|es| !es.is_empty()),
    );
    assert!(
        p1["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["partition"] == 1),
        "{p1}"
    );

    // The follow stream says its order and delivers a new event.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /v1/events/follow?kind=bench.out&entity={e1} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).expect("the follow head"), 1, "closed early");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Batpak-Order: partition"), "{head}");
    let (code, text) = http(
        &addr,
        "POST",
        "/v1/events",
        Some(TOKEN),
        &serde_json::to_vec(&input(&e1, 4)).unwrap(),
    );
    assert_eq!(code, 200, "{text}");
    let id4 = serde_json::from_str::<Value>(&text).unwrap()["receipts"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let followed = follow_until(&mut s, "the new event's reaction", |v| {
        v["causation"] == id4.as_str()
    });
    assert_eq!(followed["partition"], 1, "{followed}");
    assert_eq!(followed["kind"], "bench.out");
    drop(s);

    // /metrics (no token): every partition of the reactor, held here, with
    // its commits.
    let deadline = Instant::now() + WAIT;
    let metrics = loop {
        let mut m = TcpStream::connect(&addr).unwrap();
        m.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = m.read_to_end(&mut out);
        let (code, text) = parse_response(&out);
        assert_eq!(code, 200, "{text}");
        let committed = |p: u32| {
            text.lines()
                .find_map(|l| {
                    l.strip_prefix(&format!(
                        "batpak_cluster_slot_commits_total{{reactor=\"passthrough\",partition=\"{p}\"}} "
                    ))
                })
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if committed(0) >= 1 && committed(1) >= 1 {
            break text;
        }
        assert!(Instant::now() < deadline, "no commits in /metrics:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for p in 0..PARTITIONS {
        let held =
            format!("batpak_cluster_slot_held{{reactor=\"passthrough\",partition=\"{p}\"}} 1");
        assert!(metrics.contains(&held), "{held} missing:\n{metrics}");
        for series in [
            "batpak_cluster_slot_position",
            "batpak_cluster_slot_lag",
            "batpak_cluster_slot_fenced_total",
        ] {
            let line = format!("{series}{{reactor=\"passthrough\",partition=\"{p}\"}} ");
            assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
        }
    }
    assert!(
        metrics.contains("# TYPE batpak_cluster_slot_commits_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("batpak_service_http_unauthorized_total 3"),
        "{metrics}"
    );

    // Status, pause and resume over the cluster's operations.
    let (code, text) = http(&addr, "GET", "/v1/reactors", Some(TOKEN), b"");
    assert_eq!(code, 200, "{text}");
    let list: Value = serde_json::from_str(&text).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), PARTITIONS as usize, "{text}");
    assert!(
        list.iter()
            .all(|s| s["host"] == "web" && s["held_here"] == true),
        "{text}"
    );
    let (code, text) = http(
        &addr,
        "POST",
        "/v1/reactors/passthrough/pause",
        Some(TOKEN),
        b"",
    );
    assert_eq!(code, 200, "{text}");
    let paused: Value = serde_json::from_str(&text).unwrap();
    assert!(
        paused
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["host"].is_null() && s["held_here"] == false),
        "{text}"
    );
    let (code, text) = http(
        &addr,
        "POST",
        "/v1/reactors/nothing-here/pause",
        Some(TOKEN),
        b"",
    );
    assert_eq!(code, 404, "{text}");
    let (code, text) = http(
        &addr,
        "POST",
        "/v1/reactors/passthrough/resume",
        Some(TOKEN),
        b"",
    );
    assert_eq!(code, 200, "{text}");
    poll(
        &addr,
        "/v1/reactors",
        "held again after resume",
        &host,
        |v| {
            v.as_array().is_some_and(|l| {
                l.len() == PARTITIONS as usize && l.iter().all(|s| s["held_here"] == true)
            })
        },
    );

    // SIGTERM: a clean exit.
    let mut host = host;
    let _ = Command::new("kill")
        .args(["-TERM", &host.child.id().to_string()])
        .status();
    let status = wait_exit(&mut host.child, Duration::from_secs(60));
    assert!(status.success(), "exit {status:?}:\n{}", host.text());
}
