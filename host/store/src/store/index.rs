//! The in-memory index, compact by design (at most 64 bytes per event at
//! 10M events; DESIGN.md "Index and snapshot"): per-event columns ordered by
//! global sequence (a struct of arrays, not a vector of fat records), plus
//! an id table, entity and causation lists, threaded correlation lists,
//! idempotency keys and cursor checkpoints.
//!
//! Sequences are stored as `u32` (the index holds at most
//! [`MAX_EVENTS`]); the cause and the correlation of an event are the
//! sequences of the events they name, with small side maps for the rare id
//! that names no earlier event; offsets are 32-bit within their segment and
//! the segment comes from a table of where each segment's events start.
//!
//! Every list of sequences in the maps is ascending (events are inserted
//! in sequence order), so a query can binary-search its `after` position
//! and stop at its limit instead of walking the log.
//!
//! Strings (entities, scopes, kinds) are interned; an event stores its
//! entity and its (scope, kind) pair as one interned class.

use super::id_table::IdTable;
use super::name_table::NameTable;
use super::seq_list::{push, SeqList};
use super::Checkpoint;
use crate::event::{EventHeader, EventId};
use std::sync::Arc;

/// Hash map with a fast non-cryptographic hasher: keys are ids and names
/// inside one process, and SipHash showed up in append profiles.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

use crate::system::CHECKPOINT_KIND;

/// Most events one index holds: sequences are stored in 32 bits (and
/// `u32::MAX` marks a cause that names no earlier event).
pub const MAX_EVENTS: u64 = u32::MAX as u64 - 1;

/// `cause` value of an event whose causation names no earlier event (a
/// store written before causes were checked): the id is in `cause_foreign`.
pub(crate) const FOREIGN: u32 = u32::MAX;

/// Flag of a `frame` value: the first event of its frame.
const FIRST: u16 = 0x8000;
/// `frame` value whose frame distance is in `frame_far`.
const FAR: u16 = 0x7fff;

/// One event's place and links, decoded from the index's columns (a copy:
/// readers take the lock only to copy these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: EventId,
    pub causation: Option<EventId>,
    pub correlation: EventId,
    /// Absolute offset of the event's `header_len` field in its segment.
    pub offset: u64,
    pub segment: u32,
    /// Bytes of the encoded header plus the payload.
    pub body_len: u32,
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

    /// Bytes of the encoded event on disk: `header_len u32 | header | hash
    /// (32) | payload_len u32 | payload`.
    pub fn disk_len(&self) -> u64 {
        4 + 32 + 4 + self.body_len as u64
    }
}

/// Interned names.
#[derive(Default)]
pub(crate) struct Interner {
    pub names: Vec<Arc<str>>,
    /// Name → number, 8 bytes a slot (`name_table.rs`).
    pub(crate) ids: NameTable,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(i) = self.ids.get(s, &self.names) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(Arc::from(s));
        self.ids.insert(i, &self.names);
        i
    }
    pub fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s, &self.names)
    }

    /// Forgets the names from number `keep` on (an aborted bulk
    /// transaction's).
    pub fn truncate(&mut self, keep: usize) {
        if keep < self.names.len() {
            self.names.truncate(keep);
            self.ids = NameTable::build(&self.names);
        }
    }
    pub fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }
}

/// What [`Index::push`] stores for one event, before its links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Raw {
    pub id: EventId,
    pub causation: Option<EventId>,
    pub correlation: EventId,
    pub segment: u32,
    pub offset: u32,
    pub body_len: u32,
    pub frame_back: u32,
    pub entity: u32,
    pub class: u32,
}

