//! Hot swap (issue 11): `run --watch` replaces a running plugin when its file
//! is replaced, refuses files that cannot continue it, and loses and
//! duplicates nothing — checked on the log itself (lineage digests and the
//! `batpak.plugin.*` records).

use crate::common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The passthrough component, new digest per `k` (see
/// [`passthrough_variant`]).
fn variant(k: u32) -> Vec<u8> {
    passthrough_variant("hot-swap-test", k)
}

/// The hand-written null reactor, renamed / retargeted by text edits.
fn null_wat(name: &str, wit: &str, kind: &str) -> String {
    assert!(name.len() < 16 && kind.len() == 8);
    NULL_REACTOR_WAT
        .replace(
            "(data (i32.const 1024) \"null\")",
            &format!("(data (i32.const 1200) \"{name}\")"),
        )
        .replace(
            "\"\\00\\04\\00\\00\\04\\00\\00\\00\"   ;; name ptr=1024 len=4",
            &format!("\"\\b0\\04\\00\\00\\{:02x}\\00\\00\\00\"", name.len()),
        )
        .replace("\"bench.in\"", &format!("\"{kind}\""))
        .replace("@0.2.0", wit)
}

fn run_watch(data: &Path, plugin: &Path, extra: &[&str]) -> (Child, std::path::PathBuf) {
    let log = data.with_extension("stderr.log");
    let child = Command::new(bin())
        .arg("--data")
        .arg(data)
        .args(["run", "--watch", "--quiet"])
        .args(if extra.contains(&"--max-batch") {
            &[][..]
        } else {
            &["--max-batch", "16"][..]
        })
        .args(extra)
        .arg(plugin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawning run --watch");
    (child, log)
}

/// Polls the log (read without the lock) until `pred` holds, at most 60 s.
fn wait_for(data: &Path, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ev = all_events(data);
        if pred(&ev) {
            return ev;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn count(ev: &[Value], kind: &str) -> usize {
    ev.iter().filter(|e| e["kind"] == kind).count()
}

fn payload(e: &Value) -> Value {
    match &e["payload"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        v => v.clone(),
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "run did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Atomically replaces `dst` (write a new file, rename it over).
fn rename_over(dst: &Path, bytes: &[u8]) {
    let tmp = dst.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dst).expect("rename");
}

/// Checks: every bench.in has exactly one bench.out; each is stamped with
/// the digest of the version that was running at its position (the
/// swapped records partition the log).
fn check_exactly_once_by_version(ev: &[Value], first_digest: &str) -> usize {
    let mut outs: HashMap<String, usize> = HashMap::new();
    let mut current = first_digest.to_string();
    let mut versions = 1;
    for e in ev {
        match e["kind"].as_str() {
            Some("batpak.plugin.swapped") => {
                let p = payload(e);
                assert_eq!(p["old_digest"], current.as_str(), "swap chain broken: {p}");
                current = p["new_digest"].as_str().expect("new_digest").to_string();
                versions += 1;
            }
            Some("bench.out") => {
                assert_eq!(
                    e["meta"]["component"],
                    current.as_str(),
                    "reaction {} at sequence {} carries another version's digest",
                    e["id"],
                    e["seq"]
                );
                *outs
                    .entry(e["causation"].as_str().expect("causation").to_string())
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    let ins: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "bench.in").collect();
    for i in &ins {
        let id = i["id"].as_str().unwrap();
        assert_eq!(
            outs.get(id).copied().unwrap_or(0),
            1,
            "source event {id} (seq {}) has not exactly one reaction",
            i["seq"]
        );
    }
    assert_eq!(outs.len(), ins.len());
    versions
}

fn inputs(n: usize, tag: &str) -> Vec<Value> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "entity": format!("e:{tag}:{}", i % 97),
                "scope": "bench",
                "kind": "bench.in",
                "payload": {"i": i},
            })
        })
        .collect()
}

#[test]
fn watch_swaps_replaced_files_and_refuses_bad_ones_losing_nothing() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let pd = dir.path().join("plugins");
    std::fs::create_dir_all(&pd).unwrap();
    let file = pd.join("passthrough.wasm");
    std::fs::write(&file, variant(0)).unwrap();
    // Enough small batches that the swaps land while events remain (the
    // run holds the store, so the stream cannot be appended meanwhile).
    append(&data, &inputs(20000, "a"));
    let (child, log) = run_watch(&data, &file, &["--max-batch", "2"]);
    let first = wait_for(&data, "the first reaction", |ev| count(ev, "bench.out") > 0);
    let first_digest = first.iter().find(|e| e["kind"] == "bench.out").unwrap()["meta"]
        ["component"]
        .as_str()
        .unwrap()
        .to_string();

    let swapped = |n: usize| move |ev: &[Value]| count(ev, "batpak.plugin.swapped") >= n;
    let refused = |n: usize| move |ev: &[Value]| count(ev, "batpak.plugin.swap-refused") >= n;

    // 1. A build tool's write-new-then-rename-over.
    rename_over(&file, &variant(1));
    wait_for(&data, "swap 1 (rename-over)", swapped(1));
    // 2. A broken file: refused, the running version keeps serving.
    rename_over(&file, b"\0asm\x0d\x00\x01\x00garbage");
    wait_for(&data, "refusal of a broken wasm", refused(1));
    // 3. An incompatible WIT version.
    rename_over(
        &file,
        null_wat("passthrough", "@0.9.0", "bench.in").as_bytes(),
    );
    wait_for(&data, "refusal of a WIT version", refused(2));
    // 4. Another plugin name.
    rename_over(&file, null_wat("other", "@0.2.0", "bench.in").as_bytes());
    wait_for(&data, "refusal of another name", refused(3));
    // 5. A changed region.
    rename_over(
        &file,
        null_wat("passthrough", "@0.2.0", "bench.ix").as_bytes(),
    );
    wait_for(&data, "refusal of another region", refused(4));
    // 6. An in-place write in two parts with a pause: the half file is
    //    refused (or skipped while growing), the complete one swapped in.
    let full = variant(2);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&file)
            .unwrap();
        f.write_all(&full[..full.len() / 2]).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(400));
        f.write_all(&full[full.len() / 2..]).unwrap();
    }
    wait_for(&data, "swap 2 (in-place write)", swapped(2));

    let ev = wait_for(&data, "every event handled", |ev| {
        count(ev, "bench.out") == count(ev, "bench.in")
    });
    stop(child);
    let ev_final = all_events(&data);
    assert_eq!(
        ev_final.len(),
        ev.len(),
        "nothing appended after catching up: {:?}",
        ev_final.get(ev.len()..)
    );
    let last_in = ev_final
        .iter()
        .filter(|e| e["kind"] == "bench.in")
        .map(|e| e["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    let handled_at_swap: Vec<usize> = ev_final
        .iter()
        .filter(|e| e["kind"] == "batpak.plugin.swapped")
        .map(|e| {
            let at = e["seq"].as_u64().unwrap();
            ev_final
                .iter()
                .filter(|x| x["kind"] == "bench.out" && x["seq"].as_u64().unwrap() < at)
                .count()
        })
        .collect();
    eprintln!(
        "reactions committed at each swap: {handled_at_swap:?} of 20000 (last input at {last_in})"
    );
    let versions = check_exactly_once_by_version(&ev_final, &first_digest);
    assert_eq!(versions, 3, "two swaps made");
    let codes: Vec<String> = ev_final
        .iter()
        .filter(|e| e["kind"] == "batpak.plugin.swap-refused")
        .map(|e| payload(e)["code"].as_str().unwrap_or("").to_string())
        .collect();
    eprintln!("refusal codes: {codes:?}");
    assert!(codes.iter().filter(|c| *c == "unloadable").count() >= 2);
    assert!(codes.iter().any(|c| c == "unsupported-wit"));
    assert!(codes.iter().any(|c| c == "name-mismatch"));
    assert!(codes.iter().any(|c| c == "region-changed"));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        stderr.contains("swap refused"),
        "refusals on stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("error: reactor passthrough"),
        "no runner error:\n{stderr}"
    );
}

