//! Power loss and I/O faults on a simulated disk ([`SimDisk`]).
//!
//! Property: random appends, batches, durable waits, checkpoints and clean
//! reopens, then a power cut at a random moment (un-synced writes dropped or
//! torn at a random byte, un-synced directory changes undone) → the store
//! reopens, every append acknowledged durable is there unchanged and exactly
//! once, and no batch is partly visible.
//!
//! Case counts are bounded for CI; a longer run:
//! `BATPAK_POWER_CASES=5000 BATPAK_FAULT_CASES=2000 cargo test --release -p batpak-store --test store power`.
//! Every case prints nothing unless it fails; a failure prints its seed and
//! op list (proptest), which reproduce it.

use batpak_store::{
    AppendOptions, CheckpointUpdate, Coordinate, EventId, Notices, Proposal, Region, SimDisk,
    SimError, SimOp, Store, StoreError, StoreNotice, StoreOptions,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn cases(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn options(disk: &SimDisk) -> StoreOptions {
    StoreOptions {
        segment_size: 1500,
        queue_capacity: 64,
        sync_interval: Duration::from_millis(2),
        snapshot_every: 250_000,
        disk: Arc::new(disk.clone()),
        ..StoreOptions::default()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append { entity: u8, len: u8, wait: u8 },
    Batch { n: u8, wait: u8 },
    Sync,
    Checkpoint,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, any::<u8>(), 0u8..3).prop_map(|(entity, len, wait)| Op::Append { entity, len, wait }),
        2 => (1u8..6, 0u8..3).prop_map(|(n, wait)| Op::Batch { n, wait }),
        1 => Just(Op::Sync),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
    ]
}

fn opts(wait: u8) -> AppendOptions {
    match wait {
        0 => AppendOptions::accepted(),
        1 => AppendOptions::visible(),
        _ => AppendOptions::durable(),
    }
}

fn proposal(entity: u8, len: usize, tag: u64) -> Proposal {
    let mut payload = format!("{tag}:").into_bytes();
    payload.resize(payload.len() + len, b'x');
    Proposal::new(
        Coordinate::new(format!("e{entity}"), "power").unwrap(),
        "power.test",
        payload,
    )
}

fn check(ok: bool, what: String) -> Result<(), TestCaseError> {
    if ok {
        Ok(())
    } else {
        Err(TestCaseError::fail(what))
    }
}

/// One case; returns whether the cut happened while the store was open.
fn power_case(
    seed: u64,
    ops: &[Op],
    cut_at: usize,
    snapshot_every: u64,
) -> Result<(), TestCaseError> {
    let options = |disk: &SimDisk| StoreOptions {
        snapshot_every,
        ..options(disk)
    };
    let disk = SimDisk::new(seed);
    let dir = Path::new("/sim/store");
    let mut store = Store::open_with(dir, options(&disk))
        .map_err(|e| TestCaseError::fail(format!("first open: {e}")))?;
    // Durable acknowledgements: id -> (sequence, payload).
    let mut durable: HashMap<EventId, (u64, Vec<u8>)> = HashMap::new();
    // Every batch's ids, acknowledged or not.
    let mut batches: Vec<Vec<EventId>> = Vec::new();
    let mut not_yet_durable: Vec<(EventId, u64, Vec<u8>)> = Vec::new();
    let mut tag = 0u64;
    for (i, op) in ops.iter().enumerate() {
        if i == cut_at {
            break;
        }
        match op {
            Op::Append { entity, len, wait } => {
                tag += 1;
                let p = proposal(*entity, *len as usize, tag);
                let payload = p.payload.clone();
                let r = store
                    .append(p, opts(*wait))
                    .map_err(|e| TestCaseError::fail(format!("append: {e}")))?;
                batches.push(vec![r.id]);
                if *wait == 2 {
                    durable.insert(r.id, (r.sequence, payload));
                } else {
                    not_yet_durable.push((r.id, r.sequence, payload));
                }
            }
            Op::Batch { n, wait } => {
                let ps: Vec<Proposal> = (0..*n)
                    .map(|k| {
                        tag += 1;
                        proposal(k % 3, 40, tag)
                    })
                    .collect();
                let payloads: Vec<Vec<u8>> = ps.iter().map(|p| p.payload.clone()).collect();
                let rs = store
                    .append_batch(ps, opts(*wait))
                    .map_err(|e| TestCaseError::fail(format!("batch: {e}")))?;
                batches.push(rs.iter().map(|r| r.id).collect());
                for (r, p) in rs.iter().zip(payloads) {
                    if *wait == 2 {
                        durable.insert(r.id, (r.sequence, p));
                    } else {
                        not_yet_durable.push((r.id, r.sequence, p));
                    }
                }
            }
            Op::Sync => {
                store
                    .sync()
                    .map_err(|e| TestCaseError::fail(format!("sync: {e}")))?;
                for (id, s, p) in not_yet_durable.drain(..) {
                    durable.insert(id, (s, p));
                }
            }
            Op::Checkpoint => {
                let w = store.watermarks();
                if w.visible > 0 {
                    let ev = store.get_by_sequence(w.visible).unwrap().unwrap();
                    let cp = CheckpointUpdate {
                        cursor: "c".into(),
                        region: Region::all().fingerprint(),
                        sequence: w.visible,
                        event_id: ev.header.id,
                    };
                    let rs = store
                        .append_batch(Vec::new(), AppendOptions::durable().with_checkpoint(cp))
                        .map_err(|e| TestCaseError::fail(format!("checkpoint: {e}")))?;
                    check(rs.is_empty(), "checkpoint returns no receipts".into())?;
                }
            }
            Op::Reopen => {
                store
                    .close()
                    .map_err(|e| TestCaseError::fail(format!("close: {e}")))?;
                for (id, s, p) in not_yet_durable.drain(..) {
                    durable.insert(id, (s, p));
                }
                store = Store::open_with(dir, options(&disk))
                    .map_err(|e| TestCaseError::fail(format!("reopen: {e}")))?;
            }
        }
    }
    disk.power_cut();
    drop(store); // its threads find every handle dead
    let store = Store::open_with(dir, options(&disk))
        .map_err(|e| TestCaseError::fail(format!("open after power cut: {e}")))?;
    let all = store.scan(&Region::all(), 0, usize::MAX, true).unwrap();
    let mut seen = HashSet::new();
    for (i, e) in all.iter().enumerate() {
        check(
            seen.insert(e.header.id),
            format!("event {} appears twice", e.header.id),
        )?;
        check(
            e.header.sequence == i as u64 + 1,
            "sequences are 1, 2, … without a gap".into(),
        )?;
    }
    let by_id: HashMap<EventId, &batpak_store::Event> =
        all.iter().map(|e| (e.header.id, e)).collect();
    for (id, (s, p)) in &durable {
        let e = by_id.get(id);
        check(
            e.is_some(),
            format!("durable event {id} (sequence {s}) lost"),
        )?;
        let e = e.unwrap();
        check(
            e.header.sequence == *s && &*e.payload == p.as_slice(),
            format!("durable event {id} changed"),
        )?;
    }
    for b in &batches {
        let present = b.iter().filter(|id| by_id.contains_key(id)).count();
        check(
            present == 0 || present == b.len(),
            format!("batch partly visible: {present} of {}", b.len()),
        )?;
    }
    let rep = store.verify().unwrap();
    check(
        rep.is_sound(),
        format!("verify after reopen: {:?}", rep.problems),
    )?;
    store.close().unwrap();
    Ok(())
}

#[test]
fn power_cut_at_a_random_moment_keeps_every_durable_acknowledgement() {
    let n = cases("BATPAK_POWER_CASES", 96);
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        any::<u64>(),
        proptest::collection::vec(op(), 1..30),
        0usize..32,
    );
    let result = runner.run(&strategy, |(seed, ops, cut_at)| {
        power_case(seed, &ops, cut_at, 250_000)
    });
    eprintln!("power cuts tried: {n} (set BATPAK_POWER_CASES for more)");
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The index snapshot is evidence of acknowledgement (recovery refuses a
/// log shorter than it): a snapshot written while the store runs must never
/// claim more than a power cut keeps, or a reopen would refuse a healthy
/// store. Snapshots every few events, power cut at a random moment.
#[test]
fn power_cut_with_frequent_snapshots_opens_and_keeps_every_durable_acknowledgement() {
    let n = cases("BATPAK_POWER_CASES", 96);
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        any::<u64>(),
        proptest::collection::vec(op(), 1..30),
        0usize..32,
        1u64..5,
    );
    let result = runner.run(&strategy, |(seed, ops, cut_at, every)| {
        power_case(seed, &ops, cut_at, every)
    });
    eprintln!("power cuts with snapshots every 1-4 events tried: {n}");
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// One fault case: arm `op` to fail after `after` calls, append until the
/// store fails; then everything must be fail-stop, and a reopen keeps every
/// durable acknowledgement.
fn fault_case(seed: u64, op: SimOp, after: u64, error: SimError) -> Result<bool, TestCaseError> {
    let disk = SimDisk::new(seed);
    let dir = Path::new("/sim/faults");
    let store = Store::open_with(dir, options(&disk))
        .map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
    disk.fail(op, after, error);
    let mut durable: Vec<(EventId, u64)> = Vec::new();
    let mut failed = None;
    for i in 0..60u64 {
        let ps = vec![proposal((i % 3) as u8, 100, i), proposal(3, 10, i)];
        match store.append_batch(ps, AppendOptions::durable()) {
            Ok(rs) => durable.extend(rs.iter().map(|r| (r.id, r.sequence))),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let fired = disk.faults_fired() > 0;
    if let Some(e) = failed {
        check(
            matches!(e, StoreError::Poisoned(_)),
            format!("first failure is fail-stop: {e:?}"),
        )?;
        // Fail-stop: every later write and wait is refused with the cause.
        let again = store.append(proposal(0, 1, 999), AppendOptions::visible());
        check(
            matches!(again, Err(StoreError::Poisoned(_))),
            format!("write after failure: {again:?}"),
        )?;
        check(
            matches!(store.sync(), Err(StoreError::Poisoned(_))),
            "sync after failure".into(),
        )?;
        check(
            matches!(
                store.wait_durable(u64::MAX, Duration::from_secs(5)),
                Err(StoreError::Poisoned(_))
            ),
            "wait_durable after failure".into(),
        )?;
    }
    drop(store);
    disk.power_cut();
    let store = Store::open_with(dir, options(&disk))
        .map_err(|e| TestCaseError::fail(format!("reopen after fault: {e}")))?;
    for (id, s) in durable {
        let e = store.get(id).unwrap();
        check(
            e.is_some_and(|e| e.header.sequence == s),
            format!("durable event {id} lost after fault"),
        )?;
    }
    store.close().unwrap();
    Ok(fired)
}

#[test]
fn io_faults_make_the_store_fail_stop_and_lose_nothing_acknowledged() {
    let n = cases("BATPAK_FAULT_CASES", 64);
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let fired = std::sync::atomic::AtomicU64::new(0);
    let strategy = (
        any::<u64>(),
        prop_oneof![
            Just(SimOp::Write),
            Just(SimOp::Sync),
            Just(SimOp::Rename),
            Just(SimOp::SyncDir)
        ],
        0u64..40,
        prop_oneof![Just(SimError::Eio), Just(SimError::Enospc)],
    );
    let result = runner.run(&strategy, |(seed, op, after, err)| {
        if fault_case(seed, op, after, err)? {
            fired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    });
    eprintln!(
        "I/O fault cases tried: {n}, faults fired: {} (set BATPAK_FAULT_CASES for more)",
        fired.load(std::sync::atomic::Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn all_durable_waiters_wake_with_the_error_when_fsync_fails() {
    let disk = SimDisk::new(7);
    let dir = Path::new("/sim/waiters");
    let store = Store::open_with(dir, options(&disk)).unwrap();
    disk.fail(SimOp::Sync, 0, SimError::Eio);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let s = store.clone();
            std::thread::spawn(move || {
                s.append(proposal(i, 10, i as u64), AppendOptions::durable())
            })
        })
        .collect();
    for h in handles {
        match h.join().unwrap() {
            Err(StoreError::Poisoned(why)) => assert!(why.contains("fsync"), "{why}"),
            Ok(_) => {} // made durable by a sync before the fault fired
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert!(disk.faults_fired() == 1);
    assert!(matches!(store.sync(), Err(StoreError::Poisoned(_))));
}

/// `Store::close` returns what the clean shutdown failed to do (here the
/// index snapshot's rename), instead of only printing it; the log is intact.
#[test]
fn close_returns_a_failed_snapshot_write() {
    let disk = SimDisk::new(3);
    let dir = Path::new("/sim/close");
    let store = Store::open_with(dir, options(&disk)).unwrap();
    let r = store
        .append(proposal(0, 10, 1), AppendOptions::durable())
        .unwrap();
    disk.fail(SimOp::Rename, 0, SimError::Eio);
    let err = store
        .close()
        .expect_err("a failed snapshot on close is returned");
    assert!(
        matches!(err, StoreError::Io { .. }) && err.to_string().contains("snapshot"),
        "{err}"
    );
    assert_eq!(disk.faults_fired(), 1);
    let store = Store::open_with(dir, options(&disk)).unwrap();
    assert_eq!(store.get(r.id).unwrap().map(|e| e.header.sequence), Some(1));
    store.close().unwrap();
}

/// The store prints nothing: what no call returns — a failed periodic
/// snapshot, a failed close when the last handle is dropped — goes to the
/// owner's `Notices`, typed. The log is intact either way.
#[test]
fn background_failures_go_to_the_owners_notices_not_to_stderr() {
    let disk = SimDisk::new(4);
    let dir = Path::new("/sim/notices");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx = std::sync::Mutex::new(tx);
    let options = StoreOptions {
        snapshot_every: 1,
        notices: Notices::to(move |n| {
            let what = match n {
                StoreNotice::SnapshotFailed(StoreError::Io { .. }) => "snapshot",
                StoreNotice::CloseFailed(StoreError::Io { .. }) => "close",
                _ => "other",
            };
            let _ = tx.lock().unwrap().send(format!("{what}: {n}"));
        }),
        ..options(&disk)
    };
    let store = Store::open_with(dir, options.clone()).unwrap();
    // Only a snapshot renames a file. The flusher writes one once the store
    // is idle (500 ms) after the append.
    disk.fail(SimOp::Rename, 0, SimError::Eio);
    let r = store
        .append(proposal(0, 10, 1), AppendOptions::durable())
        .unwrap();
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the failed periodic snapshot is reported");
    assert!(
        got.starts_with("snapshot: periodic index snapshot failed"),
        "{got}"
    );
    // Dropped without `close`: the failed final snapshot is reported too.
    disk.fail(SimOp::Rename, 0, SimError::Eio);
    drop(store);
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the failed close on drop is reported");
    assert!(got.starts_with("close: closing the store: "), "{got}");
    let store = Store::open_with(dir, options).unwrap();
    assert_eq!(store.get(r.id).unwrap().map(|e| e.header.sequence), Some(1));
    store.close().unwrap();
}
