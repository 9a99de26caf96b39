//! The NATS log behind the runtime's seam: [`PartitionLog`] is one
//! partition of a [`NatsLog`] as a [`batpak_log::EventLog`], so the real
//! runner (parking, hot swap, shadow) runs over a cluster unchanged. One
//! runner per (reactor, partition): its cursor's checkpoint lives on the
//! partition's checkpoint subject and is fenced there.
//!
//! Every call maps onto one [`NatsLog`] call as the crate docs' table says;
//! what the table cannot say is here:
//!
//! - **Unknown outcomes are settled inside.** A commit with a checkpoint
//!   whose answer is lost — or is "unavailable", which during a leader
//!   change can be a stale leader's answer while the new leader stores the
//!   batch — is resolved at once with
//!   [`NatsLog::resolve_commit`], which is final (it seals the fence while
//!   the checkpoint is still there, so a copy of the commit still in flight
//!   can never land later): landed → `Ok`; not landed and sealed by this
//!   log → [`CommitError::Unavailable`] (nothing landed, retry: the retry's
//!   fence is moved onto the seal by this log, since the seal is its own
//!   write, not another instance's); moved by another instance →
//!   [`CommitError::Fenced`]. Only when resolving itself fails (the
//!   cluster does not answer) is [`CommitError::Unknown`] returned, and
//!   then the commit stays pending: the next [`EventLog::checkpoint`],
//!   [`EventLog::fence`] or [`EventLog::commit`] of that cursor resolves it
//!   first (failing with `Unavailable` until it can), so the read a caller
//!   resolves with is final.
//! - **Records without a checkpoint** (parking, swap, refusal records) go
//!   as one atomic batch ([`NatsLog::append_batch`]). Their unknown outcome
//!   is returned as [`CommitError::Unknown`], resolved by looking a record
//!   up by id; a re-sent batch lands once (`append_batch` looks its first
//!   record up after reading the heads it is chained on, so a copy still in
//!   flight is either found or makes the re-send fail its chain check).
//! - **Other partitions.** A checkpointed commit with records for entities
//!   of other partitions writes them to this partition's outbox in the same
//!   fenced batch (crate docs, "Reactions to other partitions"); they become
//!   events of their own partitions when that partition's
//!   [`Relay`](crate::Relay) forwards them, exactly once. A commit
//!   *without* a checkpoint (parking, swap, refusal records) cannot carry
//!   them — a re-sent unfenced batch could land twice, and its outbox
//!   messages with it — so it is refused whole before anything is sent
//!   ([`CommitError::Refused`] with a [`CrossPartition`] cause): the one
//!   place `CrossPartition` remains. Reads are not batches:
//!   [`EventLog::entity_events`] reads the entity's own partition, and
//!   [`EventLog::get`] looks in this partition, then in the others. A
//!   reader sees a reaction to another partition there only once the relay
//!   forwarded it.
//! - **Durability**: every acknowledged write is stored by a quorum with
//!   its fsync, so `Accepted`, `Visible` and `Durable` all return once
//!   durable, and [`EventLog::heads`] reports one value for both marks: the
//!   highest sequence this process has seen stored (no round trip).

use crate::cursor_state::{decode_cursor, encode_cursor};
use crate::error::LogError as NatsError;
use crate::log::{Commit as NatsCommit, NatsLog, Resolution};
use batpak_log::{
    CanalClosed, Checkpoint, Commit, CommitError, Committed, Event, EventId, EventLog, Fence,
    Heads, LogCursor, LogError, ReadCursor, Region, RegionBatch,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A record of another partition than the log's in a commit without a
/// checkpoint: what such a batch cannot carry (a checkpointed commit sends
/// it through the outbox).
#[derive(Debug, thiserror::Error)]
#[error(
    "entity {entity:?} lives in partition {owner}, not in partition {partition}: a record \
     batch without a checkpoint covers one partition (records for another partition go \
     through the outbox, which only a checkpointed commit carries); nothing was committed"
)]
pub struct CrossPartition {
    /// The entity.
    pub entity: String,
    /// Its partition.
    pub owner: u32,
    /// The partition of this log.
    pub partition: u32,
}

/// What this log keeps about one cursor between calls.
#[derive(Default)]
struct CursorState {
    /// A commit whose outcome is unknown and not yet resolved, with the
    /// fence its caller carried.
    pending: Option<(NatsCommit, u64)>,
    /// `(fence, seal)`: this log sealed the cursor's checkpoint at `fence`
    /// with its own write at `seal`; a commit still carrying `fence` is
    /// sent fenced on `seal`.
    sealed: Option<(u64, u64)>,
    /// A pending commit that resolving found landed: `(fence carried,
    /// the commit, its checkpoint's sequence)`, so the caller retrying that
    /// same commit (allowed: it is safe) is told it landed, not fenced.
    landed: Option<(u64, NatsCommit, u64)>,
}

