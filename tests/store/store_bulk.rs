//! Bulk transactions (`Store::begin_bulk`): many part frames, one commit
//! frame — all or nothing under power loss and I/O faults at every point,
//! invisible to every reader until committed; and `LogReader` reading
//! frames of any size through `Disk`.

use batpak_store::{
    verify_dir, verify_dir_on, AppendOptions, Canal, Coordinate, Cursor, LogReader, Proposal,
    Region, SimDisk, SimError, SimOp, Store, StoreOptions, Subscription,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const PARTS: usize = 5;
const PER_PART: usize = 20;
const TOTAL: usize = PARTS * PER_PART;

fn options(disk: &SimDisk) -> StoreOptions {
    StoreOptions {
        // Small segments: the transaction spans several (rotations inside it).
        segment_size: 4096,
        queue_capacity: 64,
        sync_interval: Duration::from_millis(2),
        snapshot_every: 250_000,
        disk: Arc::new(disk.clone()),
        ..StoreOptions::default()
    }
}

fn event(kind: &str, i: usize) -> Proposal {
    Proposal::new(
        Coordinate::new(format!("e{}", i % 3), "bulk").unwrap(),
        kind,
        format!("{i}:{}", "x".repeat(100)).into_bytes(),
    )
}

fn part(p: usize) -> Vec<Proposal> {
    (0..PER_PART)
        .map(|i| event("bulk.line", p * PER_PART + i))
        .collect()
}

fn count_kind(store: &Store, kind: &str) -> usize {
    store
        .scan(&Region::all().kinds([kind]), 0, usize::MAX, false)
        .unwrap()
        .len()
}

fn reader_count(disk: &SimDisk, dir: &Path, kind: &str) -> usize {
    let mut r = LogReader::open_on(Arc::new(disk.clone()), dir).unwrap();
    let mut n = 0;
    loop {
        let b = r.poll(1 << 20).unwrap();
        if b.is_empty() {
            return n;
        }
        n += b.iter().filter(|e| e.header.kind == kind).count();
    }
}

/// Runs one bulk transaction of `PARTS` parts; `Ok` when it committed.
fn run_bulk(store: &Store) -> Result<u64, batpak_store::StoreError> {
    let mut b = store.begin_bulk()?;
    for p in 0..PARTS {
        b.append(part(p))?;
    }
    b.commit()
}

#[test]
fn bulk_is_all_or_nothing_when_any_write_or_sync_fails_then_power_is_lost() {
    let dir = Path::new("/sim/bulk");
    let mut kept = [0usize; 2];
    for op in [SimOp::Write, SimOp::Sync] {
        // Every write/sync from the first part to past the final fsync.
        for k in 0..14u64 {
            for seed in 0..3u64 {
                let disk = SimDisk::new(seed * 1000 + k);
                let store = Store::open_with(dir, options(&disk)).unwrap();
                store
                    .append(event("before", 0), AppendOptions::durable())
                    .unwrap();
                disk.fail(op, k, SimError::Eio);
                let committed = run_bulk(&store).is_ok();
                drop(store);
                disk.power_cut();
                let what = format!("{op:?} fault #{k}, seed {seed}");
                // `before` + `after` + (maybe) a recovered record.
                let store = Store::open_with(dir, options(&disk)).unwrap();
                let recovered = count_kind_system(&store);
                store.close().unwrap();
                let n = assert_all_or_nothing_with(&disk, dir, committed, &what, recovered);
                kept[usize::from(n > 0)] += 1;
            }
        }
    }
    // Both outcomes happened: the faults hit before and after the commit.
    assert!(kept[0] > 0 && kept[1] > 0, "outcomes (none, all): {kept:?}");
}

fn count_kind_system(store: &Store) -> usize {
    store
        .scan(
            &Region::all().kinds([batpak_store::RECOVERED_KIND]),
            0,
            usize::MAX,
            false,
        )
        .unwrap()
        .len()
}

fn assert_all_or_nothing_with(
    disk: &SimDisk,
    dir: &Path,
    committed: bool,
    what: &str,
    recovered: usize,
) -> usize {
    let store = Store::open_with(dir, options(disk)).unwrap_or_else(|e| panic!("{what}: {e}"));
    let n = count_kind(&store, "bulk.line");
    assert!(n == 0 || n == TOTAL, "{what}: {n} of {TOTAL} events kept");
    if committed {
        assert_eq!(n, TOTAL, "{what}: a committed transaction was lost");
    }
    let before = store.watermarks().visible;
    let r = store
        .append(event("after", 0), AppendOptions::durable())
        .unwrap();
    assert_eq!(
        r.sequence,
        before + 1,
        "{what}: sequence after the transaction"
    );
    assert_eq!(
        before as usize,
        1 + n + recovered,
        "{what}: events in the log"
    );
    store.close().unwrap();
    assert_eq!(reader_count(disk, dir, "bulk.line"), n, "{what}: LogReader");
    let rep = verify_dir_on(disk, dir).unwrap();
    assert!(rep.is_sound(), "{what}: verify: {:?}", rep.problems);
    assert_eq!(
        rep.events,
        before + 1,
        "{what}: verify counts only live events"
    );
    n
}

#[test]
fn bulk_power_cut_after_each_part_keeps_nothing_and_commit_keeps_all() {
    let dir = Path::new("/sim/bulk");
    for cut_after in 0..=PARTS {
        for seed in 0..4u64 {
            let disk = SimDisk::new(seed + 17 * cut_after as u64);
            let store = Store::open_with(dir, options(&disk)).unwrap();
            store
                .append(event("before", 0), AppendOptions::durable())
                .unwrap();
            let mut b = store.begin_bulk().unwrap();
            for p in 0..cut_after {
                b.append(part(p)).unwrap();
            }
            let committed = if cut_after == PARTS {
                b.commit().unwrap();
                true
            } else {
                // The process dies here: power goes before the commit.
                disk.power_cut();
                drop(b);
                false
            };
            drop(store);
            if committed {
                disk.power_cut();
            }
            let what = format!("cut after {cut_after} parts, seed {seed}");
            let store = Store::open_with(dir, options(&disk)).unwrap();
            let recovered = count_kind_system(&store);
            let info = store.recovery();
            if let Some((_, _, events)) = info.dropped_transaction {
                assert!(events > 0 && !committed, "{what}: {info:?}");
            }
            store.close().unwrap();
            let n = assert_all_or_nothing_with(&disk, dir, committed, &what, recovered);
            assert_eq!(n, if committed { TOTAL } else { 0 }, "{what}");
        }
    }
}

#[test]
fn bulk_is_invisible_to_readers_until_commit_and_concurrent_appends_go_after_it() {
    let tmp = crate::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(dir).unwrap();
    store
        .append(event("before", 0), AppendOptions::durable())
        .unwrap();
    let mut sub = Subscription::new(&store, Region::all(), 10_000);
    let mut cursor = Cursor::new(&store, Region::all(), 1);
    let mut b = store.begin_bulk().unwrap();
    for p in 0..PARTS {
        b.append(part(p)).unwrap();
    }
    // A concurrent append waits for the transaction.
    let s2 = store.clone();
    let other = std::thread::spawn(move || s2.append(event("other", 0), AppendOptions::durable()));
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !other.is_finished(),
        "an append went in while a bulk transaction was open"
    );
    assert_eq!(
        count_kind(&store, "bulk.line"),
        0,
        "the index shows uncommitted events"
    );
    assert_eq!(
        sub.pull_batch(1000, Duration::from_millis(50))
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        cursor
            .pull_batch(1000, Duration::from_millis(50))
            .unwrap()
            .len(),
        0
    );
    let mut lr = LogReader::open(dir).unwrap();
    assert!(lr
        .poll(1 << 20)
        .unwrap()
        .iter()
        .all(|e| e.header.kind != "bulk.line"));
    assert!(
        lr.uncommitted_transaction().is_some(),
        "LogReader reports the open transaction"
    );
    assert_eq!(b.commit().unwrap(), TOTAL as u64);
    let r = other.join().unwrap().unwrap();
    assert_eq!(
        r.sequence,
        2 + TOTAL as u64,
        "the concurrent append goes after the transaction"
    );
    assert_eq!(count_kind(&store, "bulk.line"), TOTAL);
    let mut seen = 0;
    while seen < TOTAL {
        let got = sub.pull_batch(1000, Duration::from_secs(5)).unwrap().len();
        assert!(got > 0, "subscription stalled at {seen}");
        seen += got;
    }
    let mut lr_n = 0;
    loop {
        let batch = lr.poll(1 << 20).unwrap();
        if batch.is_empty() {
            break;
        }
        lr_n += batch
            .iter()
            .filter(|e| e.header.kind == "bulk.line")
            .count();
    }
    assert_eq!(lr_n, TOTAL, "LogReader reads the committed transaction");
    // An abandoned transaction keeps nothing, and the log goes on.
    let mut b = store.begin_bulk().unwrap();
    b.append(part(0)).unwrap();
    b.abort();
    let r = store
        .append(event("after", 0), AppendOptions::durable())
        .unwrap();
    assert_eq!(r.sequence, 3 + TOTAL as u64);
    drop((sub, cursor));
    store.close().unwrap();
    let rep = verify_dir(dir).unwrap();
    assert!(rep.is_sound(), "{:?}", rep.problems);
    assert_eq!(rep.events, 3 + TOTAL as u64);
    let store = Store::open(dir).unwrap();
    assert_eq!(count_kind(&store, "bulk.line"), TOTAL);
    store.close().unwrap();
}

