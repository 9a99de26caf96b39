//! The cluster's layout: how many partitions, how many replicas. Written
//! once by `cluster init` into the KV bucket [`LAYOUT_BUCKET`] under the key
//! [`LAYOUT_KEY`], read by every host when it opens the log.

use serde::{Deserialize, Serialize};

/// The KV bucket holding the layout (later also configs and leases).
pub const LAYOUT_BUCKET: &str = "batpak_cluster";
/// The key of the layout in [`LAYOUT_BUCKET`].
pub const LAYOUT_KEY: &str = "layout";
/// The object store that will hold plugin files.
pub const PLUGINS_BUCKET: &str = "batpak_plugins";
/// The most partitions a layout may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// What `cluster init` created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// The on-cluster format (1).
    pub format: u32,
    /// Partition count K: streams `BATPAK_P0` … `BATPAK_P{K-1}`.
    pub partitions: u32,
    /// Replicas of every stream and bucket (1, 3 or 5 in practice).
    pub replicas: u32,
}

impl Layout {
    /// The layout of `partitions` streams with `replicas` replicas each.
    pub fn new(partitions: u32, replicas: u32) -> Layout {
        Layout {
            format: 1,
            partitions,
            replicas,
        }
    }
}