/// The whole index. Column `x[i]` belongs to the event with global
/// sequence `i + 1`.
#[derive(Default)]
pub(crate) struct Index {
    pub ids: Vec<EventId>,
    /// Sequence of the event's cause (0: none; [`FOREIGN`]: see
    /// `cause_foreign`).
    pub cause: Vec<u32>,
    /// Sequence of the head of the event's correlation list (see
    /// `corr_next`).
    pub corr: Vec<u32>,
    /// Offset of the event's `header_len` field in its segment.
    pub offset: Vec<u32>,
    pub body_len: Vec<u32>,
    /// Where the event's frame starts, in two bytes (see [`Index::frame_back`]):
    /// `FIRST | bytes` for the first event of a frame (bytes from the
    /// frame's start), else how many events back its frame's first event
    /// is; [`FAR`] when neither fits, the distance then in `frame_far`.
    pub frame: Vec<u16>,
    pub frame_far: FastMap<u32, u32>,
    pub entity: Vec<u32>,
    /// Index into `classes`: the event's (scope, kind).
    pub class: Vec<u32>,
    /// `(segment, first sequence in it)`, ascending: segment of a sequence
    /// by binary search (no per-event segment column).
    pub segments: Vec<(u32, u32)>,
    /// Interned (scope, kind) pairs.
    pub classes: Vec<(u32, u32)>,
    pub(crate) class_ids: FastMap<(u32, u32), u32>,
    pub names: Interner,
    /// Id → sequence, confirmed against `ids`.
    pub by_id: IdTable,
    /// Each entity's sequences, by its interned name (a dense vector: the
    /// names of scopes and kinds hold empty lists).
    pub by_entity: Vec<SeqList>,
    /// Sequences of the events caused by an event (its direct reactions),
    /// by the cause's sequence.
    /// (Most causes have one child: that child's sequence, in 8 bytes a
    /// slot; a cause with more has its list in `children_many` instead.)
    pub children: FastMap<u32, u32>,
    pub children_many: FastMap<u32, SeqList>,
    /// Children of causes that name no earlier event, by the cause's id.
    pub children_foreign: FastMap<EventId, Vec<u32>>,
    /// The cause ids of events whose `cause` is [`FOREIGN`].
    pub cause_foreign: FastMap<u32, EventId>,
    /// The correlation lists, threaded through the events: a correlation's
    /// list starts at its **head** — the event whose id it is when that
    /// event carries it, else the first event carrying it (`corr_foreign`)
    /// — and `corr_next[seq - 1]` is the next event of the same
    /// correlation (0: none). `corr_tail` holds the end of each list of two
    /// events or more (most correlations have one event: no entry).
    pub corr_next: Vec<u32>,
    pub corr_tail: FastMap<u32, u32>,
    /// Heads of correlations that are not the id of an event carrying
    /// them, both ways.
    pub corr_foreign: FastMap<EventId, u32>,
    pub corr_foreign_head: FastMap<u32, EventId>,
    pub keys: FastMap<String, u64>,
    pub checkpoints: FastMap<String, Checkpoint>,
    /// The class interned last (neighbouring events mostly share it).
    pub(crate) last_class: Option<(Arc<str>, Arc<str>, u32)>,
    /// An open bulk transaction's events, indexed but not committed
    /// (`uncommitted.rs`): readers see only the sequences before them.
    pub(crate) uncommitted: Option<Uncommitted>,
}

impl Index {
    /// Highest sequence readers see: the last committed one (an open bulk
    /// transaction's events are indexed after it, hidden).
    pub fn last_sequence(&self) -> u64 {
        match &self.uncommitted {
            Some(u) => u.from - 1,
            None => self.len(),
        }
    }

    /// Highest sequence indexed, an open bulk transaction's included (the
    /// sequencer's view).
    pub fn len(&self) -> u64 {
        self.ids.len() as u64
    }

    /// Sequence of the committed event with this id.
    pub fn seq_of(&self, id: EventId) -> Option<u64> {
        let last = self.last_sequence();
        self.seq_of_any(id).filter(|&s| s <= last)
    }

    /// Sequence of the event with this id, an open bulk transaction's
    /// included (the sequencer's view: deduplication and causation against
    /// earlier parts).
    pub fn seq_of_any(&self, id: EventId) -> Option<u64> {
        self.by_id.get(id, &self.ids)
    }

