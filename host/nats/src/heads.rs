//! Where each entity's chain ends, as this process last saw it: the
//! stream sequence, entity sequence and chain link of the entity's last
//! event. A cached head may be stale (another host appended since); that is
//! safe, because every write carries the head's stream sequence as
//! `Nats-Expected-Last-Subject-Sequence` on the entity's subjects, so a
//! stale head makes the server refuse the write, and the writer re-reads
//! the head from the stream leader and tries again.

use batpak_store::ChainLink;
use std::collections::HashMap;
use std::sync::Mutex;

/// The most heads kept; past it the cache starts over (heads are re-read
/// on demand).
const MAX_HEADS: usize = 65_536;

/// The end of one entity's chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// Stream sequence of the entity's last event (0: none).
    pub stream_sequence: u64,
    /// Its entity sequence (0: none).
    pub entity_sequence: u64,
    /// Its id and hash, the next event's `prev` (None: none).
    pub link: Option<ChainLink>,
}

/// Heads by (partition, entity).
#[derive(Default)]
pub struct HeadCache {
    map: Mutex<HashMap<(u32, String), Head>>,
}

impl HeadCache {
    /// The cached head, if any.
    pub fn get(&self, p: u32, entity: &str) -> Option<Head> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(p, entity.to_string())).copied()
    }

    /// Records `head` as the entity's.
    pub fn put(&self, p: u32, entity: &str, head: Head) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_HEADS {
            map.clear();
        }
        map.insert((p, entity.to_string()), head);
    }

    /// Drops the entity's head (it is known stale or unknown).
    pub fn forget(&self, p: u32, entity: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(p, entity.to_string()));
    }
}