#[test]
fn watch_starts_new_files_and_stops_removed_ones_keeping_the_checkpoint() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let pd = dir.path().join("plugins");
    std::fs::create_dir_all(&pd).unwrap();
    append(&data, &inputs(200, "b"));
    // Watch an empty directory; the plugin arrives later.
    let (child, log1) = run_watch(&data, &pd, &[]);
    std::thread::sleep(Duration::from_millis(300));
    rename_over(&pd.join("passthrough.wasm"), &variant(5));
    wait_for(&data, "the new file's reactions", |ev| {
        count(ev, "bench.out") == 200
    });
    std::fs::remove_file(pd.join("passthrough.wasm")).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    // Put back in the same run: a new runner resumes at the checkpoint and
    // repeats nothing.
    rename_over(&pd.join("passthrough.wasm"), &variant(5));
    std::thread::sleep(Duration::from_millis(600));
    std::fs::remove_file(pd.join("passthrough.wasm")).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    stop(child);
    assert_eq!(count(&all_events(&data), "bench.out"), 200);
    let first_log = std::fs::read_to_string(&log1).unwrap();
    assert_eq!(
        first_log.matches("started reactor passthrough").count(),
        2,
        "{first_log}"
    );
    assert_eq!(
        first_log.matches("checkpoint kept").count(),
        2,
        "{first_log}"
    );
    // While it is removed, more input arrives; putting it back resumes.
    append(&data, &inputs(100, "c"));
    let (child, _log) = run_watch(&data, &pd, &[]);
    std::thread::sleep(Duration::from_millis(300));
    rename_over(&pd.join("passthrough.wasm"), &variant(5));
    let ev = wait_for(&data, "the resumed reactions", |ev| {
        count(ev, "bench.out") == 300
    });
    stop(child);
    let d = ev.iter().find(|e| e["kind"] == "bench.out").unwrap()["meta"]["component"]
        .as_str()
        .unwrap()
        .to_string();
    check_exactly_once_by_version(&all_events(&data), &d);
}

