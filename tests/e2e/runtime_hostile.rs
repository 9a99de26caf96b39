//! A hostile plugin misbehaves in every way it can while inventory runs
//! beside it: each bad event is parked or denied with the right cause, the
//! good ones are handled, inventory handles all its orders, and parked events
//! can be listed and replayed.

use crate::common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

const COMMANDS: [&str; 11] = [
    "ok",
    "loop",
    "oom",
    "trap",
    "error",
    "huge",
    "forbidden",
    "reserved",
    "bad-source",
    "ok",
    "sleep",
];

fn cmd(i: usize, c: &str) -> Value {
    json!({"entity": format!("h:{i}:{c}"), "scope": "lab", "kind": "hostile.cmd", "payload": {"do": c}})
}

fn run(data: &Path, memory_mb: &str) -> std::process::Output {
    let (h, inv) = (plugin("hostile"), plugin("inventory"));
    host(
        data,
        &[
            "run",
            "--until-idle",
            // Far above what any honest call here needs (microseconds), so a
            // loaded machine cannot trip it; the spinning command still
            // proves the limit, whatever its length.
            "--timeout-ms",
            "2000",
            "--memory-mb",
            memory_mb,
            "--attempts",
            "2",
            "--backoff-ms",
            "1",
            "--max-batch",
            "64",
            h.to_str().unwrap(),
            inv.to_str().unwrap(),
        ],
    )
}

fn parked(data: &Path) -> HashMap<String, Value> {
    json_lines(&host_ok(data, &["parked", "--plugin", "hostile"]).stdout)
        .into_iter()
        .map(|p| (p["entity"].as_str().unwrap().to_string(), p))
        .collect()
}

