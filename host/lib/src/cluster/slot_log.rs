//! The log a cluster slot's runner runs over: its partition's
//! [`PartitionLog`], except that the runner's own records without a
//! checkpoint (swap, swap-refusal, rollback and parking records) whose
//! entity lives in another partition — the reactor's system stream
//! `reactor:<name>` hashes to one partition, while the reactor runs in
//! every partition — are stored as one atomic batch in that partition
//! ([`NatsLog::append_batch`]), as the partition log stores its own. A
//! checkpointed commit (reactions) is passed on unchanged: what it may
//! write to other partitions is the partition log's business.

use batpak_log::{
    CanalClosed, Checkpoint, Commit, CommitError, Committed, Event, EventId, EventLog, Fence,
    Heads, LogCursor, LogError, RegionBatch,
};
use batpak_nats::{LogError as NatsError, PartitionLog};
use batpak_store::Region;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One partition's log for a slot's runner (see the module docs).
#[derive(Debug)]
pub struct SlotLog {
    inner: PartitionLog,
    /// Checkpointed commits stored through this log (for `/metrics`).
    commits: Arc<AtomicU64>,
}

impl SlotLog {
    /// The slot log over `inner`, counting its stored checkpointed commits
    /// in `commits`.
    pub fn new(inner: PartitionLog, commits: Arc<AtomicU64>) -> SlotLog {
        SlotLog { inner, commits }
    }
}

fn record_error(e: NatsError) -> CommitError {
    match e {
        NatsError::Unknown { .. } => CommitError::Unknown(Box::new(e)),
        NatsError::Unavailable { .. } | NatsError::Contended { .. } => {
            CommitError::Unavailable(Box::new(e))
        }
        NatsError::ClientThreadGone => CommitError::Closed,
        e @ NatsError::Damaged { .. } => CommitError::Failed(Box::new(e)),
        e => CommitError::Refused(Box::new(e)),
    }
}

impl EventLog for SlotLog {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn read(&self, region: &Region, after: u64, max: usize) -> Result<RegionBatch, LogError> {
        self.inner.read(region, after, max)
    }

    fn open_cursor(&self, region: &Region, after: u64) -> Result<Box<dyn LogCursor>, LogError> {
        self.inner.open_cursor(region, after)
    }

    fn subscribe(
        &self,
        region: &Region,
        capacity: usize,
    ) -> Result<Box<dyn batpak_log::Canal<Item = Event, Error = CanalClosed>>, LogError> {
        self.inner.subscribe(region, capacity)
    }

    fn commit(&self, c: &mut Commit) -> Result<Committed, CommitError> {
        let nats = self.inner.nats();
        let home = self.inner.partition();
        let foreign = c.checkpoint.is_none()
            && !c.records.is_empty()
            && c.records
                .iter()
                .all(|r| nats.partition_of(&r.coordinate.entity) != home);
        if !foreign {
            let checkpointed = c.checkpoint.is_some();
            let done = self.inner.commit(c)?;
            if checkpointed {
                self.commits.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(done);
        }
        let target = nats.partition_of(&c.records[0].coordinate.entity);
        if c.records
            .iter()
            .any(|r| nats.partition_of(&r.coordinate.entity) != target)
        {
            return self.inner.commit(c);
        }
        // Ids fixed first, so an unknown outcome is resolved by look-up.
        for r in &mut c.records {
            r.id.get_or_insert_with(EventId::generate);
        }
        nats.append_batch(target, &c.records)
            .map_err(record_error)?;
        // Stored by a quorum with its fsync: durable. The sequence is in
        // another partition, so the caller is given this partition's own
        // head (already durable) to wait on, never a foreign sequence.
        Ok(Committed {
            upto: self.inner.heads().durable,
            fence: None,
        })
    }

    fn checkpoint(&self, cursor: &str) -> Result<Option<Checkpoint>, LogError> {
        self.inner.checkpoint(cursor)
    }

    fn fence(&self, cursor: &str) -> Result<Fence, LogError> {
        self.inner.fence(cursor)
    }

    fn fenced_checkpoint(&self, cursor: &str) -> Result<(Option<Checkpoint>, Fence), LogError> {
        self.inner.fenced_checkpoint(cursor)
    }

    fn get(&self, id: EventId) -> Result<Option<Event>, LogError> {
        self.inner.get(id)
    }

    fn get_by_sequence(&self, sequence: u64) -> Result<Option<Event>, LogError> {
        self.inner.get_by_sequence(sequence)
    }

    fn entity_events(&self, entity: &str, after: u64, max: usize) -> Result<Vec<Event>, LogError> {
        self.inner.entity_events(entity, after, max)
    }

    fn heads(&self) -> Heads {
        self.inner.heads()
    }

    fn wait_durable(&self, sequence: u64, timeout: Duration) -> Result<bool, LogError> {
        self.inner.wait_durable(sequence, timeout)
    }

    fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<u64, LogError> {
        self.inner.wait_for_events(after, timeout)
    }
}
