//! Issue 16, finding 2: nothing reads an untrusted path before checking
//! what it is. `swap NAME /dev/zero`, a FIFO, a directory or an over-size
//! file — given to `swap`, renamed over a watched plugin, given to `run`, or
//! as `--plugin-config` — is refused at once with a message naming the path
//! and what it is; the running host records the refusal, keeps answering
//! `status`, stays small, and exits on the first SIGTERM.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Peak RSS of the running host. A refused file must cost it nothing: the
/// host with one small reactor stays well under this (measured: 13 MiB
/// through every case below), while reading /dev/zero took the old code
/// past 6 GB.
const MAX_HOST_HWM_KIB: i64 = 64 * 1024;
/// How long one refused command may take (they take milliseconds).
const PROMPT: Duration = Duration::from_secs(30);

/// Peak RSS (VmHWM) of a running process, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<i64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Runs `batpak-host --data <data> <args>` and waits at most `limit` (the
/// child is killed and the test fails past it).
fn host_within(data: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(bin())
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning batpak-host");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("polling").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("batpak-host {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collecting output")
}

/// `run` of `plugin` (plus `extra`), stderr into a file beside `data`.
fn spawn_run(data: &Path, extra: &[&str], plugin: &Path) -> (Child, PathBuf) {
    let log = data.with_extension("stderr.log");
    let child = Command::new(bin())
        .arg("--data")
        .arg(data)
        .args(["run", "--quiet"])
        .args(extra)
        .arg(plugin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawning run");
    (child, log)
}

/// `status --json` of the running host, answered within [`PROMPT`].
fn status(data: &Path) -> Value {
    let out = host_within(data, &["status", "--json"], PROMPT);
    assert!(out.status.success(), "status failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

fn wait_running(data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = host_within(data, &["status", "--json"], PROMPT);
        if out.status.success() {
            let st: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            if matches!(st[0]["state"].as_str(), Some("running" | "idle")) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the reactor never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn refusals(data: &Path) -> Vec<Value> {
    events_of(data, "batpak.plugin.swap-refused")
        .into_iter()
        .map(|e| {
            let p = &e["payload"];
            match p.as_str() {
                Some(s) => serde_json::from_str(s).expect("record JSON"),
                None => p.clone(),
            }
        })
        .collect()
}

fn wait_refusals(data: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = refusals(data);
        if r.len() >= n {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "only {} swap-refused record(s): {r:?}",
            r.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM once; the host must exit cleanly within [`PROMPT`].
fn stop_once(child: &mut Child, log: &Path) {
    sigterm(child);
    let st = wait_exit(child, PROMPT);
    assert!(
        st.success(),
        "run did not stop cleanly on one SIGTERM ({st:?}):\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn assert_small(child: &Child, what: &str) {
    let hwm = vm_hwm_kib(child.id()).expect("VmHWM of the running host");
    eprintln!("host peak RSS after {what}: {} MiB", hwm / 1024);
    assert!(
        hwm < MAX_HOST_HWM_KIB,
        "host peak RSS {hwm} KiB after {what}, bound {MAX_HOST_HWM_KIB} KiB"
    );
}

#[test]
fn swap_of_a_device_fifo_directory_or_oversize_file_is_refused_and_the_host_keeps_serving() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let plugin = write_file(dir.path(), "null.wat", NULL_REACTOR_WAT);
    let config = write_file(dir.path(), "plugins.json", "{}");
    let (mut child, log) = spawn_run(
        &data,
        &["--plugin-config", config.to_str().unwrap()],
        &plugin,
    );
    wait_running(&data);

    let fifo = dir.path().join("fifo.wasm");
    mkfifo(&fifo);
    let big = dir.path().join("big.wasm");
    // Sparse: 300 MiB long, over the 256 MiB plugin limit, nothing on disk.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let cases: [(&Path, &str); 4] = [
        (
            Path::new("/dev/zero"),
            "not a regular file (it is a character device)",
        ),
        (&fifo, "not a regular file (it is a FIFO)"),
        (dir.path(), "not a regular file (it is a directory)"),
        (
            &big,
            "314572800 bytes, more than the limit of 268435456 bytes",
        ),
    ];
    for (n, (path, message)) in cases.iter().enumerate() {
        let t = Instant::now();
        let out = host_within(&data, &["swap", "null", path.to_str().unwrap()], PROMPT);
        let err = stderr(&out);
        eprintln!(
            "swap {} -> {:?} in {:?}: {err}",
            path.display(),
            out.status,
            t.elapsed()
        );
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(message) && err.contains(&path.display().to_string()),
            "the refusal names {} and why ({message}):\n{err}",
            path.display()
        );
        // The host still answers, and recorded the refusal on its stream.
        assert_eq!(status(&data)[0]["name"], "null");
        let r = wait_refusals(&data, n + 1);
        assert_eq!(r[n]["code"], "unloadable", "{:?}", r[n]);
        assert!(
            r[n]["reason"].as_str().unwrap_or("").contains(message),
            "{:?}",
            r[n]
        );
        assert_small(&child, &format!("swap {}", path.display()));
    }

    // A component that does not even compile still says which contract it
    // targets: taken from the bytes read once, not by reading the file again.
    let future = write_file(
        dir.path(),
        "future.wat",
        "(component\n  (import \"batpak:reactor/host@0.9.0\" (instance))\n  (core module (func (result i32))))\n",
    );
    let out = host_within(&data, &["swap", "null", future.to_str().unwrap()], PROMPT);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("targets batpak:reactor@0.9.0"), "{err}");
    let r = wait_refusals(&data, cases.len() + 1);
    assert_eq!(
        r[cases.len()]["code"],
        "unsupported-wit",
        "{:?}",
        r[cases.len()]
    );

    // The config is re-read for a swap: a FIFO there is refused too (it
    // blocked the compile, and the swap waited on it for ever).
    std::fs::remove_file(&config).unwrap();
    mkfifo(&config);
    let out = host_within(&data, &["swap", "null", plugin.to_str().unwrap()], PROMPT);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--plugin-config")
            && err.contains(config.to_str().unwrap())
            && err.contains("(it is a FIFO)"),
        "{err}"
    );
    assert!(status(&data)[0]["state"].is_string());
    stop_once(&mut child, &log);
}

#[test]
fn a_link_to_dev_zero_or_a_fifo_renamed_over_a_watched_plugin_is_refused() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let plugin = write_file(&plugins, "null.wat", NULL_REACTOR_WAT);
    let log = data.with_extension("stderr.log");
    let mut child = Command::new(bin())
        .arg("--data")
        .arg(&data)
        .args(["run", "--watch", "--quiet"])
        .arg(&plugins)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawning run --watch");
    wait_running(&data);

    // A symlink to /dev/zero, renamed over the watched file.
    let tmp = plugins.join("zero.tmp");
    std::os::unix::fs::symlink("/dev/zero", &tmp).unwrap();
    std::fs::rename(&tmp, &plugin).unwrap();
    let r = wait_refusals(&data, 1);
    assert!(
        r[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not a regular file (it is a character device)"),
        "{:?}",
        r[0]
    );
    assert_eq!(status(&data)[0]["name"], "null");
    assert_small(&child, "a link to /dev/zero renamed over the plugin");

    // A FIFO renamed over it.
    let tmp = plugins.join("fifo.tmp");
    mkfifo(&tmp);
    std::fs::rename(&tmp, &plugin).unwrap();
    let r = wait_refusals(&data, 2);
    assert!(
        r[1]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("not a regular file (it is a FIFO)"),
        "{:?}",
        r[1]
    );
    assert_eq!(status(&data)[0]["name"], "null");
    assert_small(&child, "a FIFO renamed over the plugin");
    stop_once(&mut child, &log);
}

#[test]
fn run_inspect_test_shadow_reset_and_token_file_refuse_a_device_or_fifo_at_once() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let fifo = dir.path().join("p.wasm");
    mkfifo(&fifo);
    let plugin = write_file(dir.path(), "null.wat", NULL_REACTOR_WAT);
    let input = write_file(
        dir.path(),
        "in.jsonl",
        r#"{"entity":"a:1","scope":"s","kind":"bench.in","payload":{}}"#,
    );
    let cfg = dir.path().join("cfg.json");
    mkfifo(&cfg);
    let (fifo_s, plugin_s, input_s, cfg_s) = (
        fifo.to_str().unwrap(),
        plugin.to_str().unwrap(),
        input.to_str().unwrap(),
        cfg.to_str().unwrap(),
    );
    let zero = "/dev/zero: not a regular file (it is a character device)".to_string();
    let is_fifo = |flag: &str, p: &str| format!("{flag}{p}: not a regular file (it is a FIFO)");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["run", "/dev/zero"], zero.clone()),
        (vec!["run", fifo_s], is_fifo("", fifo_s)),
        (
            vec!["run", "--plugin-config", cfg_s, plugin_s],
            is_fifo("--plugin-config ", cfg_s),
        ),
        (
            vec![
                "run",
                "--listen",
                "127.0.0.1:0",
                "--token-file",
                cfg_s,
                plugin_s,
            ],
            is_fifo("--token-file ", cfg_s),
        ),
        (vec!["inspect", "/dev/zero"], zero.clone()),
        (vec!["inspect", fifo_s], is_fifo("", fifo_s)),
        (vec!["test", "/dev/zero", "--input", input_s], zero.clone()),
        (
            vec!["test", plugin_s, "--input", fifo_s],
            is_fifo("--input ", fifo_s),
        ),
        (
            vec!["test", plugin_s, "--input", input_s, "--config", cfg_s],
            is_fifo("--config ", cfg_s),
        ),
    ];
    let check = |cases: Vec<(Vec<&str>, String)>| {
        for (args, message) in cases {
            let out = host_within(&data, &args, PROMPT);
            let err = stderr(&out);
            assert!(!out.status.success(), "{args:?} must fail");
            assert!(
                err.contains(&message),
                "{args:?}: expected {message:?} in\n{err}"
            );
        }
    };
    check(cases);
    // shadow and reset --plugin load the file against a store.
    append(&data, &[order(1, "widget", 1)]);
    check(vec![
        (
            vec!["shadow", "null", "/dev/zero", "--last", "1"],
            zero.clone(),
        ),
        (
            vec!["reset", "null", "--to", "current", "--plugin", fifo_s],
            is_fifo("", fifo_s),
        ),
    ]);
}
