//! The store's promises, on real files: atomic batches, idempotency across
//! restarts, optimistic concurrency, the causal graph and entity chains,
//! rotation, snapshots, the single-owner lock, torn tails and corruption,
//! cursors (durable-only, checkpointed, region-bound) and lossy
//! subscriptions (cut off and told so).

use batpak_store::{AppendOptions, Store, StoreError, StoreOptions};
use batpak_store::{Canal, CanalBatch, CloseReason, Cursor, Region, Subscription};
use batpak_store::{Coordinate, EventId, Proposal};
use std::path::Path;
use std::time::Duration;

fn prop(entity: &str, kind: &str, payload: &str) -> Proposal {
    Proposal::new(
        Coordinate::new(entity, "test").unwrap(),
        kind,
        payload.as_bytes().to_vec(),
    )
}

fn all(store: &Store) -> Vec<batpak_store::Event> {
    store.scan(&Region::all(), 0, usize::MAX, false).unwrap()
}

fn last_segment(dir: &Path) -> std::path::PathBuf {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v.pop().unwrap()
}

#[test]
fn batch_is_atomic_ordered_and_survives_reopen() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let rs = store
        .append_batch(
            vec![
                prop("a", "k", "1"),
                prop("b", "k", "2"),
                prop("a", "k", "3"),
            ],
            AppendOptions::durable(),
        )
        .unwrap();
    assert_eq!(
        rs.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(rs[2].entity_sequence, 2);
    // A batch with one invalid proposal appends nothing.
    let mut invalid = prop("c", "k", "5");
    invalid.coordinate.entity = "bad\nname".into();
    let bad = store.append_batch(vec![prop("c", "k", "4"), invalid], AppendOptions::durable());
    assert!(
        matches!(bad, Err(StoreError::Invalid { index: 1, .. })),
        "{bad:?}"
    );
    assert_eq!(store.watermarks().visible, 3);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let evs = all(&store);
    assert_eq!(evs.len(), 3);
    assert_eq!(&*evs[1].payload, b"2");
    assert_eq!(store.get(rs[0].id).unwrap().unwrap().sequence(), 1);
    // Clean close wrote a snapshot: nothing had to be replayed.
    assert_eq!(store.recovery().replayed, 0);
}

#[test]
fn idempotency_key_returns_the_original_receipt_also_after_restart() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = store
        .append(
            prop("a", "k", "x").idempotency_key("pay-1"),
            AppendOptions::durable(),
        )
        .unwrap();
    let again = store
        .append(
            prop("a", "k", "x").idempotency_key("pay-1"),
            AppendOptions::durable(),
        )
        .unwrap();
    assert!(again.deduplicated);
    assert_eq!((again.id, again.sequence), (first.id, first.sequence));
    drop(store); // no close: the drop path must be just as safe
    let store = Store::open(dir.path()).unwrap();
    let after = store
        .append(
            prop("a", "k", "x").idempotency_key("pay-1"),
            AppendOptions::durable(),
        )
        .unwrap();
    assert!(after.deduplicated);
    assert_eq!(after.id, first.id);
    assert_eq!(all(&store).len(), 1);
}

