//! The one-time migration of an index snapshot in the previous format
//! (`BPKSNAP4`) to the compact one (`BPKSNAP5`), on the simulated disk: a
//! store whose snapshot was written by the previous code path opens from
//! it, answers every query as before, and the open replaces the snapshot
//! atomically; a failed rename or a power cut during that leaves a store
//! that still opens and answers the same.

use super::recovery::recover;
use super::snapshot::SegmentProof;
use super::snapshot_v4::save_v4;
use super::{AppendOptions, Lookup, Region, SimDisk, SimError, SimOp, Store, StoreOptions};
use crate::event::{Coordinate, EventId, Proposal};
use std::path::Path;
use std::sync::Arc;

fn options(disk: &SimDisk) -> StoreOptions {
    StoreOptions {
        // Several segments.
        segment_size: 16 << 10,
        disk: Arc::new(disk.clone()),
        ..StoreOptions::default()
    }
}

/// Everything the store answers, as comparable text: every event read by
/// sequence and by id, each entity's chain, each event's correlation,
/// children and id lookups, and the idempotency keys (a repeat is a no-op
/// naming the first receipt).
fn answers(store: &Store) -> Vec<String> {
    let mut out = Vec::new();
    let all = store.scan(&Region::all(), 0, usize::MAX, true).unwrap();
    let r = Region::all();
    for e in &all {
        let h = &e.header;
        let by_id = store.get(h.id).unwrap().expect("found by id");
        assert_eq!(by_id.header.sequence, h.sequence);
        let seqs =
            |v: Vec<crate::Event>| -> Vec<u64> { v.iter().map(|e| e.header.sequence).collect() };
        out.push(format!(
            "{} {} {:?} {:?} chain={:?} corr={:?} caused={:?} kids={:?} id={:?} hash={:?}",
            h.sequence,
            h.id,
            h.causation,
            h.correlation,
            seqs(
                store
                    .entity_events(&h.coordinate.entity, 0, usize::MAX)
                    .unwrap()
            ),
            seqs(
                store
                    .lookup(&Lookup::Correlation(h.correlation), &r, 0, usize::MAX, true)
                    .unwrap()
            ),
            seqs(
                store
                    .lookup(&Lookup::CausedBy(h.id), &r, 0, usize::MAX, true)
                    .unwrap()
            ),
            store.caused_by(h.id),
            seqs(
                store
                    .lookup(&Lookup::Id(h.id), &r, 0, usize::MAX, true)
                    .unwrap()
            ),
            e.hash,
        ));
    }
    out
}

/// Fills a store: chains of a few entities, causes, explicit and foreign
/// correlations, idempotency keys, across several segments.
fn fill(store: &Store) {
    let mut ids: Vec<EventId> = Vec::new();
    for i in 0..600u64 {
        let mut p = Proposal::new(
            Coordinate::new(format!("e:{}", i % 7), if i % 2 == 0 { "a" } else { "b" }).unwrap(),
            ["order.placed", "stock.reserved"][(i % 2) as usize],
            format!("{{\"i\":{i}}}").into_bytes(),
        );
        if i % 3 == 1 {
            p.causation = Some(ids[(i as usize * 7) % ids.len()]);
        }
        if i % 11 == 0 && !ids.is_empty() {
            p.correlation = Some(ids[(i as usize * 5) % ids.len()]);
        }
        if i % 13 == 0 {
            p.correlation = Some(EventId((0xC0 << 120) | (i % 4) as u128));
        }
        if i % 5 == 0 {
            p.idempotency_key = Some(format!("key-{i}"));
        }
        let r = store.append(p, AppendOptions::visible()).unwrap();
        ids.push(r.id);
    }
    store.sync().unwrap();
}

/// Rewrites the store's snapshot in the previous format, as the previous
/// binary's `save` did, from the index the store recovers.
fn write_previous_format(disk: &SimDisk, dir: &Path) {
    let rec = recover(disk, dir, false).unwrap();
    assert_eq!(rec.replayed, 0, "recovered from the snapshot");
    let mut proof = rec.sealed.clone();
    proof.push(SegmentProof {
        segment: rec.last_segment,
        len: rec.end_offset,
        crc: rec.tail_crc.clone().finalize(),
    });
    assert!(proof.len() > 2, "several segments");
    save_v4(disk, dir, rec.store_id, &rec.index, proof).unwrap();
    assert_eq!(magic(disk, dir), *b"BPKSNAP4");
}

fn magic(disk: &SimDisk, dir: &Path) -> [u8; 8] {
    disk.read_file(&dir.join("index.snap")).unwrap()[..8]
        .try_into()
        .unwrap()
}

#[test]
fn a_bpksnap4_store_is_migrated_once_atomically_and_answers_the_same() {
    let disk = SimDisk::new(0x516);
    let dir = Path::new("/sim/migrate");
    let store = Store::open_with(dir, options(&disk)).unwrap();
    fill(&store);
    let want = answers(&store);
    store.close().unwrap();
    write_previous_format(&disk, dir);

    // A failed rename of the new snapshot: the open fails naming it, the
    // old snapshot stays, and the next open migrates.
    disk.fail(SimOp::Rename, 0, SimError::Eio);
    let Err(err) = Store::open_with(dir, options(&disk)) else {
        panic!("the open succeeded although the snapshot's rename failed");
    };
    assert!(err.to_string().contains("index snapshot"), "{err}");
    assert_eq!(disk.faults_fired(), 1);
    assert_eq!(magic(&disk, dir), *b"BPKSNAP4");

    // Power lost during the migration (the new snapshot written and synced,
    // its rename not yet durable): either snapshot may survive.
    disk.fail(SimOp::SyncDir, 0, SimError::Eio);
    assert!(Store::open_with(dir, options(&disk)).is_err());
    disk.power_cut();
    let m = magic(&disk, dir);
    assert!(m == *b"BPKSNAP4" || m == *b"BPKSNAP5", "{m:?}");

    // The migration: loaded from the old snapshot (nothing replayed),
    // answering the same, the snapshot now in the new format.
    write_previous_format(&disk, dir);
    let store = Store::open_with(dir, options(&disk)).unwrap();
    assert_eq!(
        store.recovery().replayed,
        0,
        "the BPKSNAP4 snapshot is used"
    );
    assert_eq!(magic(&disk, dir), *b"BPKSNAP5", "migrated at the open");
    assert_eq!(answers(&store), want);
    let rep = store.verify().unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    // Idempotency keys survived: the key names its first event (sequence
    // 6), so other content under it is a conflict, not a new event.
    let last = store.watermarks().visible;
    let mut p = Proposal::new(
        Coordinate::new("e:1", "a").unwrap(),
        "order.placed",
        b"{}".to_vec(),
    );
    p.idempotency_key = Some("key-5".into());
    match store.append(p, AppendOptions::visible()) {
        Err(super::StoreError::IdempotencyConflict(c)) => assert_eq!(c.original_sequence, 6),
        other => panic!("expected an idempotency conflict, got {other:?}"),
    }
    assert_eq!(store.watermarks().visible, last);
    store.close().unwrap();

    // Once: the next open loads the new snapshot.
    let store = Store::open_with(dir, options(&disk)).unwrap();
    assert_eq!(store.recovery().replayed, 0);
    assert_eq!(answers(&store), want);
    store.close().unwrap();
}