    /// The segment the event at `seq` lives in.
    fn segment_of(&self, seq: u64) -> u32 {
        let i = self
            .segments
            .partition_point(|&(_, first)| first as u64 <= seq);
        self.segments[i.saturating_sub(1)].0
    }

    /// The correlation carried by the event at `seq` (1-based, in range).
    fn correlation_at(&self, seq: u64) -> EventId {
        let h = self.corr[seq as usize - 1];
        match self.corr_foreign_head.get(&h) {
            Some(c) => *c,
            None => self.ids[h as usize - 1],
        }
    }

    /// Entry for a committed sequence.
    pub fn entry(&self, seq: u64) -> Option<Entry> {
        if seq > self.last_sequence() {
            return None;
        }
        self.entry_any(seq)
    }

    /// Entry for a sequence, an open bulk transaction's included (the
    /// sequencer's view).
    pub fn entry_any(&self, seq: u64) -> Option<Entry> {
        if seq == 0 || seq > self.len() {
            return None;
        }
        let i = seq as usize - 1;
        let causation = match self.cause[i] {
            0 => None,
            FOREIGN => self.cause_foreign.get(&(seq as u32)).copied(),
            c => Some(self.ids[c as usize - 1]),
        };
        let (scope, kind) = self.classes[self.class[i] as usize];
        Some(Entry {
            id: self.ids[i],
            causation,
            correlation: self.correlation_at(seq),
            offset: self.offset[i] as u64,
            segment: self.segment_of(seq),
            body_len: self.body_len[i],
            entity: self.entity[i],
            scope,
            kind,
            frame_back: self.frame_back(seq),
        })
    }

    /// Bytes from the start of the frame of the event at `seq` (in range)
    /// to the event.
    pub fn frame_back(&self, seq: u64) -> u32 {
        let i = seq as usize - 1;
        (self.offset[i] as u64 - self.frame_start(i)) as u32
    }

    /// Where the frame of the event at index `i` starts.
    fn frame_start(&self, i: usize) -> u64 {
        let v = self.frame[i];
        let back = if v & FIRST != 0 {
            (v & !FIRST) as u32
        } else if v == FAR {
            self.frame_far[&(i as u32 + 1)]
        } else {
            let j = i - v as usize;
            return self.offset[j] as u64 - (self.frame[j] & !FIRST) as u64;
        };
        self.offset[i] as u64 - back as u64
    }

    /// The `frame` value of event `seq` (index `seq - 1`, its offset
    /// already pushed), whose frame is `frame_back` bytes before it.
    fn frame_code(&mut self, seq: u32, frame_back: u32) -> u16 {
        let i = seq as usize - 1;
        let start = self.offset[i] as u64 - frame_back as u64;
        if i > 0
            && self.frame_start(i - 1) == start
            && self.segment_of(seq as u64 - 1) == self.segment_of(seq as u64)
        {
            // In the frame of the event before it.
            let first = match self.frame[i - 1] {
                v if v & FIRST != 0 => Some(i - 1),
                FAR => None,
                v => Some(i - 1 - v as usize),
            };
            if let Some(j) = first.filter(|j| i - j < FAR as usize) {
                return (i - j) as u16;
            }
        } else if frame_back < FAR as u32 {
            return FIRST | frame_back as u16;
        }
        self.frame_far.insert(seq, frame_back);
        FAR
    }

    /// The sequences of an entity's committed events, ascending (its
    /// entity sequence is the 1-based position in this list).
    pub fn entity_seqs(&self, entity: u32) -> &[u32] {
        let all = self.entity_seqs_any(entity);
        match &self.uncommitted {
            Some(u) if all.last().is_some_and(|&s| s as u64 >= u.from) => {
                &all[..all.partition_point(|&s| (s as u64) < u.from)]
            }
            _ => all,
        }
    }

    /// The sequences of an entity's events, an open bulk transaction's
    /// included (the sequencer's view: chain heads).
    pub fn entity_seqs_any(&self, entity: u32) -> &[u32] {
        self.by_entity
            .get(entity as usize)
            .map_or(&[], SeqList::as_slice)
    }