#[test]
fn optimistic_concurrency_refuses_stale_writers() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut p = prop("acct", "k", "1");
    p.expected_sequence = Some(0);
    store.append(p, AppendOptions::visible()).unwrap();
    let mut stale = prop("acct", "k", "2");
    stale.expected_sequence = Some(0);
    match store.append(stale, AppendOptions::visible()) {
        Err(StoreError::SequenceConflict {
            expected: 0,
            actual: 1,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    let mut fresh = prop("acct", "k", "3");
    fresh.expected_sequence = Some(1);
    assert_eq!(
        store
            .append(fresh, AppendOptions::visible())
            .unwrap()
            .entity_sequence,
        2
    );
}

#[test]
fn a_batch_refused_after_its_first_events_leaves_no_trace() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let base = store
        .append(prop("acct", "k", "0"), AppendOptions::visible())
        .unwrap();
    // Two events that would be sequenced (one on a known entity, one on a
    // new entity with a key), then one that conflicts: nothing may remain.
    let mut stale = prop("acct", "k", "stale");
    stale.expected_sequence = Some(0);
    let refused = store.append_batch(
        vec![
            prop("acct", "k", "1"),
            prop("fresh", "k", "2").idempotency_key("key-1"),
            stale,
        ],
        AppendOptions::visible(),
    );
    assert!(
        matches!(refused, Err(StoreError::SequenceConflict { .. })),
        "{refused:?}"
    );
    let next = store
        .append(prop("acct", "k", "3"), AppendOptions::visible())
        .unwrap();
    assert_eq!(
        next.entity_sequence, 2,
        "the refused batch moved acct's head"
    );
    assert_eq!(next.sequence, base.sequence + 1);
    let keyed = store
        .append(
            prop("fresh", "k", "4").idempotency_key("key-1"),
            AppendOptions::visible(),
        )
        .unwrap();
    assert!(!keyed.deduplicated, "the refused batch's key was kept");
    assert_eq!(keyed.entity_sequence, 1);
    let events = store.entity_events("acct", 0, 10).unwrap();
    assert_eq!(events.len(), 2);
    let prev = events[1].header.prev.expect("a chain link");
    assert_eq!(prev.id, base.id, "the chain skips the refused event");
    assert!(store.verify().unwrap().is_sound());
}

#[test]
fn causal_graph_links_both_ways_and_chain_uses_id_and_hash() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let root = store
        .append(prop("order:1", "placed", "same"), AppendOptions::visible())
        .unwrap();
    let child = store
        .append(
            prop("sku:1", "reserved", "same").caused_by(root.id),
            AppendOptions::visible(),
        )
        .unwrap();
    let grandchild = store
        .append(
            prop("order:1", "shipped", "same").caused_by(child.id),
            AppendOptions::visible(),
        )
        .unwrap();
    let g = store.get(grandchild.id).unwrap().unwrap();
    assert_eq!(g.header.causation, Some(child.id));
    assert_eq!(
        g.header.correlation, root.id,
        "correlation is inherited through the chain"
    );
    assert_eq!(store.caused_by(root.id), vec![child.id]);
    // Identical payloads, distinct hashes: the chain links by id and a hash
    // over header and payload.
    assert_ne!(root.hash, grandchild.hash);
    let link = g.header.prev.unwrap();
    assert_eq!(link.id, root.id);
    assert_eq!(link.hash, root.hash);
    let unknown = store.append(
        prop("x", "k", "").caused_by(EventId(12345)),
        AppendOptions::visible(),
    );
    assert!(
        matches!(unknown, Err(StoreError::UnknownCausation { .. })),
        "{unknown:?}"
    );
    let reserved = store.append(prop("x", "batpak.fake", ""), AppendOptions::visible());
    assert!(matches!(reserved, Err(StoreError::Invalid { .. })));
}

