//! `append --jsonl` is all or nothing however it is interrupted (issue 15):
//! kill -9 at several moments, SIGTERM, a closed stdout, with and without a
//! running host; readers handle frames of any size; `events --system
//! --kind` filters; HTTP follow ends with an error, not a clean end, when a
//! read fails; the local and remote paths agree.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

/// A `--jsonl` file of `n` order events (about 170 bytes a line): with the
/// default part size of 4096 events the append writes many part frames.
fn big_jsonl(dir: &Path, n: usize) -> PathBuf {
    let p = dir.join(format!("big-{n}.jsonl"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    for i in 0..n {
        writeln!(
            f,
            r#"{{"entity":"order:{}","scope":"shop","kind":"order.placed","payload":{{"i":{i},"pad":"{}"}}}}"#,
            i % 100,
            "x".repeat(100)
        )
        .unwrap();
    }
    f.flush().unwrap();
    p
}

fn count_kind(data: &Path, kind: &str) -> usize {
    json_lines(&host_ok(data, &["events", "--kind", kind]).stdout).len()
}

fn spawn_append(data: &Path, file: &Path) -> Child {
    Command::new(bin())
        .arg("--data")
        .arg(data)
        .args(["append", "--jsonl"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning append")
}

/// A store with one event in it, so there is a log before the append.
fn seeded(dir: &Path, name: &str) -> PathBuf {
    let data = dir.join(name);
    host_ok(
        &data,
        &[
            "append", "--entity", "seed", "--scope", "s", "--kind", "seed.one",
        ],
    );
    data
}

/// After an interrupted append: none or all of the file, in `events`, in
/// `verify`, and after the next open (which drops an uncommitted part).
fn assert_all_or_nothing(data: &Path, n: usize, what: &str) -> usize {
    let got = count_kind(data, "order.placed");
    assert!(got == 0 || got == n, "{what}: {got} of {n} lines kept");
    let v = host(data, &["verify"]);
    assert!(v.status.success(), "{what}: verify failed: {}", stderr(&v));
    // The next open recovers (drops an uncommitted transaction) and the
    // log goes on.
    let o = host_ok(
        data,
        &[
            "append",
            "--entity",
            "after",
            "--scope",
            "s",
            "--kind",
            "after.one",
        ],
    );
    let r = &json_lines(&o.stdout)[0];
    assert_eq!(
        count_kind(data, "order.placed"),
        got,
        "{what}: after reopening"
    );
    let recovered =
        json_lines(&host_ok(data, &["events", "--kind", "batpak.store.recovered"]).stdout);
    assert_eq!(
        r["seq"].as_u64().unwrap() as usize,
        2 + got + recovered.len(),
        "{what}: the sequence goes on right after what was kept"
    );
    let v = host(data, &["verify"]);
    assert!(
        v.status.success(),
        "{what}: verify after reopening: {}",
        stderr(&v)
    );
    got
}

#[test]
fn append_jsonl_killed_at_any_moment_keeps_all_or_nothing() {
    let dir = tempdir();
    let n = 120_000;
    let file = big_jsonl(dir.path(), n);
    let mut outcomes = Vec::new();
    // Blind moments, then one right after the append says it is writing.
    for (k, delay_ms) in [150u64, 700, 1500, 0].into_iter().enumerate() {
        let data = seeded(dir.path(), &format!("d{k}"));
        let mut child = spawn_append(&data, &file);
        let mut mid = false;
        if delay_ms == 0 {
            let mut err = Lines::new(child.stderr.take().unwrap());
            err.wait_for("saying parts are written", WAIT, |l| {
                l.contains("not yet committed")
            });
            mid = true;
        } else {
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
        let what = format!("kill -9 after {delay_ms} ms");
        if mid {
            let v = host(&data, &["verify"]);
            let report: Value = serde_json::from_slice(&v.stdout).unwrap();
            assert!(
                report["uncommitted_transaction_to_drop"].is_object(),
                "{what}: verify names the uncommitted transaction: {report}"
            );
            let e = host_ok(&data, &["events", "--kind", "order.placed"]);
            assert!(
                stderr(&e).contains("not committed"),
                "events says why it shows none: {}",
                stderr(&e)
            );
        }
        let got = assert_all_or_nothing(&data, n, &what);
        if mid {
            assert_eq!(got, 0, "{what}: killed mid-write, nothing may stay");
            let rec =
                json_lines(&host_ok(&data, &["events", "--kind", "batpak.store.recovered"]).stdout);
            assert!(
                rec.iter()
                    .any(|e| e["payload"]["events_dropped"].as_u64() > Some(0)),
                "the drop is recorded: {rec:?}"
            );
        }
        outcomes.push(got);
    }
    eprintln!("kept per kill: {outcomes:?}");
}

#[test]
fn append_jsonl_sigterm_and_closed_stdout_say_what_was_appended() {
    let dir = tempdir();
    let n = 120_000;
    let file = big_jsonl(dir.path(), n);

    // SIGTERM while parts are being written: nothing kept, said, exit 130.
    let data = seeded(dir.path(), "term");
    let mut child = spawn_append(&data, &file);
    let mut err = Lines::new(child.stderr.take().unwrap());
    err.wait_for("saying parts are written", WAIT, |l| {
        l.contains("not yet committed")
    });
    sigterm(&child);
    let st = wait_exit(&mut child, WAIT);
    let text = err.finish(WAIT);
    assert_eq!(st.code(), Some(130), "exit status after SIGTERM: {text}");
    assert!(text.contains("nothing was appended"), "{text}");
    assert_eq!(count_kind(&data, "order.placed"), 0);
    let mut rest = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut rest)
        .unwrap();
    assert!(
        rest.is_empty(),
        "no receipt printed for an append that did not commit"
    );
    assert_all_or_nothing(&data, n, "SIGTERM");

    // `| head -1`: stdout closes after the first receipt; everything was
    // appended and the command says so (exit 0).
    let data = seeded(dir.path(), "pipe");
    let mut child = spawn_append(&data, &file);
    let mut err = Lines::new(child.stderr.take().unwrap());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    drop(out);
    let st = wait_exit(&mut child, WAIT);
    let text = err.finish(WAIT);
    assert!(
        st.success(),
        "exit status with stdout closed: {st:?}: {text}"
    );
    assert!(
        text.contains(&format!("all {n} events")) && text.contains("were appended"),
        "{text}"
    );
    let r: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(r["kind"], "order.placed");
    assert_eq!(count_kind(&data, "order.placed"), n);
}

/// `run` with the passthrough reactor, serving its socket (and HTTP).
struct Running {
    child: Child,
    err: Lines,
}

impl Running {
    fn start(data: &Path) -> Running {
        let mut child = Command::new(bin())
            .arg("--data")
            .arg(data)
            .arg("run")
            .arg(plugin("passthrough"))
            .args(["--listen", "127.0.0.1:0", "--quiet"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning run");
        let err = Lines::new(child.stderr.take().unwrap());
        let start = Instant::now();
        while UnixStream::connect(data.join("run").join("host.sock")).is_err() {
            assert!(start.elapsed() < WAIT, "run did not serve its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Running { child, err }
    }

    fn http_addr(&mut self) -> String {
        let l = self.err.wait_for("with the http address", WAIT, |l| {
            l.starts_with("http: listening on http://")
        });
        l.trim_start_matches("http: listening on http://")
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    fn stop(mut self) {
        sigterm(&self.child);
        let st = wait_exit(&mut self.child, WAIT);
        assert!(st.success(), "run exited with {st:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn append_jsonl_through_a_running_host_is_all_or_nothing_when_killed_or_cut_off() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let run = Running::start(&data);
    // Far more than one request may carry (10,000 events): one bulk
    // transaction of many parts on the control connection.
    let n = 60_000;
    let file = big_jsonl(dir.path(), n);
    let settled = |kept: usize, what: &str| {
        // The host abandons the transaction once it sees the connection
        // closed; give it a bounded moment, then the count must be whole.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = count_kind(&data, "order.placed");
            if got == kept || got == kept + n || Instant::now() > deadline {
                assert!(
                    got == kept || got == kept + n,
                    "{what}: {got} (was {kept}), not all or nothing of {n}"
                );
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut kept = 0usize;
    for delay_ms in [5u64, 200, 0] {
        let mut child = spawn_append(&data, &file);
        if delay_ms == 0 {
            let mut err = Lines::new(child.stderr.take().unwrap());
            err.wait_for("saying parts are sent", WAIT, |l| {
                l.contains("not yet committed")
            });
        } else {
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
        child.kill().unwrap();
        let _ = child.wait();
        let got = settled(kept, &format!("kill -9 after {delay_ms} ms"));
        if delay_ms == 0 {
            assert_eq!(got, kept, "killed while sending parts: nothing may stay");
        }
        kept = got;
    }
    // SIGTERM while sending parts: nothing kept, said, exit 130.
    let mut child = spawn_append(&data, &file);
    let mut err = Lines::new(child.stderr.take().unwrap());
    err.wait_for("saying parts are sent", WAIT, |l| {
        l.contains("not yet committed")
    });
    sigterm(&child);
    let st = wait_exit(&mut child, WAIT);
    let text = err.finish(WAIT);
    assert_eq!(st.code(), Some(130), "{text}");
    assert!(text.contains("nothing was appended"), "{text}");
    kept = settled(kept, "SIGTERM");
    // A causation the host cannot find, in a later part: nothing kept, and
    // the line named as without a host.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(r#"{"entity":"a","scope":"s","kind":"order.placed","payload":1,"causation":"0123456789abcdef0123456789abcdef"}"#);
    text.push('\n');
    let bad = write_file(dir.path(), "bad-causation.jsonl", &text);
    let o = host(&data, &["append", "--jsonl", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains(&format!(":{}: causation", n + 1)) && e.contains("nothing was appended"),
        "{e}"
    );
    kept = settled(kept, "refused part");
    // Other appends go on after an abandoned transaction.
    host_ok(
        &data,
        &[
            "append",
            "--entity",
            "x",
            "--scope",
            "s",
            "--kind",
            "after.one",
        ],
    );
    // Closed stdout: everything appended, and said.
    let mut child = spawn_append(&data, &file);
    let mut err = Lines::new(child.stderr.take().unwrap());
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    drop(out);
    let st = wait_exit(&mut child, WAIT);
    let text = err.finish(WAIT);
    assert!(st.success(), "{st:?}: {text}");
    assert!(text.contains(&format!("all {n} events")), "{text}");
    assert_eq!(count_kind(&data, "order.placed"), kept + n);
    run.stop();
    let v = host(&data, &["verify"]);
    assert!(v.status.success(), "verify: {}", stderr(&v));
}

#[test]
fn a_non_utf8_jsonl_line_is_refused_with_and_without_a_running_host() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let file = dir.path().join("bad.jsonl");
    let mut bytes = br#"{"entity":"a","scope":"s","kind":"k.ok","payload":"fine"}"#.to_vec();
    bytes.extend_from_slice(
        b"\n{\"entity\":\"a\",\"scope\":\"s\",\"kind\":\"k.ok\",\"payload\":\"caf\xe9\"}\n",
    );
    std::fs::write(&file, &bytes).unwrap();
    let f = file.to_str().unwrap();
    let local = host(&data, &["append", "--jsonl", f]);
    assert!(!local.status.success());
    assert!(
        stderr(&local).contains(":2: line is not UTF-8"),
        "{}",
        stderr(&local)
    );
    let run = Running::start(&data);
    let remote = host(&data, &["append", "--jsonl", f]);
    assert!(!remote.status.success(), "the host stored a non-UTF-8 line");
    assert!(
        stderr(&remote).contains(":2: line is not UTF-8"),
        "{}",
        stderr(&remote)
    );
    // Verify prints the same keys through the host as without one.
    let through: Value = serde_json::from_slice(&host_ok(&data, &["verify"]).stdout).unwrap();
    run.stop();
    let direct: Value = serde_json::from_slice(&host_ok(&data, &["verify"]).stdout).unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&through), keys(&direct));
    assert!(through.get("torn_tail_to_cut").is_some(), "{through}");
    assert_eq!(count_kind(&data, "k.ok"), 0);
}

#[test]
fn events_system_kind_prints_only_that_kind_locally_and_through_a_host() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let lines: String = (0..20)
        .map(|i| {
            format!(r#"{{"entity":"e:{i}","scope":"bench","kind":"bench.in","payload":{i}}}"#)
                + "\n"
        })
        .collect();
    let f = write_file(dir.path(), "in.jsonl", &lines);
    host_ok(&data, &["append", "--jsonl", f.to_str().unwrap()]);
    host_ok(
        &data,
        &[
            "run",
            "--until-idle",
            plugin("passthrough").to_str().unwrap(),
            "--quiet",
        ],
    );
    let only = |out: &[u8], kind: &str| {
        let evs = json_lines(out);
        assert!(!evs.is_empty(), "no {kind} events");
        assert!(evs.iter().all(|e| e["kind"] == kind), "{kind}: {evs:?}");
        evs.len()
    };
    let args = ["events", "--system", "--kind", "batpak.cursor.checkpoint"];
    let local = only(&host_ok(&data, &args).stdout, "batpak.cursor.checkpoint");
    let ins = only(
        &host_ok(&data, &["events", "--system", "--kind", "bench.in"]).stdout,
        "bench.in",
    );
    assert_eq!(ins, 20);
    // The lock-free path (a store that does not open clean).
    std::fs::remove_file(data.join("DURABLE")).unwrap();
    assert_eq!(
        only(&host_ok(&data, &args).stdout, "batpak.cursor.checkpoint"),
        local
    );
    let run = Running::start(&data);
    assert_eq!(
        only(&host_ok(&data, &args).stdout, "batpak.cursor.checkpoint"),
        local
    );
    run.stop();
}

#[test]
fn events_reads_a_frame_larger_than_the_old_read_window() {
    use batpak_store::{AppendOptions, Coordinate, Proposal, Store};
    let dir = tempdir();
    let data = dir.path().join("d");
    let store = Store::open(&data).unwrap();
    // One batch, one frame of about 90 MiB (the old reader's window was
    // 16 + 64 MiB: it printed nothing after such a frame and exited 0).
    let big: Vec<Proposal> = (0..90)
        .map(|i| {
            Proposal::new(
                Coordinate::new(format!("big:{i}"), "s").unwrap(),
                "big.one",
                vec![b'a'; 1 << 20],
            )
        })
        .collect();
    store.append_batch(big, AppendOptions::durable()).unwrap();
    store
        .append(
            Proposal::new(
                Coordinate::new("small", "s").unwrap(),
                "small.one",
                b"1".to_vec(),
            ),
            AppendOptions::durable(),
        )
        .unwrap();
    store.close().unwrap();
    assert_eq!(count_kind(&data, "big.one"), 90);
    // The lock-free path: `events` on a store that does not open clean.
    std::fs::remove_file(data.join("DURABLE")).unwrap();
    assert_eq!(count_kind(&data, "big.one"), 90);
    assert_eq!(count_kind(&data, "small.one"), 1);
    // --follow reaches the event after the large frame.
    let mut child = Command::new(bin())
        .arg("--data")
        .arg(&data)
        .args(["events", "--follow", "--kind", "small.one"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = Lines::new(child.stdout.take().unwrap());
    out.wait_for("after the 90 MiB frame", WAIT, |l| l.contains("small.one"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn http_follow_ends_with_an_error_line_and_no_clean_end_when_a_read_fails() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let mut run = Running::start(&data);
    let addr = run.http_addr();
    let token = std::fs::read_to_string(data.join("run").join("http.token"))
        .unwrap()
        .trim()
        .to_string();
    host_ok(
        &data,
        &[
            "append",
            "--entity",
            "x",
            "--scope",
            "s",
            "--kind",
            "damaged.one",
            "--payload-text",
            "DAMAGE-THIS-PAYLOAD",
        ],
    );
    // Damage the event's bytes under the running host: its reads check
    // the frame CRC and fail.
    let seg = data.join("segments").join("00000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(19)
        .position(|w| w == b"DAMAGE-THIS-PAYLOAD")
        .expect("payload in the segment");
    bytes[at] ^= 0x20;
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &bytes[at..at + 1], at as u64).unwrap();
    drop(f);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET /v1/events/follow?kind=damaged.one HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#"{"error":"#), "no error line: {text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the stream ended cleanly after an error: {text}"
    );
    drop(run);
}