#[test]
fn hostile_plugin_is_contained_and_parked_events_replay() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let mut events: Vec<Value> = COMMANDS
        .iter()
        .enumerate()
        .map(|(i, c)| cmd(i, c))
        .collect();
    // Orders interleaved after the hostile commands: inventory must handle
    // every one of them while hostile fails beside it.
    events.extend((1..=30).map(|n| order(n, "widget", 1)));
    append(&data, &events);

    // 64 MiB: the memory bomb and the 64 MiB payload both hit the limit.
    let out = run(&data, "64");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("summary | inventory: in 30, out 30"), "{err}");

    let all = all_events(&data);
    let ok: Vec<&Value> = all.iter().filter(|e| e["kind"] == "hostile.ok").collect();
    assert_eq!(
        ok.len(),
        3,
        "both ok commands and the day-long sleep (which must return at once) handled"
    );
    let inv = all
        .iter()
        .filter(|e| e["meta"]["reactor"] == "inventory")
        .count();
    assert_eq!(inv, 30);

    let p = parked(&data);
    let cause = |c: &str, i: usize| {
        p.get(&format!("h:{i}:{c}"))
            .unwrap_or_else(|| panic!("{c} not parked: {p:?}"))
    };
    assert_eq!(cause("loop", 1)["failure"], "timeout");
    assert_eq!(cause("oom", 2)["failure"], "out-of-memory");
    assert_eq!(cause("trap", 3)["failure"], "trap");
    assert!(cause("trap", 3)["cause"]
        .as_str()
        .unwrap()
        .contains("hostile: trap requested"));
    assert_eq!(cause("error", 4)["failure"], "error");
    assert!(cause("error", 4)["cause"]
        .as_str()
        .unwrap()
        .contains("error requested"));
    assert_eq!(cause("huge", 5)["failure"], "out-of-memory");
    assert_eq!(cause("bad-source", 8)["failure"], "malformed-output");
    assert!(cause("bad-source", 8)["cause"]
        .as_str()
        .unwrap()
        .contains("source"));
    assert_eq!(p.len(), 6, "{p:?}");
    for v in p.values() {
        assert_eq!(v["reactor"], "hostile");
        assert_eq!(v["kind"], "hostile.cmd");
        assert_eq!(v["replay_requested"], false);
        // Attempts count every failed call that included the event; a
        // react-error naming its event is not retried (runtime_native
        // checks it alone), but here earlier bad events failed it too.
        let min = if v["failure"] == "error" { 1 } else { 2 };
        assert!(v["attempts"].as_u64().unwrap() >= min, "{v}");
        // The parked record is caused by the parked event.
        let rec = all.iter().find(|e| e["id"] == v["parked"]).unwrap();
        assert_eq!(rec["causation"], v["event"]);
        assert_eq!(rec["entity"], "reactor:hostile");
    }

    // Under batpak:reactor@0.2.0 a proposal names its kind by index into
    // the declared emits; the SDK sends an undeclared kind (here
    // `hostile.forbidden` and the reserved `batpak.fake`) as an index past
    // them, so the capability gate denies each on its own and records it,
    // and the SDK names the kind in a warning since the index cannot.
    let denied: Vec<&Value> = all
        .iter()
        .filter(|e| e["kind"] == "batpak.gate.denied")
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    for d in &denied {
        assert_eq!(d["payload"]["kind"], "emits[4294967295]", "{d}");
        assert_eq!(d["payload"]["code"], "kind-not-declared", "{d}");
        assert!(
            d["payload"]["message"]
                .as_str()
                .unwrap()
                .contains("does not list in emits (\"hostile.ok\")"),
            "{d}"
        );
    }
    assert!(
        err.contains("hostile.forbidden") && err.contains("batpak.fake"),
        "the SDK's warnings name the undeclared kinds:\n{err}"
    );
    assert!(all
        .iter()
        .all(|e| e["kind"] != "batpak.fake" && e["kind"] != "hostile.forbidden"));

    // Checkpoint moved past everything: a second run redelivers nothing.
    let before = all
        .iter()
        .filter(|e| e["kind"] != "batpak.cursor.checkpoint")
        .count();
    let out = run(&data, "64");
    assert!(out.status.success(), "{}", stderr(&out));
    let again = all_events(&data);
    assert_eq!(
        again
            .iter()
            .filter(|e| e["kind"] != "batpak.cursor.checkpoint")
            .count(),
        before
    );

    // Replay: with more memory the 64 MiB payload now reaches the gates
    // (and is denied as too large), which resolves it; the others fail
    // again and are parked again.
    let req = json_lines(&host_ok(&data, &["parked", "replay", "--plugin", "hostile"]).stdout);
    assert_eq!(req.len(), 6);
    assert!(parked(&data)
        .values()
        .all(|v| v["replay_requested"] == true));
    // A second request for the same events is not duplicated.
    assert!(
        json_lines(&host_ok(&data, &["parked", "replay", "--plugin", "hostile"]).stdout).is_empty()
    );

    let out = run(&data, "256");
    assert!(out.status.success(), "{}", stderr(&out));
    let all = all_events(&data);
    let unparked: Vec<&Value> = all
        .iter()
        .filter(|e| e["kind"] == "batpak.reactor.unparked")
        .collect();
    assert_eq!(unparked.len(), 1, "{unparked:?}");
    let huge_id = cause("huge", 5)["event"].clone();
    assert_eq!(unparked[0]["payload"]["event"], huge_id);
    assert_eq!(unparked[0]["payload"]["denials"], 1);
    let too_large = all
        .iter()
        .find(|e| e["kind"] == "batpak.gate.denied" && e["causation"] == huge_id)
        .expect("the huge proposal was denied");
    assert_eq!(too_large["payload"]["code"], "invalid-proposal");

    let still = parked(&data);
    assert_eq!(still.len(), 5, "{still:?}");
    assert!(!still.contains_key("h:5:huge"));
    for v in still.values() {
        assert!(
            v["replaces"].is_string(),
            "re-parked records replace the old ones: {v}"
        );
        assert_eq!(v["replay_requested"], false);
    }

    // Replaying one event by id.
    let trap_event = still["h:3:trap"]["event"].as_str().unwrap().to_string();
    let req = json_lines(&host_ok(&data, &["parked", "replay", "--event", &trap_event]).stdout);
    assert_eq!(req.len(), 1);
    assert_eq!(req[0]["event"], trap_event.as_str());
    let listed = parked(&data);
    assert_eq!(listed["h:3:trap"]["replay_requested"], true);
    assert_eq!(listed["h:1:loop"]["replay_requested"], false);
    // An id that is not parked: nothing to do, exit 1.
    let out = host(&data, &["parked", "replay", "--event", &"0".repeat(32)]);
    assert_eq!(out.status.code(), Some(1));
    host_ok(&data, &["verify"]);
}

// ---------------------------------------------------------------------------
// Containment: one memory budget per instance over all memories and tables,
// counted limits, growth in every phase. The components are the hand-written
// reactor (plugins/null-wat) with hostile parts spliced into its core module.

/// The hand-written reactor with `decls` added to its core module and,
/// when given, its `react`, `describe` or `init` replaced.
struct Wat {
    decls: String,
    react: Option<String>,
    describe: Option<String>,
    init: Option<String>,
}

