//! Dry-run appends: [`AppendPlan`] checks a stream of proposals the way the
//! sequencer would — validity, idempotency, expected sequences, causation
//! (to the store or to an earlier proposal of the same plan) — without
//! writing anything, keeping only ids, keys and entity counters (not
//! payloads), so a file far larger than memory can be checked whole before
//! its first event is appended.

use super::read_path::ReadPath;
use super::StoreError;
use crate::event::{EventId, Proposal};
use std::collections::{HashMap, HashSet};

/// A dry run of appends against one store. Valid only while nothing else
/// appends to the store (hold the store open: the directory lock keeps
/// other processes out).
pub struct AppendPlan<'a> {
    reads: &'a ReadPath,
    ids: HashSet<EventId>,
    keys: HashSet<String>,
    heads: HashMap<String, u64>,
    checked: usize,
}

impl<'a> AppendPlan<'a> {
    pub(crate) fn new(reads: &'a ReadPath) -> AppendPlan<'a> {
        AppendPlan {
            reads,
            ids: HashSet::new(),
            keys: HashSet::new(),
            heads: HashMap::new(),
            checked: 0,
        }
    }

    /// Proposals checked so far.
    pub fn len(&self) -> usize {
        self.checked
    }

    /// True before the first check.
    pub fn is_empty(&self) -> bool {
        self.checked == 0
    }

    /// Checks the next proposal as if every proposal checked before it had
    /// been appended. A proposal that would be deduplicated (known key or
    /// explicit id) passes and changes nothing.
    ///
    /// # Errors
    /// What the append would fail with: [`StoreError::Invalid`],
    /// [`StoreError::SequenceConflict`] or [`StoreError::UnknownCausation`]
    /// (their `index` is the proposal's position in the plan).
    pub fn check(&mut self, p: &Proposal) -> Result<(), StoreError> {
        let index = self.checked;
        self.checked += 1;
        p.validate(false)
            .map_err(|source| StoreError::Invalid { index, source })?;
        let ix = self.reads.index.read();
        if let Some(k) = &p.idempotency_key {
            if self.keys.contains(k) || ix.keys.contains_key(k) {
                return Ok(());
            }
        }
        if let Some(id) = p.id {
            if self.ids.contains(&id) || ix.seq_of(id).is_some() {
                return Ok(());
            }
        }
        let entity = &p.coordinate.entity;
        let cur = match self.heads.get(entity) {
            Some(s) => *s,
            None => ix
                .names
                .get(entity)
                .map_or(0, |e| ix.entity_seqs(e).len() as u64),
        };
        if let Some(exp) = p.expected_sequence {
            if exp != cur {
                return Err(StoreError::SequenceConflict {
                    entity: entity.clone(),
                    expected: exp,
                    actual: cur,
                });
            }
        }
        if let Some(c) = p.causation {
            if !self.ids.contains(&c) && ix.seq_of(c).is_none() {
                return Err(StoreError::UnknownCausation {
                    index,
                    id: c.to_string(),
                });
            }
        }
        drop(ix);
        // Only ids known in advance can be named by later proposals.
        let id = match (p.id, &p.idempotency_key) {
            (Some(id), _) => Some(id),
            (None, Some(k)) => Some(EventId::derive(&[b"idempotency-key", k.as_bytes()])),
            (None, None) => None,
        };
        if let Some(id) = id {
            self.ids.insert(id);
        }
        if let Some(k) = &p.idempotency_key {
            self.keys.insert(k.clone());
        }
        self.heads.insert(entity.clone(), cur + 1);
        Ok(())
    }
}
