//! Evidence of acknowledgement is never lost with one file (issue 16,
//! finding 9): the durable marker, the index snapshot and later segments
//! each say how far the log was acknowledged durable; a log that ends
//! before any of them lost acknowledged events and the store refuses to
//! open (`StoreError::AcknowledgedLoss`), and `verify` says so. Real files.

use batpak_store::{AppendOptions, Coordinate, Proposal, Store, StoreError, StoreOptions};
use std::path::{Path, PathBuf};

fn prop(i: u32) -> Proposal {
    Proposal::new(
        Coordinate::new(format!("acct:{}", i % 7), "test").unwrap(),
        "money.deposited",
        format!("{{\"amount\":{i},\"pad\":\"{}\"}}", "x".repeat(40)).into_bytes(),
    )
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// A store of `n` events appended one by one, durably, closed cleanly (so
/// the index snapshot covers all of them).
fn store_with(dir: &Path, n: u32, options: StoreOptions) {
    let store = Store::open_with(dir, options).unwrap();
    for i in 0..n {
        store.append(prop(i), AppendOptions::durable()).unwrap();
    }
    store.close().unwrap();
}

fn truncate(path: &Path, len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn a_truncated_last_segment_without_its_marker_is_refused_when_the_snapshot_covered_it() {
    let root = crate::tempdir().unwrap();
    let dir = root.path().join("d");
    store_with(&dir, 150, StoreOptions::default());
    let seg = segments(&dir).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    // Cut the last 101 events' bytes (mid-frame) and lose the marker.
    let cut_to = len - 101 * (len - 32) / 150 - 17;
    truncate(&seg, cut_to);
    std::fs::remove_file(dir.join("DURABLE")).unwrap();
    let before = std::fs::read(&seg).unwrap();
    match Store::open(&dir) {
        Err(StoreError::AcknowledgedLoss {
            segment,
            offset,
            reason,
            fix,
        }) => {
            assert_eq!(segment, 1);
            assert!(offset < cut_to, "{offset}");
            assert!(reason.contains("index.snap"), "{reason}");
            assert!(reason.contains("150 events"), "{reason}");
            assert!(fix.contains("backup"), "{fix}");
        }
        Err(e) => panic!("expected AcknowledgedLoss, got {e:?}"),
        Ok(s) => panic!(
            "the open cut acknowledged events as a torn tail: {:?}",
            s.recovery()
        ),
    }
    assert_eq!(std::fs::read(&seg).unwrap(), before, "nothing was cut");
    let rep = batpak_store::verify_dir(&dir).unwrap();
    assert!(!rep.is_sound());
    assert!(rep.tail_to_cut.is_none(), "{rep:?}");
    assert!(rep.open_error.unwrap().contains("index.snap"));

    // Cut on a frame boundary too: still shorter than the snapshot says.
    let root2 = crate::tempdir().unwrap();
    let dir2 = root2.path().join("d");
    store_with(&dir2, 150, StoreOptions::default());
    let seg2 = segments(&dir2).pop().unwrap();
    let frame = (std::fs::metadata(&seg2).unwrap().len() - 32) / 150;
    truncate(&seg2, 32 + 49 * frame);
    std::fs::remove_file(dir2.join("DURABLE")).unwrap();
    assert!(
        matches!(Store::open(&dir2), Err(StoreError::AcknowledgedLoss { .. })),
        "a log cut at a frame boundary before the snapshot's end"
    );
}

#[test]
fn a_torn_tail_without_marker_or_snapshot_is_refused_until_the_operator_accepts_it() {
    let root = crate::tempdir().unwrap();
    let dir = root.path().join("d");
    store_with(&dir, 20, StoreOptions::default());
    std::fs::remove_file(dir.join("index.snap")).unwrap();
    std::fs::remove_file(dir.join("DURABLE")).unwrap();
    let seg = segments(&dir).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    truncate(&seg, len - 5);
    let err = Store::open(&dir).expect_err("cannot tell a torn write from lost data");
    let text = err.to_string();
    let StoreError::AcknowledgedLoss { reason, fix, .. } = err else {
        panic!("expected AcknowledgedLoss, got {err:?}");
    };
    assert!(reason.contains("DURABLE"), "{reason}");
    assert!(fix.contains(": > DURABLE"), "{fix}");
    assert!(text.contains("Nothing was changed"), "{text}");
    assert_eq!(std::fs::metadata(&seg).unwrap().len(), len - 5);
    // The explicit step the message names: an empty marker says "I accept".
    std::fs::write(dir.join("DURABLE"), b"").unwrap();
    let store = Store::open(&dir).unwrap();
    let (_, _, cut) = store.recovery().truncated_tail.expect("the tail is cut");
    assert!(cut > 0);
    assert_eq!(
        store
            .scan(&batpak_store::Region::all(), 0, usize::MAX, false)
            .unwrap()
            .iter()
            .filter(|e| e.header.kind == "money.deposited")
            .count(),
        19
    );
    store.close().unwrap();
}

#[test]
fn a_deleted_last_segment_and_marker_are_reported_when_the_snapshot_covered_them() {
    let root = crate::tempdir().unwrap();
    let dir = root.path().join("d");
    let options = StoreOptions {
        segment_size: 4096,
        ..StoreOptions::default()
    };
    store_with(&dir, 200, options.clone());
    let segs = segments(&dir);
    assert!(segs.len() >= 3, "{segs:?}");
    let last = segs.last().unwrap();
    std::fs::remove_file(last).unwrap();
    std::fs::remove_file(dir.join("DURABLE")).unwrap();
    let rep = batpak_store::verify_dir(&dir).unwrap();
    assert!(
        !rep.is_sound(),
        "verify called a store with a lost segment sound"
    );
    let why = rep.open_error.clone().unwrap();
    assert!(
        why.contains(&format!("segment file {:08} is missing", segs.len())),
        "{why}"
    );
    assert!(why.contains("index.snap"), "{why}");
    match Store::open_with(&dir, options) {
        Err(StoreError::AcknowledgedLoss { segment, .. }) => {
            assert_eq!(segment as usize, segs.len());
        }
        other => panic!("expected AcknowledgedLoss, got {:?}", other.err()),
    }
}

#[test]
fn a_lost_marker_alone_is_reported_by_verify_and_recreated_by_an_open() {
    let root = crate::tempdir().unwrap();
    let dir = root.path().join("d");
    store_with(&dir, 5, StoreOptions::default());
    std::fs::remove_file(dir.join("DURABLE")).unwrap();
    let rep = batpak_store::verify_dir(&dir).unwrap();
    assert!(rep.open_error.is_none(), "{rep:?}");
    assert!(
        rep.problems.iter().any(|p| p.contains("DURABLE")),
        "{:?}",
        rep.problems
    );
    // The log is whole: the open keeps every event and writes a marker.
    let store = Store::open(&dir).unwrap();
    assert!(store.recovery().truncated_tail.is_none());
    store.close().unwrap();
    assert!(batpak_store::verify_dir(&dir).unwrap().is_sound());
}

#[test]
fn a_torn_tail_beyond_every_witness_is_still_cut() {
    // A write in progress when the process died: the marker and the
    // snapshot end before it, nothing intact after it.
    let root = crate::tempdir().unwrap();
    let dir = root.path().join("d");
    store_with(&dir, 30, StoreOptions::default());
    let seg = segments(&dir).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let mut frame = Vec::new();
    batpak_store::encode_frame(&[1, 0, 0, 0, 0, 9, 9, 9, 9], &mut frame);
    let f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut &f, &frame[..frame.len() - 3]).unwrap();
    drop(f);
    let rep = batpak_store::verify_dir(&dir).unwrap();
    assert!(rep.is_sound(), "{rep:?}");
    assert_eq!(rep.tail_to_cut.map(|t| t.1), Some(len));
    let store = Store::open(&dir).unwrap();
    assert_eq!(
        store.recovery().truncated_tail,
        Some((1, len, frame.len() as u64 - 3))
    );
    store.close().unwrap();
}

/// The periodic snapshot the flusher writes while the store is idle is
/// evidence too, so it must claim only what is on disk: after a power cut
/// right after it (with more accepted-only appends in the page cache), the
/// store opens and keeps everything the snapshot covered. Simulated disk.
#[test]
fn a_periodic_snapshot_never_claims_more_than_a_power_cut_keeps() {
    use batpak_store::SimDisk;
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let disk = SimDisk::new(0x5eed);
    let dir = Path::new("/sim/store");
    let options = StoreOptions {
        snapshot_every: 1,
        sync_interval: Duration::from_secs(3600),
        disk: Arc::new(disk.clone()),
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir, options.clone()).unwrap();
    for i in 0..10 {
        store.append(prop(i), AppendOptions::accepted()).unwrap();
    }
    // The flusher snapshots once idle (after 500 ms): wait for it, bounded.
    let snap = dir.join("index.snap");
    let deadline = Instant::now() + Duration::from_secs(20);
    while disk.read_file(&snap).is_none() {
        assert!(
            Instant::now() < deadline,
            "no periodic snapshot was written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 10..20 {
        store.append(prop(i), AppendOptions::accepted()).unwrap();
    }
    disk.power_cut();
    drop(store); // its threads find every handle dead
    let store = Store::open_with(dir, options).expect("a power cut is not a loss");
    let n = store
        .scan(&batpak_store::Region::all(), 0, usize::MAX, false)
        .unwrap()
        .len();
    assert!(n >= 10, "the events the snapshot covered are kept: {n}");
    store.close().unwrap();
}

/// Reads everything a lock-free reader hands out, or its error.
fn read_all(dir: &Path) -> Result<usize, StoreError> {
    let mut reader = batpak_store::LogReader::open(dir)?;
    let mut n = 0;
    loop {
        let batch = reader.poll(1 << 20)?;
        if batch.is_empty() {
            return Ok(n);
        }
        n += batch.len();
    }
}

/// The lock-free reader (`events` on a store no host runs) holds the log to
/// the index snapshot too (issue 16's leftover): with the last segment and
/// the durable marker deleted it reports the loss as an open does, typed,
/// instead of reading what is left as the whole log.
#[test]
fn a_reader_reports_a_deleted_last_segment_and_marker_when_the_snapshot_covered_them() {
    let root = crate::tempdir().unwrap();
    let dir = root.path().join("d");
    let options = StoreOptions {
        segment_size: 4096,
        ..StoreOptions::default()
    };
    store_with(&dir, 200, options);
    assert_eq!(read_all(&dir).unwrap(), 200, "a whole store reads whole");
    let segs = segments(&dir);
    assert!(segs.len() >= 3, "{segs:?}");
    std::fs::remove_file(segs.last().unwrap()).unwrap();
    std::fs::remove_file(dir.join("DURABLE")).unwrap();
    match read_all(&dir) {
        Err(StoreError::AcknowledgedLoss {
            segment, reason, ..
        }) => {
            assert_eq!(segment as usize, segs.len());
            assert!(
                reason.contains(&format!("segment file {:08} is missing", segs.len())),
                "{reason}"
            );
            assert!(reason.contains("index.snap"), "{reason}");
        }
        other => panic!("expected AcknowledgedLoss, got {other:?}"),
    }
}

/// The same when the last segment is cut short or damaged inside what the
/// snapshot covers,
/// without the marker: the reader reports lost acknowledged data rather
/// than a clean end or a write in progress. A damaged snapshot is no
/// evidence: the reader then reads what is there, as an open would.
#[test]
fn a_reader_reports_a_cut_or_damaged_last_segment_the_snapshot_covered() {
    let root = crate::tempdir().unwrap();
    let dir = root.path().join("d");
    store_with(&dir, 150, StoreOptions::default());
    let seg = segments(&dir).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    // About one event's frame (payloads differ by a few digits).
    let frame = (len - 32) / 150;
    std::fs::remove_file(dir.join("DURABLE")).unwrap();

    // Damaged inside the covered log, the last frame: no intact frame
    // after it, so only the snapshot tells it from a write in progress.
    let original = std::fs::read(&seg).unwrap();
    let mut bytes = original.clone();
    let flipped = len - frame + 20;
    bytes[flipped as usize] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    match read_all(&dir) {
        Err(StoreError::AcknowledgedLoss {
            segment,
            offset,
            reason,
            ..
        }) => {
            assert_eq!(segment, 1);
            assert!(offset <= flipped && offset > len - 2 * frame, "{offset}");
            assert!(reason.contains("index.snap, 150 events"), "{reason}");
        }
        other => panic!("expected AcknowledgedLoss, got {other:?}"),
    }
    std::fs::write(&seg, &original).unwrap();

    // Cut short: the segment ends where the snapshot says events were.
    truncate(&seg, 32 + 49 * frame);
    match read_all(&dir) {
        Err(StoreError::AcknowledgedLoss {
            segment,
            offset,
            reason,
            ..
        }) => {
            assert_eq!((segment, offset), (1, 32 + 49 * frame));
            assert!(reason.contains("index.snap, 150 events"), "{reason}");
        }
        other => panic!("expected AcknowledgedLoss, got {other:?}"),
    }

    // A damaged snapshot says nothing: the events left read as the log
    // (the cut may split one frame: a tail the reader stops before).
    let snap = dir.join("index.snap");
    let mut s = std::fs::read(&snap).unwrap();
    let last = s.len() - 1;
    s[last] ^= 0xff;
    std::fs::write(&snap, &s).unwrap();
    let n = read_all(&dir).unwrap();
    assert!((40..60).contains(&n), "{n}");
}
