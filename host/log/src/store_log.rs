//! The embedded store behind the seam: [`EventLog`] for
//! [`batpak_store::Store`].
//!
//! One process owns the store (its directory lock), so there is one
//! partition and no other writer: fences are handed out (the checkpoint's
//! sequence) but there is nobody to fence off, and they are not checked —
//! checking would also race the store's own pipeline, whose accepted
//! checkpoints become readable only once written. A commit's outcome is
//! never unknown here: the append either returns or fails with the store's
//! own error, which maps to a [`CommitError`] variant.

use crate::commit::{Commit, Committed, Durability, Fence};
use crate::cursor::LogCursor;
use crate::error::{CommitError, LogError};
use crate::event_log::{EventLog, Heads, IntoLog, LiveFeed, SharedLog};
use crate::region_batch::RegionBatch;
use batpak_store::{
    AppendOptions, Canal, CanalBatch, CanalClosed, Checkpoint, CloseReason, Cursor, Event, EventId,
    EventView, Region, Store, StoreError, Subscription,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A read's store error, by what a caller can do about it.
fn read_error(e: StoreError) -> LogError {
    match e {
        StoreError::Closed => LogError::Closed,
        e @ (StoreError::Invalid { .. }
        | StoreError::BadBatch(_)
        | StoreError::CheckpointMismatch { .. }) => LogError::Invalid(Box::new(e)),
        e => LogError::Failed(Box::new(e)),
    }
}

/// A commit's store error. Validation failures refused the whole batch
/// before anything was written; a write or fsync failure poisons the store
/// (the commit may be on disk or not: the next open decides).
fn commit_error(e: StoreError) -> CommitError {
    match e {
        StoreError::Closed => CommitError::Closed,
        e @ (StoreError::Invalid { .. }
        | StoreError::SequenceConflict { .. }
        | StoreError::IdempotencyConflict(_)
        | StoreError::UnknownCausation { .. }
        | StoreError::BadBatch(_)
        | StoreError::CheckpointMismatch { .. }) => CommitError::Refused(Box::new(e)),
        e => CommitError::Failed(Box::new(e)),
    }
}

impl EventLog for Store {
    fn describe(&self) -> String {
        format!("store {}", self.dir().display())
    }

    fn read(&self, region: &Region, after: u64, max: usize) -> Result<RegionBatch, LogError> {
        let max = max.max(1);
        let end = self.watermarks().visible;
        let events = self.scan(region, after, max, false).map_err(read_error)?;
        let scanned = match events.last() {
            Some(e) if events.len() >= max => e.sequence(),
            _ => end.max(after),
        };
        // Events that became visible between the two looks are delivered
        // now or by the next read (it continues after `scanned`).
        let scanned = scanned.max(events.last().map_or(after, Event::sequence));
        Ok(RegionBatch { events, scanned })
    }

    fn open_cursor(&self, region: &Region, after: u64) -> Result<Box<dyn LogCursor>, LogError> {
        Ok(Box::new(StoreCursor(Cursor::new(
            self,
            region.clone(),
            after,
        ))))
    }

    fn subscribe(&self, region: &Region, capacity: usize) -> Result<LiveFeed, LogError> {
        Ok(Box::new(Subscription::new(
            self,
            region.clone(),
            capacity.max(1),
        )))
    }

    fn commit(&self, commit: &mut Commit) -> Result<Committed, CommitError> {
        let mut opts = match commit.durability {
            Durability::Accepted => AppendOptions::accepted(),
            Durability::Visible => AppendOptions::visible(),
            Durability::Durable => AppendOptions::durable(),
        };
        let checkpoint = commit.checkpoint.take();
        let fence = checkpoint.as_ref().map(|cp| Fence(cp.sequence));
        if let Some(cp) = checkpoint {
            opts = opts.with_checkpoint(cp);
        }
        // Taken, not copied: every store error is final (refused, closed,
        // failed), never one the caller retries with the same commit.
        self.append_system(std::mem::take(&mut commit.records), opts)
            .map_err(commit_error)?;
        // At or past the end of the frame just taken (the sequencer
        // publishes `accepted` before the append returns).
        Ok(Committed {
            upto: self.watermarks().accepted,
            fence,
        })
    }

    fn checkpoint(&self, cursor: &str) -> Result<Option<Checkpoint>, LogError> {
        Ok(Store::checkpoint(self, cursor))
    }

    fn fence(&self, cursor: &str) -> Result<Fence, LogError> {
        Ok(Fence(
            Store::checkpoint(self, cursor).map_or(0, |c| c.sequence),
        ))
    }

    fn get(&self, id: EventId) -> Result<Option<Event>, LogError> {
        Store::get(self, id).map_err(read_error)
    }

    fn get_by_sequence(&self, sequence: u64) -> Result<Option<Event>, LogError> {
        Store::get_by_sequence(self, sequence).map_err(read_error)
    }

    fn entity_events(&self, entity: &str, after: u64, max: usize) -> Result<Vec<Event>, LogError> {
        Store::entity_events(self, entity, after, max).map_err(read_error)
    }

    fn heads(&self) -> Heads {
        let w = self.watermarks();
        Heads {
            accepted: w.accepted,
            durable: w.durable,
        }
    }

    fn wait_durable(&self, sequence: u64, timeout: Duration) -> Result<bool, LogError> {
        let start = Instant::now();
        match Store::wait_durable(self, sequence, timeout).map_err(read_error)? {
            // Back before the deadline without it: the store shut down.
            false if start.elapsed() < timeout => Err(LogError::Closed),
            durable => Ok(durable),
        }
    }

    fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<u64, LogError> {
        Store::wait_durable(self, after + 1, timeout).map_err(read_error)?;
        Ok(EventLog::heads(self).durable)
    }
}

/// The store's own [`Cursor`] (it keeps the last frames read between
/// pulls) as a [`LogCursor`], delivering views of the frames it read.
struct StoreCursor(Cursor);

impl Canal for StoreCursor {
    type Item = EventView;
    type Error = LogError;

    fn pull_batch(
        &mut self,
        max: usize,
        deadline: Duration,
    ) -> Result<CanalBatch<EventView>, LogError> {
        self.0.pull_views(max, deadline).map_err(closed_error)
    }
}

impl LogCursor for StoreCursor {
    fn position(&self) -> u64 {
        self.0.position()
    }
    fn region(&self) -> &Region {
        self.0.region()
    }
}

fn closed_error(c: CanalClosed) -> LogError {
    match c.reason {
        CloseReason::StoreClosed | CloseReason::Stopped => LogError::Closed,
        // The store's own words, as the runner has always reported them.
        CloseReason::Failed(m) => LogError::Failed(m.into()),
        _ => LogError::Failed(Box::new(c)),
    }
}

impl IntoLog for Store {
    fn into_log(self) -> SharedLog {
        Arc::new(self)
    }
}

impl IntoLog for &Store {
    fn into_log(self) -> SharedLog {
        Arc::new(self.clone())
    }
}