#[test]
fn second_opener_is_refused_and_told_who_holds_the_store() {
    let dir = crate::tempdir().unwrap();
    let _store = Store::open(dir.path()).unwrap();
    match Store::open(dir.path()) {
        Err(StoreError::Locked { holder, .. }) => {
            assert!(
                holder.contains(&format!("pid {}", std::process::id())),
                "{holder}"
            )
        }
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn rotation_and_snapshot_reopen_keep_everything_readable() {
    let dir = crate::tempdir().unwrap();
    let opts = StoreOptions {
        segment_size: 4096,
        snapshot_every: 50,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), opts.clone()).unwrap();
    for i in 0..300 {
        store
            .append(
                prop(&format!("e{}", i % 7), "k", &format!("payload-{i:04}")),
                AppendOptions::accepted(),
            )
            .unwrap();
    }
    store.sync().unwrap();
    store.close().unwrap();
    assert!(
        std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .count()
            > 3,
        "rotated"
    );
    // A damaged snapshot is ignored, never trusted.
    let snap = dir.path().join("index.snap");
    let mut b = std::fs::read(&snap).unwrap();
    let n = b.len();
    b[n / 2] ^= 0xff;
    std::fs::write(&snap, b).unwrap();
    let store = Store::open_with(dir.path(), opts).unwrap();
    assert_eq!(store.recovery().replayed, 300);
    let evs = all(&store);
    assert_eq!(evs.len(), 300);
    for (i, e) in evs.iter().enumerate() {
        assert_eq!(&*e.payload, format!("payload-{i:04}").as_bytes());
    }
    assert_eq!(store.entity_events("e3", 0, 1000).unwrap().len(), 43);
    assert!(store.verify().unwrap().is_sound());
}

#[test]
fn torn_tail_is_truncated_and_a_second_crash_still_opens() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..10 {
        store
            .append(prop("a", "k", &format!("{i}")), AppendOptions::durable())
            .unwrap();
    }
    drop(store);
    std::fs::remove_file(dir.path().join("index.snap")).ok();
    let seg = last_segment(dir.path());
    let mut b = std::fs::read(&seg).unwrap();
    // A torn write nobody was told about: the first 20 bytes of a copy of
    // the last frame, after every acknowledged one.
    let last_frame = b.windows(4).rposition(|w| w == b"BPKF").unwrap();
    let partial = b[last_frame..last_frame + 20].to_vec();
    b.extend_from_slice(&partial);
    std::fs::write(&seg, &b).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (_, _, cut) = store.recovery().truncated_tail.expect("tail was truncated");
    assert_eq!(cut, 20);
    let evs = all(&store);
    assert_eq!(evs.len(), 10, "every acknowledged event is kept");
    // The cut is recorded in the log itself.
    let rec = store
        .scan(&batpak_store::Region::all(), 0, 100, true)
        .unwrap()
        .into_iter()
        .find(|e| e.header.kind == batpak_store::RECOVERED_KIND)
        .expect("a batpak.store.recovered event");
    let text = String::from_utf8(rec.payload.to_vec()).unwrap();
    assert!(text.contains("\"bytes_cut\":20"), "{text}");
    store
        .append(prop("a", "k", "after"), AppendOptions::durable())
        .unwrap();
    drop(store);
    // Crash again, leaving garbage after the repaired tail.
    let mut b = std::fs::read(&seg).unwrap();
    b.extend_from_slice(b"BPKF\xff\xff\x00\x00garbage");
    std::fs::write(&seg, b).unwrap();
    std::fs::remove_file(dir.path().join("index.snap")).ok();
    let store = Store::open(dir.path()).unwrap();
    let evs = all(&store);
    assert_eq!(evs.len(), 11);
    assert_eq!(&*evs[10].payload, b"after");
    assert!(store.verify().unwrap().is_sound());
}