impl Wat {
    fn new(decls: impl Into<String>) -> Wat {
        Wat {
            decls: decls.into(),
            react: None,
            describe: None,
            init: None,
        }
    }

    fn text(&self) -> String {
        let mut t = NULL_REACTOR_WAT.replacen(
            r#"(memory (export "memory") 2)"#,
            &format!("(memory (export \"memory\") 2)\n{}", self.decls),
            1,
        );
        let swap = |t: &mut String, old: &str, new: &Option<String>| {
            if let Some(new) = new {
                assert!(t.contains(old), "template changed: {old}");
                *t = t.replacen(old, new, 1);
            }
        };
        swap(
            &mut t,
            r#"(func (export "react") (param i32 i32) (result i32) (i32.const 3072))"#,
            &self.react,
        );
        swap(
            &mut t,
            r#"(func (export "describe") (result i32) (i32.const 2048))"#,
            &self.describe,
        );
        swap(
            &mut t,
            r#"(func (export "init") (param i32 i32) (result i32) (global.set $bump (i32.const 65536)) (i32.const 3072))"#,
            &self.init,
        );
        t
    }

    fn write(&self, dir: &Path, name: &str) -> std::path::PathBuf {
        write_file(dir, name, &self.text())
    }
}

/// `n` extra declarations of one kind (`(memory 1)`, `(table 1 funcref)`).
fn many(decl: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("(; extra {i} ;) {decl}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn bench_in(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"entity": format!("b:{i}"), "scope": "lab", "kind": "bench.in", "payload": {}}))
        .collect()
}

/// Runs `plugin` (reactor `null`) under `--memory-mb`, waits until it has
/// parked an event, reads the host process's peak resident memory (VmHWM,
/// KiB) while it is still alive, then kills it. Returns (VmHWM, stderr).
fn peak_until_parked(data: &Path, plugin: &Path, memory_mb: &str) -> (u64, String) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin())
        .args(["--data", data.to_str().unwrap()])
        .args([
            "run",
            "--memory-mb",
            memory_mb,
            "--attempts",
            "1",
            "--backoff-ms",
            "1",
            plugin.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            if line.contains("parked event") {
                let _ = tx.send(String::new());
            }
        }
        all
    });
    // Bounded: a host that never parks fails the test instead of hanging it.
    let parked = rx.recv_timeout(std::time::Duration::from_secs(120)).is_ok();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let all = reader.join().unwrap();
    assert!(parked, "the host never parked an event:\n{all}");
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status:\n{status}"));
    (hwm, all)
}

/// Resident memory the host may use besides plugin budgets: code, wasmtime,
/// the store's buffers. Measured at about 16 MiB on x86-64 Linux; the
/// margin keeps the assertion about budgets, not about allocator noise.
const HOST_OVERHEAD_KIB: u64 = 64 << 10;

#[test]
fn one_budget_covers_every_memory_of_an_instance_and_bounds_host_rss() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // Three more memories (four in all, the default maximum); `react` grows
    // each by 90 MiB and touches every page. Under a 100 MiB budget the
    // first growth fits and the second is refused. With a limit per memory
    // the host would have reached 270 MiB of plugin memory.
    let fill = |m: &str| {
        format!(
            "(drop (memory.grow ${m} (i32.const 1440))) (memory.fill ${m} (i32.const 0) (i32.const 97) (i32.const 94371840))"
        )
    };
    let wat = Wat {
        react: Some(format!(
            r#"(func $hog (export "react") (param i32 i32) (result i32) {} {} {} (i32.const 3072))"#,
            fill("m1"),
            fill("m2"),
            fill("m3")
        )),
        ..Wat::new("(memory $m1 1) (memory $m2 1) (memory $m3 1)")
    };
    let file = wat.write(dir.path(), "memories.wat");
    append(&data, &bench_in(1));
    let (hwm_kib, err) = peak_until_parked(&data, &file, "100");
    let p = json_lines(&host_ok(&data, &["parked", "--plugin", "null"]).stdout);
    assert_eq!(p.len(), 1, "{err}");
    assert_eq!(p[0]["failure"], "out-of-memory", "{}", p[0]);
    let cause = p[0]["cause"].as_str().unwrap();
    assert!(cause.contains("memory budget of 100 MiB"), "{cause}");
    assert!(
        cause.contains("hog"),
        "the trap names the guest function: {cause}"
    );
    let bound = (100 << 10) + HOST_OVERHEAD_KIB;
    eprintln!("host VmHWM {hwm_kib} KiB; bound {bound} KiB (100 MiB budget + overhead)");
    assert!(
        hwm_kib < bound,
        "host peak RSS {hwm_kib} KiB exceeds the 100 MiB budget plus {HOST_OVERHEAD_KIB} KiB"
    );
}

