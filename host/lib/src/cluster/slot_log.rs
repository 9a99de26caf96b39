//! The log a cluster slot's runner runs over: its partition's
//! [`PartitionLog`], with the reactor's own stream kept per partition. The
//! runtime writes a reactor's system records — swap, swap-refusal and
//! rollback records, parking records, gate denials — on the entity
//! `reactor:<name>`, which hashes to one partition while the reactor runs
//! in every partition. Here each such record is moved, before it is sent,
//! onto this partition's own copy of that stream,
//! [`local_entity`]`("reactor:<name>", p, K)` (an entity that hashes to
//! `p`), and its id is derived again from the runtime's id and the
//! partition (two partitions' instances swapping at the same position
//! would otherwise derive one id). So every record of partition `p`'s
//! instance is stored in `p` — in the same atomic, fenced commit as its
//! checkpoint when it has one — and `events --partition P` shows that
//! partition's swap history. The rewrite is done on the caller's commit, so
//! a retry (and a look-up resolving an unknown outcome) names the same
//! records.
//!
//! **Re-delivery after a reset.** `reset NAME --to start --store …` moves
//! the checkpoint back ([`cluster_reset`](crate::cluster::cluster_reset)),
//! recording in the partition how far it was (`from`). The runtime derives
//! reaction ids from (reactor, source event, ordinal), so the reactions to
//! re-delivered events carry the ids of those committed before; the embedded
//! store recognises them, and so does this log: while the instance is below
//! the highest `from` of the partition's reset records (its *horizon*), each
//! record of a checkpointed commit is looked up by id (in its entity's
//! partition) and left out when stored. Re-delivery duplicates nothing;
//! past the horizon no look-up is made.

use batpak_log::{
    CanalClosed, Checkpoint, Commit, CommitError, Committed, Event, EventId, EventLog, Fence,
    Heads, LogCursor, LogError, RegionBatch,
};
use batpak_nats::partition::local_entity;
use batpak_nats::{LogError as NatsError, PartitionLog};
use batpak_store::system::{REACTOR_STREAM_PREFIX, RESET_ENTITY_PREFIX, SYSTEM_SCOPE};
use batpak_store::Region;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One partition's log for a slot's runner (see the module docs).
#[derive(Debug)]
pub struct SlotLog {
    inner: PartitionLog,
    /// The reactor the slot runs.
    reactor: String,
    /// `(horizon, position)` once read: the highest `from` of the
    /// partition's reset records of the reactor, and the checkpoint the
    /// next commit starts from.
    redelivery: Mutex<Option<(u64, u64)>>,
    /// Checkpointed commits stored through this log (for `/metrics`).
    commits: Arc<AtomicU64>,
}

/// The highest position reactor `reactor` had reached in partition `p`
/// before any reset recorded there moved it (0: never reset): below it,
/// reactions may already be stored.
///
/// # Errors
/// The reset records could not be read.
fn reset_horizon(inner: &PartitionLog, reactor: &str) -> Result<u64, NatsError> {
    let nats = inner.nats();
    let entity = local_entity(
        &format!("{RESET_ENTITY_PREFIX}{reactor}"),
        inner.partition(),
        nats.layout().partitions,
    );
    let mut horizon = 0;
    let mut after = 0;
    loop {
        let page = nats.entity_events(&entity, after, 1000)?;
        let Some(last) = page.last() else {
            return Ok(horizon);
        };
        after = last.header.entity_sequence;
        for e in &page {
            let from = serde_json::from_slice::<serde_json::Value>(&e.payload)
                .ok()
                .and_then(|v| v["from"].as_u64())
                .unwrap_or(0);
            horizon = horizon.max(from);
        }
    }
}

impl SlotLog {
    /// The slot log of reactor `reactor` over `inner`, counting its
    /// stored checkpointed commits in `commits`.
    pub fn new(inner: PartitionLog, reactor: &str, commits: Arc<AtomicU64>) -> SlotLog {
        SlotLog {
            inner,
            reactor: reactor.to_string(),
            redelivery: Mutex::new(None),
            commits,
        }
    }

    /// `(horizon, position)`, read on first use.
    fn redelivery(&self, cursor: &str) -> Result<(u64, u64), CommitError> {
        if let Some(r) = *self.redelivery.lock() {
            return Ok(r);
        }
        let unavailable = |e: &dyn std::fmt::Display| {
            CommitError::Unavailable(
                format!("reading the reactor's reset records and checkpoint: {e}").into(),
            )
        };
        let horizon = reset_horizon(&self.inner, &self.reactor).map_err(|e| unavailable(&e))?;
        let position = self
            .inner
            .checkpoint(cursor)
            .map_err(|e| unavailable(&e))?
            .map_or(0, |c| c.sequence);
        *self.redelivery.lock() = Some((horizon, position));
        Ok((horizon, position))
    }

    /// Leaves out of `c` the records already stored (looked up by id in
    /// their entity's partition): a re-delivered event's reactions. `c` is
    /// changed only once every look-up answered, so a failed one leaves the
    /// commit whole for the caller's retry.
    fn drop_stored(&self, c: &mut Commit) -> Result<(), CommitError> {
        let nats = self.inner.nats();
        let mut stored = Vec::with_capacity(c.records.len());
        for r in &c.records {
            stored.push(match r.id {
                Some(id) => nats
                    .lookup_in(nats.partition_of(&r.coordinate.entity), id)
                    .map_err(|e| {
                        CommitError::Unavailable(
                            format!("looking up a re-delivered event's reaction {id}: {e}").into(),
                        )
                    })?
                    .is_some(),
                None => false,
            });
        }
        let mut stored = stored.into_iter();
        c.records.retain(|_| !stored.next().unwrap_or(false));
        Ok(())
    }

    /// Moves `c`'s records on a reactor's stream (`reactor:<name>`, scope
    /// `batpak`) onto this partition's copy of it, with ids derived again
    /// (see the module docs). Records already moved are left as they are.
    fn localise(&self, c: &mut Commit) {
        let p = self.inner.partition();
        let k = self.inner.nats().layout().partitions;
        for r in &mut c.records {
            let e = &r.coordinate.entity;
            let is_stream = r.coordinate.scope == SYSTEM_SCOPE
                && e.strip_prefix(REACTOR_STREAM_PREFIX)
                    .is_some_and(|name| !name.is_empty() && !name.contains('/'));
            if !is_stream {
                continue;
            }
            r.coordinate.entity = local_entity(e, p, k);
            let old = r.id.unwrap_or_else(EventId::generate);
            r.id = Some(EventId::derive(&[
                b"partition-stream",
                &p.to_be_bytes(),
                &old.0.to_be_bytes(),
            ]));
        }
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
        self.localise(c);
        let Some(update) = c.checkpoint.clone() else {
            return self.inner.commit(c);
        };
        let (horizon, position) = self.redelivery(&update.cursor)?;
        if position < horizon {
            // Ids fixed first, as the partition log fixes them.
            for r in &mut c.records {
                r.id.get_or_insert_with(EventId::generate);
            }
            self.drop_stored(c)?;
        }
        let done = self.inner.commit(c)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        *self.redelivery.lock() = Some((horizon, update.sequence));
        Ok(done)
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
