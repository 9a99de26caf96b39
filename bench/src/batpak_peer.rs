//! batpak 0.10 (the published crate), through its public API only.
//!
//! - Payloads go through its MessagePack encoding: a 98-character string
//!   encodes to exactly 100 bytes (`0xd9 0x62` + text), the same size as the
//!   other systems' raw payloads.
//! - (a) `Store::append` with its default sync cadence (an fsync every 1000
//!   events, after the reply), then `Store::sync` at the end.
//! - (b) `Store::append_batch` of 256 items: batpak fsyncs every batch before
//!   it publishes it, so a returned batch is durable.
//! - (c) `Store::append_with_options` with a `DurabilityGate` on the durable
//!   watermark. A plain `append` returns before its fsync, so the gate is
//!   what makes it durable; the store is opened with its group commit
//!   (`sync_every_n_events(1)`, `group_commit_max_batch(16)`), which batpak
//!   only allows with an idempotency key on every append, so each append
//!   carries a fresh one.
//! - (e) `Store::cursor_guaranteed` + `Canal::pull_batch` gives index entries;
//!   each event's payload is then read with `Store::read_raw` (no JSON
//!   decoding), since a replay that does not read the events is not one.

use crate::common::{capped_loop, Cell, Deadline, Params, BATCH, ENTITIES, FILL_BATCH, THREADS};
use anyhow::{anyhow, Result};
use batpak::id::IdempotencyKey;
use batpak::prelude::{Coordinate, EventKind, Region, Store, StoreConfig};
use batpak::store::stats::WatermarkKind;
use batpak::store::{
    AppendOptions, BatchAppendItem, Canal, CanalBatch, CausationRef, DurabilityGate,
};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KIND: EventKind = EventKind::custom(0xF, 1);

/// The payload text: serialises (MessagePack str8) to exactly 100 bytes.
fn payload_text() -> String {
    let mut s = String::from("{\"sku\":\"widget-0042\",\"qty\":3,\"note\":\"benchmark payload\"");
    while s.len() < 97 {
        s.push('.');
    }
    s.push('}');
    debug_assert_eq!(s.len(), 98);
    s
}

/// The same payload as canonical MessagePack bytes, for batch items.
fn payload_msgpack() -> Vec<u8> {
    let text = payload_text();
    let mut v = vec![0xd9, text.len() as u8];
    v.extend_from_slice(text.as_bytes());
    v
}

fn coords() -> Result<Vec<Coordinate>> {
    (0..ENTITIES)
        .map(|e| Coordinate::new(format!("bench-{e}"), "bench").map_err(|e| anyhow!("{e}")))
        .collect()
}

fn err(e: batpak::prelude::StoreError) -> anyhow::Error {
    anyhow!("batpak: {e}")
}

/// (a) one at a time with the default sync cadence, `sync()` at the end.
pub fn single(dir: &Path, p: &Params) -> Result<Cell> {
    let store = Store::open(StoreConfig::new(dir)).map_err(err)?;
    let coords = coords()?;
    let body = payload_text();
    let start = Instant::now();
    let (n, capped) = capped_loop(p.events, 256, p.cap, |from, to| {
        for i in from..to {
            let _receipt = store
                .append(&coords[(i as usize) % ENTITIES], KIND, &body)
                .map_err(err)?;
        }
        Ok(())
    })?;
    store.sync().map_err(err)?;
    let elapsed = start.elapsed();
    store.close().map_err(err)?;
    Ok(Cell::rate(n, elapsed, capped))
}

/// (b) `append_batch` of 256 items; each returned batch is durable.
pub fn batches(dir: &Path, p: &Params) -> Result<Cell> {
    let store = Store::open(StoreConfig::new(dir)).map_err(err)?;
    let coords = coords()?;
    let body = payload_msgpack();
    let start = Instant::now();
    let (n, capped) = capped_loop(p.events, BATCH as u64, p.cap, |from, to| {
        let items: Vec<BatchAppendItem> = (from..to)
            .map(|i| {
                BatchAppendItem::from_msgpack_bytes(
                    coords[(i as usize) % ENTITIES].clone(),
                    KIND,
                    body.clone(),
                    AppendOptions::new(),
                    CausationRef::None,
                )
            })
            .collect();
        store.append_batch(items).map_err(err)?;
        Ok(())
    })?;
    let elapsed = start.elapsed();
    store.close().map_err(err)?;
    Ok(Cell::rate(n, elapsed, capped))
}