#[test]
fn huge_table_growth_is_charged_to_the_budget() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // 100M funcref slots under a 1 MiB budget: it took 3.1 GB before.
    let wat = Wat {
        react: Some(
            r#"(func $grow_table (export "react") (param i32 i32) (result i32) (drop (table.grow $t (ref.null func) (i32.const 100000000))) (i32.const 3072))"#
                .into(),
        ),
        ..Wat::new("(table $t 1 funcref)")
    };
    let file = wat.write(dir.path(), "table.wat");
    append(&data, &bench_in(1));
    let (hwm_kib, err) = peak_until_parked(&data, &file, "1");
    let p = json_lines(&host_ok(&data, &["parked", "--plugin", "null"]).stdout);
    assert_eq!(p.len(), 1, "{err}");
    assert_eq!(p[0]["failure"], "out-of-memory", "{}", p[0]);
    assert!(
        p[0]["cause"].as_str().unwrap().contains("table"),
        "{}",
        p[0]
    );
    eprintln!("host VmHWM {hwm_kib} KiB with a 1 MiB budget");
    assert!(hwm_kib < (1 << 10) + HOST_OVERHEAD_KIB, "{hwm_kib} KiB");
}

/// `inspect` and `run` both refuse `file`, exit 1, and say `needles`.
fn refused_at_load(data: &Path, file: &Path, memory_mb: &str, needles: &[&str]) {
    let f = file.to_str().unwrap();
    for args in [
        vec!["inspect", "--memory-mb", memory_mb, f],
        vec!["run", "--until-idle", "--memory-mb", memory_mb, f],
    ] {
        let out = host(data, &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}\n{err}");
        assert!(err.contains(f), "{args:?} does not name the file:\n{err}");
        for n in needles {
            assert!(err.contains(n), "{args:?} lacks {n:?}:\n{err}");
        }
    }
    assert!(!data.join("segments").exists(), "nothing ran");
}

#[test]
fn too_many_memories_or_tables_are_refused_at_load() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let mems = Wat::new(many("(memory 1)", 39)).write(dir.path(), "mems.wat");
    refused_at_load(&data, &mems, "64", &["40 linear memories", "at most 4"]);
    let tables = Wat::new(many("(table 1 funcref)", 20)).write(dir.path(), "tables.wat");
    refused_at_load(&data, &tables, "64", &["20 tables", "at most 16"]);
}

