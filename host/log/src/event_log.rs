//! [`EventLog`]: the seam trait, and the handle the runtime holds
//! ([`SharedLog`]).

use crate::commit::{Commit, Committed, Fence};
use crate::cursor::LogCursor;
use crate::error::{CommitError, LogError};
use crate::region_batch::RegionBatch;
use batpak_store::{Canal, CanalClosed, Checkpoint, Event, EventId, Proposal, Region};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A log shared by the threads of a host: every runner, parking, swap and
/// shadow hold one.
pub type SharedLog = Arc<dyn EventLog>;

/// A lossy live feed of a region (a [`Subscription`](batpak_store::Subscription)
/// on the embedded store).
pub type LiveFeed = Box<dyn Canal<Item = Event, Error = CanalClosed>>;

/// Progress markers of a log, last known (cheap to ask: no round trip).
/// Always `durable <= accepted`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heads {
    /// Highest sequence taken by the log (ordered, perhaps not durable).
    pub accepted: u64,
    /// Highest sequence known durable: what cursors may deliver.
    pub durable: u64,
}

/// One partition's log, as the runtime sees it: read a region from a
/// position, commit records with a checkpoint atomically, read checkpoints,
/// look events up by id or entity, wait for new events. Synchronous and
/// shareable across threads; an implementation over an asynchronous client
/// keeps its runtime on its own thread behind these calls.
///
/// Every call either succeeds, or fails with a typed error that says what
/// is known: reads with [`LogError`], commits with [`CommitError`] (whose
/// [`Unknown`](CommitError::Unknown) variant means "may or may not have
/// landed" and documents how to resolve it). No call blocks longer than
/// its timeout, or the implementation's own bounded request timeout for
/// calls without one.
pub trait EventLog: Send + Sync + fmt::Debug + 'static {
    /// What this log is, for messages: `store /path/to/data`,
    /// `nats partition 3 of 8`.
    fn describe(&self) -> String;

    /// Reads up to `max` (at least 1) events matching `region` with a
    /// sequence greater than `after`, in order, without waiting. Sees every
    /// committed event, durable or not yet. System (`batpak.*`) events
    /// match only when the region lists their kind.
    ///
    /// # Errors
    /// [`LogError`]: unavailable (retry), closed, failed, invalid.
    fn read(&self, region: &Region, after: u64, max: usize) -> Result<RegionBatch, LogError>;

    /// A cursor (a canal) over `region` delivering **durable** events with
    /// a sequence greater than `after`, in order, waiting for more when
    /// asked: how a reactor is fed. Checkpoints are the caller's: it
    /// commits them with [`commit`](Self::commit).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    fn open_cursor(&self, region: &Region, after: u64) -> Result<Box<dyn LogCursor>, LogError>;

    /// A lossy live feed of `region` buffering at most `capacity` events:
    /// a subscriber that falls behind is cut off
    /// ([`CloseReason::Lagged`](batpak_store::CloseReason::Lagged)).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    fn subscribe(&self, region: &Region, capacity: usize) -> Result<LiveFeed, LogError>;

    /// Lands `commit` — its records and its checkpoint — atomically, after
    /// every commit this caller made before, refusing it whole when its
    /// fence is stale.
    ///
    /// The log may take the records and checkpoint out of `commit` (so the
    /// embedded store appends them without a copy) when the commit lands
    /// or fails for good; after [`Unavailable`](CommitError::Unavailable)
    /// and [`Unknown`](CommitError::Unknown) it leaves `commit` as it was,
    /// so the caller can resolve the outcome and retry the same commit.
    ///
    /// # Errors
    /// [`CommitError`]; only [`Unknown`](CommitError::Unknown) and
    /// [`Failed`](CommitError::Failed) leave open whether it landed.
    fn commit(&self, commit: &mut Commit) -> Result<Committed, CommitError>;

    /// The last committed checkpoint of `cursor`, `None` before the first.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    fn checkpoint(&self, cursor: &str) -> Result<Option<Checkpoint>, LogError>;

    /// The fence for the next commit of `cursor` (see [`Fence`]): take it
    /// when taking over a cursor, then carry [`Committed::fence`] forward.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    fn fence(&self, cursor: &str) -> Result<Fence, LogError>;

    /// `cursor`'s last checkpoint and a fence that is not newer than it:
    /// what an instance takes a cursor over with, and what it resumes with
    /// after a commit of unknown outcome.
    ///
    /// Read apart, the pair can be torn: when another instance commits
    /// between the two reads, an old position with the new fence would let
    /// this instance's next commit pass the fence and handle the events in
    /// between a second time. This default reads the fence first, so a
    /// commit in between makes the *checkpoint* the newer one, and this
    /// instance's next commit is refused as fenced instead. A log that can
    /// read both at once overrides it.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    fn fenced_checkpoint(&self, cursor: &str) -> Result<(Option<Checkpoint>, Fence), LogError> {
        let fence = self.fence(cursor)?;
        let checkpoint = self.checkpoint(cursor)?;
        Ok((checkpoint, fence))
    }

    /// The committed event with id `id`.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    fn get(&self, id: EventId) -> Result<Option<Event>, LogError>;

    /// The committed event at `sequence`.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    fn get_by_sequence(&self, sequence: u64) -> Result<Option<Event>, LogError>;

    /// Up to `max` events of `entity` with an entity sequence greater than
    /// `after`, oldest first.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    fn entity_events(&self, entity: &str, after: u64, max: usize) -> Result<Vec<Event>, LogError>;

    /// The log's progress markers, last known.
    fn heads(&self) -> Heads;

    /// Waits until `sequence` is durable: `Ok(true)` once it is,
    /// `Ok(false)` when `timeout` passed first.
    ///
    /// # Errors
    /// As [`read`](Self::read): [`LogError::Closed`] when the log shuts
    /// down, and a failed log wakes every waiter with its failure.
    fn wait_durable(&self, sequence: u64, timeout: Duration) -> Result<bool, LogError>;

    /// Waits until an event past `after` is durable, or `timeout` passes;
    /// returns the durable head either way (not past `after` on timeout).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    fn wait_for_events(&self, after: u64, timeout: Duration) -> Result<u64, LogError>;

    /// Appends the host's own records (parking, swap, refusals, replay
    /// requests) durably, without a checkpoint.
    ///
    /// # Errors
    /// As [`commit`](Self::commit).
    fn append_system(&self, records: Vec<Proposal>) -> Result<Committed, CommitError> {
        self.commit(&mut Commit::records(records))
    }
}

/// Whatever a log handle can be made from, so callers keep passing what
/// they have (`&Store`, a [`SharedLog`]) to the runtime.
pub trait IntoLog {
    /// The shared handle.
    fn into_log(self) -> SharedLog;
}

impl IntoLog for SharedLog {
    fn into_log(self) -> SharedLog {
        self
    }
}

impl IntoLog for &SharedLog {
    fn into_log(self) -> SharedLog {
        self.clone()
    }
}
