//! Cursors: ordered, durable, checkpointed delivery.

use super::{Canal, CanalBatch, CanalClosed, CloseReason};
use crate::event::{hex, Event, EventId};
use crate::event_view::EventView;
use crate::store::FrameCache;
use crate::store::{
    validate_cursor_id, AppendOptions, CheckpointUpdate, Region, Stopped, Store, StoreError,
};
use crate::store::{Entry, ReadPath};
use std::time::{Duration, Instant};

/// An ordered, durable, checkpointed canal over a region.
///
/// - Delivers events matching its region in global-sequence order, each
///   once per process, and only once they are **durable**, so a checkpoint
///   can never point past what survives a crash.
/// - Blocks on a condition variable (no spinning) until data or deadline.
/// - A named cursor resumes after its last committed checkpoint: delivery is
///   at-least-once across restarts. Commit the checkpoint in the same append
///   as the consumer's output ([`Cursor::checkpoint_for`] with
///   [`AppendOptions::with_checkpoint`]) to get effectively-once.
pub struct Cursor {
    store: Store,
    region: Region,
    fingerprint: [u8; 32],
    id: Option<String>,
    position: u64,
    /// The last frames read, reused by the next pull when it falls in them.
    frames: FrameCache,
}

impl Cursor {
    /// An unnamed cursor delivering events after sequence `after`. It never
    /// checkpoints.
    pub fn new(store: &Store, region: Region, after: u64) -> Cursor {
        let store = store.clone();
        let fingerprint = region.fingerprint();
        Cursor {
            store,
            region,
            fingerprint,
            id: None,
            position: after,
            frames: FrameCache::default(),
        }
    }

    /// Opens the named cursor `id` over `region`, resuming after its last
    /// committed checkpoint (or from the start).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a bad id; [`StoreError::CheckpointMismatch`]
    /// when the checkpoint was committed for another region or names an event
    /// that is not at its sequence.
    pub fn open(store: &Store, id: &str, region: Region) -> Result<Cursor, StoreError> {
        let store = store.clone();
        validate_cursor_id(id).map_err(|source| StoreError::Invalid { index: 0, source })?;
        let fingerprint = region.fingerprint();
        let mismatch = |reason: String| StoreError::CheckpointMismatch {
            cursor: id.to_string(),
            reason,
        };
        let mut position = 0;
        if let Some(cp) = store.checkpoint(id) {
            if cp.region != fingerprint {
                return Err(mismatch(format!(
                    "it was committed for another region (fingerprint {}, this region is {}); \
                     resuming would skip or repeat events. Use a new cursor id for the new region",
                    &hex(&cp.region)[..16],
                    &hex(&fingerprint)[..16]
                )));
            }
            if cp.sequence > 0 {
                match store.get_by_sequence(cp.sequence)? {
                    Some(e) if e.header.id == cp.event_id => {}
                    Some(e) => {
                        return Err(mismatch(format!(
                            "it names event {} at sequence {}, but the log has {} there",
                            cp.event_id, cp.sequence, e.header.id
                        )))
                    }
                    None => {
                        return Err(mismatch(format!(
                            "it names sequence {}, beyond the end of the log",
                            cp.sequence
                        )))
                    }
                }
            }
            position = cp.sequence;
        }
        Ok(Cursor {
            store,
            region,
            fingerprint,
            id: Some(id.to_string()),
            position,
            frames: FrameCache::default(),
        })
    }

    /// The cursor id, when named.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The region read.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Last global sequence delivered or skipped (0 = nothing yet).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Moves the cursor so the next pull starts after `after`.
    pub fn rewind_to(&mut self, after: u64) {
        self.position = after;
    }

    /// A checkpoint update for `sequence` / `event_id`, to commit with
    /// [`AppendOptions::with_checkpoint`]. `None` for an unnamed cursor.
    pub fn checkpoint_for(&self, sequence: u64, event_id: EventId) -> Option<CheckpointUpdate> {
        self.id.as_ref().map(|id| CheckpointUpdate {
            cursor: id.clone(),
            region: self.fingerprint,
            sequence,
            event_id,
        })
    }

    /// Durably commits the checkpoint at [`position`](Self::position).
    ///
    /// # Errors
    /// The append failed, or the cursor is unnamed.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        let id = match self.position {
            0 => EventId(0),
            p => self
                .store
                .get_by_sequence(p)?
                .map(|e| e.header.id)
                .ok_or_else(|| StoreError::BadBatch(format!("sequence {p} is not in the log")))?,
        };
        let cp = self
            .checkpoint_for(self.position, id)
            .ok_or_else(|| StoreError::BadBatch("an unnamed cursor has no checkpoint".into()))?;
        self.store
            .append_system(Vec::new(), AppendOptions::durable().with_checkpoint(cp))?;
        Ok(())
    }
}

impl Cursor {
    /// [`pull_batch`](Canal::pull_batch), delivering views that share the
    /// bytes read instead of owned events (see [`EventView`]): the same
    /// events, order, checks and position, without copying their names
    /// and payloads.
    ///
    /// # Errors
    /// As [`pull_batch`](Canal::pull_batch).
    pub fn pull_views(
        &mut self,
        max: usize,
        deadline: Duration,
    ) -> Result<CanalBatch<EventView>, CanalClosed> {
        self.pull_with(max, deadline, |reads, entries, frames| {
            reads.read_views_cached(entries, frames)
        })
    }

    /// The pull loop, reading matches with `read`.
    fn pull_with<T>(
        &mut self,
        max: usize,
        deadline: Duration,
        read: impl Fn(&ReadPath, &[Entry], &mut FrameCache) -> Result<Vec<T>, StoreError>,
    ) -> Result<CanalBatch<T>, CanalClosed> {
        let core = &self.store.inner.core;
        let fail = |m: String| CanalClosed {
            reason: CloseReason::Failed(m),
        };
        let stopped = |s: Stopped| match s {
            Stopped::Closed => CanalClosed {
                reason: CloseReason::StoreClosed,
            },
            Stopped::Failed(m) => CanalClosed {
                reason: CloseReason::Failed(m),
            },
        };
        let deadline = Instant::now() + deadline;
        let max = max.max(1);
        let mut upto = core.dur.deliverable().map_err(stopped)?;
        loop {
            if upto > self.position {
                let (entries, scanned) =
                    core.reads
                        .scan_entries(&self.region, self.position, max, false, upto);
                if !entries.is_empty() {
                    let events = read(&core.reads, &entries, &mut self.frames)
                        .map_err(|e| fail(e.to_string()))?;
                    // The scan stops at the max-th match, so `scanned` is
                    // either that event or the last sequence looked at.
                    self.position = scanned;
                    return Ok(CanalBatch::from_vec(events));
                }
                self.position = scanned;
            }
            if Instant::now() >= deadline {
                return Ok(CanalBatch::Empty);
            }
            upto = core
                .dur
                .wait_deliverable(self.position, deadline)
                .map_err(stopped)?;
        }
    }
}

impl Canal for Cursor {
    type Item = Event;
    type Error = CanalClosed;

    fn pull_batch(
        &mut self,
        max: usize,
        deadline: Duration,
    ) -> Result<CanalBatch<Event>, CanalClosed> {
        self.pull_with(max, deadline, |reads, entries, frames| {
            reads.read_entries_cached(entries, frames)
        })
    }
}