#[test]
fn growth_in_start_describe_or_init_is_refused_at_load() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let grow = "(drop (memory.grow (i32.const 4000)))";
    let start = Wat::new(format!(
        "(func $grow_at_start {grow}) (start $grow_at_start)"
    ))
    .write(dir.path(), "start.wat");
    refused_at_load(
        &data,
        &start,
        "16",
        &[
            "cannot instantiate",
            "out-of-memory",
            "memory budget of 16 MiB",
        ],
    );
    let describe = Wat {
        describe: Some(format!(
            r#"(func (export "describe") (result i32) {grow} (i32.const 2048))"#
        )),
        ..Wat::new("")
    }
    .write(dir.path(), "describe.wat");
    refused_at_load(
        &data,
        &describe,
        "16",
        &["describe() failed", "out-of-memory"],
    );
    let init = Wat {
        init: Some(format!(
            r#"(func (export "init") (param i32 i32) (result i32) {grow} (i32.const 3072))"#
        )),
        ..Wat::new("")
    }
    .write(dir.path(), "init.wat");
    // `inspect` reports init in its JSON and exits 1; `run` refuses.
    let f = init.to_str().unwrap();
    let out = host(&data, &["inspect", "--memory-mb", "16", f]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["init"]["ok"], false);
    assert!(
        j["init"]["error"]
            .as_str()
            .unwrap()
            .contains("out-of-memory"),
        "{j}"
    );
    let out = host(&data, &["run", "--until-idle", "--memory-mb", "16", f]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("init() failed: out-of-memory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_guest_exception_keeps_its_message_and_frames_in_the_park_record() {
    let dir = tempdir();
    let data = dir.path().join("data");
    append(&data, &[cmd(0, "raise")]);
    let h = plugin("hostile");
    let out = host(
        &data,
        &[
            "run",
            "--until-idle",
            "--attempts",
            "2",
            "--backoff-ms",
            "1",
            h.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let p = parked(&data);
    let v = &p["h:0:raise"];
    assert_eq!(v["failure"], "trap");
    let cause = v["cause"].as_str().unwrap();
    // The guest's own message first, then the detail.
    assert!(
        cause.starts_with("ValueError: hostile: bad quantity; "),
        "{cause}"
    );
    for needle in [
        "Traceback (most recent call last):",
        "line 7, in parse",
        "wasm backtrace",
    ] {
        assert!(cause.contains(needle), "cause lacks {needle:?}: {cause}");
    }
    assert_eq!(v["attempts"], 2, "{v}");
}

/// One stderr line per parked event, the guest's own message first and no
/// backtrace, however many calls (retries, bisection) failed on it; the
/// detail stays in the parked record.
#[test]
fn each_parked_failure_is_one_readable_line() {
    let dir = tempdir();
    let data = dir.path().join("data");
    // One batch: the exception and the panic make the whole call fail, so
    // the host retries it and bisects it down to each bad event.
    let cmds = ["ok", "raise", "ok", "trap", "error", "ok"];
    let events: Vec<Value> = cmds.iter().enumerate().map(|(i, c)| cmd(i, c)).collect();
    append(&data, &events);
    let h = plugin("hostile");
    let out = host(
        &data,
        &[
            "run",
            "--until-idle",
            "--quiet",
            "--attempts",
            "3",
            "--backoff-ms",
            "1",
            h.to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let seq = |i: usize| -> u64 {
        let e = all_events(&data)
            .into_iter()
            .find(|e| e["entity"] == format!("h:{i}:{}", cmds[i]))
            .unwrap();
        e["seq"].as_u64().unwrap()
    };
    let lines_with =
        |needle: &str| -> Vec<&str> { err.lines().filter(|l| l.contains(needle)).collect() };
    for (i, own, kind) in [
        (1, "ValueError: hostile: bad quantity", "trap"),
        (3, "hostile: trap requested", "trap"),
        (4, "hostile: error requested", "error"),
    ] {
        let said = lines_with(own);
        assert_eq!(said.len(), 1, "one line for {own:?}:\n{err}");
        let want = format!(
            "[runtime hostile] warn: parked event {} (hostile.cmd, h:{i}:{}): {own} — {kind} after ",
            seq(i),
            cmds[i]
        );
        assert!(said[0].starts_with(&want), "{:?}\nlacks {want:?}", said[0]);
        assert!(
            said[0].contains("`batpak-host parked --plugin hostile`"),
            "{}",
            said[0]
        );
        assert!(said[0].chars().count() < 400, "{}", said[0]);
    }
    assert_eq!(lines_with("parked event").len(), 3, "{err}");
    for noise in [
        "Traceback",
        "wasm backtrace",
        "attempt 1 of",
        "panicked at",
        "bisecting",
    ] {
        assert!(lines_with(noise).is_empty(), "{noise:?} on stderr:\n{err}");
    }
    // The detail is in the parked records.
    let p = parked(&data);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p["h:1:raise"]["cause"]
        .as_str()
        .unwrap()
        .contains("Traceback (most recent call last):"));
    let trap = p["h:3:trap"]["cause"].as_str().unwrap();
    assert!(
        trap.starts_with("hostile: trap requested; ") && trap.contains("wasm backtrace"),
        "{trap}"
    );
    assert_eq!(events_of(&data, "hostile.ok").len(), 3);
}

#[test]
fn wasi_randomness_is_deterministic_per_source_event() {
    let dir = tempdir();
    let data = dir.path().join("data");
    append(&data, &[cmd(0, "random"), cmd(1, "random")]);
    // Two copies of the same log: the same events, the same ids.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    // Owner-only, as the store requires of its directory.
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(&data).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            let to = copy.join(e.file_name());
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(e.path()).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        } else {
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
    }
    let h = plugin("hostile");
    let drawn = |d: &Path| -> Vec<Value> {
        let out = host(d, &["run", "--until-idle", h.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        events_of(d, "hostile.ok")
            .into_iter()
            .map(|e| e["payload"]["r"].clone())
            .collect()
    };
    let (a, b) = (drawn(&data), drawn(&copy));
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(a.iter().all(Value::is_u64), "{a:?}");
    assert_eq!(
        a, b,
        "the same version over the same events draws the same numbers"
    );
}
