//! [`Commit`]: what a caller hands the log to land atomically, and what a
//! landed commit reports back ([`Committed`]).

use batpak_store::{CheckpointUpdate, Proposal};

/// When [`EventLog::commit`](crate::EventLog::commit) returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Once the commit is ordered and will land whole (the embedded store:
    /// sequenced and queued for its writer). It is not yet durable: a
    /// crash may lose it — whole, never in part — so a caller waits with
    /// [`EventLog::wait_durable`](crate::EventLog::wait_durable) on
    /// [`Committed::upto`] before it relies on it. A replicated log may
    /// treat this like `Durable`.
    Accepted,
    /// Once the commit is readable through this log's reads (the embedded
    /// store: written, not yet fsynced). A replicated log may treat this
    /// like `Durable`.
    Visible,
    /// Once the commit is durable (fsynced; on a replicated log, stored by
    /// a quorum with its fsync).
    #[default]
    Durable,
}

/// A fencing token for a cursor: what the caller last saw of the cursor's
/// checkpoint. A commit carrying it is refused whole
/// ([`CommitError::Fenced`](crate::CommitError::Fenced)) when the
/// checkpoint has moved since — another instance of the same reactor
/// committed — so a paused-then-resumed (zombie) instance cannot land
/// anything. The value is the log's own (the embedded store: the
/// checkpoint's sequence; a replicated log: the sequence of the cursor's
/// last checkpoint record); callers only carry it from
/// [`EventLog::fence`](crate::EventLog::fence) or [`Committed::fence`] to
/// the next [`Commit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fence(pub u64);

/// Records to land atomically, optionally with a cursor's new checkpoint.
///
/// Every record should carry an explicit id (`Proposal::id`), derived from
/// what it answers, so that a retry after an unknown outcome appends
/// nothing twice (the log deduplicates explicit ids) and so the outcome can
/// be resolved by looking one up ([`EventLog::get`](crate::EventLog::get)).
#[derive(Clone, Debug, Default)]
pub struct Commit {
    /// The records, in order: reactions, denial records, system records.
    /// May be empty when only the checkpoint moves. `batpak.*` kinds are
    /// admitted: this is the host's own path, never a user's.
    pub records: Vec<Proposal>,
    /// The cursor's new position, landing in the same atomic write.
    pub checkpoint: Option<CheckpointUpdate>,
    /// When the call returns.
    pub durability: Durability,
    /// Refuse the whole commit unless the checkpoint's cursor is still
    /// where this fence saw it (see [`Fence`]). Only meaningful with a
    /// checkpoint.
    pub fence: Option<Fence>,
}

impl Commit {
    /// A durable commit of `records` without a checkpoint (system records:
    /// parking, swap, refusal, replay).
    pub fn records(records: Vec<Proposal>) -> Commit {
        Commit {
            records,
            ..Commit::default()
        }
    }

    /// Sets when the call returns.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Commit {
        self.durability = durability;
        self
    }

    /// Moves `checkpoint` in the same atomic write.
    #[must_use]
    pub fn with_checkpoint(mut self, checkpoint: CheckpointUpdate) -> Commit {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// Fences the commit (see [`Fence`]).
    #[must_use]
    pub fn fenced(mut self, fence: Option<Fence>) -> Commit {
        self.fence = fence;
        self
    }
}

/// A commit that landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// A sequence at or past the end of the commit: once
    /// [`EventLog::wait_durable`](crate::EventLog::wait_durable) says it is
    /// durable, the whole commit is.
    pub upto: u64,
    /// The fence for the cursor's next commit, when the commit moved a
    /// checkpoint.
    pub fence: Option<Fence>,
}
