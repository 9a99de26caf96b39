//! [`RegionBatch`]: one bounded read of a region.

use batpak_store::Event;

/// Events of a region read from a position, and how far the read looked.
#[derive(Debug, Default)]
pub struct RegionBatch {
    /// Matching events, in sequence order, at most the `max` asked for.
    pub events: Vec<Event>,
    /// The last sequence looked at: the next read continues after it. At
    /// least the asked position; when the read stopped at `max` events it
    /// is the last event's sequence, otherwise the end of what was
    /// readable, so a reader moves past events outside its region.
    pub scanned: u64,
}
