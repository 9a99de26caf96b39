//! `batpak-bench swap`: hot swap under a steady stream of appended events.
//!
//! A passthrough runner (cursor, batches of 16) consumes a steady stream of
//! `bench.in` events appended by another thread. The benchmark swaps in new
//! versions of the same component (a custom section appended, so a new
//! digest with the same behaviour) through [`batpak_runtime::swap_file`] —
//! what `run --watch` calls once a renamed file is noticed — and measures:
//!
//! - **latency**: from the call to the first `bench.out` committed with the
//!   new digest, with a cold compile and with a compile-cache hit;
//! - **gap**: the longest pause between committed reactions from the call
//!   until the first new reaction, against the median pause (the normal
//!   batch interval);
//! - **lost / duplicated**: after the stream stops and the runner catches
//!   up, every `bench.in` must have exactly one `bench.out`;
//! - **shadow replay**: `shadow` of the running version over the log, in
//!   events per second, against the normal run's throughput on the same
//!   events.

use anyhow::{bail, Result};
use batpak_runtime::{Plugin, PluginSettings, RunnerSettings, Runtime, RuntimeConfig, ShadowRange};
use batpak_store::{AppendOptions, Canal, CanalBatch, CanalHandle, Region, Store, Subscription};
use batpak_store::{Coordinate, Proposal};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One committed reaction as seen by the observer.
struct Seen {
    at: Instant,
    digest: String,
}

/// The component with a custom section naming `k`: same code, new digest.
fn variant(wasm: &[u8], dir: &Path, k: u32) -> Result<PathBuf> {
    let mut bytes = wasm.to_vec();
    let mut sec = vec![4u8];
    sec.extend_from_slice(b"swap");
    sec.extend_from_slice(&k.to_le_bytes());
    bytes.push(0);
    bytes.push(sec.len() as u8);
    bytes.extend_from_slice(&sec);
    let p = dir.join(format!("passthrough-v{k}.wasm"));
    std::fs::write(&p, bytes)?;
    Ok(p)
}

