//! The control plane of a running host never waits on a compile or a batch
//! (issue 15): while a component that takes seconds to compile cold is being
//! swapped in, `status` answers at once and shows the swap pending, `pause`
//! and `resume` work, and the swap lands afterwards; `run` says what it
//! compiles before it starts; `pause`, `resume` and `status` agree on one
//! position.

use crate::common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a quick control call (status, pause, resume) may take while a
/// compile runs: the host answers between two ticks of 25 ms; the rest is
/// process start-up on a loaded machine.
const QUICK: Duration = Duration::from_secs(3);

/// Reactor `null` (consumes `bench.in`, proposes nothing, version 0.9.9)
/// whose core module also holds two functions that take Cranelift seconds
/// to compile: 1000 locals all live across a loop of 20,000 additions (about
/// 7 s on a 2-core VM; the file is only 2.5 MB). `nonce` makes the code new
/// to any compile cache.
fn slow_null(nonce: u64) -> String {
    const LOCALS: usize = 1000;
    const OPS: usize = 20_000;
    // A fixed pseudo-random sequence (xorshift), so every run compiles the
    // same shape.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % LOCALS as u64) as usize + 1
    };
    let mut funcs = String::new();
    for f in 0..2 {
        funcs.push_str(&format!(
            "    (func $slow{f} (param i32) (result i32) (local {})\n      (loop\n",
            "i32 ".repeat(LOCALS)
        ));
        for j in 0..OPS {
            let (a, b, c) = (next(), next(), next());
            funcs.push_str(&format!(
                "        (local.set {a} (i32.add (local.get {b}) (local.get {c})))\n"
            ));
            if j % 10 == 9 {
                funcs.push_str(&format!("        (br_if 0 (i32.eqz (local.get {a})))\n"));
            }
        }
        funcs.push_str(&format!(
            "      )\n      (i32.add (local.get 1) (i32.const {}))",
            nonce.wrapping_add(f) as u32
        ));
        for i in 2..=LOCALS {
            funcs.push_str(&format!(" (local.get {i}) (i32.add)"));
        }
        funcs.push_str(")\n");
    }
    let text = NULL_REACTOR_WAT
        .replace(
            "(data (i32.const 1032) \"0.2.0\")",
            "(data (i32.const 1032) \"0.9.9\")",
        )
        .replace(
            "    (func (export \"describe\")",
            &format!("{funcs}    (func (export \"describe\")"),
        );
    assert!(text.contains("\"0.9.9\"") && text.contains("$slow1"));
    text
}

fn nonce() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
}

fn bench_in(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "entity": format!("b:{i}"),
                "scope": "s",
                "kind": "bench.in",
                "payload": {"i": i},
            })
        })
        .collect()
}

/// A child killed when dropped (a failed assertion must not leave a host
/// running).
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `run --quiet ARGS` with stderr in a file next to the store.
fn spawn_run(data: &Path, args: &[&str]) -> Guard {
    let child = Command::new(bin())
        .arg("--data")
        .arg(data)
        .args(["run", "--quiet"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.with_extension("stderr.log")).expect("log file"))
        .spawn()
        .expect("spawning run");
    Guard(Some(child))
}

/// `status --json` and how long it took; panics when it fails.
fn status(data: &Path) -> (Value, Duration) {
    let t = Instant::now();
    let out = host_ok(data, &["status", "--json"]);
    let took = t.elapsed();
    (
        serde_json::from_slice(&out.stdout).expect("status JSON"),
        took,
    )
}