#[test]
fn a_failing_new_version_is_rolled_back() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let pd = dir.path().join("plugins");
    std::fs::create_dir_all(&pd).unwrap();
    let file = pd.join("passthrough.wasm");
    std::fs::write(&file, variant(0)).unwrap();
    // Enough single-event batches that the swap lands while events remain.
    append(&data, &inputs(20000, "r"));
    let (child, _log) = run_watch(
        &data,
        &file,
        &[
            "--swap-rollback",
            "5",
            "--attempts",
            "1",
            "--max-batch",
            "1",
        ],
    );
    wait_for(&data, "the first reaction", |ev| count(ev, "bench.out") > 0);
    // The hostile plugin traps on demand, but has another name; a version of
    // passthrough that always fails is the null reactor proposing... nothing
    // is not a failure, so use a trap: an unreachable in react.
    let trapping = null_wat("passthrough", "@0.2.0", "bench.in").replace(
        "(func (export \"react\") (param i32 i32) (result i32) (i32.const 3072))",
        "(func (export \"react\") (param i32 i32) (result i32) unreachable)",
    );
    assert!(trapping.contains("unreachable"));
    rename_over(&file, trapping.as_bytes());
    let ev = wait_for(&data, "rollback and every event handled", |ev| {
        count(ev, "batpak.plugin.swap-rolled-back") == 1
            && count(ev, "bench.out") == count(ev, "bench.in")
    });
    // `status` tells the story: what was tried, that it was rolled back,
    // and which version runs.
    let swapped = payload(
        ev.iter()
            .find(|e| e["kind"] == "batpak.plugin.swapped")
            .unwrap(),
    );
    let st: Value = serde_json::from_slice(&host_ok(&data, &["status", "--json"]).stdout).unwrap();
    let r = &st[0];
    assert_eq!(
        r["version"], swapped["old_version"],
        "the old version runs: {r}"
    );
    assert_eq!(r["digest"], swapped["old_digest"], "{r}");
    let rb = &r["last_swap"]["rolled_back"];
    assert_eq!(r["last_swap"]["new_version"], swapped["new_version"], "{r}");
    assert_eq!(rb["failed_version"], swapped["new_version"], "{r}");
    assert_eq!(rb["restored_version"], swapped["old_version"], "{r}");
    assert!(rb["reason"].as_str().unwrap().contains("trap"), "{r}");
    let table = String::from_utf8_lossy(&host_ok(&data, &["status"]).stdout).into_owned();
    assert!(
        table.contains(&format!("ROLLED BACK at position {}", rb["position"]))
            && table.contains(&format!(
                "{} failed",
                swapped["new_version"].as_str().unwrap()
            )),
        "{table}"
    );
    stop(child);
    assert_eq!(count(&ev, "batpak.reactor.parked"), 0, "nothing parked");
    let rb = ev
        .iter()
        .find(|e| e["kind"] == "batpak.plugin.swap-rolled-back")
        .unwrap();
    let p = payload(rb);
    assert!(p["reason"].as_str().unwrap().contains("trap"), "{p}");
    // Each source event has one reaction, all from the restored version.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in ev.iter().filter(|e| e["kind"] == "bench.out") {
        assert_eq!(e["meta"]["component"], p["restored_digest"]);
        *seen
            .entry(e["causation"].as_str().unwrap().into())
            .or_default() += 1;
    }
    assert!(seen.values().all(|&n| n == 1));
    assert_eq!(seen.len(), count(&ev, "bench.in"));
}

