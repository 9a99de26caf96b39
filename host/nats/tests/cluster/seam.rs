//! [`PartitionLog`] through the seam's own calls on a 1-node cluster with
//! two partitions: a fenced commit and its checkpoint, a stale fence
//! refused whole, and what one partition cannot honour — a record for
//! another partition's entity — refused whole with a typed cause.

use crate::harness::{serial, Cluster};
use crate::{init, proposal};
use batpak_log::{Commit, CommitError, EventLog, Fence, LogError};
use batpak_nats::{CrossPartition, PartitionLog};
use batpak_store::{CheckpointUpdate, Region};
use std::sync::Arc;

/// An entity of partition `p`.
fn entity_in(log: &batpak_nats::NatsLog, p: u32, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}:{i}"))
        .find(|e| log.partition_of(e) == p)
        .unwrap()
}

#[test]
fn a_partition_log_commits_fenced_and_refuses_what_it_cannot_honour() {
    let _one = serial();
    let cluster = Cluster::start(1);
    let log = Arc::new(init(&cluster, 2, 1));
    let parts = PartitionLog::all(&log);
    let (p0, p1) = (&parts[0], &parts[1]);
    assert_eq!(p0.describe(), "nats partition 0 of 2");
    let mine = entity_in(&log, 0, "order");
    let theirs = entity_in(&log, 1, "order");
    let input = log.append(&proposal(&mine, "in", b"x")).unwrap();
    let cursor = "reactor.seam";
    let update = CheckpointUpdate {
        cursor: cursor.into(),
        region: Region::all().fingerprint(),
        sequence: input.sequence,
        event_id: input.id,
    };
    // A fenced commit lands with its checkpoint; the fence moves.
    let fence = p0.fence(cursor).unwrap();
    assert_eq!(fence, Fence(0));
    let mut c = Commit::records(vec![proposal(&mine, "out", b"y")])
        .with_checkpoint(update.clone())
        .fenced(Some(fence));
    let done = p0.commit(&mut c).unwrap();
    assert_eq!(done.fence, Some(p0.fence(cursor).unwrap()));
    let cp = p0.checkpoint(cursor).unwrap().expect("a checkpoint");
    assert_eq!((cp.sequence, cp.event_id), (input.sequence, input.id));
    // The same fence again: another instance's, now stale.
    let mut stale = Commit::records(vec![proposal(&mine, "out", b"z")])
        .with_checkpoint(update.clone())
        .fenced(Some(fence));
    assert!(
        matches!(
            p0.commit(&mut stale),
            Err(CommitError::Fenced { expected: 0, .. })
        ),
        "a stale fence is refused"
    );
    // A record for partition 1's entity cannot join partition 0's batch:
    // refused whole, with the cause typed.
    let mut cross = Commit::records(vec![
        proposal(&mine, "out", b"a"),
        proposal(&theirs, "out", b"b"),
    ])
    .with_checkpoint(update)
    .fenced(done.fence);
    match p0.commit(&mut cross) {
        Err(CommitError::Refused(cause)) => {
            let x = cause
                .downcast_ref::<CrossPartition>()
                .expect("a CrossPartition cause");
            assert_eq!((x.owner, x.partition), (1, 0));
        }
        other => panic!("a cross-partition commit ended in {other:?}"),
    }
    assert!(matches!(
        p0.entity_events(&theirs, 0, 10),
        Err(LogError::Invalid(e)) if e.is::<CrossPartition>()
    ));
    // Nothing of the refused commits landed: one input, one reaction.
    let events = p0.read(&Region::all(), 0, 100).unwrap().events;
    let payloads: Vec<&[u8]> = events.iter().map(|e| &*e.payload).collect();
    assert_eq!(payloads, vec![&b"x"[..], &b"y"[..]]);
    assert!(p1.read(&Region::all(), 0, 100).unwrap().events.is_empty());
    assert_eq!(p0.fence(cursor).unwrap(), done.fence.unwrap());
}
