//! Regions: the one predicate that selects events for queries, cursors and
//! subscriptions.

use super::partition::partition_of;
use crate::event::EventHeader;
use crate::system::is_system_kind;
use serde::{Deserialize, Serialize};

/// Selects events by kind, entity prefix, scope and shard. An event matches
/// when it matches every field that is set. An empty `kinds` list matches
/// every non-system kind; `batpak.*` kinds match only when listed
/// explicitly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    /// Kinds to match (empty: every non-system kind).
    pub kinds: Vec<String>,
    /// Entity name prefix.
    pub entity_prefix: Option<String>,
    /// Exact scope.
    pub scope: Option<String>,
    /// One of `count` instances of a reactor: only entities whose
    /// [`partition_of`] among `count` is `index` (see [`Region::shard`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// Instance `index` of `count`: the entities with
/// `fnv1a64(entity) % count == index` ([`partition_of`], the hash of the
/// cluster's partitions). Every entity belongs to exactly one shard of a
/// count, so `count` shards of one region split it without overlap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shard {
    /// Which instance, `0..count`.
    pub index: u32,
    /// How many instances (≥ 1).
    pub count: u32,
}

impl Region {
    /// Every non-system event.
    pub fn all() -> Region {
        Region::default()
    }

    /// Restricts to these kinds.
    pub fn kinds<I: IntoIterator<Item = S>, S: Into<String>>(mut self, kinds: I) -> Self {
        self.kinds = kinds.into_iter().map(Into::into).collect();
        self
    }

    /// Restricts to entities starting with `prefix`.
    pub fn entity_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.entity_prefix = Some(prefix.into());
        self
    }

    /// Restricts to one scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Restricts to shard `index` of `count`: the entities whose
    /// [`partition_of`]`(entity, count)` is `index`. A count of 1 is the
    /// whole region (no shard is recorded, so the fingerprint is the
    /// unsharded one). Panics when `index >= count`.
    pub fn shard(mut self, index: u32, count: u32) -> Self {
        assert!(index < count, "shard {index} of {count} does not exist");
        self.shard = (count > 1).then_some(Shard { index, count });
        self
    }

    /// True when the event matches.
    pub fn matches(&self, h: &EventHeader) -> bool {
        self.matches_parts(&h.coordinate.entity, &h.coordinate.scope, &h.kind)
    }

    /// True when an event with these names matches.
    pub fn matches_parts(&self, entity: &str, scope: &str, kind: &str) -> bool {
        let kind_ok = if self.kinds.is_empty() {
            !is_system_kind(kind)
        } else {
            self.kinds.iter().any(|k| k == kind)
        };
        kind_ok && self.matches_place(entity, scope)
    }

    /// Like [`matches_parts`](Self::matches_parts), but with `include_system`
    /// every `batpak.*` event in the region's entities and scope matches too,
    /// whatever `kinds` says (for tools that show the host's own records).
    pub fn matches_parts_or_system(
        &self,
        entity: &str,
        scope: &str,
        kind: &str,
        include_system: bool,
    ) -> bool {
        self.matches_parts(entity, scope, kind)
            || (include_system && is_system_kind(kind) && self.matches_place(entity, scope))
    }

    /// The entity-prefix and scope part of the predicate.
    fn matches_place(&self, entity: &str, scope: &str) -> bool {
        self.entity_prefix
            .as_deref()
            .is_none_or(|p| entity.starts_with(p))
            && self.scope.as_deref().is_none_or(|s| s == scope)
            && self
                .shard
                .is_none_or(|s| partition_of(entity, s.count) == s.index)
    }

    /// A stable fingerprint of this region: a checkpoint records it so a
    /// cursor reopened over a different region fails closed instead of
    /// silently skipping or repeating events.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut kinds = self.kinds.clone();
        kinds.sort();
        kinds.dedup();
        // Unsharded regions keep the fingerprint they always had, so
        // existing checkpoints stay valid.
        let bytes = match self.shard {
            None => postcard::to_stdvec(&(kinds, &self.entity_prefix, &self.scope)),
            Some(s) => {
                postcard::to_stdvec(&(kinds, &self.entity_prefix, &self.scope, (s.index, s.count)))
            }
        }
        .expect("region encodes");
        *blake3::hash(&bytes).as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_kinds_skip_system_events_and_fingerprint_ignores_order() {
        let r = Region::all();
        assert!(r.matches_parts("e", "s", "order.placed"));
        assert!(!r.matches_parts("e", "s", "batpak.gate.denied"));
        let r = Region::all().kinds(["batpak.gate.denied"]);
        assert!(r.matches_parts("e", "s", "batpak.gate.denied"));
        let a = Region::all().kinds(["a", "b"]).scope("s");
        let b = Region::all().kinds(["b", "a"]).scope("s");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(
            a.fingerprint(),
            Region::all().kinds(["a"]).scope("s").fingerprint()
        );
        assert!(Region::all()
            .entity_prefix("order:")
            .matches_parts("order:1", "s", "k"));
        assert!(!Region::all()
            .entity_prefix("order:")
            .matches_parts("sku:1", "s", "k"));
    }

    /// The shards of a count split a region without overlap or gap, by the
    /// cluster's partition hash, and each has its own fingerprint; a count
    /// of 1 is the unsharded region.
    #[test]
    fn shards_split_the_entities_by_the_partition_hash() {
        let r = Region::all().kinds(["k"]);
        assert_eq!(r.clone().shard(0, 1), r);
        assert_eq!(r.clone().shard(0, 1).fingerprint(), r.fingerprint());
        let shards: Vec<Region> = (0..3).map(|i| r.clone().shard(i, 3)).collect();
        for n in 0..300 {
            let entity = format!("order:{n}");
            let hits: Vec<u32> = (0..3)
                .filter(|&i| shards[i as usize].matches_parts(&entity, "s", "k"))
                .collect();
            assert_eq!(hits, vec![partition_of(&entity, 3)], "{entity}");
        }
        assert_ne!(shards[0].fingerprint(), shards[1].fingerprint());
        assert_ne!(shards[0].fingerprint(), r.fingerprint());
        assert_ne!(shards[0].fingerprint(), r.clone().shard(0, 2).fingerprint());
    }
}