    /// The sequences of the events caused by the event with id `c`,
    /// ascending.
    pub fn children_of(&self, c: EventId) -> Vec<u64> {
        let one;
        let own = match self.seq_of_any(c).map(|s| s as u32) {
            Some(s) => match self.children_many.get(&s) {
                Some(l) => l.as_slice(),
                None => match self.children.get(&s) {
                    Some(&k) => {
                        one = [k];
                        &one[..]
                    }
                    None => &[],
                },
            },
            None => &[],
        };
        let foreign = self.children_foreign.get(&c).map_or(&[][..], Vec::as_slice);
        let mut v: Vec<u64> = own.iter().chain(foreign).map(|&s| s as u64).collect();
        if !foreign.is_empty() && !own.is_empty() {
            v.sort_unstable();
        }
        let last = self.last_sequence();
        v.retain(|&s| s <= last);
        v
    }

    /// Records `child` (the latest event) as caused by the event at `cause`.
    pub fn add_child(&mut self, cause: u32, child: u32) {
        if let Some(l) = self.children_many.get_mut(&cause) {
            l.push(child);
        } else if let Some(first) = self.children.remove(&cause) {
            let mut l = SeqList::default();
            l.push(first);
            l.push(child);
            self.children_many.insert(cause, l);
        } else {
            self.children.insert(cause, child);
        }
    }

    /// The class of (scope, kind), interned.
    pub fn class_of(&mut self, scope: u32, kind: u32) -> u32 {
        if let Some(&c) = self.class_ids.get(&(scope, kind)) {
            return c;
        }
        let c = self.classes.len() as u32;
        self.classes.push((scope, kind));
        self.class_ids.insert((scope, kind), c);
        c
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
        let expected = self.len() + 1;
        if h.sequence != expected {
            return Err(format!(
                "event {} has sequence {}, expected {expected}",
                h.id, h.sequence
            ));
        }
        let entity = self.names.intern(&h.coordinate.entity);
        let class = match &self.last_class {
            Some((s, k, c)) if **s == *h.coordinate.scope && **k == *h.kind => *c,
            _ => {
                let scope = self.names.intern(&h.coordinate.scope);
                let kind = self.names.intern(&h.kind);
                let c = self.class_of(scope, kind);
                self.last_class = Some((
                    self.names.names[scope as usize].clone(),
                    self.names.names[kind as usize].clone(),
                    c,
                ));
                c
            }
        };
        let offset32 = u32::try_from(offset)
            .map_err(|_| format!("event {} is at offset {offset}, beyond 4 GiB", h.id))?;
        self.push(Raw {
            id: h.id,
            causation: h.causation,
            correlation: h.correlation,
            segment,
            offset: offset32,
            body_len: header_len.saturating_add(payload.len() as u32),
            frame_back: (offset - frame) as u32,
            entity,
            class,
        })?;
        if let Some(k) = &h.idempotency_key {
            self.keys.insert(k.clone(), h.sequence);
        }
        if h.kind == CHECKPOINT_KIND {
            if let Some(cp) = Checkpoint::from_record(payload) {
                self.checkpoints.insert(cp.cursor.clone(), cp);
            }
        }
        Ok(())
    }

