//! batpak-host's own store (`batpak_host::store`).

use crate::common::{
    capped_loop, payload, Cell, Deadline, Params, BATCH, ENTITIES, FILL_BATCH, THREADS,
};
use anyhow::{anyhow, Context, Result};
use batpak_store::{AppendOptions, Store};
use batpak_store::{Canal, CanalBatch, Cursor, Region};
use batpak_store::{Coordinate, Proposal};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KIND: &str = "bench.event";

fn coords() -> Result<Vec<Coordinate>> {
    (0..ENTITIES)
        .map(|e| Ok(Coordinate::new(format!("bench-{e}"), "bench")?))
        .collect()
}

/// (a) `append(p, accepted)` one at a time, `sync()` at the end: each append
/// returns once sequenced and queued (`AppendOptions::accepted()`), which is
/// the promise this workload asks for — nothing is durable before the final
/// `sync()`, as with batpak's default append and SQLite's open transaction.
/// With `accepted == false` each append also waits for its write
/// (`AppendOptions::visible()`): the appender writes its own frame.
pub fn single(dir: &Path, p: &Params, accepted: bool) -> Result<Cell> {
    let opts = if accepted {
        AppendOptions::accepted()
    } else {
        AppendOptions::visible()
    };
    let store = Store::open(dir)?;
    let coords = coords()?;
    let body = payload();
    let start = Instant::now();
    let (n, capped) = capped_loop(p.events, 256, p.cap, |from, to| {
        for i in from..to {
            let c = coords[(i as usize) % ENTITIES].clone();
            store.append(Proposal::new(c, KIND, body.clone()), opts.clone())?;
        }
        Ok(())
    })?;
    store.sync()?;
    let elapsed = start.elapsed();
    store.close()?;
    Ok(Cell::rate(n, elapsed, capped))
}

/// (b) `append_batch(256, durable)`.
pub fn batches(dir: &Path, p: &Params) -> Result<Cell> {
    let store = Store::open(dir)?;
    let coords = coords()?;
    let body = payload();
    let start = Instant::now();
    let (n, capped) = capped_loop(p.events, BATCH as u64, p.cap, |from, to| {
        let batch: Vec<Proposal> = (from..to)
            .map(|i| Proposal::new(coords[(i as usize) % ENTITIES].clone(), KIND, body.clone()))
            .collect();
        store.append_batch(batch, AppendOptions::durable())?;
        Ok(())
    })?;
    let elapsed = start.elapsed();
    store.close()?;
    Ok(Cell::rate(n, elapsed, capped))
}

/// (c) 16 threads sharing clones of one `Store`, each `append(p, durable)`.
pub fn threads(dir: &Path, p: &Params) -> Result<Cell> {
    let store = Store::open(dir)?;
    let per_thread = p.events.div_ceil(THREADS as u64);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Deadline::after(p.cap);
    let start = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let done = Arc::clone(&done);
            std::thread::spawn(move || -> Result<bool> {
                let coord = Coordinate::new(format!("thread-{t}"), "bench")?;
                let body = payload();
                for _ in 0..per_thread {
                    if deadline.passed() {
                        return Ok(true);
                    }
                    store.append(
                        Proposal::new(coord.clone(), KIND, body.clone()),
                        AppendOptions::durable(),
                    )?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(false)
            })
        })
        .collect();
    let mut capped = false;
    for h in handles {
        capped |= h
            .join()
            .map_err(|_| anyhow!("a writer thread panicked"))??;
    }
    let elapsed = start.elapsed();
    store.close()?;
    Ok(Cell::rate(done.load(Ordering::Relaxed), elapsed, capped))
}

/// Fills `dir` with `n` events in large batches, syncs, and — when
/// `unclean` — returns without closing, so the caller can exit the process
/// the way a crash would (no final snapshot, no clean shutdown).
pub fn fill(dir: &Path, n: u64, unclean: bool) -> Result<Option<Store>> {
    let store = Store::open(dir)?;
    let coords = coords()?;
    let body = payload();
    let mut i = 0u64;
    while i < n {
        let end = (i + FILL_BATCH as u64).min(n);
        let batch: Vec<Proposal> = (i..end)
            .map(|j| Proposal::new(coords[(j as usize) % ENTITIES].clone(), KIND, body.clone()))
            .collect();
        store.append_batch(batch, AppendOptions::visible())?;
        i = end;
    }
    store.sync()?;
    if unclean {
        return Ok(Some(store));
    }
    store.close()?;
    Ok(None)
}

/// The hidden `fill-host` subcommand: fill, sync, then exit without closing.
pub fn fill_and_die(dir: &Path, n: u64) -> Result<()> {
    let store = fill(dir, n, true)?;
    // Exit with the store still open: no close, no final snapshot, the
    // flusher and sync threads killed mid-flight. Everything was synced above, so this
    // is a crash after a durable point.
    std::mem::forget(store);
    std::process::exit(0);
}

