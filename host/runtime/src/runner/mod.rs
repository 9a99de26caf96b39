//! The runner: one thread per reactor. It pulls batches from the reactor's
//! canal — a cursor over the log seam — calls `react`, sends every proposal
//! through the gates and commits the admitted reactions, the denial records
//! and the new checkpoint in **one atomic commit** through the seam. A batch that keeps failing is retried with
//! backoff, bisected down to the failing event, and that event is parked.
//!
//! Effectively-once: a reaction's id is derived from (reactor, source event,
//! index among that source's reactions), and it is committed in the same
//! frame as the checkpoint past its source. After a crash the batch comes
//! back only if that frame never made it, and even a redelivered reaction
//! cannot be appended twice (the log deduplicates explicit ids). A commit
//! the log could not take is retried; one whose outcome is unknown is
//! resolved by reading the checkpoint before anything else is committed;
//! one fenced off (another instance owns the cursor) stops the runner.
//!
//! Commits are pipelined: an append returns once accepted (ordered, atomic
//! with its checkpoint) and its fsync overlaps the next batches, up to
//! `RunnerSettings::durable_window` commits; the runner waits for them all
//! before it reports idle, swaps, parks or stops. A crash loses at most that
//! many trailing commits, checkpoints included, so exactly their batches come
//! back.
//!
//! Files: `settings` (what a runner is told), `error` (its typed failures),
//! `handle` (spawning and the [`RunnerHandle`]), `feed` (the reactor's
//! cursor over the seam, or its lossy subscription), `worker` (the pull loop),
//! `landing` (every commit through the seam: fence, retry, unknown outcomes),
//! `log_retry` (the backoff while the log is unavailable),
//! `retry` (attempts, backoff, bisection),
//! `outcome` (judging one call's output), `commit` (the atomic commit and
//! parking), `replay` (re-delivering parked events), `shape` (output limits).
//! Hot swap is one folder, `swap` (its records, checks and refusals, the
//! exchange at a batch boundary and rollback, the state the handle and the
//! thread share, and loading a file to swap in).

mod commit;
mod error;
mod feed;
mod handle;
mod instance;
mod landing;
mod log_retry;
mod outcome;
mod replay;
mod retry;
mod settings;
mod shape;
pub(crate) mod swap;
mod worker;

pub use error::RunnerError;
pub use handle::{spawn, RunnerHandle, SwapTicket};
pub use instance::{cursor_id, live_instances, Instance, MAX_INSTANCES, RETIRED_REGION};
pub use settings::{RunnerSettings, DEFAULT_DURABLE_WINDOW, DEFAULT_LOG_RETRY, DEFAULT_MAX_BATCH};
pub use shape::{
    MAX_OUTPUT_BYTES, MAX_OUTPUT_HOST_BYTES, MAX_PROPOSALS_PER_CALL, MAX_PROPOSAL_NAME_BYTES,
};
