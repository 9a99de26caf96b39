//! What the NATS log's operations can end in, typed so callers match on
//! the variant, never on text.

use batpak_store::ValidationError;

/// A failed operation of [`crate::NatsLog`]. Every variant says whether
/// anything may have been stored: only [`LogError::Unknown`] leaves that
/// open, and it names how to find out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The request went out but no answer came in time (timeout, connection
    /// lost, leader changing): it **may or may not** have been stored.
    /// Resolve an append by appending the same proposal again (same id or
    /// idempotency key: the server's de-duplication answers `duplicate`
    /// within its window); resolve a commit with
    /// [`crate::NatsLog::resolve_commit`] (re-reads the checkpoint subject
    /// and, while it is still at the commit's fence, seals the fence, so
    /// its answer is final even if the request is still in flight).
    #[error(
        "the outcome of {op} is unknown ({reason}): it may or may not have been stored; {resolve}"
    )]
    Unknown {
        /// The operation (`append`, `commit`).
        op: &'static str,
        /// What happened instead of an answer.
        reason: String,
        /// How to find out whether it was stored.
        resolve: &'static str,
    },
    /// The commit's fence failed: the reactor's checkpoint in this partition
    /// is no longer at the sequence this instance read, so another instance
    /// committed since (this one is stale, e.g. paused and resumed). Nothing
    /// of the batch was stored. Re-read the checkpoint; an instance that is
    /// not the owner any more must stop.
    #[error(
        "commit refused: reactor {reactor:?}'s checkpoint in partition {partition} has moved \
         past sequence {expected} (another instance committed since); nothing of this batch \
         was stored — re-read the checkpoint and stop if this instance no longer owns the partition"
    )]
    Fenced {
        /// The partition.
        partition: u32,
        /// The reactor.
        reactor: String,
        /// The checkpoint sequence this instance expected (0: none).
        expected: u64,
    },
    /// No server answered for the partition (no stream leader, or no
    /// responders): nothing was stored. Retry after a short wait.
    #[error("partition {partition} is unavailable ({reason}); nothing was stored, retry shortly")]
    Unavailable {
        /// The partition.
        partition: u32,
        /// What the client saw.
        reason: String,
    },
    /// The proposal's `expected_sequence` is not the entity's current
    /// sequence: another append got there first. Nothing was stored; read
    /// the entity again before deciding.
    #[error(
        "entity {entity:?} is at sequence {actual}, not the expected {expected}: it moved on \
         since it was read; nothing was stored — read it again before deciding"
    )]
    Conflict {
        /// The entity.
        entity: String,
        /// What the proposal expected.
        expected: u64,
        /// Where the entity is.
        actual: u64,
    },
    /// Other writers kept moving the entities of this write on (each try
    /// was refused by their chain checks); nothing was stored.
    #[error("gave up after {tries} tries: other writers kept appending to the same entities; nothing was stored, retry later")]
    Contended {
        /// Tries made.
        tries: u32,
    },
    /// The partition's stream does not exist: the cluster was never
    /// initialised, or with fewer partitions.
    #[error("stream {stream} does not exist: run `batpak-host cluster init` (or `init`) first")]
    NotInitialised {
        /// The missing stream.
        stream: String,
    },
    /// The proposal is malformed (names, kind, payload size).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A proposal asks for something this log does not provide yet.
    #[error("{what} is not supported by the NATS log yet")]
    Unsupported {
        /// The field or feature.
        what: &'static str,
    },
    /// A commit holds more reactions than one atomic batch can carry.
    #[error(
        "a commit holds {reactions} reactions; one atomic batch carries at most {max} \
         (plus the checkpoint): commit in smaller batches"
    )]
    BatchTooLarge {
        /// Reactions given.
        reactions: usize,
        /// The most one batch takes.
        max: usize,
    },
    /// A record on the stream that this log cannot decode: damage or a
    /// foreign writer. Reported, never skipped.
    #[error("partition {partition}, sequence {sequence}: undecodable record ({reason})")]
    Damaged {
        /// The partition.
        partition: u32,
        /// The stream sequence of the record.
        sequence: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The server refused the request for another reason; nothing stored.
    #[error("the server refused {op}: {description} (error code {code})")]
    Refused {
        /// The operation.
        op: &'static str,
        /// JetStream's error code (0 when it sent none).
        code: u64,
        /// JetStream's description.
        description: String,
    },
    /// Could not connect to any of the servers.
    #[error("could not connect to NATS at {servers}: {reason}")]
    Connect {
        /// The servers tried.
        servers: String,
        /// Why.
        reason: String,
    },
    /// The cluster holds no batpak layout (or an unreadable one).
    #[error("no usable batpak layout in the cluster ({reason}): run `batpak-host cluster init`")]
    NoLayout {
        /// Why.
        reason: String,
    },
    /// The thread running the client is gone (it panicked); the log is
    /// unusable and must be reopened.
    #[error("the NATS client thread has stopped; reopen the log")]
    ClientThreadGone,
}