#[test]
fn an_acknowledged_frame_torn_at_the_tail_fails_closed() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..10 {
        store
            .append(prop("a", "k", &format!("{i}")), AppendOptions::durable())
            .unwrap();
    }
    drop(store);
    std::fs::remove_file(dir.path().join("index.snap")).ok();
    let seg = last_segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let before = std::fs::read(&seg).unwrap();
    match Store::open(dir.path()) {
        Err(StoreError::Corrupt {
            segment, reason, ..
        }) => {
            assert_eq!(segment, 1);
            assert!(reason.contains("acknowledged"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(std::fs::read(&seg).unwrap(), before, "nothing was cut");
    let rep = batpak_store::verify_dir(dir.path()).unwrap();
    assert!(!rep.is_sound());
    assert!(rep.open_error.unwrap().contains("acknowledged"));
}

#[test]
fn corruption_before_the_tail_fails_closed_naming_segment_and_offset() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..5 {
        store
            .append(
                prop("a", "k", &format!("payload number {i}")),
                AppendOptions::durable(),
            )
            .unwrap();
    }
    store.close().unwrap();
    std::fs::remove_file(dir.path().join("index.snap")).unwrap();
    let seg = last_segment(dir.path());
    let mut b = std::fs::read(&seg).unwrap();
    let at = b
        .windows(16)
        .position(|w| w == b"payload number 1")
        .unwrap();
    b[at] ^= 0x01; // one bit flip inside the second frame
    std::fs::write(&seg, &b).unwrap();
    match Store::open(dir.path()) {
        Err(StoreError::Corrupt {
            segment, offset, ..
        }) => {
            assert_eq!(segment, 1);
            assert!(
                offset > 0 && (offset as usize) < at,
                "offset {offset} names the damaged frame"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing was changed: the file is exactly as damaged as before.
    assert_eq!(std::fs::read(&seg).unwrap(), b);
    let rep = batpak_store::verify_dir(dir.path()).unwrap();
    assert!(!rep.is_sound());
    assert!(rep.problems[0].contains("checksum"), "{:?}", rep.problems);
}

#[test]
fn cursor_delivers_only_durable_events_in_order() {
    let dir = crate::tempdir().unwrap();
    let opts = StoreOptions {
        sync_interval: Duration::from_secs(3600),
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), opts).unwrap();
    let mut cur = Cursor::new(&store, Region::all().kinds(["wanted"]), 0);
    store
        .append(prop("a", "wanted", "1"), AppendOptions::visible())
        .unwrap();
    store
        .append(prop("a", "other", "2"), AppendOptions::visible())
        .unwrap();
    store
        .append(prop("a", "wanted", "3"), AppendOptions::visible())
        .unwrap();
    assert_eq!(store.watermarks().visible, 3);
    // Visible but not durable: the cursor must not run ahead of the disk.
    let b = cur.pull_batch(10, Duration::from_millis(50)).unwrap();
    assert!(b.is_empty(), "delivered {} non-durable events", b.len());
    store.sync().unwrap();
    let b = cur.pull_batch(10, Duration::from_millis(50)).unwrap();
    let seqs: Vec<u64> = b.as_slice().iter().map(|e| e.sequence()).collect();
    assert_eq!(seqs, vec![1, 3]);
    // Blocks until data arrives rather than returning early.
    let s2 = store.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        s2.append(prop("b", "wanted", "4"), AppendOptions::durable())
            .unwrap();
    });
    let b = cur.pull_batch(10, Duration::from_secs(30)).unwrap();
    t.join().unwrap();
    assert!(matches!(b, CanalBatch::One(ref e) if &*e.payload == b"4"));
}

#[test]
fn named_cursor_resumes_after_its_checkpoint_and_refuses_another_region() {
    let dir = crate::tempdir().unwrap();
    let region = Region::all().entity_prefix("order:");
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..5 {
            store
                .append(
                    prop(&format!("order:{i}"), "placed", ""),
                    AppendOptions::durable(),
                )
                .unwrap();
        }
        let mut cur = Cursor::open(&store, "billing", region.clone()).unwrap();
        let b = cur.pull_batch(3, Duration::from_millis(10)).unwrap();
        assert_eq!(b.len(), 3);
        cur.commit().unwrap();
        // Delivered but not committed: must come back after a restart.
        assert_eq!(
            cur.pull_batch(1, Duration::from_millis(10)).unwrap().len(),
            1
        );
    }
    let store = Store::open(dir.path()).unwrap();
    let mut cur = Cursor::open(&store, "billing", region).unwrap();
    let got: Vec<u64> = cur
        .pull_batch(10, Duration::from_millis(10))
        .unwrap()
        .as_slice()
        .iter()
        .map(|e| e.sequence())
        .collect();
    assert_eq!(got, vec![4, 5]);
    match Cursor::open(&store, "billing", Region::all()) {
        Err(StoreError::CheckpointMismatch { .. }) => {}
        other => panic!("expected a mismatch, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn lossy_subscriber_is_cut_off_and_told_how_much_it_missed() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut sub = Subscription::new(&store, Region::all().kinds(["tick"]), 4);
    for i in 0..10 {
        store
            .append(
                prop("clock", "tick", &i.to_string()),
                AppendOptions::visible(),
            )
            .unwrap();
        store
            .append(
                prop("clock", "tock", &i.to_string()),
                AppendOptions::visible(),
            )
            .unwrap();
    }
    // The writer never waited for us: the appends all went through.
    assert_eq!(store.watermarks().visible, 20);
    let b = sub.pull_batch(100, Duration::from_millis(100)).unwrap();
    assert_eq!(
        b.len(),
        4,
        "what was queued before the cut-off is delivered"
    );
    match sub.pull_batch(100, Duration::from_millis(100)) {
        Err(c) => {
            assert_eq!(c.reason, CloseReason::Lagged { missed: 6 });
            assert!(c.to_string().contains("missing 6"));
        }
        Ok(b) => panic!("expected the cut-off, got {} events", b.len()),
    }
    // A fresh subscription works again from the live head.
    let mut sub = Subscription::new(&store, Region::all().kinds(["tick"]), 4);
    store
        .append(prop("clock", "tick", "live"), AppendOptions::visible())
        .unwrap();
    assert_eq!(sub.pull_batch(10, Duration::from_secs(5)).unwrap().len(), 1);
}

#[test]
fn atomic_checkpoint_commits_with_the_events_it_covers() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let src = store
        .append(prop("order:1", "placed", ""), AppendOptions::durable())
        .unwrap();
    let cur = Cursor::open(&store, "reactor.x", Region::all().kinds(["placed"])).unwrap();
    let cp = cur.checkpoint_for(src.sequence, src.id).unwrap();
    let mut reaction = prop("sku:1", "reserved", "").caused_by(src.id);
    reaction.id = Some(EventId::derive(&[b"x", &src.id.0.to_le_bytes()]));
    let r1 = store
        .append_batch(
            vec![reaction.clone()],
            AppendOptions::durable().with_checkpoint(cp.clone()),
        )
        .unwrap();
    assert_eq!(
        store.checkpoint("reactor.x").unwrap().sequence,
        src.sequence
    );
    // Redelivery with the same derived id appends nothing new.
    let r2 = store
        .append_batch(vec![reaction], AppendOptions::durable().with_checkpoint(cp))
        .unwrap();
    assert!(r2[0].deduplicated);
    assert_eq!(r2[0].id, r1[0].id);
    assert_eq!(
        store
            .scan(&Region::all().kinds(["reserved"]), 0, 100, false)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_removed_or_replaced_lock_file_stops_further_writes() {
    for replace in [false, true] {
        let dir = crate::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .append(prop("a", "k", "before"), AppendOptions::durable())
            .unwrap();
        let lock = dir.path().join("LOCK");
        std::fs::remove_file(&lock).unwrap();
        if replace {
            std::fs::write(&lock, "someone else").unwrap();
        }
        // The writer checks the lock at most every 50 ms: within a bounded
        // number of appends it must refuse.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let err = loop {
            match store.append(prop("a", "k", "after"), AppendOptions::durable()) {
                Ok(_) => {
                    assert!(std::time::Instant::now() < deadline, "writes never stopped");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => break e,
            }
        };
        match &err {
            StoreError::LockLost(why) => {
                assert!(
                    why.contains("LOCK")
                        && why.contains(if replace { "replaced" } else { "removed" }),
                    "{why}"
                )
            }
            other => panic!("expected LockLost, got {other:?}"),
        }
        assert!(matches!(
            store.append(prop("a", "k", "again"), AppendOptions::visible()),
            Err(StoreError::LockLost(_))
        ));
    }
}

#[test]
fn the_lock_names_its_holder_with_the_whole_command_line() {
    let dir = crate::tempdir().unwrap();
    let _held = Store::open(dir.path()).unwrap();
    let text = std::fs::read_to_string(dir.path().join("LOCK")).unwrap();
    let argv0 = std::env::args().next().unwrap();
    assert!(
        text.starts_with(&format!("pid {} (", std::process::id())),
        "{text}"
    );
    assert!(text.contains(&argv0), "{text}");
    match Store::open(dir.path()) {
        Err(StoreError::Locked { holder, .. }) => assert_eq!(holder, text.trim()),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn damage_after_open_stops_reads_and_cursors_naming_segment_and_offset() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = store
            .append(
                prop("a", "k", &format!("payload-{i}")),
                AppendOptions::durable(),
            )
            .unwrap();
        ids.push(r.id);
    }
    // Someone damages the file under the open store.
    let seg = last_segment(dir.path());
    let mut b = std::fs::read(&seg).unwrap();
    let at = b.windows(9).position(|w| w == b"payload-3").unwrap();
    b[at + 8] ^= 1;
    std::fs::write(&seg, &b).unwrap();
    assert!(
        store.get(ids[2]).unwrap().is_some(),
        "intact events still read"
    );
    match store.get(ids[3]) {
        Err(StoreError::Corrupt {
            segment: 1,
            offset,
            reason,
        }) => {
            assert!(offset > 0 && (offset as usize) < at, "{offset}");
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(
        store.entity_events("a", 0, 10),
        Err(StoreError::Corrupt { .. })
    ));
    let mut cursor = Cursor::new(&store, Region::all(), 0);
    let mut delivered = 0;
    let closed = loop {
        match cursor.pull_batch(2, Duration::from_secs(5)) {
            Ok(CanalBatch::Empty) => panic!("the cursor stalled at damage"),
            Ok(b) => delivered += b.into_vec().len(),
            Err(c) => break c,
        }
    };
    assert_eq!(
        delivered, 2,
        "only the batch before the damaged one is delivered"
    );
    match closed.reason {
        CloseReason::Failed(m) => assert!(m.contains("segment 00000001 offset"), "{m}"),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn a_panic_on_the_writer_or_sync_thread_fails_the_store_and_wakes_every_waiter() {
    use batpak_store::{SimDisk, SimError, SimOp};
    for op in [SimOp::Write, SimOp::Sync] {
        let disk = SimDisk::new(1);
        let opts = StoreOptions {
            disk: std::sync::Arc::new(disk.clone()),
            ..StoreOptions::default()
        };
        let store = Store::open_with("/panic", opts).unwrap();
        disk.fail(op, 0, SimError::Panic);
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let s = store.clone();
                std::thread::spawn(move || {
                    s.append(prop("a", "k", &format!("{i}")), AppendOptions::durable())
                })
            })
            .collect();
        let mut failed = 0;
        for h in handles {
            match h.join().unwrap() {
                Err(StoreError::Poisoned(why)) => {
                    assert!(why.contains("panicked"), "{why}");
                    failed += 1;
                }
                Ok(_) => panic!(
                    "{op:?}: an append was acknowledged durable although its thread panicked"
                ),
                Err(e) => panic!("{op:?}: unexpected {e:?}"),
            }
        }
        assert_eq!(failed, 6);
        assert!(matches!(store.sync(), Err(StoreError::Poisoned(_))));
    }
}

#[test]
fn entity_reads_past_the_end_or_of_unknown_entities_are_empty() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.entity_events("nobody", 0, 10).unwrap().is_empty());
    store
        .append(prop("a", "k", "1"), AppendOptions::durable())
        .unwrap();
    assert!(store.entity_events("a", 1, 10).unwrap().is_empty());
    assert!(store.entity_events("a", 5, 10).unwrap().is_empty());
    assert!(store.entity_events("a", 0, 0).unwrap().is_empty());
    assert_eq!(store.entity_events("a", 0, 10).unwrap().len(), 1);
}

#[test]
fn a_store_written_before_the_proof_and_marker_opens_and_is_migrated() {
    // Older binaries wrote `BPKSNAP2` snapshots (no proof) and no DURABLE
    // marker; segments are unchanged. Such a store must open with every
    // event, ignoring the old snapshot, and come out in the new format.
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..20 {
        store
            .append(prop("a", "k", &format!("{i}")), AppendOptions::durable())
            .unwrap();
    }
    store.close().unwrap();
    let snap = dir.path().join("index.snap");
    let mut b = std::fs::read(&snap).unwrap();
    b[..8].copy_from_slice(b"BPKSNAP2");
    std::fs::write(&snap, &b).unwrap();
    std::fs::remove_file(dir.path().join("DURABLE")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.recovery().replayed,
        20,
        "the old snapshot is not used"
    );
    assert_eq!(all(&store).len(), 20);
    store.close().unwrap();
    assert_eq!(&std::fs::read(&snap).unwrap()[..8], b"BPKSNAP5");
    assert_eq!(
        &std::fs::read(dir.path().join("DURABLE")).unwrap()[..8],
        b"BPKDUR01"
    );
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.recovery().replayed,
        0,
        "the new snapshot is proven and used"
    );
    assert_eq!(all(&store).len(), 20);
}

#[test]
fn appends_during_idle_snapshots_are_written_and_never_hang() {
    // The flusher snapshots after 500 ms without a request from accepted-only
    // appends, holding the drain role meanwhile; appends that wait (visible,
    // durable) keep coming and must still be written. A watchdog bounds the
    // test: a lost frame would make an append wait forever.
    let dir = crate::tempdir().unwrap();
    let opts = StoreOptions {
        snapshot_every: 1,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), opts).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let s = store.clone();
    std::thread::spawn(move || {
        let start = std::time::Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(2500) {
            let wait = if n.is_multiple_of(2) {
                AppendOptions::visible()
            } else {
                AppendOptions::durable()
            };
            s.append(prop("a", "k", &n.to_string()), wait).unwrap();
            n += 1;
        }
        let _ = tx.send(n);
    });
    let n = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("an append never returned: its frame was not written");
    assert_eq!(store.watermarks().visible, n);
    assert_eq!(
        store.entity_events("a", 0, usize::MAX).unwrap().len() as u64,
        n
    );
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.watermarks().visible, n);
}

