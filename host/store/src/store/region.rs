//! Regions: the one predicate that selects events for queries, cursors and
//! subscriptions.

use crate::event::EventHeader;
use crate::system::is_system_kind;
use serde::{Deserialize, Serialize};

/// Selects events by kind, entity prefix and scope. An event matches when it
/// matches every field that is set. An empty `kinds` list matches every
/// non-system kind; `batpak.*` kinds match only when listed explicitly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Region {
    /// Kinds to match (empty: every non-system kind).
    pub kinds: Vec<String>,
    /// Entity name prefix.
    pub entity_prefix: Option<String>,
    /// Exact scope.
    pub scope: Option<String>,
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
    }

    /// A stable fingerprint of this region: a checkpoint records it so a
    /// cursor reopened over a different region fails closed instead of
    /// silently skipping or repeating events.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut kinds = self.kinds.clone();
        kinds.sort();
        kinds.dedup();
        let canon = (kinds, &self.entity_prefix, &self.scope);
        *blake3::hash(&postcard::to_stdvec(&canon).expect("region encodes")).as_bytes()
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
}
