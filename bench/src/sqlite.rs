//! SQLite (rusqlite, bundled) as the peer most people would reach for: WAL
//! mode, `synchronous=FULL`, one `events` table with an index on
//! `(entity, seq)`. `id` is the rowid and plays the global sequence; `seq` is
//! the per-entity sequence, tracked by the application as a real event store
//! on SQLite would.

use crate::common::{
    capped_loop, payload, Cell, Deadline, Params, BATCH, ENTITIES, FILL_BATCH, THREADS,
};
use anyhow::{Context, Result};
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    entity TEXT NOT NULL,
    scope TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_entity_seq ON events(entity, seq);";

const INSERT: &str =
    "INSERT INTO events (entity, scope, kind, payload, seq) VALUES (?1, ?2, ?3, ?4, ?5)";

/// Opens (creating) the database in `dir` with WAL and `synchronous=FULL`.
fn open(dir: &Path) -> Result<Connection> {
    std::fs::create_dir_all(dir)?;
    let conn = Connection::open(dir.join("events.db"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "SQLite refused WAL mode (got {mode})"
    );
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn entities() -> Vec<String> {
    (0..ENTITIES).map(|e| format!("bench-{e}")).collect()
}

/// (a) single-row INSERTs through a prepared statement in one transaction,
/// committed (and so fsynced) once at the end.
pub fn single(dir: &Path, p: &Params) -> Result<Cell> {
    let mut conn = open(dir)?;
    let ents = entities();
    let mut seqs = vec![0u64; ENTITIES];
    let body = payload();
    let start = Instant::now();
    let tx = conn.transaction()?;
    let (n, capped) = {
        let mut stmt = tx.prepare_cached(INSERT)?;
        capped_loop(p.events, 256, p.cap, |from, to| {
            for i in from..to {
                let e = (i as usize) % ENTITIES;
                seqs[e] += 1;
                stmt.execute(params![ents[e], "bench", "bench.event", body, seqs[e]])?;
            }
            Ok(())
        })?
    };
    tx.commit()?;
    Ok(Cell::rate(n, start.elapsed(), capped))
}

/// (b) one transaction per batch of 256; each commit is durable.
pub fn batches(dir: &Path, p: &Params) -> Result<Cell> {
    let mut conn = open(dir)?;
    let ents = entities();
    let mut seqs = vec![0u64; ENTITIES];
    let body = payload();
    let start = Instant::now();
    let (n, capped) = capped_loop(p.events, BATCH as u64, p.cap, |from, to| {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(INSERT)?;
            for i in from..to {
                let e = (i as usize) % ENTITIES;
                seqs[e] += 1;
                stmt.execute(params![ents[e], "bench", "bench.event", body, seqs[e]])?;
            }
        }
        tx.commit()?;
        Ok(())
    })?;
    Ok(Cell::rate(n, start.elapsed(), capped))
}

/// (c) 16 threads, each with its own connection, single-row autocommit
/// INSERTs (each one durable), waiting on the write lock via busy_timeout.
pub fn threads(dir: &Path, p: &Params) -> Result<Cell> {
    drop(open(dir)?); // schema and WAL mode, once
    let per_thread = p.events.div_ceil(THREADS as u64);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Deadline::after(p.cap);
    let start = Instant::now();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let dir = dir.to_path_buf();
            let done = Arc::clone(&done);
            std::thread::spawn(move || -> Result<bool> {
                let conn = open(&dir)?;
                let entity = format!("thread-{t}");
                let body = payload();
                let mut stmt = conn.prepare_cached(INSERT)?;
                for seq in 1..=per_thread {
                    if deadline.passed() {
                        return Ok(true);
                    }
                    stmt.execute(params![entity, "bench", "bench.event", body, seq])?;
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
            .map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
    }
    Ok(Cell::rate(
        done.load(Ordering::Relaxed),
        start.elapsed(),
        capped,
    ))
}

/// Fills `dir` with `n` events (large transactions, not timed).
pub fn fill(dir: &Path, n: u64) -> Result<()> {
    let mut conn = open(dir)?;
    let ents = entities();
    let mut seqs = vec![0u64; ENTITIES];
    let body = payload();
    let mut i = 0u64;
    while i < n {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(INSERT)?;
            let end = (i + 100 * FILL_BATCH as u64).min(n);
            while i < end {
                let e = (i as usize) % ENTITIES;
                seqs[e] += 1;
                stmt.execute(params![ents[e], "bench", "bench.event", body, seqs[e]])?;
                i += 1;
            }
        }
        tx.commit()?;
    }
    conn.close().map_err(|(_, e)| e)?;
    Ok(())
}

/// (d) The equivalent of opening a store: open the connection, set WAL and
/// FULL sync, and read the highest sequence (what an appender needs next).
pub fn reopen(dir: &Path, n: u64) -> Result<(Cell, Connection)> {
    let start = Instant::now();
    let conn = open(dir)?;
    let max: i64 = conn.query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get(0))?;
    let elapsed = start.elapsed();
    anyhow::ensure!(
        max as u64 == n,
        "reopened database holds {max} events, expected {n}"
    );
    Ok((Cell::Millis(elapsed.as_secs_f64() * 1000.0), conn))
}

/// (e) Reads every event in global order, 1024 rows per query (`WHERE id >
/// last ORDER BY id LIMIT 1024`), touching every column.
pub fn replay(conn: &Connection, p: &Params) -> Result<Cell> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, entity, scope, kind, payload, seq FROM events WHERE id > ?1 ORDER BY id LIMIT 1024",
        )
        .context("preparing the replay query")?;
    let deadline = Deadline::after(p.cap);
    let start = Instant::now();
    let mut last = 0i64;
    let mut count = 0u64;
    let mut bytes = 0usize;
    let mut capped = false;
    loop {
        if deadline.passed() {
            capped = true;
            break;
        }
        let mut rows = stmt.query([last])?;
        let mut got = 0;
        while let Some(row) = rows.next()? {
            last = row.get(0)?;
            let entity = row.get_ref(1)?.as_str()?;
            let kind = row.get_ref(3)?.as_str()?;
            let payload = row.get_ref(4)?.as_blob()?;
            bytes += entity.len() + kind.len() + payload.len();
            got += 1;
        }
        if got == 0 {
            break;
        }
        count += got;
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