/// Every byte of the header of a store's only segment is covered: flipping
/// any of them (the magic, the store id, the number or the header CRC) makes
/// `verify` report damage and the open fail closed, with or without the
/// index snapshot, and changes nothing on disk. (With one segment there is
/// no other header to compare the store id with; the header's CRC finds it.)
#[test]
fn a_flipped_byte_in_the_only_segments_header_fails_closed() {
    let dir = crate::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..5 {
        store
            .append(prop("a", "k", &format!("{i}")), AppendOptions::durable())
            .unwrap();
    }
    drop(store);
    let seg = last_segment(dir.path());
    assert!(seg.ends_with("00000001.seg"), "one segment: {seg:?}");
    let clean = std::fs::read(&seg).unwrap();
    let snap = dir.path().join("index.snap");
    let snap_bytes = std::fs::read(&snap).ok();
    for with_snapshot in [true, false] {
        for at in 0..32 {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x10;
            std::fs::write(&seg, &bytes).unwrap();
            match (&snap_bytes, with_snapshot) {
                (Some(b), true) => std::fs::write(&snap, b).unwrap(),
                _ => {
                    std::fs::remove_file(&snap).ok();
                }
            }
            let rep = batpak_store::verify_dir(dir.path()).unwrap();
            assert!(
                !rep.is_sound(),
                "byte {at} flipped (snapshot: {with_snapshot}): verify found nothing"
            );
            match Store::open(dir.path()) {
                Err(StoreError::Corrupt { segment, .. }) => assert_eq!(segment, 1),
                other => panic!(
                    "byte {at} flipped (snapshot: {with_snapshot}): expected Corrupt, got {other:?}"
                ),
            }
            assert_eq!(std::fs::read(&seg).unwrap(), bytes, "nothing was changed");
        }
    }
    std::fs::write(&seg, &clean).unwrap();
    assert_eq!(all(&Store::open(dir.path()).unwrap()).len(), 5);
}
