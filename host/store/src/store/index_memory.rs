//! [`IndexMemory`]: what the in-memory index holds, computed from the
//! capacity of its structures (not from the process's resident size), so a
//! benchmark can report bytes per event and which structure they go to.

use super::index::Index;
use super::Store;
use std::mem::size_of;

/// Bytes of heap the index holds, by structure, from their capacities.
/// Hash tables count their buckets (a power of two above capacity × 8/7)
/// and one control byte per bucket; lists count their capacity; names count
/// their text and `Arc` headers. Allocator overhead is not included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexMemory {
    /// Events indexed.
    pub events: u64,
    /// The per-sequence columns (id, cause, offset, lengths, entity,
    /// class), the segment and class tables and the rare foreign causes.
    pub entries: u64,
    /// The id → sequence table.
    pub by_id: u64,
    /// Per-entity sequence lists and their table.
    pub by_entity: u64,
    /// Causation lists (the causal graph forward) and their table.
    pub children: u64,
    /// The correlation heads and lists threaded through the columns.
    pub correlation: u64,
    /// Interned entity, scope and kind names.
    pub names: u64,
    /// Idempotency keys and checkpoints.
    pub keys: u64,
}

impl IndexMemory {
    /// All structures together.
    pub fn total(&self) -> u64 {
        self.entries
            + self.by_id
            + self.by_entity
            + self.children
            + self.correlation
            + self.names
            + self.keys
    }

    /// [`total`](Self::total) divided by the events indexed (0 when empty).
    pub fn per_event(&self) -> f64 {
        if self.events == 0 {
            0.0
        } else {
            self.total() as f64 / self.events as f64
        }
    }
}

/// Heap bytes of a hash table of `cap` capacity with `slot`-byte slots.
fn table(cap: usize, slot: usize) -> u64 {
    if cap == 0 {
        return 0;
    }
    let buckets = (cap * 8 / 7).next_power_of_two();
    (buckets * (slot + 1)) as u64
}

fn vec_bytes<T>(v: &Vec<T>) -> u64 {
    (v.capacity() * size_of::<T>()) as u64
}

impl Index {
    pub(crate) fn memory(&self) -> IndexMemory {
        use crate::EventId;
        IndexMemory {
            events: self.last_sequence(),
            entries: vec_bytes(&self.ids)
                + vec_bytes(&self.cause)
                + vec_bytes(&self.offset)
                + vec_bytes(&self.body_len)
                + vec_bytes(&self.frame)
                + table(self.frame_far.capacity(), size_of::<(u32, u32)>())
                + vec_bytes(&self.entity)
                + vec_bytes(&self.class)
                + vec_bytes(&self.segments)
                + vec_bytes(&self.classes)
                + table(self.classes.len(), size_of::<((u32, u32), u32)>())
                + table(self.cause_foreign.capacity(), size_of::<(u32, EventId)>()),
            by_id: self.by_id.heap_bytes(),
            by_entity: vec_bytes(&self.by_entity)
                + self
                    .by_entity
                    .iter()
                    .map(super::seq_list::SeqList::heap_bytes)
                    .sum::<u64>(),
            children: table(self.children.capacity(), size_of::<(u32, u32)>())
                + table(
                    self.children_many.capacity(),
                    size_of::<(u32, super::seq_list::SeqList)>(),
                )
                + self
                    .children_many
                    .values()
                    .map(super::seq_list::SeqList::heap_bytes)
                    .sum::<u64>()
                + table(
                    self.children_foreign.capacity(),
                    size_of::<(EventId, Vec<u32>)>(),
                )
                + self.children_foreign.values().map(vec_bytes).sum::<u64>(),
            correlation: vec_bytes(&self.corr)
                + vec_bytes(&self.corr_next)
                + table(self.corr_tail.capacity(), size_of::<(u32, u32)>())
                + table(self.corr_foreign.capacity(), size_of::<(EventId, u32)>())
                + table(
                    self.corr_foreign_head.capacity(),
                    size_of::<(u32, EventId)>(),
                ),
            names: vec_bytes(&self.names.names)
                + self
                    .names
                    .names
                    .iter()
                    // Arc<str>: two counters beside the text.
                    .map(|n| (n.len() + 16) as u64)
                    .sum::<u64>()
                + self.names.ids.heap_bytes(),
            keys: table(self.keys.capacity(), size_of::<(String, u64)>())
                + self.keys.keys().map(|k| k.capacity() as u64).sum::<u64>()
                + table(
                    self.checkpoints.capacity(),
                    size_of::<(String, super::Checkpoint)>(),
                ),
        }
    }
}

impl Store {
    /// What the in-memory index holds, by structure (see [`IndexMemory`]).
    /// Takes the index's read lock for a walk over its per-entity and
    /// per-cause lists.
    pub fn index_memory(&self) -> IndexMemory {
        self.inner.core.reads.index.read().memory()
    }
}
