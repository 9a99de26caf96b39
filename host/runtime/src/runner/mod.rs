//! The runner: one thread per reactor. It pulls batches from the reactor's
//! canal, calls `react`, sends every proposal through the gates and appends
//! the admitted reactions, the denial records and the new checkpoint in
//! **one atomic append**. A batch that keeps failing is retried with
//! backoff, bisected down to the failing event, and that event is parked.
//!
//! Effectively-once: a reaction's id is derived from (reactor, source event,
//! index among that source's reactions), and it is committed in the same
//! frame as the checkpoint past its source. After a crash the batch comes
//! back only if that frame never made it, and even a redelivered reaction
//! cannot be appended twice (the store deduplicates explicit ids).
//!
//! Commits are pipelined: an append returns once accepted (ordered, atomic
//! with its checkpoint) and its fsync overlaps the next batches, up to
//! `RunnerSettings::durable_window` commits; the runner waits for them all
//! before it reports idle, swaps, parks or stops. A crash loses at most that
//! many trailing commits, checkpoints included, so exactly their batches come
//! back.
//!
//! Files: `settings` (what a runner is told), `error` (its typed failures),
//! `handle` (spawning and the [`RunnerHandle`]), `worker` (the pull loop),
//! `hot_swap` (a replacement picked up at a batch boundary, rollback) and
//! `pending` (the swap state handle and worker share), `retry` (attempts, backoff, bisection),
//! `outcome` (judging one call's output), `commit` (the atomic append and
//! parking), `replay` (re-delivering parked events), `shape` (output limits).

mod commit;
mod error;
mod feed;
mod handle;
mod hot_swap;
mod landing;
mod outcome;
mod pending;
mod replay;
mod retry;
mod settings;
mod shape;
mod worker;

pub use error::RunnerError;
pub use handle::{spawn, RunnerHandle, SwapTicket};
pub use settings::{
    cursor_id, RunnerSettings, DEFAULT_DURABLE_WINDOW, DEFAULT_LOG_RETRY, DEFAULT_MAX_BATCH,
};
pub use shape::{
    MAX_OUTPUT_BYTES, MAX_OUTPUT_HOST_BYTES, MAX_PROPOSALS_PER_CALL, MAX_PROPOSAL_NAME_BYTES,
};