#[test]
fn log_reader_reads_a_frame_larger_than_its_old_window() {
    let tmp = crate::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    // One batch = one frame of about 90 MiB: more than the old read window of 16 + 64 MiB.
    let big: Vec<Proposal> = (0..90)
        .map(|i| {
            Proposal::new(
                Coordinate::new(format!("big:{i}"), "bulk").unwrap(),
                "big.payload",
                vec![b'a' + (i % 26) as u8; 1 << 20],
            )
        })
        .collect();
    store.append_batch(big, AppendOptions::durable()).unwrap();
    store
        .append(event("after", 0), AppendOptions::durable())
        .unwrap();
    store.close().unwrap();
    let mut r = LogReader::open(tmp.path()).unwrap();
    let mut n = 0;
    for _ in 0..10 {
        let b = r.poll(16 << 20).unwrap();
        if b.is_empty() {
            break;
        }
        n += b.len();
    }
    assert_eq!(n, 91, "every event, the large frame's and the one after it");
    assert_eq!(r.incomplete_tail(), None);
}

#[test]
fn log_reader_reports_a_failed_read_through_the_simulated_disk() {
    let dir = Path::new("/sim/reader");
    let disk = SimDisk::new(7);
    let store = Store::open_with(dir, options(&disk)).unwrap();
    for p in 0..3 {
        store
            .append_batch(part(p), AppendOptions::durable())
            .unwrap();
    }
    store.close().unwrap();
    for k in 0..6u64 {
        let mut r = LogReader::open_on(Arc::new(disk.clone()), dir).unwrap();
        disk.fail(SimOp::Read, k, SimError::Eio);
        let mut n = 0;
        let mut failed = false;
        for _ in 0..100 {
            match r.poll(1) {
                Ok(b) if b.is_empty() => break,
                Ok(b) => n += b.len(),
                Err(e) => {
                    assert!(
                        e.to_string().contains("Input/output error")
                            || e.to_string().contains("os error 5"),
                        "{e}"
                    );
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "read fault #{k} went unreported ({n} events read)");
        assert!(
            n < 3 * PER_PART,
            "read fault #{k}: a failed read must not look like the end"
        );
        // The fault does not stick: a fresh reader reads everything.
        assert_eq!(reader_count(&disk, dir, "bulk.line"), 3 * PER_PART);
    }
}