/// Polls `status --json` until `pred` holds on the first reactor (60 s).
fn wait_status(data: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = host(data, &["status", "--json"]);
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
            if pred(&v[0]) {
                return v[0].clone();
            }
            assert!(Instant::now() < deadline, "never {what}: {v}");
        } else {
            assert!(
                Instant::now() < deadline,
                "status never answered: {}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut guard: Guard) {
    let mut child = guard.0.take().expect("running");
    sigterm(&child);
    let st = wait_exit(&mut child, Duration::from_secs(60));
    assert!(st.success(), "run exited {st:?}");
}

#[test]
fn a_cold_compile_does_not_freeze_the_control_plane() {
    let dir = tempdir();
    let data = dir.path().join("data");
    append(&data, &bench_in(20));
    let first = write_file(dir.path(), "null.wat", NULL_REACTOR_WAT);
    let slow = write_file(dir.path(), "slow.wat", &slow_null(nonce()));
    // With the compile cache (the new file is new to it): `resume` reloads
    // the small running version from the cache, not competing with the
    // big compile for the cores.
    let run = spawn_run(&data, &[first.to_str().unwrap()]);
    wait_status(&data, "idle after the backlog", |r| {
        r["events_in"] == 20 && r["lag"] == 0
    });

    // The swap waits for the compile; the control plane does not.
    let started = Instant::now();
    let mut swap = Guard(Some(
        Command::new(bin())
            .arg("--data")
            .arg(&data)
            .args(["swap", "null"])
            .arg(&slow)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning swap"),
    ));
    let mut slowest = Duration::ZERO;
    let pending = loop {
        let (st, took) = status(&data);
        slowest = slowest.max(took);
        assert!(
            took < QUICK,
            "status took {took:?} while the host compiled a swap: {st}"
        );
        let p = &st[0]["pending"];
        if p["action"] == "swap" && p["waiting_for"] == "compiling" {
            break st[0].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "status never showed the swap compiling: {st}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Still the old version, with the swap and its size shown.
    assert_eq!(pending["version"], "0.2.0", "{pending}");
    let text = pending["pending"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("swap to slow.wat: compiling ") && text.contains(" MB, "),
        "{text}"
    );
    let table = String::from_utf8_lossy(&host_ok(&data, &["status"]).stdout).into_owned();
    assert!(
        table.contains("pending: swap to slow.wat: compiling"),
        "{table}"
    );

    // Pause and resume answer while the compile goes on.
    let t = Instant::now();
    let paused = host_ok(&data, &["pause", "null"]);
    let pause_took = t.elapsed();
    assert!(pause_took < QUICK, "pause took {pause_took:?}");
    let p: Value = serde_json::from_slice(&paused.stdout).unwrap();
    assert_eq!(p["state"], "paused", "{p}");
    let t = Instant::now();
    let resumed = host_ok(&data, &["resume", "null"]);
    let resume_took = t.elapsed();
    assert!(resume_took < QUICK, "resume took {resume_took:?}");
    let r: Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_ne!(r["state"], "paused", "{r}");
    let (st, took) = status(&data);
    assert!(took < QUICK, "status took {took:?}");
    assert_eq!(
        st[0]["pending"]["waiting_for"], "compiling",
        "the compile should still run (it takes seconds; this machine compiled it faster than pause and resume took): {st}"
    );
    let swap_child = swap.0.as_mut().unwrap();
    assert!(
        swap_child.try_wait().unwrap().is_none(),
        "the swap is not done yet"
    );

    // The swap lands once compiled.
    let st = wait_exit(swap_child, Duration::from_secs(240));
    let out = swap.0.take().unwrap().wait_with_output().unwrap();
    assert!(st.success(), "swap failed: {}", stderr(&out));
    let outcome: Value = serde_json::from_slice(&out.stdout).expect("outcome JSON");
    assert_eq!(outcome["new_version"], "0.9.9", "{outcome}");
    let swap_took = started.elapsed();
    let after = wait_status(&data, "running the new version", |r| {
        r["version"] == "0.9.9" && r["pending"].is_null()
    });
    assert_eq!(after["last_swap"]["new_version"], "0.9.9", "{after}");
    stop(run);
    eprintln!(
        "swap of a cold {} KB component took {swap_took:?}; slowest status meanwhile {slowest:?}, pause {pause_took:?}, resume {resume_took:?}",
        std::fs::metadata(&slow).unwrap().len() / 1000
    );
}

/// `run` says which file it compiles, and how big it is, before the compile
/// (which takes seconds) and before the first status line.
#[test]
fn run_says_what_it_compiles_before_the_first_status_line() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let slow = write_file(dir.path(), "slow.wat", &slow_null(nonce()));
    let started = Instant::now();
    let mut guard = Guard(Some(
        Command::new(bin())
            .arg("--data")
            .arg(&data)
            .args(["run", "--no-cache"])
            .arg(&slow)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning run"),
    ));
    let mut lines = Lines::new(guard.0.as_mut().unwrap().stderr.take().unwrap());
    let first = lines.wait_for("naming the file", Duration::from_secs(60), |l| {
        l.contains("slow.wat")
    });
    let said_after = started.elapsed();
    assert!(
        first.contains("loading") && first.contains(" MB)") && !first.contains("status |"),
        "{first}"
    );
    let loaded = lines.wait_for("saying it loaded", Duration::from_secs(240), |l| {
        l.contains("loaded null 0.9.9")
    });
    let loaded_after = started.elapsed();
    assert!(
        lines.seen.iter().all(|l| !l.starts_with("status |")),
        "a status line before the plugin loaded: {:?}",
        lines.seen
    );
    assert!(
        said_after < loaded_after,
        "named at {said_after:?}, loaded at {loaded_after:?}: {loaded}"
    );
    stop(guard);
    eprintln!("named the file after {said_after:?}; loaded after {loaded_after:?}");
}

/// `pause` stops a reactor at its position, `status` shows the same
/// position, and `resume` continues from it (events of other regions
/// after its last handled one count as done, so it does not fall back).
#[test]
fn pause_resume_and_status_name_one_position() {
    let dir = tempdir();
    let data = dir.path().join("data");
    append(&data, &bench_in(30));
    let run = spawn_run(&data, &[plugin("passthrough").to_str().unwrap()]);
    // Its own 30 reactions (another region) follow its last input.
    let idle = wait_status(&data, "idle after 30", |r| {
        r["events_in"] == 30 && r["lag"] == 0 && r["position"].as_u64() > Some(30)
    });
    let paused = host_ok(&data, &["pause", "passthrough"]);
    let p: Value = serde_json::from_slice(&paused.stdout).unwrap();
    let at = p["position"].as_u64().unwrap();
    assert!(at >= idle["position"].as_u64().unwrap(), "{p} after {idle}");
    assert!(
        stderr(&paused).contains(&format!("paused passthrough at position {at}")),
        "{}",
        stderr(&paused)
    );
    let (st, _) = status(&data);
    assert_eq!(st[0]["position"], at, "status of the paused reactor: {st}");
    let resumed = host_ok(&data, &["resume", "passthrough"]);
    let r: Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert_eq!(r["position"], at, "resume continues from the pause: {r}");
    assert!(
        stderr(&resumed).contains(&format!("from position {at}")),
        "{}",
        stderr(&resumed)
    );
    // Nothing is handled twice: still 30 reactions once idle again.
    wait_status(&data, "idle again", |r| {
        r["lag"] == 0 && r["state"] == "running"
    });
    stop(run);
    let outs = events_of(&data, "bench.out");
    assert_eq!(outs.len(), 30);
}

/// SIGTERM stops a host even when its control socket file was removed
/// under it (the socket thread no longer waits for a connection that
/// cannot come).
#[test]
fn sigterm_stops_a_host_whose_socket_file_was_removed() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let first = write_file(dir.path(), "null.wat", NULL_REACTOR_WAT);
    let mut run = spawn_run(&data, &[first.to_str().unwrap()]);
    wait_status(&data, "running", |r| r["name"] == "null");
    std::fs::remove_file(data.join("run").join("host.sock")).unwrap();
    let child = run.0.as_mut().unwrap();
    sigterm(child);
    let st = wait_exit(child, Duration::from_secs(30));
    assert!(st.success(), "run exited {st:?}");
}
