//! Dry-run appends: [`AppendPlan`] checks a stream of proposals the way the
//! sequencer would — validity, idempotency, expected sequences, causation
//! (to the store or to an earlier proposal of the same plan) — without
//! writing anything, keeping only ids, keys and entity counters (not
//! payloads), so a file far larger than memory can be checked whole before
//! its first event is appended. What it keeps is bounded
//! ([`PLAN_MAX_ENTRIES`]): past that, each further proposal is checked on
//! its own and against the store, and the checks against earlier
//! proposals are left to the append itself (a bulk transaction refuses the
//! part and keeps nothing).

use super::read_path::ReadPath;
use super::StoreError;
use crate::event::{EventId, Proposal};
use std::collections::{HashMap, HashSet};

/// Ids, keys and entity counters a plan keeps at most (about 16 MiB):
/// beyond them it stops checking proposals against earlier ones (expected
/// sequences, causes naming an earlier proposal), which the append then
/// checks, so memory stays bounded however long the input.
pub const PLAN_MAX_ENTRIES: usize = 1 << 17;

/// A dry run of appends against one store. Valid only while nothing else
/// appends to the store (hold the store open: the directory lock keeps
/// other processes out).
pub struct AppendPlan<'a> {
    reads: &'a ReadPath,
    ids: HashSet<EventId>,
    keys: HashSet<String>,
    heads: HashMap<String, u64>,
    checked: usize,
    /// Past [`PLAN_MAX_ENTRIES`]: the maps are dropped, only checks that
    /// need no earlier proposal remain.
    saturated: bool,
}

impl<'a> AppendPlan<'a> {
    pub(crate) fn new(reads: &'a ReadPath) -> AppendPlan<'a> {
        AppendPlan {
            reads,
            ids: HashSet::new(),
            keys: HashSet::new(),
            heads: HashMap::new(),
            checked: 0,
            saturated: false,
        }
    }

    /// True once the plan keeps too much to go on checking proposals
    /// against earlier ones (see [`PLAN_MAX_ENTRIES`]).
    pub fn saturated(&self) -> bool {
        self.saturated
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
    /// explicit id) passes and changes nothing. Once
    /// [`saturated`](Self::saturated), only what needs no earlier proposal
    /// is checked (validity, deduplication against the store).
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
        if self.saturated {
            return Ok(());
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
        if self.ids.len() + self.keys.len() + self.heads.len() > PLAN_MAX_ENTRIES {
            self.saturated = true;
            self.ids = HashSet::new();
            self.keys = HashSet::new();
            self.heads = HashMap::new();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::PLAN_MAX_ENTRIES;
    use crate::event::{Coordinate, EventId, Proposal};
    use crate::store::{SimDisk, Store, StoreError, StoreOptions};
    use std::sync::Arc;

    fn order(i: usize) -> Proposal {
        Proposal::new(
            Coordinate::new(format!("order:{i}"), "shop").unwrap(),
            "order.placed",
            b"{}".to_vec(),
        )
    }

    /// A plan keeps at most `PLAN_MAX_ENTRIES` ids, keys and entity
    /// counters however many proposals it checks; before that it checks
    /// proposals against earlier ones, after it only what needs none (the
    /// append checks the rest).
    #[test]
    fn a_plan_keeps_bounded_state_and_then_checks_each_proposal_alone() {
        let options = StoreOptions {
            disk: Arc::new(SimDisk::new(5)),
            ..StoreOptions::default()
        };
        let store = Store::open_with("/sim/plan", options).unwrap();
        let mut plan = store.plan();
        let unknown = EventId(42);
        let e = plan.check(&order(0).caused_by(unknown)).unwrap_err();
        assert!(matches!(e, StoreError::UnknownCausation { .. }), "{e}");
        for i in 0..PLAN_MAX_ENTRIES + 10 {
            plan.check(&order(i)).unwrap();
            assert!(plan.ids.len() + plan.keys.len() + plan.heads.len() <= PLAN_MAX_ENTRIES + 1);
        }
        assert!(plan.saturated());
        assert!(plan.heads.is_empty() && plan.heads.capacity() == 0);
        // Left to the append now; still refused when invalid on its own.
        plan.check(&order(1).caused_by(unknown)).unwrap();
        let bad = Proposal::new(Coordinate::new("e", "s").unwrap(), "batpak.x", Vec::new());
        assert!(matches!(
            plan.check(&bad).unwrap_err(),
            StoreError::Invalid { .. }
        ));
        drop(plan);
        store.close().unwrap();
    }
}
