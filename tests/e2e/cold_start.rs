//! Large components start fast: a 12 MB SpiderMonkey component missing
//! from the compile cache serves its first batch on baseline (Winch) code,
//! moves to optimised (Cranelift) code at a batch boundary once the
//! background compile has finished, and the cache then holds the optimised
//! artifact, so the next load is a cache hit on optimised code.
//!
//! `cold_start_figures` (ignored: it only measures) prints, per example
//! component, the cold compile with each compiler, the time to the first
//! reaction, the cached load and `react` throughput on either tier:
//! `cargo test --release -p batpak-host --test e2e -- --ignored cold_start_figures --nocapture`.

use crate::common::{plugin, tempdir};
use crate::languages::lang_plugins_dir;
use batpak_runtime::{
    CodeTier, CompileSource, Plugin, PluginSettings, Reaction, Reactor, Runtime, RuntimeConfig,
};
use batpak_store::{Coordinate, Event, EventHeader, EventId, EventView};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for a background compile (18 MB on a loaded 2-core VM).
const OPTIMISE_LIMIT: Duration = Duration::from_secs(600);

/// `n` events the pass-through examples consume (`bench.in`).
fn events(n: usize) -> Vec<EventView> {
    events_of("bench.in", br#"{"sku":"gizmo","qty":2}"#, n)
}

/// `n` events of `kind` with `payload`.
fn events_of(kind: &str, payload: &[u8], n: usize) -> Vec<EventView> {
    (0..n)
        .map(|i| {
            let header = EventHeader {
                id: EventId::generate(),
                sequence: i as u64 + 1,
                entity_sequence: 1,
                coordinate: Coordinate::new(format!("item:{i}"), "bench").expect("valid"),
                kind: kind.into(),
                causation: None,
                correlation: EventId(i as u128 + 1),
                timestamp_us: 1,
                prev: None,
                idempotency_key: None,
                meta: Default::default(),
            };
            EventView::from(Event {
                hash: header.hash(payload),
                header: Arc::new(header),
                payload: payload.to_vec().into(),
            })
        })
        .collect()
}

/// What a reaction decides (where, what, from which source), comparable
/// across tiers.
fn decided(r: &[Reaction]) -> Vec<(u32, String, String, Vec<u8>)> {
    r.iter()
        .map(|r| {
            (
                r.source,
                r.coordinate.entity.clone(),
                r.kind.clone(),
                r.payload.clone(),
            )
        })
        .collect()
}

fn cache_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.len() == 48 && n.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_large_plugin_serves_on_baseline_code_then_moves_to_optimised_code() {
    let sm = lang_plugins_dir().join("passthrough_js_sm.wasm");
    let size = std::fs::metadata(&sm).unwrap().len();
    assert!(
        size >= batpak_runtime::DEFAULT_BASELINE_FROM_BYTES,
        "the SpiderMonkey example ({size} B) is meant to be a large component"
    );
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let batch = events(8);

    // Cold: served by baseline code, nothing cached yet.
    let rt = Runtime::new(RuntimeConfig::with_cache(&cache)).unwrap();
    let mut p = Plugin::load(&rt, &sm, PluginSettings::default()).unwrap();
    assert_eq!(p.compile_info().0, CompileSource::Compiled);
    assert_eq!(p.code_tier(), CodeTier::Baseline);
    assert_eq!(
        cache_entries(&cache),
        0,
        "baseline code must never be cached (or the optimised compile finished before the load did)"
    );
    let first = p.react(&batch).expect("the first batch, on baseline code");
    assert_eq!(first.len(), batch.len());
    // The switch happens only at the start of a batch, so the first batch
    // ran on baseline code: served before the optimised compile finished
    // only if the tier is still baseline here.
    assert_eq!(
        p.code_tier(),
        CodeTier::Baseline,
        "the first batch was served before the optimised code was ready"
    );

    // The optimised compile finishes; the next batch boundary switches.
    assert!(
        p.wait_optimised(OPTIMISE_LIMIT),
        "the optimised compile did not finish within {OPTIMISE_LIMIT:?}"
    );
    assert_eq!(
        p.code_tier(),
        CodeTier::Baseline,
        "no switch between batches"
    );
    let second = p.react(&batch).expect("the next batch, on optimised code");
    assert_eq!(p.code_tier(), CodeTier::Optimised);
    assert_eq!(
        decided(&first),
        decided(&second),
        "both tiers must propose the same reactions"
    );
    assert_eq!(cache_entries(&cache), 1, "the optimised artifact is cached");
    drop(p);
    drop(rt);

    // Next load (a new runtime, as a new process): the cached optimised code.
    let rt = Runtime::new(RuntimeConfig::with_cache(&cache)).unwrap();
    let mut p = Plugin::load(&rt, &sm, PluginSettings::default()).unwrap();
    assert_eq!(p.compile_info().0, CompileSource::Cached);
    assert_eq!(p.code_tier(), CodeTier::Optimised);
    assert_eq!(decided(&p.react(&batch).unwrap()), decided(&first));
}

/// The default threshold puts the mid-sized QuickJS component (1.7 MB,
/// whose Cranelift compile took 1.8–3.1 s under load) on baseline code
/// first, so its first reaction does not wait for Cranelift, while the
/// small Rust, C and WAT examples (tens of ms on Cranelift) start on
/// optimised code as before.
#[test]
fn a_mid_sized_plugin_starts_on_baseline_code_and_small_ones_on_optimised_code() {
    let d = lang_plugins_dir();
    let qjs = d.join("passthrough_js.wasm");
    let size = std::fs::metadata(&qjs).unwrap().len();
    assert!(
        size >= batpak_runtime::DEFAULT_BASELINE_FROM_BYTES,
        "the QuickJS example ({size} B) starts on baseline code by default"
    );
    let batch = events(8);
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let mut p = Plugin::load(&rt, &qjs, PluginSettings::default()).unwrap();
    assert_eq!(p.compile_info().0, CompileSource::Compiled);
    assert_eq!(p.code_tier(), CodeTier::Baseline);
    let first = p.react(&batch).expect("the first batch, on baseline code");
    assert_eq!(first.len(), batch.len());
    assert!(
        p.wait_optimised(OPTIMISE_LIMIT),
        "the optimised compile did not finish within {OPTIMISE_LIMIT:?}"
    );
    let second = p.react(&batch).expect("the next batch, on optimised code");
    assert_eq!(p.code_tier(), CodeTier::Optimised);
    assert_eq!(decided(&first), decided(&second));

    for small in [
        plugin("passthrough"),
        d.join("passthrough_c.wasm"),
        d.join("passthrough_wat.wat"),
    ] {
        let size = std::fs::metadata(&small).unwrap().len();
        assert!(size < batpak_runtime::DEFAULT_BASELINE_FROM_BYTES);
        let rt = Runtime::new(RuntimeConfig::default()).unwrap();
        let p = Plugin::load(&rt, &small, PluginSettings::default()).unwrap();
        assert_eq!(
            p.code_tier(),
            CodeTier::Optimised,
            "{} ({size} B) waits for Cranelift",
            small.display()
        );
    }
}

/// CPU time of the whole process (every thread, user and system).
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime only writes the struct it is given.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        ts
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn baseline_code_keeps_the_time_limit_and_the_memory_budget() {
    // The hostile example spins forever on `loop` and allocates without
    // end on `oom`. Every component starts on baseline code here; the tier
    // after `react` is the tier `react` ran on (a switch happens only at
    // its start), and the small component's optimised compile may win the
    // race to the first call, so each case is tried on fresh runtimes until
    // one ran on baseline code.
    let hostile = plugin("hostile");
    let settings = PluginSettings {
        timeout: Duration::from_millis(500),
        memory_bytes: 32 << 20,
        ..PluginSettings::default()
    };
    for (cmd, expected) in [
        ("loop", batpak_runtime::FailureKind::Timeout),
        ("oom", batpak_runtime::FailureKind::OutOfMemory),
    ] {
        let batch = events_of("hostile.cmd", format!(r#"{{"do":"{cmd}"}}"#).as_bytes(), 1);
        let mut on_baseline = false;
        for _ in 0..5 {
            let rt = Runtime::new(RuntimeConfig {
                baseline_from_bytes: Some(0),
                ..RuntimeConfig::default()
            })
            .unwrap();
            let mut p = Plugin::load(&rt, &hostile, settings.clone()).unwrap();
            let failure = p.react(&batch).expect_err("a hostile command fails");
            assert_eq!(failure.kind, expected, "{cmd}: {failure}");
            if p.code_tier() == CodeTier::Baseline {
                on_baseline = true;
                break;
            }
        }
        assert!(on_baseline, "{cmd} never ran on baseline code in 5 tries");
    }
}

/// Best events per second of this thread's CPU time of `react` over
/// `batch`, for about `secs` of wall time: CPU time, not wall time, so a
/// background compile sharing the cores does not decide the figure.
/// Stops early when the plugin changes tier.
fn events_per_cpu_s(p: &mut Plugin, batch: &[EventView], secs: f64) -> f64 {
    let tier = p.code_tier();
    let mut best = 0f64;
    let until = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < until {
        let t = thread_cpu();
        for _ in 0..10 {
            p.react(batch).expect("react");
        }
        if p.code_tier() != tier {
            break;
        }
        best = best.max((10 * batch.len()) as f64 / (thread_cpu() - t).as_secs_f64());
    }
    best
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[test]
#[ignore = "measures only: run with --ignored --nocapture"]
fn cold_start_figures() {
    let d = lang_plugins_dir();
    let components: Vec<(&str, PathBuf)> = vec![
        ("rust", plugin("passthrough")),
        ("c", d.join("passthrough_c.wasm")),
        ("wat", d.join("passthrough_wat.wat")),
        ("js-quickjs", d.join("passthrough_js.wasm")),
        ("js-spidermonkey", d.join("passthrough_js_sm.wasm")),
        ("python", d.join("passthrough_py.wasm")),
    ];
    let batch = events(64);
    let one = events(1);
    let dir = tempdir();
    println!("component\tbytes\tcranelift cold ms\tfirst reaction (cranelift) ms\twinch compile ms\tfirst reaction (winch) ms\twinch ev per CPU-s\tcranelift ev per CPU-s\tcached: cache load ms (min/median/max of 5)\tcached: whole Plugin::load ms\truntime new ms");
    for (name, path) in components {
        let bytes = std::fs::metadata(&path).unwrap().len();
        // Cranelift only, no cache: what a cold load cost before.
        let rt = Runtime::new(RuntimeConfig {
            baseline_from_bytes: None,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let t = Instant::now();
        let cpu = process_cpu();
        let mut p = Plugin::load(&rt, &path, PluginSettings::default()).unwrap();
        let cranelift_cpu = process_cpu() - cpu;
        p.react(&one).unwrap();
        let first_cranelift = t.elapsed();
        let cranelift = p.compile_info().1;
        let cranelift_rate = events_per_cpu_s(&mut p, &batch, 2.0);
        drop(p);
        drop(rt);

        // Winch first, whatever the size, no cache.
        let rt = Runtime::new(RuntimeConfig {
            baseline_from_bytes: Some(0),
            ..RuntimeConfig::default()
        })
        .unwrap();
        let t = Instant::now();
        let cpu = process_cpu();
        let mut p = Plugin::load(&rt, &path, PluginSettings::default()).unwrap();
        let winch_cpu = process_cpu() - cpu;
        p.react(&one).unwrap();
        let first_winch = t.elapsed();
        let (winch, winch_rate) = if p.code_tier() == CodeTier::Baseline {
            (
                format!(
                    "{:.0} ({:.2} CPU-s)",
                    ms(p.compile_info().1),
                    winch_cpu.as_secs_f64()
                ),
                format!("{:.0}", events_per_cpu_s(&mut p, &batch, 1.0)),
            )
        } else {
            ("refused (see log)".into(), "-".into())
        };
        p.wait_optimised(OPTIMISE_LIMIT);
        drop(p);
        drop(rt);

        // Cached: one compile into a fresh cache, then five loads, each in
        // a new runtime (as a new process would).
        let cache = dir.path().join(format!("cache-{name}"));
        let cfg = RuntimeConfig {
            baseline_from_bytes: None,
            ..RuntimeConfig::with_cache(&cache)
        };
        drop(
            Plugin::load(
                &Runtime::new(cfg.clone()).unwrap(),
                &path,
                PluginSettings::default(),
            )
            .unwrap(),
        );
        let mut loads = Vec::new();
        let mut wholes = Vec::new();
        let mut news = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let rt = Runtime::new(cfg.clone()).unwrap();
            news.push(t.elapsed());
            let t = Instant::now();
            let p = Plugin::load(&rt, &path, PluginSettings::default()).unwrap();
            wholes.push(t.elapsed());
            assert_eq!(p.compile_info().0, CompileSource::Cached);
            loads.push(p.compile_info().1);
        }
        loads.sort();
        wholes.sort();
        news.sort();
        println!(
            "{name}\t{bytes}\t{:.0} ({:.2} CPU-s)\t{:.0}\t{winch}\t{:.0}\t{winch_rate}\t{:.0}\t{:.2}/{:.2}/{:.2}\t{:.1}/{:.1}/{:.1}\t{:.1}",
            ms(cranelift),
            cranelift_cpu.as_secs_f64(),
            ms(first_cranelift),
            ms(first_winch),
            cranelift_rate,
            ms(loads[0]),
            ms(loads[2]),
            ms(loads[4]),
            ms(wholes[0]),
            ms(wholes[2]),
            ms(wholes[4]),
            ms(news[2]),
        );
    }
}

/// `run --until-idle` of `plugin` over `data` with the compile cache in
/// `cache`; returns its stderr (bounded: 600 s).
fn run_until_idle(data: &Path, cache: &Path, plugin: &Path) -> String {
    let mut child = std::process::Command::new(crate::common::bin())
        .env_remove("BATPAK_NO_CACHE")
        .env("BATPAK_CACHE_DIR", cache)
        .arg("--data")
        .arg(data)
        .args(["run", "--until-idle"])
        .arg(plugin)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning batpak-host run");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let status = crate::common::wait_exit(&mut child, OPTIMISE_LIMIT);
    let stderr = reader.join().expect("stderr reader");
    assert!(status.success(), "run failed ({status:?}):\n{stderr}");
    stderr
}

/// Index of the first line of `text` containing `needle`, panicking with
/// the whole text when there is none.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

#[test]
fn run_serves_a_large_plugin_on_baseline_code_and_leaves_its_optimised_code_cached() {
    let sm = lang_plugins_dir().join("passthrough_js_sm.wasm");
    let dir = tempdir();
    let data = dir.path().join("data");
    let cache = dir.path().join("cache");
    let input = |n: usize| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| serde_json::json!({"entity": format!("item:{i}"), "scope": "bench", "kind": "bench.in", "payload": {"i": i}}))
            .collect()
    };
    crate::common::append(&data, &input(5));

    // Cold: the batch is served by baseline code and the run is done
    // (idle) while the optimised compile still runs; the process waits for
    // it so the cache keeps the result.
    let first = run_until_idle(&data, &cache, &sm);
    let baseline = line_of(&first, "serving it on baseline code");
    let waiting = line_of(&first, "waiting for an optimising compile to finish");
    let ready = line_of(&first, "optimised code of");
    assert!(
        baseline < waiting && waiting < ready,
        "expected: baseline code serves, the run finishes, then the optimised code is ready:\n{first}"
    );
    assert_eq!(crate::common::events_of(&data, "bench.out").len(), 5);
    assert_eq!(cache_entries(&cache), 1, "the optimised artifact is cached");

    // Next run: straight from the cache, optimised code, no baseline.
    crate::common::append(&data, &input(3));
    let second = run_until_idle(&data, &cache, &sm);
    line_of(&second, "compile cache");
    assert!(
        !second.contains("baseline"),
        "a cached load runs optimised code:\n{second}"
    );
    assert_eq!(crate::common::events_of(&data, "bench.out").len(), 8);
}

/// Loads `$BATPAK_PROFILE_PLUGIN` with baseline code first and no cache, and
/// prints how long the load took: a target for `perf record` when looking
/// at where a baseline compile spends its time.
#[test]
#[ignore = "a profiling target: BATPAK_PROFILE_PLUGIN=FILE"]
fn profile_baseline_load() {
    let Ok(path) = std::env::var("BATPAK_PROFILE_PLUGIN") else {
        return;
    };
    let rt = Runtime::new(RuntimeConfig {
        baseline_from_bytes: Some(0),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let t = Instant::now();
    let p = Plugin::load(&rt, &path, PluginSettings::default()).unwrap();
    let took = t.elapsed();
    let cpu = process_cpu().as_secs_f64();
    println!(
        "loaded {path} on {:?} code in {:.0} ms (compile {:.0} ms); process CPU so far {cpu:.2} s",
        p.code_tier(),
        ms(took),
        ms(p.compile_info().1)
    );
}