    /// Appends the next event's columns and links it (ids, entity,
    /// causation and correlation lists). Shared by [`insert`](Self::insert)
    /// and the migration of an older snapshot.
    pub fn push(&mut self, r: Raw) -> Result<(), String> {
        let seq64 = self.len() + 1;
        if seq64 > MAX_EVENTS {
            return Err(format!(
                "the index holds at most {MAX_EVENTS} events; event {} would be number {seq64}",
                r.id
            ));
        }
        let seq = seq64 as u32;
        match self.segments.last() {
            Some(&(s, _)) if s == r.segment => {}
            Some(&(s, _)) if s > r.segment => {
                return Err(format!(
                    "event {} is in segment {} after events of segment {s}",
                    r.id, r.segment
                ));
            }
            _ => self.segments.push((r.segment, seq)),
        }
        let cause = match r.causation {
            None => 0,
            Some(c) => match self.seq_of_any(c) {
                Some(s) => {
                    self.add_child(s as u32, seq);
                    s as u32
                }
                None => {
                    self.cause_foreign.insert(seq, c);
                    self.children_foreign.entry(c).or_default().push(seq);
                    FOREIGN
                }
            },
        };
        let head = match self.correlation_head(r.correlation, Some((r.id, seq))) {
            Some(h) => h,
            None => {
                self.corr_foreign.insert(r.correlation, seq);
                self.corr_foreign_head.insert(seq, r.correlation);
                seq
            }
        };
        push(&mut self.ids, r.id);
        self.by_id.insert(r.id, seq, &self.ids);
        self.push_columns(seq, cause, head, &r);
        Ok(())
    }

    /// The per-event columns and the entity and correlation lists, for an
    /// event whose cause and correlation head are resolved (also used by a
    /// snapshot load, which stores them resolved); `ids` already has it.
    pub fn push_columns(&mut self, seq: u32, cause: u32, head: u32, r: &Raw) {
        push(&mut self.cause, cause);
        push(&mut self.corr, head);
        push(&mut self.corr_next, 0);
        if head != seq {
            let tail = self.corr_tail.get(&head).copied().unwrap_or(head);
            self.corr_next[tail as usize - 1] = seq;
            self.corr_tail.insert(head, seq);
        }
        push(&mut self.offset, r.offset);
        push(&mut self.body_len, r.body_len);
        let code = self.frame_code(seq, r.frame_back);
        push(&mut self.frame, code);
        push(&mut self.entity, r.entity);
        push(&mut self.class, r.class);
        let e = r.entity as usize;
        while self.by_entity.len() <= e {
            push(&mut self.by_entity, SeqList::default());
        }
        self.by_entity[e].push(seq);
    }

    /// Where correlation `c`'s list starts; `adding` is an event being
    /// linked (not yet in the columns), which heads its own correlation.
    fn correlation_head(&self, c: EventId, adding: Option<(EventId, u32)>) -> Option<u32> {
        if let Some(&h) = self.corr_foreign.get(&c) {
            return Some(h);
        }
        // The common root: an event carrying its own id (no table lookup).
        if let Some((id, seq)) = adding {
            if id == c {
                return Some(seq);
            }
        }
        let s = self.seq_of_any(c)? as u32;
        // The event with that id carries it when it heads its own list
        // (a foreign head carries another id).
        let carries = self.corr[s as usize - 1] == s && !self.corr_foreign_head.contains_key(&s);
        carries.then_some(s)
    }

    /// The sequences of the committed events carrying correlation `c`,
    /// ascending.
    pub fn correlated(&self, c: EventId) -> impl Iterator<Item = u64> + '_ {
        let mut next = self.correlation_head(c, None).unwrap_or(0);
        let last = self.last_sequence();
        std::iter::from_fn(move || {
            if next == 0 || next as u64 > last {
                return None;
            }
            let s = next;
            next = self.corr_next[s as usize - 1];
            Some(s as u64)
        })
    }

    /// Trims every list to its length (after a bulk load, when no more
    /// growth is due soon: their doubling slack would otherwise stay).
    pub fn shrink_lists(&mut self) {
        for v in &mut self.by_entity {
            v.shrink_to_fit();
        }
        for v in self.children_many.values_mut() {
            v.shrink_to_fit();
        }
    }
}

/// Where an open bulk transaction's events start in the index (its
/// methods are in `uncommitted.rs`; the type is here so that the index
/// does not depend on that file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Uncommitted {
    /// Sequence of the transaction's first event (readers see those before).
    pub from: u64,
    /// Interned names and classes before it: an abort drops those it added.
    pub names: usize,
    pub classes: usize,
}