fn settings() -> PluginSettings {
    PluginSettings {
        log_level: batpak_runtime::LogLevel::Warn,
        ..PluginSettings::default()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[v.len() / 2]
}

/// Runs the swap benchmark: `rate` events per second for the stream,
/// `rounds` swaps of each kind (cold, cache hit).
///
/// # Errors
/// The plugin cannot be built or loaded, a swap is refused, or a store
/// operation fails.
pub fn run(rate: u64, rounds: u32) -> Result<()> {
    let wasm_path = crate::reactor::passthrough_wasm()?;
    let wasm = std::fs::read(&wasm_path)?;
    let tmp = tempfile::Builder::new()
        .prefix("batpak-swap-bench-")
        .tempdir()?;
    let data = tmp.path().join("data");
    let rt = Runtime::new(RuntimeConfig::with_cache(tmp.path().join("cache")))?;
    let store = Store::open(&data)?;
    let v0 = variant(&wasm, tmp.path(), 0)?;
    let plugin = Plugin::load(&rt, &v0, settings())?;
    let runner = batpak_runtime::spawn(
        &store,
        Box::new(plugin),
        RunnerSettings {
            max_batch: 16,
            log_level: batpak_runtime::LogLevel::Warn,
            ..RunnerSettings::default()
        },
    )?;

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
    let observer = {
        let mut sub = Subscription::new(&store, Region::all().kinds(["bench.out"]), 1 << 22);
        let stop = stop.clone();
        let seen = seen.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match sub.pull_batch(4096, Duration::from_millis(20)) {
                    Ok(CanalBatch::Empty) => {}
                    Ok(b) => {
                        let at = Instant::now();
                        let mut s = seen.lock().expect("observer lock");
                        for e in b.into_vec() {
                            let digest = e
                                .header
                                .meta
                                .iter()
                                .find(|(k, _)| k == "component")
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default();
                            s.push(Seen { at, digest });
                        }
                    }
                    Err(_) => break,
                }
            }
        })
    };
    // The stream: a small durable batch every 2 ms.
    let per_tick = (rate / 500).max(1);
    let appender = {
        let store = store.clone();
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<u64> {
            let mut n = 0u64;
            let mut next = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<Proposal> = (0..per_tick)
                    .map(|i| {
                        Proposal::new(
                            Coordinate::new(format!("s:{}", (n + i) % 101), "bench")
                                .expect("valid"),
                            "bench.in",
                            format!("{{\"i\":{}}}", n + i).into_bytes(),
                        )
                    })
                    .collect();
                store.append_batch(batch, AppendOptions::durable())?;
                n += per_tick;
                next += Duration::from_millis(2);
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            Ok(n)
        })
    };
    std::thread::sleep(Duration::from_secs(1));

    let mut rows: Vec<(&str, Duration, Duration)> = Vec::new();
    let mut k = 1;
    for _ in 0..rounds {
        for cached in [false, true] {
            let path = variant(&wasm, tmp.path(), k)?;
            k += 1;
            if cached {
                // Compile it once beforehand, as a previous swap or
                // `inspect` would have: the swap then hits the cache.
                drop(Plugin::load(&rt, &path, settings())?);
            }
            let start = seen.lock().expect("lock").len();
            let t0 = Instant::now();
            let outcome = batpak_runtime::swap_file(
                &rt,
                &runner,
                &path,
                settings(),
                |_| Ok(settings()),
                None,
            )?;
            let deadline = Instant::now() + Duration::from_secs(30);
            let first = loop {
                {
                    let s = seen.lock().expect("lock");
                    if let Some(x) = s[start..].iter().find(|x| x.digest == outcome.new_digest) {
                        break x.at;
                    }
                }
                if Instant::now() > deadline {
                    bail!("no reaction from the new version within 30 s");
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            // Longest pause between commits from the call to the first new
            // reaction (including the pause before the first commit).
            let s = seen.lock().expect("lock");
            let mut last = s[..start].last().map(|x| x.at).unwrap_or(t0);
            let mut gap = Duration::ZERO;
            for x in s[start..].iter().take_while(|x| x.at <= first) {
                gap = gap.max(x.at.saturating_duration_since(last));
                last = x.at;
            }
            drop(s);
            rows.push((
                if cached { "cache hit" } else { "cold compile" },
                first - t0,
                gap,
            ));
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    stop.store(true, Ordering::SeqCst);
    let appended = appender.join().expect("appender")?;
    // Let the runner catch up, then count.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !runner.status().is_idle_at(store.watermarks().durable) {
        if Instant::now() > deadline {
            bail!("the runner did not catch up within 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = observer.join();
    Box::new(runner).stop_and_join()?;

    // Normal gap: median pause between distinct commit instants.
    let s = seen.lock().expect("lock");
    let mut gaps = Vec::new();
    for w in s.windows(2) {
        if w[1].at > w[0].at {
            gaps.push(w[1].at - w[0].at);
        }
    }
    let normal = median(gaps);
    drop(s);

    let ins = store.scan(&Region::all().kinds(["bench.in"]), 0, usize::MAX, false)?;
    let outs = store.scan(&Region::all().kinds(["bench.out"]), 0, usize::MAX, false)?;
    let mut per: HashMap<_, u32> = HashMap::new();
    for o in &outs {
        *per.entry(o.header.causation).or_default() += 1;
    }
    let lost = ins
        .iter()
        .filter(|i| !per.contains_key(&Some(i.id())))
        .count();
    let dup = per.values().filter(|&&n| n > 1).count();
    store.close()?;

    println!("hot swap under a steady stream of {rate} ev/s (batches of 16, passthrough plugin)");
    println!(
        "{:<14} {:>12} {:>16} {:>14}",
        "swap", "latency", "longest gap", "normal gap"
    );
    for (what, lat, gap) in &rows {
        println!(
            "{what:<14} {:>9.1} ms {:>13.1} ms {:>11.1} ms",
            lat.as_secs_f64() * 1e3,
            gap.as_secs_f64() * 1e3,
            normal.as_secs_f64() * 1e3
        );
    }
    println!(
        "events appended {appended}, inputs {}, reactions {}, lost {lost}, duplicated {dup}",
        ins.len(),
        outs.len()
    );
    println!(
        "targets: cache-hit latency <= 50 ms; longest gap <= 2 x normal gap; 0 lost, 0 duplicated"
    );

    // Shadow replay of the running version over the same log, against a
    // normal run over the same number of events.
    let plugin = Plugin::load(&rt, &v0, settings())?;
    let shadow = batpak_runtime::shadow(
        Box::new(plugin),
        &data,
        &tmp.path().join("scratch"),
        "passthrough",
        None,
        &ShadowRange::default(),
    )?;
    let sh_rate = shadow.events as f64 / shadow.elapsed.as_secs_f64();
    let store = Store::open(tmp.path().join("normal"))?;
    let batch: Vec<Proposal> = ins
        .iter()
        .map(|e| Proposal::new(e.coordinate().clone(), "bench.in", e.payload.to_vec()))
        .collect();
    for c in batch.chunks(1000) {
        store.append_batch(c.to_vec(), AppendOptions::visible())?;
    }
    store.sync()?;
    let n = ins.len() as u64;
    let t = Instant::now();
    let h = batpak_runtime::spawn(
        &store,
        Box::new(Plugin::load(&rt, &v0, settings())?),
        RunnerSettings {
            log_level: batpak_runtime::LogLevel::Warn,
            ..RunnerSettings::default()
        },
    )?;
    while !(h.status().snapshot(0).events_in >= n
        && h.status().is_idle_at(store.watermarks().durable))
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let run_rate = n as f64 / t.elapsed().as_secs_f64();
    Box::new(h).stop_and_join()?;
    store.close()?;
    println!(
        "shadow replay: {} events, {} identical, {:.0} ev/s; normal run (batches of 256): {:.0} ev/s",
        shadow.events, shadow.identical, sh_rate, run_rate
    );
    if lost > 0 || dup > 0 || !shadow.is_identical() {
        bail!("lost or duplicated reactions, or a self-shadow that differs");
    }
    Ok(())
}
