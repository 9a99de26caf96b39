//! Hot swap: replacing a running reactor by a new version between two
//! batches, without losing or repeating an event.
//!
//! The runner keeps its canal (cursor and checkpoint) and only exchanges the
//! reactor behind it, so the new version continues exactly where the old one
//! stopped. Reaction ids are derived from (reactor name, source event,
//! ordinal) — not from the version — so a batch redelivered after a crash in
//! the middle of a swap still cannot be appended twice.
//!
//! Every decision is recorded on the reactor's stream (`reactor:<name>`,
//! scope `batpak`): [`SWAPPED_KIND`], [`SWAP_REFUSED_KIND`] and
//! [`ROLLED_BACK_KIND`], so the log itself says which version produced what.
//!
//! Files: `refusal` (why a swap is refused), `outcome` (a completed swap),
//! `records` (the three system records), `check` (the rules a new version
//! must meet), `pending` (the swap state the runner handle and its thread
//! share: a request on its way, the replaced version on probation, the last
//! swap), `exchange` (on the runner thread: picking a request up at a batch
//! boundary, recording it, exchanging the reactor, rolling back), `file`
//! ([`swap_file`]: load a file and ask for a swap — `run --watch` and the
//! `swap` command).

mod check;
mod exchange;
mod file;
mod outcome;
pub(crate) mod pending;
mod records;
mod refusal;

pub use check::{check_swap, describe_region};
pub use file::{refusal_for, swap_file};
pub use outcome::SwapOutcome;
pub(crate) use records::{refused_proposal, rolled_back_proposal, swapped_proposal};
pub use records::{
    RolledBackRecord, SwapRefusedRecord, ROLLED_BACK_KIND, SWAPPED_KIND, SWAP_REFUSED_KIND,
};
pub use refusal::SwapRefusal;
