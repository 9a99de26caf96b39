//! [`SwapOutcome`]: what a completed swap did.

use serde::{Deserialize, Serialize};

/// A completed swap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapOutcome {
    /// The reactor.
    pub reactor: String,
    /// Version that was running.
    pub old_version: String,
    /// Its component digest.
    pub old_digest: String,
    /// Version now running.
    pub new_version: String,
    /// Its component digest (stamped on every reaction from now on).
    pub new_digest: String,
    /// Log position of the swap: the last sequence the old version handled
    /// (its checkpoint); the new version handles everything after it.
    pub position: u64,
    /// Largest batch the new version gets (its own `max_batch` applies).
    pub max_batch: usize,
    /// Id of the `batpak.plugin.swapped` record.
    pub record: String,
}