#[test]
fn shadow_finds_exactly_the_changed_events() {
    let dir = tempdir();
    let data = dir.path().join("data");
    append(&data, &inputs(300, "s"));
    let pass = plugin("passthrough");
    host_ok(
        &data,
        &["run", "--until-idle", "--quiet", pass.to_str().unwrap()],
    );
    // Against itself: no difference, exit 0.
    let same = host(
        &data,
        &["shadow", "passthrough", pass.to_str().unwrap(), "--json"],
    );
    assert!(same.status.success(), "{}", stderr(&same));
    let r: Value = serde_json::from_slice(&same.stdout).unwrap();
    assert_eq!(
        (r["events"].as_u64(), r["identical"].as_u64()),
        (Some(300), Some(300))
    );
    // Also while `run` holds the store's lock.
    let (child, _log) = run_watch(&data, &pass, &[]);
    std::thread::sleep(Duration::from_millis(500));
    let locked = host(&data, &["shadow", "passthrough", pass.to_str().unwrap()]);
    stop(child);
    assert!(locked.status.success(), "{}", stderr(&locked));
    assert!(
        stderr(&locked).contains("300 identical"),
        "{}",
        stderr(&locked)
    );
    let before = all_events(&data).len();
    // A version that proposes nothing: every reaction is missing, exit 1.
    let silent = write_file(
        dir.path(),
        "silent.wat",
        &null_wat("passthrough", "@0.2.0", "bench.in"),
    );
    let out = host(
        &data,
        &[
            "shadow",
            "passthrough",
            silent.to_str().unwrap(),
            "--last",
            "50",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["events"], 50);
    assert_eq!(r["missing"], 50);
    assert_eq!(r["identical"], 0);
    let ins: Vec<String> = all_events(&data)
        .iter()
        .filter(|e| e["kind"] == "bench.in")
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let diffs: Vec<String> = r["diffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["source"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        diffs,
        ins[ins.len() - 50..].to_vec(),
        "exactly the last 50 sources"
    );
    // The same version with its grant withdrawn: the gate would deny every
    // reaction — a verdict difference and a missing reaction per event.
    let out = host(
        &data,
        &[
            "shadow",
            "passthrough",
            pass.to_str().unwrap(),
            "--from",
            &ins_seq_from(&data, 290).to_string(),
            "--grant-emits",
            "nothing.granted",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            r["events"].as_u64(),
            r["verdicts"].as_u64(),
            r["missing"].as_u64()
        ),
        (Some(10), Some(10), Some(10))
    );
    // Nothing was appended to the real log.
    assert_eq!(all_events(&data).len(), before);
}

#[test]
fn kill_minus_nine_around_a_swap_loses_and_duplicates_nothing() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}");
    let mut x = seed | 1;
    for round in 0..3u32 {
        let dir = tempdir();
        let data = dir.path().join("data");
        let pd = dir.path().join("plugins");
        std::fs::create_dir_all(&pd).unwrap();
        let file = pd.join("passthrough.wasm");
        std::fs::write(&file, variant(0)).unwrap();
        append(&data, &inputs(4000, "k"));
        let (mut child, _log) = run_watch(&data, &file, &[]);
        wait_for(&data, "the first reaction", |ev| count(ev, "bench.out") > 0);
        rename_over(&file, &variant(round + 1));
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = x % 400;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("kill -9");
        let _ = child.wait();
        eprintln!("round {round}: killed {delay} ms after the rename");
        // Restart on the new file: it resumes from the checkpoint.
        host_ok(
            &data,
            &["run", "--until-idle", "--quiet", file.to_str().unwrap()],
        );
        let ev = all_events(&data);
        let mut outs: HashMap<String, usize> = HashMap::new();
        for e in ev.iter().filter(|e| e["kind"] == "bench.out") {
            *outs
                .entry(e["causation"].as_str().unwrap().into())
                .or_default() += 1;
        }
        assert_eq!(outs.len(), count(&ev, "bench.in"), "round {round}: lost");
        assert!(outs.values().all(|&n| n == 1), "round {round}: duplicated");
        assert!(count(&ev, "batpak.plugin.swapped") <= 1);
    }
}

