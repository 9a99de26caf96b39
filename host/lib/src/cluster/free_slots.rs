//! When each free slot (reactor or relay) was first seen free. A host
//! takes a slot at once when it is the slot's preferred host; any other
//! host waits a lease TTL first, so the preferred one gets it unless it is
//! gone — one rule for reactor and relay slots alike.

use batpak_nats::LeaseView;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Free slots by name, since when they were seen free.
#[derive(Debug, Default)]
pub struct FreeSlots(HashMap<String, Instant>);

impl FreeSlots {
    /// How long `slot` has been seen free, `None` when it is no candidate
    /// to take: this host holds it (`held_here`) or its lease is not
    /// takeable (then it is forgotten, and its wait starts again when it
    /// next falls free).
    pub fn free_for(&mut self, slot: &str, held_here: bool, view: &LeaseView) -> Option<Duration> {
        if held_here || !view.takeable() {
            self.0.remove(slot);
            return None;
        }
        Some(
            self.0
                .entry(slot.to_string())
                .or_insert_with(Instant::now)
                .elapsed(),
        )
    }

    /// `slot` was taken by this host: it is no longer free.
    pub fn taken(&mut self, slot: &str) {
        self.0.remove(slot);
    }
}