/// True when `a` and `b` carry the same records and checkpoint.
fn same_commit(a: &NatsCommit, b: &NatsCommit) -> bool {
    a.checkpoint == b.checkpoint
        && a.reactions.len() == b.reactions.len()
        && a.reactions
            .iter()
            .zip(&b.reactions)
            .all(|(x, y)| x.id == y.id)
}

/// One partition of a [`NatsLog`] as a [`batpak_log::EventLog`] (see the
/// module docs). Cheap to clone; clones share the connection and the
/// cursors' pending state.
#[derive(Clone)]
pub struct PartitionLog {
    log: Arc<NatsLog>,
    partition: u32,
    cursors: Arc<Mutex<HashMap<String, CursorState>>>,
}

impl fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PartitionLog {
    /// Partition `partition` of `log`.
    ///
    /// # Errors
    /// [`NatsError::NotInitialised`] when the cluster has fewer partitions.
    pub fn new(log: Arc<NatsLog>, partition: u32) -> Result<PartitionLog, NatsError> {
        if partition >= log.layout().partitions {
            return Err(NatsError::NotInitialised {
                stream: crate::partition::stream_name(partition),
            });
        }
        Ok(PartitionLog {
            log,
            partition,
            cursors: Arc::default(),
        })
    }

    /// Every partition of `log`, in order.
    pub fn all(log: &Arc<NatsLog>) -> Vec<PartitionLog> {
        (0..log.layout().partitions)
            .map(|p| PartitionLog::new(log.clone(), p).expect("a partition of the layout"))
            .collect()
    }