/// The library API with native reactors: the typed outcome and refusals of
/// `RunnerHandle::swap`, the new version's own max_batch, lineage.
mod native {
    use batpak_runtime::{
        self, Descriptor, ReactFailure, Reaction, Reactor, RunnerSettings, SwapRefusal,
    };
    use batpak_store::{
        AppendOptions, CanalHandle, Coordinate, Event, EventView, Proposal, ReactorCanal,
    };
    use batpak_store::{Region, Store};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    struct Versioned {
        d: Descriptor,
        digest: String,
        batches: Arc<Mutex<Vec<(String, usize)>>>,
    }

    fn version(
        name: &str,
        v: &str,
        max_batch: u32,
        log: &Arc<Mutex<Vec<(String, usize)>>>,
    ) -> Versioned {
        let mut d = Descriptor::new(name, v);
        d.region = Region::all().kinds(["in"]);
        d.emits = vec!["out".into()];
        d.max_batch = max_batch;
        Versioned {
            d,
            digest: format!("native-{v}"),
            batches: log.clone(),
        }
    }

    impl Reactor for Versioned {
        fn descriptor(&self) -> &Descriptor {
            &self.d
        }
        fn digest(&self) -> &str {
            &self.digest
        }
        fn react(&mut self, batch: &[EventView]) -> Result<Vec<Reaction>, ReactFailure> {
            self.batches
                .lock()
                .unwrap()
                .push((self.digest.clone(), batch.len()));
            Ok(batch
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    Reaction::new(i as u32, e.coordinate().entity, "t", "out", b"{}".to_vec())
                })
                .collect())
        }
    }

    fn put(store: &Store, n: usize) {
        let batch: Vec<Proposal> = (0..n)
            .map(|i| {
                Proposal::new(
                    Coordinate::new(format!("e{i}"), "t").unwrap(),
                    "in",
                    b"{}".to_vec(),
                )
            })
            .collect();
        store.append_batch(batch, AppendOptions::durable()).unwrap();
    }

    fn outs(store: &Store) -> Vec<Event> {
        store
            .scan(&Region::all().kinds(["out"]), 0, usize::MAX, false)
            .unwrap()
    }

    fn wait(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn swap_returns_a_typed_outcome_and_typed_refusals() {
        let dir = crate::common::tempdir();
        let store = Store::open(dir.path()).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let h = batpak_runtime::spawn(
            &store,
            Box::new(version("r", "1", 0, &log)),
            RunnerSettings {
                max_batch: 64,
                pull_wait: Duration::from_millis(10),
                ..RunnerSettings::default()
            },
        )
        .unwrap();
        put(&store, 100);
        wait("v1 output", || outs(&store).len() == 100);

        // Refusals, each typed, each leaving v1 running.
        let other = version("other", "2", 0, &log);
        assert!(matches!(
            h.swap(Box::new(other), None),
            Err(SwapRefusal::NameMismatch { .. })
        ));
        let mut region = version("r", "2", 0, &log);
        region.d.region = Region::all().kinds(["elsewhere"]);
        assert!(matches!(
            h.swap(Box::new(region), None),
            Err(SwapRefusal::RegionChanged { .. })
        ));
        let mut canal = version("r", "2", 0, &log);
        canal.d.canal = ReactorCanal::LossySubscription;
        assert!(matches!(
            h.swap(Box::new(canal), None),
            Err(SwapRefusal::CanalChanged { .. })
        ));
        assert_eq!(h.running().digest, "native-1");

        // A real swap: v2 with its own max_batch of 8.
        let o = h.swap(Box::new(version("r", "2", 8, &log)), None).unwrap();
        assert_eq!(
            (o.old_digest.as_str(), o.new_digest.as_str()),
            ("native-1", "native-2")
        );
        assert_eq!(o.max_batch, 8);
        assert_eq!(h.running().digest, "native-2");
        assert_eq!(h.last_swap().map(|(l, _)| l), Some(o.clone()));
        put(&store, 100);
        wait("v2 output", || outs(&store).len() == 200);
        let by_v2: Vec<usize> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| d == "native-2")
            .map(|(_, n)| *n)
            .collect();
        assert!(
            !by_v2.is_empty() && by_v2.iter().all(|&n| n <= 8),
            "{by_v2:?}"
        );
        let out = outs(&store);
        let digest = |e: &Event| {
            e.header
                .meta
                .iter()
                .find(|(k, _)| k == "component")
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert!(out[..100].iter().all(|e| digest(e) == "native-1"));
        assert!(out[100..].iter().all(|e| digest(e) == "native-2"));
        let records = store
            .scan(
                &Region::all().kinds([
                    batpak_runtime::SWAPPED_KIND,
                    batpak_runtime::SWAP_REFUSED_KIND,
                ]),
                0,
                usize::MAX,
                true,
            )
            .unwrap();
        let kinds: Vec<&str> = records
            .iter()
            .map(|e| e.kind())
            .filter(|k| k.starts_with("batpak.plugin."))
            .collect();
        assert_eq!(
            kinds,
            vec![
                batpak_runtime::SWAP_REFUSED_KIND,
                batpak_runtime::SWAP_REFUSED_KIND,
                batpak_runtime::SWAP_REFUSED_KIND,
                batpak_runtime::SWAPPED_KIND
            ]
        );
        // A stopped runner refuses with NotRunning.
        h.stop();
        wait("the runner to stop", || h.is_finished());
        assert!(matches!(
            h.swap(Box::new(version("r", "3", 0, &log)), None),
            Err(SwapRefusal::NotRunning { .. })
        ));
        Box::new(h).join().unwrap();
        store.close().unwrap();
    }
}

