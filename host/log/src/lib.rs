//! The log seam of batpak-host: the one trait, [`EventLog`], through which
//! the runtime — the runner, parking, hot swap and shadow — reads the log
//! and commits to it. Nothing in the runtime names a concrete log.
//!
//! Two kinds of log sit behind it:
//! - the embedded store ([`batpak_store::Store`] implements [`EventLog`]
//!   here, in `store_log`): one process, one disk, one sequence space;
//! - a replicated log (a NATS JetStream cluster, in its own crate): one
//!   [`EventLog`] value per **partition**, each its own sequence space.
//!
//! Dependencies flow one way: runtime → this crate → store (for the event
//! model: [`Event`], [`Proposal`], [`Region`], [`Checkpoint`]); a cluster
//! crate depends on this crate and the store's types, never the reverse.
//!
//! # The contract, in one place
//! - **Positions** are sequences of one partition's log, starting at 1;
//!   0 means "before everything". A region read returns events in sequence
//!   order and how far it looked ([`RegionBatch::scanned`]), so a reader
//!   moves past events outside its region.
//! - **Delivery** to a reactor goes through a [`LogCursor`] (a canal:
//!   `pull_batch`) that hands out only **durable** events, so a checkpoint
//!   never points past what survives a crash (or a leader change).
//! - **A commit** ([`Commit`]) is atomic: its records (reactions, denial
//!   records, system records) and its checkpoint land together or not at
//!   all, in order after every earlier commit of the same caller. It may
//!   carry a [`Fence`]: the log refuses the whole commit
//!   ([`CommitError::Fenced`]) when the cursor's checkpoint moved since the
//!   fence was taken (another instance owns the cursor now).
//! - **Outcomes** of a commit are typed ([`CommitError`]): refused (nothing
//!   applied, retrying cannot help), fenced (nothing applied, stop),
//!   unavailable (nothing applied, retry), **unknown** (it may or may not
//!   have landed: a timeout, a lost connection, a reply that never came),
//!   closed, failed. [`CommitError::Unknown`] documents how a caller
//!   resolves it: re-read the checkpoint ([`EventLog::checkpoint`]) or look
//!   a record up by its id ([`EventLog::get`]) before retrying; records
//!   carry derived ids, so even a retry of a commit that did land appends
//!   nothing twice.
//!
//! With the `memory` feature, [`MemoryLog`] is an in-memory log that
//! injects those faults on a script, for tests of whatever runs over the
//! seam.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod commit;
mod cursor;
mod error;
mod event_log;
#[cfg(feature = "memory")]
mod memory;
mod read_cursor;
mod region_batch;
mod store_log;

pub use commit::{Commit, Committed, Durability, Fence};
pub use cursor::LogCursor;
pub use error::{CommitError, LogError};
pub use event_log::{EventLog, Heads, IntoLog, SharedLog};
#[cfg(feature = "memory")]
pub use memory::{Fault, FaultPlan, MemoryLog, Op};
pub use read_cursor::ReadCursor;
pub use region_batch::RegionBatch;

// The event model the seam speaks, re-exported so a log implementation
// needs no second path to it.
pub use batpak_store::{
    Canal, CanalBatch, CanalClosed, Checkpoint, CheckpointUpdate, CloseReason, Event, EventId,
    Proposal, Region,
};
