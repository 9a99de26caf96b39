//! [`LogCursor`]: a canal over a region of one log.

use crate::error::LogError;
use batpak_store::{Canal, EventView, Region};

/// An ordered canal over a region of one log: `pull_batch` delivers
/// **durable** matching events after [`position`](Self::position), in
/// sequence order, each once, waiting (without spinning) up to the deadline
/// when there are none. An empty batch means the deadline passed.
///
/// Events come as [`EventView`]s: the embedded store's share the bytes it
/// read (no names or payloads copied); a log that decodes owned events
/// hands them out as views over those.
///
/// It keeps no checkpoint: the caller commits one with its output.
pub trait LogCursor: Canal<Item = EventView, Error = LogError> {
    /// The last sequence delivered or looked past (0: nothing yet).
    fn position(&self) -> u64;
    /// The region read.
    fn region(&self) -> &Region;
}