/// The sequence of the `n`-th (0-based) `bench.in` event.
fn ins_seq_from(data: &Path, n: usize) -> u64 {
    all_events(data)
        .iter()
        .filter(|e| e["kind"] == "bench.in")
        .nth(n)
        .unwrap()["seq"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_swap_rereads_the_operators_grant_from_the_plugin_config() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let pd = dir.path().join("plugins");
    std::fs::create_dir_all(&pd).unwrap();
    let file = pd.join("passthrough.wasm");
    std::fs::write(&file, variant(0)).unwrap();
    let config = write_file(dir.path(), "plugins.json", "{}");
    append(&data, &inputs(10000, "g"));
    let (child, _log) = run_watch(
        &data,
        &file,
        &[
            "--max-batch",
            "2",
            "--plugin-config",
            config.to_str().unwrap(),
        ],
    );
    wait_for(&data, "the first reaction", |ev| count(ev, "bench.out") > 0);
    // The operator withdraws the grant, then the new version arrives.
    write_file(
        dir.path(),
        "plugins.json",
        r#"{"plugins": {"passthrough": {"grant_emits": []}}}"#,
    );
    rename_over(&file, &variant(1));
    // The rest of the stream arrives once the swap is recorded (through the
    // running host), so the new version surely has events to judge however
    // fast the old one got through the first part.
    wait_for(&data, "the swap", |ev| {
        count(ev, "batpak.plugin.swapped") > 0
    });
    append(&data, &inputs(10000, "h"));
    let ev = wait_for(&data, "every event handled", |ev| {
        count(ev, "bench.out") + count(ev, "batpak.gate.denied") >= 20000
    });
    stop(child);
    let swap_at = ev
        .iter()
        .find(|e| e["kind"] == "batpak.plugin.swapped")
        .expect("swapped")["seq"]
        .as_u64()
        .unwrap();
    let mut handled: HashMap<String, usize> = HashMap::new();
    for e in &ev {
        let seq = e["seq"].as_u64().unwrap();
        match e["kind"].as_str().unwrap() {
            "bench.out" => assert!(seq < swap_at, "admitted after the grant was withdrawn"),
            "batpak.gate.denied" => assert!(seq > swap_at, "denied before the swap"),
            _ => continue,
        }
        *handled
            .entry(e["causation"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(
        count(&ev, "batpak.gate.denied") > 0,
        "the swap landed mid-stream"
    );
    assert_eq!(handled.len(), 20000);
    assert!(handled.values().all(|&n| n == 1));
}

/// `batpak-host swap NAME FILE` from another terminal while producers
/// append through the same host: the swap lands at a batch boundary and is
/// recorded; a broken file and a behaviour change caught by `--shadow` are
/// refused with the old version still serving; every source event ends with
/// exactly one reaction, stamped with the version that ran it.
#[test]
fn swap_from_another_terminal_with_shadow_proof() {
    let dir = tempdir();
    let data = dir.path().join("data");
    append(&data, &inputs(200, "a"));
    let live = dir.path().join("passthrough.wasm");
    std::fs::copy(plugin("passthrough"), &live).unwrap();
    let first = blake3::hash(&std::fs::read(&live).unwrap())
        .to_hex()
        .to_string();
    // Not --watch: only the `swap` command changes the plugin here.
    let log = data.with_extension("stderr.log");
    let child = Command::new(bin())
        .arg("--data")
        .arg(&data)
        .args(["run", "--quiet", "--max-batch", "16"])
        .arg(&live)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for(&data, "the backlog handled", |ev| {
        count(ev, "bench.out") == 200
    });

    // A new version (same behaviour, new digest), proven on the last 50
    // handled events first.
    let v2 = dir.path().join("v2.wasm");
    std::fs::write(&v2, variant(2)).unwrap();
    let out = host(
        &data,
        &[
            "swap",
            "passthrough",
            v2.to_str().unwrap(),
            "--shadow",
            "50",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let outcome: Value = serde_json::from_slice(&out.stdout).expect("outcome JSON");
    assert_eq!(outcome["old_digest"], first.as_str(), "{outcome}");
    let second = outcome["new_digest"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert!(stderr(&out).contains("50 identical"), "{}", stderr(&out));
    // `status` shows the running version's digest and when it was swapped.
    let st: Value = serde_json::from_slice(&host_ok(&data, &["status", "--json"]).stdout).unwrap();
    assert_eq!(st[0]["digest"], second.as_str(), "{st}");
    assert_eq!(st[0]["last_swap"]["new_digest"], second.as_str(), "{st}");
    assert_eq!(st[0]["last_swap"]["position"], outcome["position"], "{st}");

    // Events appended through the host after the swap go to the new version.
    append(&data, &inputs(100, "b"));
    wait_for(&data, "the new events handled", |ev| {
        count(ev, "bench.out") == 300
    });

    // A behaviour change (proposes nothing): --shadow refuses it, nothing
    // is swapped.
    let silent = write_file(
        dir.path(),
        "silent.wat",
        &null_wat("passthrough", "@0.2.0", "bench.in"),
    );
    let refused = host(
        &data,
        &[
            "swap",
            "passthrough",
            silent.to_str().unwrap(),
            "--shadow",
            "20",
        ],
    );
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("not swapped"),
        "{}",
        stderr(&refused)
    );
    // Broken wasm: refused by the host, the running version keeps serving.
    let broken = write_file(dir.path(), "broken.wasm", "not wasm at all");
    let refused = host(&data, &["swap", "passthrough", broken.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("not swapped"),
        "{}",
        stderr(&refused)
    );

    append(&data, &inputs(50, "c"));
    wait_for(&data, "the last events handled", |ev| {
        count(ev, "bench.out") == 350
    });
    stop(child);
    let ev = all_events(&data);
    assert_eq!(count(&ev, "batpak.plugin.swapped"), 1);
    assert_eq!(check_exactly_once_by_version(&ev, &first), 2);
    // The status of a stopped host is unavailable; what ran is in the log.
    let last = ev.iter().rev().find(|e| e["kind"] == "bench.out").unwrap();
    assert_eq!(last["meta"]["component"], second.as_str());
}

/// `status --json` once `pred` holds on its first reactor (at most 60 s: the
/// host takes a landed swap into its listing within a tick).
fn status_until(data: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st: Value =
            serde_json::from_slice(&host_ok(data, &["status", "--json"]).stdout).unwrap();
        if pred(&st[0]) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {what}: {st}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `swap` command under `run --watch` does not unhook the watched file:
/// `status` shows the reactor running the command's file while still
/// watching its own, a later file dropped at the watched path swaps again,
/// and a broken one there is refused and recorded.
#[test]
fn a_swap_command_under_watch_keeps_the_watched_file() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let pd = dir.path().join("plugins");
    std::fs::create_dir_all(&pd).unwrap();
    let file = pd.join("passthrough.wasm");
    std::fs::write(&file, variant(0)).unwrap();
    append(&data, &inputs(50, "a"));
    let (child, _log) = run_watch(&data, &pd, &[]);
    wait_for(&data, "the backlog handled", |ev| {
        count(ev, "bench.out") == 50
    });

    // From another terminal: a version outside the watched directory.
    let elsewhere = dir.path().join("v1.wasm");
    std::fs::write(&elsewhere, variant(1)).unwrap();
    let out = host(&data, &["swap", "passthrough", elsewhere.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st = status_until(&data, "running v1.wasm", |r| {
        r["file"] == elsewhere.to_str().unwrap()
    });
    let watched = std::fs::canonicalize(&pd).unwrap().join("passthrough.wasm");
    assert_eq!(st[0]["watched"], watched.to_str().unwrap(), "{st}");
    assert_eq!(st[0]["file"], elsewhere.to_str().unwrap(), "{st}");
    let table = String::from_utf8_lossy(&host_ok(&data, &["status"]).stdout).into_owned();
    assert!(
        table.contains(&format!("watching {}", watched.display())),
        "{table}"
    );

    // A new version dropped at the watched path swaps again.
    let v2 = variant(2);
    let v2_digest = blake3::hash(&v2).to_hex().to_string();
    rename_over(&file, &v2);
    let ev = wait_for(&data, "the second swap", |ev| {
        count(ev, "batpak.plugin.swapped") == 2
    });
    assert_eq!(count(&ev, "batpak.plugin.swap-refused"), 0);
    let last = ev
        .iter()
        .rev()
        .find(|e| e["kind"] == "batpak.plugin.swapped")
        .unwrap();
    assert_eq!(payload(last)["new_digest"], v2_digest.as_str());
    let st = status_until(&data, "the new version running", |r| {
        r["digest"] == v2_digest.as_str() && r["pending"].is_null()
    });
    assert_eq!(st[0]["file"], watched.to_str().unwrap(), "{st}");

    // A broken file there is refused and recorded; the version keeps serving.
    rename_over(&file, b"not a component");
    let ev = wait_for(&data, "the refusal", |ev| {
        count(ev, "batpak.plugin.swap-refused") == 1
    });
    let refused = payload(
        ev.iter()
            .find(|e| e["kind"] == "batpak.plugin.swap-refused")
            .unwrap(),
    );
    assert_eq!(refused["path"], watched.to_str().unwrap(), "{refused}");
    append(&data, &inputs(20, "b"));
    let ev = wait_for(&data, "the new events handled", |ev| {
        count(ev, "bench.out") == 70
    });
    stop(child);
    let last = ev.iter().rev().find(|e| e["kind"] == "bench.out").unwrap();
    assert_eq!(last["meta"]["component"], v2_digest.as_str());
}
