//! The in-memory index: a dense vector of fixed-size entries ordered by
//! global sequence, plus maps by id, entity, causation (the causal graph
//! forward), correlation, idempotency key and cursor checkpoint.
//!
//! Every list of sequences in the maps is ascending (events are inserted
//! in sequence order), so a query can binary-search its `after` position
//! and stop at its limit instead of walking the log.
//!
//! Strings (entities, scopes, kinds) are interned so entries stay small and
//! region filters compare cheaply.

use super::Checkpoint;
use crate::event::{EventHeader, EventId};
use std::sync::Arc;

/// Hash map with a fast non-cryptographic hasher: keys are ids and names
/// inside one process, and SipHash showed up in append profiles.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

use crate::system::CHECKPOINT_KIND;

/// Where one event lives and what the filters need to know about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: EventId,
    pub causation: Option<EventId>,
    pub correlation: EventId,
    pub entity_seq: u64,
    /// Absolute offset of the event's `header_len` field in its segment.
    pub offset: u64,
    pub segment: u32,
    pub header_len: u32,
    pub payload_len: u32,
    pub entity: u32,
    pub scope: u32,
    pub kind: u32,
    /// Bytes from the start of the event's frame to `offset`, so a read can
    /// check the frame's CRC.
    pub frame_back: u32,
}

impl Entry {
    /// Absolute offset of the event's frame in its segment.
    pub fn frame_start(&self) -> u64 {
        self.offset.saturating_sub(self.frame_back as u64)
    }

    /// Bytes of the encoded event on disk.
    pub fn disk_len(&self) -> u64 {
        4 + self.header_len as u64 + 32 + 4 + self.payload_len as u64
    }
}

/// Interned names.
#[derive(Default)]
pub(crate) struct Interner {
    pub names: Vec<Arc<str>>,
    ids: FastMap<Arc<str>, u32>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let a: Arc<str> = Arc::from(s);
        let i = self.names.len() as u32;
        self.names.push(a.clone());
        self.ids.insert(a, i);
        i
    }
    /// [`intern`](Self::intern) that first compares with the name it
    /// returned last time for this caller (`last`): scopes and kinds repeat
    /// from event to event, and a string compare is cheaper than a hash.
    pub fn intern_near(&mut self, s: &str, last: &mut u32) -> u32 {
        if self.names.get(*last as usize).is_some_and(|n| &**n == s) {
            return *last;
        }
        let i = self.intern(s);
        *last = i;
        i
    }
    pub fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }
    pub fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

/// The whole index. `entries[i]` is the event with global sequence `i + 1`.
#[derive(Default)]
pub(crate) struct Index {
    pub entries: Vec<Entry>,
    pub names: Interner,
    pub by_id: FastMap<EventId, u64>,
    pub by_entity: FastMap<u32, Vec<u64>>,
    /// Sequences of the events caused by an event (its direct reactions).
    pub children: FastMap<EventId, Vec<u64>>,
    /// The correlation index, as lists threaded through the entries (no
    /// allocation per event, which a map of vectors cost at every open): a
    /// correlation's list starts at its **head** — the event whose id it is
    /// when that event carries it, else the first event carrying it
    /// (`corr_foreign`) — and `corr_next[seq - 1]` is the next event of the
    /// same correlation (0: none); `corr_tail[head - 1]` is the list's end.
    pub corr_next: Vec<u64>,
    pub corr_tail: Vec<u64>,
    /// Heads of correlations that are not the id of an event carrying them.
    pub corr_foreign: FastMap<EventId, u64>,
    pub keys: FastMap<String, u64>,
    pub checkpoints: FastMap<String, Checkpoint>,
    /// The scope and kind interned last (see [`Interner::intern_near`]).
    last_scope: u32,
    last_kind: u32,
}

