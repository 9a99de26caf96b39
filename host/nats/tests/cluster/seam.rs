//! [`PartitionLog`] through the seam's own calls on a 1-node cluster with
//! two partitions: a fenced commit and its checkpoint, a stale fence
//! refused whole, a checkpointed commit with a record for another
//! partition's entity (through the outbox: visible there once relayed,
//! readable from either partition), and what one partition cannot honour —
//! such a record in a batch without a checkpoint — refused whole with a
//! typed cause.

use crate::harness::{serial, Cluster};
use crate::{init, proposal};
use batpak_log::{Commit, CommitError, EventLog, Fence};
use batpak_nats::{CrossPartition, PartitionLog, Relay, RelaySettings};
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
    // A record for partition 1's entity without a checkpoint cannot join
    // partition 0's batch: refused whole, with the cause typed.
    let mut unfenced = Commit::records(vec![
        proposal(&mine, "out", b"a"),
        proposal(&theirs, "out", b"b"),
    ]);
    match p0.commit(&mut unfenced) {
        Err(CommitError::Refused(cause)) => {
            let x = cause
                .downcast_ref::<CrossPartition>()
                .expect("a CrossPartition cause");
            assert_eq!((x.owner, x.partition), (1, 0));
        }
        other => panic!("a cross-partition commit without checkpoint ended in {other:?}"),
    }
    // Nothing of the refused commits landed: one input, one reaction.
    let events = p0.read(&Region::all(), 0, 100).unwrap().events;
    let payloads: Vec<&[u8]> = events.iter().map(|e| &*e.payload).collect();
    assert_eq!(payloads, vec![&b"x"[..], &b"y"[..]]);
    assert!(p1.read(&Region::all(), 0, 100).unwrap().events.is_empty());
    assert_eq!(p0.fence(cursor).unwrap(), done.fence.unwrap());
    // With a checkpoint it lands: the own record in partition 0, the other
    // in partition 0's outbox — not an event of partition 1 until relayed.
    let mut cross = Commit::records(vec![
        proposal(&mine, "out", b"a"),
        proposal(&theirs, "out", b"b"),
    ])
    .with_checkpoint(update)
    .fenced(done.fence);
    p0.commit(&mut cross).unwrap();
    let theirs_id = cross.records[1].id.expect("ids fixed by the commit");
    assert!(p0.entity_events(&theirs, 0, 10).unwrap().is_empty());
    assert!(p1.read(&Region::all(), 0, 100).unwrap().events.is_empty());
    assert!(p0.get(theirs_id).unwrap().is_none());
    let mut relay = Relay::new(log.clone(), 1, RelaySettings::default()).unwrap();
    assert_eq!(relay.step().unwrap().forwarded, 1);
    assert_eq!(relay.step().unwrap().forwarded, 0, "forwarded once");
    // Read from either partition: the entity's own partition answers.
    let seen = p0.entity_events(&theirs, 0, 10).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].id(), &*seen[0].payload), (theirs_id, &b"b"[..]));
    assert_eq!(seen[0].header.entity_sequence, 1);
    assert_eq!(p0.get(theirs_id).unwrap().map(|e| e.id()), Some(theirs_id));
    assert_eq!(p1.read(&Region::all(), 0, 100).unwrap().events.len(), 1);
}

/// A commit through the seam whose answer is lost to a paused stream
/// leader: `Unknown` while nothing can be resolved (or `Unavailable` once
/// resolved as not landed); the caller's resolving
/// read (the checkpoint) waits for a new leader and seals the fence, so it
/// is final — the old leader resumes with the first copy in its input and
/// it never lands; the caller's retry of the same commit, carrying the
/// same fence, lands once.
#[test]
fn an_unknown_commit_is_resolved_finally_through_the_seam_and_its_retry_lands_once() {
    use std::time::{Duration, Instant};
    let _one = serial();
    let cluster = Cluster::start(3);
    let log = Arc::new(init(&cluster, 1, 3));
    let p0 = PartitionLog::new(log.clone(), 0).unwrap();
    let cursor = "reactor.seam";
    let input = log.append(&proposal("order:1", "in", b"x")).unwrap();
    let update = |seq: u64, id| CheckpointUpdate {
        cursor: cursor.into(),
        region: Region::all().fingerprint(),
        sequence: seq,
        event_id: id,
    };
    let mut first = Commit::records(vec![proposal("order:1", "out", b"a")])
        .with_checkpoint(update(input.sequence, input.id))
        .fenced(Some(p0.fence(cursor).unwrap()));
    let fence = p0.commit(&mut first).unwrap().fence;
    let second_in = log.append(&proposal("order:1", "in", b"y")).unwrap();
    let leader = cluster.wait_stream_leader(
        &batpak_nats::partition::stream_name(0),
        Duration::from_secs(20),
    );
    cluster.pause(leader);
    let mut second = Commit::records(vec![proposal("order:1", "out", b"b")])
        .with_checkpoint(update(second_in.sequence, second_in.id))
        .fenced(fence);
    // Unknown when no new leader answers the resolving read in time;
    // Unavailable when one did and the fence is sealed already (nothing
    // landed, retry). Never Ok: the commit went to the paused leader.
    let outcome = p0.commit(&mut second);
    eprintln!("a commit to a paused leader: {outcome:?}");
    assert!(
        matches!(
            outcome,
            Err(CommitError::Unknown(_) | CommitError::Unavailable(_))
        ),
        "a commit to a paused leader: {outcome:?}"
    );
    // Resolve as the runner does: read the checkpoint (retrying while the
    // partition elects a new leader).
    let deadline = Instant::now() + Duration::from_secs(60);
    let cp = loop {
        match p0.checkpoint(cursor) {
            Ok(cp) => break cp.expect("a checkpoint"),
            Err(e) if e.is_transient() => {
                assert!(
                    Instant::now() < deadline,
                    "unresolved: {e}\n{}",
                    cluster.logs()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("resolving failed: {e}"),
        }
    };
    assert_eq!(
        cp.sequence, input.sequence,
        "not landed: the checkpoint is still the first commit's"
    );
    // The old leader comes back with the first copy in its input.
    cluster.resume(leader);
    std::thread::sleep(Duration::from_secs(1));
    // The same commit again, same fence: onto the seal, once.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match p0.commit(&mut second) {
            Ok(_) => break,
            Err(e) if e.is_retryable() => {
                assert!(Instant::now() < deadline, "retry failed: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("the retry failed: {e}"),
        }
    }
    let cp = p0.checkpoint(cursor).unwrap().unwrap();
    assert_eq!(
        (cp.sequence, cp.event_id),
        (second_in.sequence, second_in.id)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = p0.read(&Region::all(), 0, 100).unwrap().events;
        let outs: Vec<&[u8]> = events
            .iter()
            .filter(|e| e.kind() == "out")
            .map(|e| &*e.payload)
            .collect();
        if outs == vec![&b"a"[..], &b"b"[..]] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "each commit's reaction exactly once: {outs:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
