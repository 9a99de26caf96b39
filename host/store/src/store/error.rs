//! Store errors. Each names what went wrong, where, and what to do about
//! the store itself; advice about a program's own commands and options
//! (which command shows a full report, which flag picks another
//! directory) is the program's to add, by matching on the variant.

use crate::event::{EventId, ValidationError};
use std::path::PathBuf;

/// Why a store operation failed. More variants may come: match with a
/// wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process owns the directory.
    #[error("store {dir} is in use by another process ({holder}{})", super::lock::held_for_text(*.held_for))]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// What the lock file says about its holder: pid, command line and
        /// since when (ISO-8601 UTC).
        holder: String,
        /// How long the holder had held the store when this open was
        /// refused, when the lock file says since when.
        held_for: Option<std::time::Duration>,
    },
    /// A proposal broke a rule; nothing was written.
    #[error("proposal {index}: {source}")]
    Invalid {
        /// Position of the proposal in its batch.
        index: usize,
        /// The broken rule.
        source: ValidationError,
    },
    /// Optimistic concurrency failed; nothing was written.
    #[error("entity {entity:?} is at sequence {actual}, but the append expected {expected}; re-read the entity and retry")]
    SequenceConflict {
        /// The entity.
        entity: String,
        /// What the caller expected.
        expected: u64,
        /// What the store has.
        actual: u64,
    },
    /// A proposal's idempotency key or explicit id already names an event
    /// with other content (entity, scope, kind, causation or payload
    /// bytes); nothing was written. An identical retry is not an error: it
    /// returns the original's receipt marked deduplicated.
    #[error("{0}")]
    IdempotencyConflict(Box<IdempotencyConflict>),
    /// A causation names no known event; nothing was written.
    #[error("proposal {index}: causation {id} is not an event in this store")]
    UnknownCausation {
        /// Position of the proposal in its batch.
        index: usize,
        /// The missing id.
        id: String,
    },
    /// An empty batch or one too large for one frame.
    #[error("{0}")]
    BadBatch(String),
    /// Damaged data that is not a torn tail: the store refuses to guess.
    #[error("corrupt store: segment {segment:08} offset {offset}: {reason}. Nothing was changed; restore the damaged segment from a backup")]
    Corrupt {
        /// Segment number.
        segment: u32,
        /// Byte offset in the segment file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log ends before where other evidence says it was acknowledged
    /// durable (the durable marker, the index snapshot), or a damaged tail
    /// cannot be told from a torn write because the durable marker is gone:
    /// cutting it could drop acknowledged events, so the store refuses.
    #[error("acknowledged data may be lost: segment {segment:08} offset {offset}: {reason}. Nothing was changed; {fix}")]
    AcknowledgedLoss {
        /// Segment where the log ends (or the damage starts).
        segment: u32,
        /// Byte offset in that segment.
        offset: u64,
        /// What is missing and which evidence says it was acknowledged.
        reason: String,
        /// How to proceed.
        fix: String,
    },
    /// Group or others can access the store directory (PostgreSQL's rule
    /// for its data directory): every payload is in it.
    #[error("store directory {} has mode {mode:04o}: other users can read or change the events in it, so the store refuses to open it; run `{fix}` and try again", .dir.display())]
    NotPrivate {
        /// The store directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// The command that fixes it (`chmod 700 DIR`).
        fix: String,
    },
    /// A named cursor's checkpoint cannot be trusted.
    #[error("checkpoint of cursor {cursor:?} cannot be used: {reason}")]
    CheckpointMismatch {
        /// The cursor id.
        cursor: String,
        /// Why.
        reason: String,
    },
    /// A write or fsync failed earlier; the store refuses further writes
    /// because it can no longer promise what is on disk.
    #[error("store is poisoned by an earlier failure ({0}); reopen it to recover")]
    Poisoned(String),
    /// The directory's `LOCK` file was removed or replaced while this
    /// process held the store: another process may write to it now, so this
    /// one refuses to write on (fail-stop, like [`StoreError::Poisoned`]).
    #[error("{0}")]
    LockLost(String),
    /// The store has been closed.
    #[error("store is closed")]
    Closed,
    /// A read-only tool ([`LogReader`](super::LogReader)) was pointed at a
    /// directory that holds no store (no `segments` directory): nothing was
    /// ever appended there, or it is the wrong directory.
    #[error("no store in {} (no segments directory)", .dir.display())]
    NoStore {
        /// The directory.
        dir: PathBuf,
    },
    /// An operating-system I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The details of [`StoreError::IdempotencyConflict`]: which proposal,
/// what matched, and the original event it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("proposal {index}: {} already names event {original_id} (sequence {original_sequence}, entity {original_entity:?}, kind {original_kind:?}) with different content; an identical retry returns that event's receipt — give a different event a new {}", conflict_subject(key.as_deref(), *id), if key.is_some() { "idempotency key" } else { "id" })]
pub struct IdempotencyConflict {
    /// Position of the proposal in its batch.
    pub index: usize,
    /// The idempotency key that matched, when the proposal had one.
    pub key: Option<String>,
    /// The explicit id that matched, when no key did.
    pub id: Option<EventId>,
    /// The original event's id.
    pub original_id: EventId,
    /// The original event's global sequence.
    pub original_sequence: u64,
    /// The original event's entity.
    pub original_entity: String,
    /// The original event's kind.
    pub original_kind: String,
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }
}

/// "idempotency key \"k\"" or "id X", for [`StoreError::IdempotencyConflict`].
fn conflict_subject(key: Option<&str>, id: Option<EventId>) -> String {
    match (key, id) {
        (Some(k), _) => format!("idempotency key {k:?}"),
        (None, Some(id)) => format!("id {id}"),
        (None, None) => "the key or id".into(),
    }
}