/// (c) 16 threads, each appending with a durable gate, group commit on.
pub fn threads(dir: &Path, p: &Params) -> Result<Cell> {
    let config = StoreConfig::new(dir)
        .with_sync_every_n_events(1)
        .with_group_commit_max_batch(THREADS as u32);
    let store = Arc::new(Store::open(config).map_err(err)?);
    let per_thread = p.events.div_ceil(THREADS as u64);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Deadline::after(p.cap);
    let start = Instant::now();
    let handles: Vec<_> =
        (0..THREADS)
            .map(|t| {
                let store = Arc::clone(&store);
                let done = Arc::clone(&done);
                std::thread::spawn(move || -> Result<bool> {
                    let coord = Coordinate::new(format!("thread-{t}"), "bench")
                        .map_err(|e| anyhow!("{e}"))?;
                    let body = payload_text();
                    for i in 0..per_thread {
                        if deadline.passed() {
                            return Ok(true);
                        }
                        let key = IdempotencyKey::from_u128(((t as u128 + 1) << 64) | i as u128);
                        let opts = AppendOptions::new().with_idempotency(key).with_gate(
                            DurabilityGate::new(WatermarkKind::Durable, Duration::from_secs(60)),
                        );
                        let _receipt = store
                            .append_with_options(&coord, KIND, &body, opts)
                            .map_err(err)?;
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
    let store = Arc::into_inner(store).ok_or_else(|| anyhow!("store still shared"))?;
    store.close().map_err(err)?;
    Ok(Cell::rate(done.load(Ordering::Relaxed), elapsed, capped))
}

/// Fills `dir` with `n` events in large batches and closes cleanly (not
/// timed).
pub fn fill(dir: &Path, n: u64) -> Result<()> {
    let config = StoreConfig::new(dir)
        .with_batch_max_size(FILL_BATCH as u32)
        .with_batch_max_bytes(16 << 20);
    let store = Store::open(config).map_err(err)?;
    let coords = coords()?;
    let body = payload_msgpack();
    let mut i = 0u64;
    while i < n {
        let end = (i + FILL_BATCH as u64).min(n);
        let items: Vec<BatchAppendItem> = (i..end)
            .map(|j| {
                BatchAppendItem::from_msgpack_bytes(
                    coords[(j as usize) % ENTITIES].clone(),
                    KIND,
                    body.clone(),
                    AppendOptions::new(),
                    CausationRef::None,
                )
            })
            .collect();
        store.append_batch(items).map_err(err)?;
        i = end;
    }
    store.close().map_err(err)?;
    Ok(())
}

/// (d) `Store::open` of the filled store.
pub fn reopen(dir: &Path) -> Result<(Cell, Store)> {
    let start = Instant::now();
    let store = Store::open(StoreConfig::new(dir)).map_err(err)?;
    let elapsed = start.elapsed();
    Ok((Cell::Millis(elapsed.as_secs_f64() * 1000.0), store))
}

/// (e) cursor over every event, reading each payload.
pub fn replay(store: &Store, p: &Params) -> Result<Cell> {
    let mut cursor = store.cursor_guaranteed(&Region::all());
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
        let batch = cursor
            .pull_batch(1024, Duration::from_millis(10))
            .map_err(|e| anyhow!("batpak cursor: {e}"))?;
        if let CanalBatch::Empty = batch {
            break;
        }
        let entries = match batch {
            CanalBatch::One(e) => vec![e],
            CanalBatch::Many(v) => v,
            CanalBatch::Empty => Vec::new(),
        };
        for entry in entries {
            // The cursor also yields batpak's own system events (a handful
            // per store); read and count only the benchmark's events.
            if entry.event_kind() != KIND {
                continue;
            }
            let ev = store.read_raw(entry.event_id()).map_err(err)?;
            bytes += ev.event.payload.len();
            count += 1;
        }
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
