//! [`RegionMatch`]: whether index entries match a region, remembered per
//! (entity, scope, kind) so a walk over many entries compares names once
//! per distinct combination instead of once per entry.

use super::index::{Entry, FastMap, Index};
use super::Region;

/// Most remembered combinations before the memory is cleared (a walk over
/// a log of many distinct entities must not grow without bound).
const REMEMBERED_MAX: usize = 65_536;

/// A region's match over index entries, with the answers remembered.
pub(crate) struct RegionMatch<'r> {
    region: &'r Region,
    include_system: bool,
    /// The entity takes part in the key only when the region looks at it
    /// (an entity prefix), so a log of many entities still hits.
    by_entity: bool,
    remembered: FastMap<(u32, u32, u32), bool>,
    /// The last key and answer: neighbouring events mostly share scope and
    /// kind, and comparing with it is cheaper than hashing.
    last: Option<((u32, u32, u32), bool)>,
}

impl<'r> RegionMatch<'r> {
    /// Matches `region`; system events match only when it lists their kind,
    /// or all of them with `include_system`.
    pub fn new(region: &'r Region, include_system: bool) -> RegionMatch<'r> {
        RegionMatch {
            region,
            include_system,
            by_entity: region.entity_prefix.is_some() || region.shard.is_some(),
            remembered: FastMap::default(),
            last: None,
        }
    }

    /// Whether entry `e` of index `ix` matches.
    pub fn matches(&mut self, ix: &Index, e: &Entry) -> bool {
        let key = (
            if self.by_entity { e.entity } else { u32::MAX },
            e.scope,
            e.kind,
        );
        if let Some((k, m)) = self.last {
            if k == key {
                return m;
            }
        }
        if self.remembered.len() > REMEMBERED_MAX {
            self.remembered.clear();
        }
        let (region, include_system) = (self.region, self.include_system);
        let m = *self.remembered.entry(key).or_insert_with(|| {
            region.matches_parts_or_system(
                ix.names.name(e.entity),
                ix.names.name(e.scope),
                ix.names.name(e.kind),
                include_system,
            )
        });
        self.last = Some((key, m));
        m
    }
}
