//! The seam's typed failures: [`LogError`] for reads and waits,
//! [`CommitError`] for commits (whose outcome may be unknown).

use std::error::Error;

/// The underlying reason, kept for display and `source()`; callers match
/// on the variant, never on this text.
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// Why a read, lookup or wait failed. Reads change nothing, so every one
/// may be retried; the variant says whether that can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The log could not be reached or did not answer in time (a lost
    /// connection, a leader election, a timeout). Transient: retry after a
    /// backoff.
    #[error("the log is unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// The log was closed (the store shut down, the client was dropped).
    #[error("the log is closed")]
    Closed,
    /// The log cannot serve this read, and retrying will not change that:
    /// damaged data, a store poisoned by a failed write, a lost lock.
    #[error("{0}")]
    Failed(#[source] Cause),
    /// The request itself is wrong (an invalid cursor id, a region the log
    /// cannot serve).
    #[error("{0}")]
    Invalid(#[source] Cause),
}

impl LogError {
    /// True when retrying the same read later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, LogError::Unavailable(_))
    }
}

/// Why a commit did not (or may not have) landed.
///
/// Every variant but [`Unknown`](CommitError::Unknown) and
/// [`Failed`](CommitError::Failed) promises that **nothing** of the commit
/// landed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// The log refused the commit: nothing landed, and the same commit will
    /// be refused again (an invalid record, an id or idempotency key that
    /// names other content, a batch too large). A caller stops or changes
    /// what it commits.
    #[error("{0}")]
    Refused(#[source] Cause),
    /// The commit's [`Fence`](crate::Fence) is stale: the cursor's
    /// checkpoint moved since it was taken, so another instance owns the
    /// cursor. Nothing landed; the caller must stop (it is a zombie), not
    /// retry.
    #[error("cursor {cursor:?} was committed by another instance since this one last did (fence {expected}, found {found}); this instance stops")]
    Fenced {
        /// The cursor.
        cursor: String,
        /// The fence the commit carried.
        expected: u64,
        /// The cursor's fence in the log now.
        found: u64,
    },
    /// The log could not take the commit now and says so (not connected,
    /// no leader): nothing landed. Retry after a backoff.
    #[error("the log is unavailable, nothing was committed: {0}")]
    Unavailable(#[source] Cause),
    /// The commit **may or may not** have landed: a timeout, a lost
    /// connection or a lost reply after the request was sent. If it landed,
    /// it landed whole. An implementation answers `Unknown` only once the
    /// request can no longer land later (its deadline at the server has
    /// passed, the connection that carried it is gone), so that the read
    /// which resolves it is final.
    ///
    /// How to resolve it, before anything else is committed for the same
    /// cursor: with a checkpoint, read it ([`EventLog::checkpoint`](crate::EventLog::checkpoint));
    /// at the commit's sequence and event id (or past it), the commit
    /// landed; before it, it did not. Without a checkpoint, look up one of
    /// its records by id ([`EventLog::get`](crate::EventLog::get)). A read
    /// that fails is retried after a backoff; until the outcome is known,
    /// nothing later is committed. Retrying the same commit is also safe —
    /// its records carry explicit ids, so a landed one is deduplicated —
    /// but only resolving tells whether its effects already happened.
    #[error("the commit's outcome is unknown (it may or may not have landed): {0}")]
    Unknown(#[source] Cause),
    /// The log was closed before the commit was taken: nothing landed.
    #[error("the log is closed")]
    Closed,
    /// The log failed and takes no more commits (the store was poisoned by
    /// a failed write or fsync, its lock was lost). The commit may or may
    /// not be durable; the next start resolves it from the checkpoint, as
    /// after a crash. The caller stops.
    #[error("{0}")]
    Failed(#[source] Cause),
}

impl CommitError {
    /// True when nothing of the commit landed and retrying it later may
    /// succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CommitError::Unavailable(_))
    }

    /// True when the commit may have landed
    /// ([`Unknown`](CommitError::Unknown) or [`Failed`](CommitError::Failed)).
    pub fn may_have_landed(&self) -> bool {
        matches!(self, CommitError::Unknown(_) | CommitError::Failed(_))
    }
}