/// Reopen results for the host store.
pub struct Reopen {
    /// Time to open after a clean close.
    pub clean: Cell,
    /// Time to open after the process died without closing.
    pub unclean: Cell,
    /// The open store, for the replay.
    pub store: Store,
}

/// (d) Fills in a child process that exits without closing, times the
/// unclean reopen, closes cleanly, then times the clean reopen.
pub fn reopen(dir: &Path, n: u64) -> Result<Reopen> {
    let exe = std::env::current_exe().context("locating the benchmark binary")?;
    let status = Command::new(&exe)
        .arg("fill-host")
        .arg("--dir")
        .arg(dir)
        .arg("--events")
        .arg(n.to_string())
        .status()
        .with_context(|| format!("running {} fill-host", exe.display()))?;
    anyhow::ensure!(status.success(), "fill-host child failed: {status}");

    let start = Instant::now();
    let store = Store::open(dir)?;
    let unclean_ms = start.elapsed().as_secs_f64() * 1000.0;
    check_count(&store, n)?;
    store.close()?;

    let start = Instant::now();
    let store = Store::open(dir)?;
    let clean_ms = start.elapsed().as_secs_f64() * 1000.0;
    check_count(&store, n)?;
    Ok(Reopen {
        clean: Cell::Millis(clean_ms),
        unclean: Cell::Millis(unclean_ms),
        store,
    })
}

fn check_count(store: &Store, n: u64) -> Result<()> {
    let w = store.watermarks();
    anyhow::ensure!(
        w.visible >= n && w.durable >= n,
        "reopened store shows visible {} / durable {}, expected at least {n}",
        w.visible,
        w.durable
    );
    Ok(())
}

/// (e) `Cursor` over `Region::all()`, `pull_batch(1024, 10 ms)` until empty.
pub fn replay(store: &Store, p: &Params) -> Result<Cell> {
    let mut cursor = Cursor::new(store, Region::all(), 0);
    let deadline = Deadline::after(p.cap);
    let start = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0usize;
    let mut capped = false;
    loop {
        if deadline.passed() {
            capped = true;
            break;
        }
        let batch = cursor.pull_batch(1024, Duration::from_millis(10))?;
        if let CanalBatch::Empty = batch {
            break;
        }
        for ev in batch.as_slice() {
            bytes += ev.payload.len();
        }
        count += batch.len() as u64;
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(
        capped || count == p.reopen_events,
        "replayed {count} events, expected {}",
        p.reopen_events
    );
    std::hint::black_box(bytes);
    Ok(Cell::rate(count, elapsed, capped))
}

/// The hidden `host-split` diagnostic: where the host store's time goes in
/// (a) and (b), as means per append or per batch, measured back to back.
pub fn split(dir: &Path, events: u64) -> Result<()> {
    use std::io::Write;
    let store = Store::open(dir.join("split"))?;
    let coords = coords()?;
    let body = payload();
    let per = |d: Duration, n: u64| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    for (name, opts) in [
        ("accepted", AppendOptions::accepted()),
        ("visible", AppendOptions::visible()),
    ] {
        let start = Instant::now();
        for i in 0..events {
            let c = coords[(i as usize) % ENTITIES].clone();
            store.append(Proposal::new(c, KIND, body.clone()), opts.clone())?;
        }
        let t = start.elapsed();
        let start = Instant::now();
        store.sync()?;
        println!(
            "(a) append {name:<8}: {:.2} us/append over {events}; final sync {:.2} ms",
            per(t, events),
            start.elapsed().as_secs_f64() * 1e3
        );
    }
    let batches = (events / BATCH as u64).max(1);
    let mk = |k: u64| -> Vec<Proposal> {
        (0..BATCH as u64)
            .map(|i| {
                Proposal::new(
                    coords[((k + i) as usize) % ENTITIES].clone(),
                    KIND,
                    body.clone(),
                )
            })
            .collect()
    };
    let (mut vis, mut syn, mut dur) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for k in 0..batches {
        let s = Instant::now();
        store.append_batch(mk(k), AppendOptions::visible())?;
        vis += s.elapsed();
        let s = Instant::now();
        store.sync()?;
        syn += s.elapsed();
        let s = Instant::now();
        store.append_batch(mk(k), AppendOptions::durable())?;
        dur += s.elapsed();
    }
    // The bare disk, same moment, same write size as one batch's frame.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw"))?;
    let buf = vec![0x5au8; BATCH * 130];
    let s = Instant::now();
    for _ in 0..batches {
        f.write_all(&buf)?;
        f.sync_data()?;
    }
    let raw = s.elapsed();
    println!("(b) per batch of {BATCH} ({batches} batches each):");
    println!(
        "    append_batch(visible) {:.0} us + sync() {:.0} us; append_batch(durable) {:.0} us",
        per(vis, batches),
        per(syn, batches),
        per(dur, batches)
    );
    println!(
        "    bare disk: write {} B + fdatasync {:.0} us",
        buf.len(),
        per(raw, batches)
    );
    store.close()?;
    Ok(())
}
