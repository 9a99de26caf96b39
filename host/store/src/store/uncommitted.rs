//! An open bulk transaction's events in the index, not yet committed
//! (`bulk.rs`).
//!
//! Each part of a bulk transaction is indexed as soon as it is written, so
//! the sequencer checks later parts (deduplication by id and key, causation,
//! chain heads) against the index itself: the transaction keeps no second
//! per-event structure, and what it holds is what the index holds after the
//! commit anyway. Until the commit, readers see none of it: every reading
//! query of the [`Index`] stops before the transaction's first sequence
//! ([`Index::last_sequence`]); only the sequencer's `*_any` queries and
//! [`Index::len`] include it. An abort truncates the index back to where
//! the transaction began; a crash loses the in-memory index and the next
//! open rebuilds it without the transaction (no snapshot is written while
//! one is open).

use super::id_table::IdTable;
use super::index::{Index, Uncommitted, FOREIGN};

impl Index {
    /// Starts hiding the events indexed from now on (the next sequence is
    /// an open bulk transaction's first).
    pub fn begin_uncommitted(&mut self) {
        self.uncommitted = Some(Uncommitted {
            from: self.len() + 1,
            names: self.names.names.len(),
            classes: self.classes.len(),
        });
    }

    /// True while an open bulk transaction's events are indexed, hidden.
    pub fn has_uncommitted(&self) -> bool {
        self.uncommitted.is_some()
    }

    /// The transaction committed: its events become visible to readers.
    pub fn commit_uncommitted(&mut self) {
        self.uncommitted = None;
    }

    /// The transaction was abandoned: its events leave the index, which is
    /// then what it was when the transaction began (as far as any query
    /// tells).
    pub fn abort_uncommitted(&mut self) {
        if let Some(u) = self.uncommitted.take() {
            self.truncate(u);
        }
    }

    /// Removes every event from `u.from` on, newest first, undoing the
    /// links each one added, and the names and classes interned since.
    fn truncate(&mut self, u: Uncommitted) {
        let keep = u.from - 1;
        // Heads of correlation lists that stay but lose their tail.
        let mut heads: Vec<u32> = Vec::new();
        for s in (u.from..=self.len()).rev() {
            let i = s as usize - 1;
            let s32 = s as u32;
            if let Some(l) = self.by_entity.get_mut(self.entity[i] as usize) {
                l.pop();
            }
            match self.cause[i] {
                0 => {}
                FOREIGN => {
                    if let Some(c) = self.cause_foreign.remove(&s32) {
                        if let Some(l) = self.children_foreign.get_mut(&c) {
                            l.pop();
                            if l.is_empty() {
                                self.children_foreign.remove(&c);
                            }
                        }
                    }
                }
                c => self.remove_last_child(c),
            }
            let h = self.corr[i];
            if h == s32 {
                self.corr_tail.remove(&s32);
                if let Some(c) = self.corr_foreign_head.remove(&s32) {
                    self.corr_foreign.remove(&c);
                }
            } else if h as u64 <= keep {
                heads.push(h);
            }
            self.frame_far.remove(&s32);
        }
        heads.sort_unstable();
        heads.dedup();
        for h in heads {
            // Lists are ascending: the kept part is a prefix.
            let mut tail = h;
            loop {
                let next = self.corr_next[tail as usize - 1];
                if next == 0 || next as u64 > keep {
                    break;
                }
                tail = next;
            }
            self.corr_next[tail as usize - 1] = 0;
            if tail == h {
                self.corr_tail.remove(&h);
            } else {
                self.corr_tail.insert(h, tail);
            }
        }
        let k = keep as usize;
        for column in [
            &mut self.cause,
            &mut self.corr,
            &mut self.corr_next,
            &mut self.offset,
            &mut self.body_len,
            &mut self.entity,
            &mut self.class,
        ] {
            column.truncate(k);
        }
        self.frame.truncate(k);
        self.ids.truncate(k);
        // Rebuilt rather than deleted from (open addressing): an abort is
        // rare, and the rebuilt table is exactly that of the kept ids.
        self.by_id = IdTable::build(&self.ids);
        self.keys.retain(|_, s| *s <= keep);
        while self
            .segments
            .last()
            .is_some_and(|&(_, first)| first as u64 > keep)
        {
            self.segments.pop();
        }
        self.names.truncate(u.names);
        self.by_entity.truncate(u.names);
        self.classes.truncate(u.classes);
        self.class_ids.retain(|_, c| (*c as usize) < u.classes);
        self.last_class = None;
    }

