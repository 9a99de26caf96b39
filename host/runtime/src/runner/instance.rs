//! [`Instance`]: one of a reactor's parallel instances by key, and the
//! cursor ids of instances.
//!
//! A reactor run as `count` instances splits its region by entity with
//! [`Region::shard`] (the cluster's partition hash, FNV-1a 64 of the entity
//! modulo `count`); each instance is its own runner with its own plugin
//! instance and checkpoint, so reactions keep their order per entity and
//! land once per source event. Cursor ids: `reactor.<name>` for one
//! instance (what every store before instances has), and
//! `reactor.<name>.<index>-of-<count>` for more (a reactor name has no
//! `.`, so the two never meet).

use batpak_store::{Checkpoint, Region};

/// Most instances of one reactor.
pub const MAX_INSTANCES: u32 = 64;

/// The region fingerprint of a retired instance's checkpoint (after a
/// hand-over to another count): it matches no region, so a runner that
/// opens a retired cursor fails closed instead of re-reading its shard.
pub const RETIRED_REGION: [u8; 32] = *b"batpak.instance.retired.........";

/// Instance `index` of `count` of a reactor (`0` of `1`: the reactor
/// alone, as before instances).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Instance {
    /// Which instance, `0..count`.
    pub index: u32,
    /// How many instances the reactor runs as (1 to [`MAX_INSTANCES`]).
    pub count: u32,
}

/// The cursor id of reactor `name` run as one instance: `reactor.<name>`.
pub fn cursor_id(name: &str) -> String {
    format!("reactor.{name}")
}

impl Default for Instance {
    fn default() -> Self {
        Instance { index: 0, count: 1 }
    }
}

impl Instance {
    /// Every instance of a reactor run as `count`.
    pub fn all(count: u32) -> impl Iterator<Item = Instance> {
        (0..count).map(move |index| Instance { index, count })
    }

    /// The cursor id of this instance of reactor `name`.
    pub fn cursor_id(&self, name: &str) -> String {
        if self.count <= 1 {
            cursor_id(name)
        } else {
            format!("reactor.{name}.{}-of-{}", self.index, self.count)
        }
    }

    /// `region` restricted to this instance's shard.
    pub fn region(&self, region: &Region) -> Region {
        region.clone().shard(self.index, self.count)
    }

    /// How `status` names it: `name` alone, or `name#index/count`.
    pub fn label(&self, name: &str) -> String {
        if self.count <= 1 {
            name.to_string()
        } else {
            format!("{name}#{}/{}", self.index, self.count)
        }
    }

    /// The instance a cursor id of reactor `name` belongs to, if it is one
    /// of its cursors.
    pub fn of_cursor(name: &str, cursor: &str) -> Option<Instance> {
        let rest = cursor.strip_prefix("reactor.")?.strip_prefix(name)?;
        if rest.is_empty() {
            return Some(Instance::default());
        }
        let (i, n) = rest.strip_prefix('.')?.split_once("-of-")?;
        let (index, count) = (i.parse().ok()?, n.parse().ok()?);
        (index < count && count > 1).then_some(Instance { index, count })
    }
}

/// The live (not retired) checkpoints of reactor `name` among
/// `checkpoints`, with the instance each belongs to.
pub fn live_instances(name: &str, checkpoints: &[Checkpoint]) -> Vec<(Instance, Checkpoint)> {
    checkpoints
        .iter()
        .filter(|c| c.region != RETIRED_REGION)
        .filter_map(|c| Instance::of_cursor(name, &c.cursor).map(|i| (i, c.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_ids_of_instances_round_trip_and_one_instance_keeps_the_old_id() {
        let one = Instance::default();
        assert_eq!(one.cursor_id("inv"), "reactor.inv");
        assert_eq!(Instance::of_cursor("inv", "reactor.inv"), Some(one));
        let i = Instance { index: 1, count: 3 };
        assert_eq!(i.cursor_id("inv"), "reactor.inv.1-of-3");
        assert_eq!(i.label("inv"), "inv#1/3");
        assert_eq!(Instance::of_cursor("inv", "reactor.inv.1-of-3"), Some(i));
        assert_eq!(Instance::of_cursor("in", "reactor.inv.1-of-3"), None);
        assert_eq!(Instance::of_cursor("inv", "reactor.inv-2"), None);
        assert_eq!(Instance::of_cursor("inv", "reactor.inv.3-of-3"), None);
        assert_eq!(Instance::all(2).count(), 2);
    }
}