    /// The partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The log underneath.
    pub fn nats(&self) -> &Arc<NatsLog> {
        &self.log
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HashMap<String, CursorState>> {
        self.cursors.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn foreign(&self, entity: &str) -> Option<CrossPartition> {
        let owner = self.log.partition_of(entity);
        (owner != self.partition).then(|| CrossPartition {
            entity: entity.to_string(),
            owner,
            partition: self.partition,
        })
    }

    /// Resolves `cursor`'s pending commit, if any (see the module docs).
    fn settle(&self, cursor: &str) -> Result<(), NatsError> {
        let pending = self.state().get(cursor).and_then(|s| s.pending.clone());
        let Some((commit, carried)) = pending else {
            return Ok(());
        };
        let resolution = self.log.resolve_commit(&commit)?;
        let mut state = self.state();
        let s = state.entry(cursor.to_string()).or_default();
        s.pending = None;
        match resolution {
            Resolution::NotLanded {
                checkpoint: Some(c),
                sealed: true,
            } => s.sealed = Some((carried, c.sequence)),
            Resolution::Landed(sequence) => s.landed = Some((carried, commit, sequence)),
            Resolution::NotLanded { .. } => {}
        }
        Ok(())
    }

    /// The sequence to fence on for a commit carrying `fence`.
    fn fence_for(&self, cursor: &str, fence: Option<Fence>) -> Result<u64, NatsError> {
        let Some(Fence(f)) = fence else {
            // Unfenced: fenced on where the checkpoint is now.
            return Ok(self
                .log
                .checkpoint(self.partition, cursor)?
                .map_or(0, |c| c.sequence));
        };
        Ok(match self.state().get(cursor).and_then(|s| s.sealed) {
            Some((from, seal)) if from == f => seal,
            _ => f,
        })
    }

    fn found(&self, cursor: &str) -> u64 {
        // For the message only; a failed read leaves it unknown (0).
        self.log
            .checkpoint(self.partition, cursor)
            .ok()
            .flatten()
            .map_or(0, |c| c.sequence)
    }

    fn commit_checkpointed(&self, c: &mut Commit) -> Result<Committed, CommitError> {
        let update = c.checkpoint.clone().expect("a checkpoint");
        let cursor = update.cursor.clone();
        self.settle(&cursor).map_err(read_as_unavailable)?;
        let expected = self.fence_for(&cursor, c.fence).map_err(commit_error)?;
        let nc = NatsCommit::new(
            self.partition,
            cursor.clone(),
            c.records.clone(),
            encode_cursor(&update),
            expected,
        );
        // The same commit again, after resolving found it landed.
        if let Some((carried, done, sequence)) =
            self.state().get(&cursor).and_then(|s| s.landed.as_ref())
        {
            if Some(Fence(*carried)) == c.fence && same_commit(done, &nc) {
                return Ok(landed(*sequence));
            }
        }
        match self.log.commit(&nc) {
            Ok(done) => {
                self.state().remove(&cursor);
                Ok(landed(done.checkpoint))
            }
            Err(NatsError::Fenced { expected, .. }) => Err(CommitError::Fenced {
                found: self.found(&cursor),
                cursor,
                expected,
            }),
            // No answer — or "unavailable", which during a leader change
            // can be a stale leader's answer while the new leader stores
            // the batch (seen in the runner test's leader pauses): resolve.
            Err(e @ (NatsError::Unknown { .. } | NatsError::Unavailable { .. })) => {
                let reason = e.to_string();
                self.state().entry(cursor.clone()).or_default().pending =
                    Some((nc.clone(), expected_of(c, &nc)));
                match self.log.resolve_commit(&nc) {
                    Ok(Resolution::Landed(sequence)) => {
                        self.state().remove(&cursor);
                        Ok(landed(sequence))
                    }
                    Ok(Resolution::NotLanded {
                        checkpoint,
                        sealed: true,
                    }) => {
                        let mut state = self.state();
                        let s = state.entry(cursor).or_default();
                        s.pending = None;
                        s.sealed = checkpoint.map(|k| (expected_of(c, &nc), k.sequence));
                        Err(CommitError::Unavailable(
                            format!(
                                "the commit got no clear answer ({reason}); resolved: it did not \
                                 land and never will (its fence is sealed)"
                            )
                            .into(),
                        ))
                    }
                    Ok(Resolution::NotLanded { checkpoint, .. }) => {
                        self.state().remove(&cursor);
                        Err(CommitError::Fenced {
                            found: checkpoint.map_or(0, |k| k.sequence),
                            cursor,
                            expected: nc.expected,
                        })
                    }
                    Err(e) => Err(CommitError::Unknown(
                        format!(
                            "{reason}; resolving it failed too ({e}): the next checkpoint, \
                             fence or commit of this cursor resolves it first"
                        )
                        .into(),
                    )),
                }
            }
            Err(e) => Err(commit_error(e)),
        }
    }
}

/// The fence a seal replaces: what the caller carried (the seal answers
/// it), or the sequence sent when it carried none.
fn expected_of(c: &Commit, nc: &NatsCommit) -> u64 {
    c.fence.map_or(nc.expected, |f| f.0)
}

fn landed(checkpoint: u64) -> Committed {
    Committed {
        upto: checkpoint,
        fence: Some(Fence(checkpoint)),
    }
}

/// A read's error, by what the caller can do.
fn read_error(e: NatsError) -> LogError {
    match e {
        NatsError::Unavailable { .. } | NatsError::Unknown { .. } | NatsError::Contended { .. } => {
            LogError::Unavailable(Box::new(e))
        }
        NatsError::ClientThreadGone => LogError::Closed,
        e @ (NatsError::Invalid(_) | NatsError::Unsupported { .. }) => {
            LogError::Invalid(Box::new(e))
        }
        e => LogError::Failed(Box::new(e)),
    }
}

/// A failed read done for a commit (resolving, fencing): nothing of the
/// commit was sent.
fn read_as_unavailable(e: NatsError) -> CommitError {
    match read_error(e) {
        LogError::Closed => CommitError::Closed,
        LogError::Unavailable(c) => CommitError::Unavailable(c),
        LogError::Failed(c) | LogError::Invalid(c) => CommitError::Failed(c),
        e => CommitError::Failed(Box::new(e)),
    }
}

/// A commit's error (the crate docs' table).
fn commit_error(e: NatsError) -> CommitError {
    match e {
        NatsError::Unknown { .. } => CommitError::Unknown(Box::new(e)),
        NatsError::Unavailable { .. } | NatsError::Contended { .. } => {
            CommitError::Unavailable(Box::new(e))
        }
        NatsError::ClientThreadGone => CommitError::Closed,
        e @ (NatsError::Conflict { .. }
        | NatsError::BatchTooLarge { .. }
        | NatsError::Invalid(_)
        | NatsError::Unsupported { .. }
        | NatsError::Refused { .. }) => CommitError::Refused(Box::new(e)),
        e => CommitError::Failed(Box::new(e)),
    }
}

impl EventLog for PartitionLog {
    fn describe(&self) -> String {
        format!(
            "nats partition {} of {}",
            self.partition,
            self.log.layout().partitions
        )
    }

    fn read(&self, region: &Region, after: u64, max: usize) -> Result<RegionBatch, LogError> {
        let b = self
            .log
            .read_region(self.partition, region, after, max)
            .map_err(read_error)?;
        Ok(RegionBatch {
            events: b.events,
            scanned: b.scanned,
        })
    }

    fn open_cursor(&self, region: &Region, after: u64) -> Result<Box<dyn LogCursor>, LogError> {
        Ok(Box::new(ReadCursor::new(
            self.clone(),
            region.clone(),
            after,
        )))
    }

    fn subscribe(
        &self,
        region: &Region,
        capacity: usize,
    ) -> Result<Box<dyn batpak_log::Canal<Item = Event, Error = CanalClosed>>, LogError> {
        let feed = self
            .log
            .subscribe(self.partition, region, capacity)
            .map_err(read_error)?;
        Ok(Box::new(feed))
    }

    fn commit(&self, c: &mut Commit) -> Result<Committed, CommitError> {
        // Records of other partitions travel through the outbox, which
        // only a checkpointed (fenced) commit carries.
        if c.checkpoint.is_none() {
            if let Some(x) = c
                .records
                .iter()
                .find_map(|r| self.foreign(&r.coordinate.entity))
            {
                return Err(CommitError::Refused(Box::new(x)));
            }
        }
        // Ids fixed before the first try, so a retry of this commit (and a
        // look-up resolving it) names the same records.
        for r in &mut c.records {
            r.id.get_or_insert_with(EventId::generate);
        }
        if c.checkpoint.is_some() {
            return self.commit_checkpointed(c);
        }
        if c.records.is_empty() {
            return Ok(Committed {
                upto: self.log.last_known(self.partition),
                fence: None,
            });
        }
        let stored = self
            .log
            .append_batch(self.partition, &c.records)
            .map_err(commit_error)?;
        Ok(Committed {
            upto: stored.last().map_or(0, |s| s.1),
            fence: None,
        })
    }

    fn checkpoint(&self, cursor: &str) -> Result<Option<Checkpoint>, LogError> {
        self.fenced_checkpoint(cursor).map(|(c, _)| c)
    }

    /// One read of the checkpoint message: its state and its sequence (the
    /// fence) cannot be torn apart by another instance's commit.
    fn fenced_checkpoint(&self, cursor: &str) -> Result<(Option<Checkpoint>, Fence), LogError> {
        self.settle(cursor).map_err(read_error)?;
        let Some(c) = self
            .log
            .checkpoint(self.partition, cursor)
            .map_err(read_error)?
        else {
            return Ok((None, Fence(0)));
        };
        let fence = Fence(c.sequence);
        // A seal of a cursor that had no checkpoint carries no state.
        if c.payload.is_empty() {
            return Ok((None, fence));
        }
        let state = decode_cursor(cursor, &c.payload).ok_or_else(|| {
            LogError::Failed(Box::new(NatsError::Damaged {
                partition: self.partition,
                sequence: c.sequence,
                reason: format!("the checkpoint of cursor {cursor:?} is not a cursor state"),
            }))
        })?;
        Ok((Some(state), fence))
    }

    fn fence(&self, cursor: &str) -> Result<Fence, LogError> {
        self.settle(cursor).map_err(read_error)?;
        let c = self
            .log
            .checkpoint(self.partition, cursor)
            .map_err(read_error)?;
        Ok(Fence(c.map_or(0, |c| c.sequence)))
    }

    fn get(&self, id: EventId) -> Result<Option<Event>, LogError> {
        // This partition first (one request), then the others: an id does
        // not name its partition.
        if let Some(e) = self.log.lookup_in(self.partition, id).map_err(read_error)? {
            return Ok(Some(e));
        }
        for p in (0..self.log.layout().partitions).filter(|p| *p != self.partition) {
            if let Some(e) = self.log.lookup_in(p, id).map_err(read_error)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    fn get_by_sequence(&self, sequence: u64) -> Result<Option<Event>, LogError> {
        self.log
            .get_by_sequence(self.partition, sequence)
            .map_err(read_error)
    }

    fn entity_events(&self, entity: &str, after: u64, max: usize) -> Result<Vec<Event>, LogError> {
        // Read from the entity's own partition, whichever that is.
        self.log
            .entity_events(entity, after, max)
            .map_err(read_error)
    }

    fn heads(&self) -> Heads {
        let known = self.log.last_known(self.partition);
        Heads {
            accepted: known,
            durable: known,
        }
    }

    fn wait_durable(&self, sequence: u64, timeout: Duration) -> Result<bool, LogError> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log.last_known(self.partition) >= sequence {
                return Ok(true);
            }
            match self.log.last_sequence(self.partition) {
                Ok(last) if last >= sequence => return Ok(true),
                Ok(_) => {}
                Err(e @ NatsError::Unavailable { .. }) if Instant::now() >= deadline => {
                    return Err(read_error(e))
                }
                Err(NatsError::Unavailable { .. }) => {}
                Err(e) => return Err(read_error(e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
        }
    }

    fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<u64, LogError> {
        // Events only: checkpoints past `after` do not wake a cursor. Once
        // there is one, learn the head (so `heads` moves past it).
        if self
            .log
            .wait(self.partition, after, timeout)
            .map_err(read_error)?
        {
            self.log.last_sequence(self.partition).map_err(read_error)?;
            return Ok(self.log.last_known(self.partition));
        }
        Ok(self.log.last_known(self.partition).min(after))
    }
}
