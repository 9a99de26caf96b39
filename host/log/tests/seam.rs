//! The seam's promises on both logs behind it: the embedded store and the
//! in-memory one (`cargo test --release -p batpak-log --features memory`).

use batpak_log::{
    CanalBatch, Commit, CommitError, Durability, EventLog, Fault, Fence, MemoryLog, Op, Proposal,
    Region, SharedLog,
};
use batpak_store::{CheckpointUpdate, Coordinate, EventId, Store};
use std::sync::Arc;
use std::time::Duration;

fn rec(kind: &str, entity: &str, id: u128) -> Proposal {
    let mut p = Proposal::new(Coordinate::new(entity, "t").unwrap(), kind, b"{}".to_vec());
    p.id = Some(EventId(id));
    p
}

fn cp(sequence: u64, event_id: EventId) -> CheckpointUpdate {
    CheckpointUpdate {
        cursor: "reactor.x".into(),
        region: Region::all().kinds(["a"]).fingerprint(),
        sequence,
        event_id,
    }
}

/// Reads, cursors, atomic commits with checkpoints and deduplicated ids,
/// the same on every log.
fn promises(log: SharedLog) {
    let what = log.describe();
    let mut c = Commit::records(vec![
        rec("a", "e1", 1),
        rec("b", "e1", 2),
        rec("a", "e2", 3),
        rec("b", "e2", 4),
    ]);
    let done = log.commit(&mut c).unwrap();
    assert!(done.upto >= 4, "{what}");
    // A bounded read stops at its max-th match; an unbounded one looks to
    // the end, past events outside the region.
    let region = Region::all().kinds(["a"]);
    let r = log.read(&region, 0, 1).unwrap();
    assert_eq!(r.events.len(), 1, "{what}");
    assert_eq!(r.scanned, r.events[0].sequence(), "{what}");
    let r = log.read(&region, r.scanned, 10).unwrap();
    assert_eq!(r.events.len(), 1, "{what}");
    assert_eq!(r.scanned, 4, "{what}: looked to the end");
    // The cursor delivers the same, durable, and then waits (bounded).
    let mut cur = log.open_cursor(&region, 0).unwrap();
    let b = cur.pull_batch(10, Duration::from_millis(10)).unwrap();
    assert_eq!(b.len(), 2, "{what}");
    assert!(matches!(
        cur.pull_batch(10, Duration::from_millis(10)).unwrap(),
        CanalBatch::Empty
    ));
    assert_eq!(cur.position(), 4, "{what}");
    // Records and checkpoint land together; a repeated id lands nothing.
    let first = log.get_by_sequence(1).unwrap().unwrap().id();
    let fence = log.fence("reactor.x").unwrap();
    let mut c = Commit::records(vec![rec("b", "e3", 5), rec("b", "e1", 2)])
        .durability(Durability::Accepted)
        .with_checkpoint(cp(1, first))
        .fenced(Some(fence));
    let done = log.commit(&mut c).unwrap();
    assert!(log.wait_durable(done.upto, Duration::from_secs(5)).unwrap());
    assert_eq!(log.checkpoint("reactor.x").unwrap().unwrap().sequence, 1);
    assert_eq!(
        log.read(&Region::all().kinds(["b"]), 0, 10)
            .unwrap()
            .events
            .len(),
        3
    );
    assert!(log.get(EventId(5)).unwrap().is_some(), "{what}");
    assert_eq!(log.entity_events("e1", 0, 10).unwrap().len(), 2, "{what}");
    assert_ne!(done.fence, Some(fence), "{what}: the fence moved");
    // A wait for events past the head times out, returning the head.
    let head = log.heads().durable;
    assert_eq!(
        log.wait_for_events(head, Duration::from_millis(10))
            .unwrap(),
        head
    );
}

#[test]
fn the_embedded_store_keeps_the_seam_promises() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("data")).unwrap();
    promises(Arc::new(store.clone()));
    drop(store);
}

#[test]
fn the_memory_log_keeps_the_seam_promises() {
    promises(Arc::new(MemoryLog::new()));
}

#[test]
fn a_stale_fence_refuses_the_whole_commit() {
    let log = MemoryLog::new();
    log.append(vec![rec("a", "e1", 1)]).unwrap();
    let id = log.events()[0].id();
    let stale = log.fence("reactor.x").unwrap();
    log.commit(
        &mut Commit::default()
            .with_checkpoint(cp(1, id))
            .fenced(Some(stale)),
    )
    .unwrap();
    let mut late = Commit::records(vec![rec("b", "e9", 9)])
        .with_checkpoint(cp(1, id))
        .fenced(Some(stale));
    match log.commit(&mut late) {
        Err(CommitError::Fenced {
            expected, found, ..
        }) => {
            assert_eq!(Fence(expected), stale);
            assert_ne!(found, expected);
        }
        other => panic!("expected a fenced refusal, got {other:?}"),
    }
    assert!(
        log.get(EventId(9)).unwrap().is_none(),
        "nothing of it landed"
    );
}

#[test]
fn injected_faults_say_what_landed() {
    let log = MemoryLog::new();
    log.inject(Op::Commit, Fault::Lose);
    log.inject(Op::Commit, Fault::LoseReply);
    let mut c = Commit::records(vec![rec("a", "e1", 1)]);
    let e = log.commit(&mut c).unwrap_err();
    assert!(matches!(e, CommitError::Unknown(_)) && e.may_have_landed());
    assert!(log.get(EventId(1)).unwrap().is_none(), "lost: not applied");
    assert_eq!(
        c.records.len(),
        1,
        "an unknown outcome leaves the commit to retry"
    );
    let e = log.commit(&mut c).unwrap_err();
    assert!(matches!(e, CommitError::Unknown(_)));
    assert!(
        log.get(EventId(1)).unwrap().is_some(),
        "reply lost: applied"
    );
    // The retry lands nothing twice.
    log.commit(&mut c).unwrap();
    assert_eq!(log.events().len(), 1);
}