impl Index {
    /// Highest sequence indexed.
    pub fn last_sequence(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Entry for a sequence.
    pub fn entry(&self, seq: u64) -> Option<&Entry> {
        if seq == 0 {
            return None;
        }
        self.entries.get(seq as usize - 1)
    }

    /// Adds an event. `payload` is needed only for checkpoint records.
    pub fn insert(
        &mut self,
        h: &EventHeader,
        segment: u32,
        frame: u64,
        offset: u64,
        header_len: u32,
        payload: &[u8],
    ) -> Result<(), String> {
        let expected = self.last_sequence() + 1;
        if h.sequence != expected {
            return Err(format!(
                "event {} has sequence {}, expected {expected}",
                h.id, h.sequence
            ));
        }
        let entity = self.names.intern(&h.coordinate.entity);
        let scope = self
            .names
            .intern_near(&h.coordinate.scope, &mut self.last_scope);
        let kind = self.names.intern_near(&h.kind, &mut self.last_kind);
        let e = Entry {
            id: h.id,
            causation: h.causation,
            correlation: h.correlation,
            entity_seq: h.entity_sequence,
            offset,
            segment,
            header_len,
            payload_len: payload.len() as u32,
            entity,
            scope,
            kind,
            frame_back: (offset - frame) as u32,
        };
        self.link(&e, h.sequence);
        if let Some(k) = &h.idempotency_key {
            self.keys.insert(k.clone(), h.sequence);
        }
        if h.kind == CHECKPOINT_KIND {
            if let Some(cp) = Checkpoint::from_record(payload) {
                self.checkpoints.insert(cp.cursor.clone(), cp);
            }
        }
        self.entries.push(e);
        Ok(())
    }

    /// Where correlation `c`'s list starts; `adding` is an entry being
    /// linked (not yet in `entries`), which heads its own correlation.
    fn correlation_head(&self, c: EventId, adding: Option<(&Entry, u64)>) -> Option<u64> {
        if let Some(&h) = self.corr_foreign.get(&c) {
            return Some(h);
        }
        // The common root: an event carrying its own id (no map lookup).
        if let Some((e, seq)) = adding {
            if e.id == c {
                return Some(seq);
            }
        }
        let &s = self.by_id.get(&c)?;
        // Only earlier events count (see `link_rest`).
        if adding.is_some_and(|(_, seq)| s > seq) {
            return None;
        }
        let carries = match adding {
            Some((e, seq)) if seq == s => e.correlation == c,
            _ => self.entry(s).is_some_and(|e| e.correlation == c),
        };
        carries.then_some(s)
    }

    /// The sequences of the events carrying correlation `c`, ascending.
    pub fn correlated(&self, c: EventId) -> impl Iterator<Item = u64> + '_ {
        let mut next = self.correlation_head(c, None).unwrap_or(0);
        std::iter::from_fn(move || {
            if next == 0 {
                return None;
            }
            let s = next;
            next = self.corr_next[s as usize - 1];
            Some(s)
        })
    }

    /// Adds an entry's links to the maps (shared by insert and snapshot load).
    pub fn link(&mut self, e: &Entry, seq: u64) {
        self.by_id.insert(e.id, seq);
        self.link_rest(e, seq);
    }

    /// [`link`](Self::link) without the id table, for a loader that filled
    /// `by_id` for every entry beforehand (in table order, which is far
    /// cheaper than one random insert per event); ids of later entries found
    /// there count as absent, as they would be when linking in order.
    pub fn link_rest(&mut self, e: &Entry, seq: u64) {
        self.by_entity.entry(e.entity).or_default().push(seq);
        if let Some(c) = e.causation {
            self.children.entry(c).or_default().push(seq);
        }
        self.corr_next.push(0);
        self.corr_tail.push(0);
        match self.correlation_head(e.correlation, Some((e, seq))) {
            Some(head) if head != seq => {
                let tail = self.corr_tail[head as usize - 1];
                self.corr_next[tail as usize - 1] = seq;
                self.corr_tail[head as usize - 1] = seq;
            }
            Some(_) => self.corr_tail[seq as usize - 1] = seq,
            None => {
                self.corr_foreign.insert(e.correlation, seq);
                self.corr_tail[seq as usize - 1] = seq;
            }
        }
    }
}
