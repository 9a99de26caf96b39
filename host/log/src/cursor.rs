//! [`LogCursor`]: a canal over a region of one log.

use crate::error::LogError;
use batpak_store::{Canal, Event, Region};

/// An ordered canal over a region of one log: `pull_batch` delivers
/// **durable** matching events after [`position`](Self::position), in
/// sequence order, each once, waiting (without spinning) up to the deadline
/// when there are none. An empty batch means the deadline passed.
///
/// It keeps no checkpoint: the caller commits one with its output.
pub trait LogCursor: Canal<Item = Event, Error = LogError> {
    /// The last sequence delivered or looked past (0: nothing yet).
    fn position(&self) -> u64;
    /// The region read.
    fn region(&self) -> &Region;
}