    /// Undoes [`add_child`](Index::add_child) for the latest child of the
    /// event at `cause`.
    fn remove_last_child(&mut self, cause: u32) {
        if let Some(l) = self.children_many.get_mut(&cause) {
            l.pop();
            if let [only] = *l.as_slice() {
                self.children_many.remove(&cause);
                self.children.insert(cause, only);
            }
        } else {
            self.children.remove(&cause);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Coordinate, EventHeader, EventId};

    fn id(i: u64) -> EventId {
        EventId(((i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 77) as u128) << 20 | i as u128)
    }

    /// Event `s`: correlations naming earlier events, itself and no event;
    /// causes naming earlier events and no event; an idempotency key on some;
    /// entity names shared and new (from `new_names` on); a new segment
    /// from `segment_at` on.
    fn header(s: u64, new_names: u64) -> EventHeader {
        let correlation = match s % 5 {
            0 | 4 => id(s),
            1 => id((s / 2).max(1)),
            2 => id(3),
            _ => EventId(1_000_000_000 + s as u128 % 7),
        };
        let causation = match s % 6 {
            0 => Some(id(s / 3)),
            1 if s > 1 => Some(id(1)),
            3 => Some(EventId(2_000_000_000 + s as u128 % 5)),
            _ => None,
        };
        let entity = if s >= new_names {
            format!("new{s}")
        } else {
            format!("e{}", s % 13)
        };
        EventHeader {
            id: id(s),
            sequence: s,
            entity_sequence: 1,
            coordinate: Coordinate::new(entity, "s").unwrap(),
            kind: if s >= new_names {
                format!("k-new{}", s % 2)
            } else {
                format!("k{}", s % 3)
            },
            causation,
            correlation,
            timestamp_us: s,
            prev: None,
            idempotency_key: s.is_multiple_of(4).then(|| format!("key-{s}")),
            meta: Default::default(),
        }
    }

    fn insert(ix: &mut Index, range: std::ops::RangeInclusive<u64>, new_names: u64, seg2: u64) {
        for s in range {
            let segment = if s >= seg2 { 2 } else { 1 };
            let at = 100 + s * 10 + if s % 9 == 0 { 70_000 } else { 0 };
            ix.insert(&header(s, new_names), segment, 100 + s * 10, at, 8, b"")
                .unwrap();
        }
    }

    /// What readers can ask, for every event of `want` (and the hidden
    /// ones of `got`, which must not answer).
    fn assert_reads_alike(got: &Index, want: &Index, hidden: std::ops::Range<u64>) {
        assert_eq!(got.last_sequence(), want.last_sequence());
        for s in 1..=want.last_sequence() {
            let e = want.entry(s).unwrap();
            assert_eq!(got.entry(s), Some(e), "entry {s}");
            assert_eq!(got.seq_of(e.id), want.seq_of(e.id), "seq_of {s}");
            assert_eq!(
                got.correlated(e.correlation).collect::<Vec<_>>(),
                want.correlated(e.correlation).collect::<Vec<_>>(),
                "correlated {s}"
            );
            assert_eq!(
                got.children_of(e.id),
                want.children_of(e.id),
                "children {s}"
            );
            assert_eq!(got.entity_seqs(e.entity), want.entity_seqs(e.entity));
            assert_eq!(got.names.name(e.entity), want.names.name(e.entity));
        }
        for s in hidden {
            assert_eq!(got.entry(s), None, "hidden entry {s}");
            assert_eq!(got.seq_of(id(s)), None, "hidden id {s}");
        }
        for c in 0..8u128 {
            let c = EventId(1_000_000_000 + c);
            assert_eq!(
                got.correlated(c).collect::<Vec<_>>(),
                want.correlated(c).collect::<Vec<_>>()
            );
            let f = EventId(2_000_000_000 + c.0 % 1_000_000_000);
            assert_eq!(got.children_of(f), want.children_of(f));
        }
    }

    /// An open transaction's events are indexed (the sequencer's `*_any`
    /// queries find them) but no reading query answers with them; after an
    /// abort the index is the one before the transaction, and after a
    /// commit it is the one with every event, as if inserted plainly.
    #[test]
    fn uncommitted_events_are_hidden_then_committed_or_truncated_away() {
        let (committed, total, new_names, seg2) = (300, 700, 450, 500);
        let mut before = Index::default();
        insert(&mut before, 1..=committed, new_names, seg2);
        let mut all = Index::default();
        insert(&mut all, 1..=total, new_names, seg2);

        for commit in [false, true] {
            let mut ix = Index::default();
            insert(&mut ix, 1..=committed, new_names, seg2);
            ix.begin_uncommitted();
            insert(&mut ix, committed + 1..=total, new_names, seg2);
            assert_eq!(ix.len(), total);
            assert_eq!(ix.seq_of_any(id(total)), Some(total));
            assert!(ix.entry_any(total).is_some());
            assert_reads_alike(&ix, &before, committed + 1..total + 1);
            if commit {
                ix.commit_uncommitted();
                assert_reads_alike(&ix, &all, 0..0);
            } else {
                ix.abort_uncommitted();
                assert_eq!(ix.len(), committed);
                assert_reads_alike(&ix, &before, committed + 1..total + 1);
                assert_eq!(ix.names.names, before.names.names);
                assert_eq!(ix.classes, before.classes);
                assert_eq!(ix.segments, before.segments);
                assert_eq!(ix.keys, before.keys);
                assert_eq!(ix.children, before.children);
                assert_eq!(ix.children_many, before.children_many);
                assert_eq!(ix.children_foreign, before.children_foreign);
                assert_eq!(ix.cause_foreign, before.cause_foreign);
                assert_eq!(ix.corr_next, before.corr_next);
                assert_eq!(ix.corr_tail, before.corr_tail);
                assert_eq!(ix.corr_foreign, before.corr_foreign);
                assert_eq!(ix.frame_far, before.frame_far);
                // And it goes on as the plain index does.
                insert(&mut ix, committed + 1..=total, new_names, seg2);
                assert_reads_alike(&ix, &all, 0..0);
            }
        }
    }
}
