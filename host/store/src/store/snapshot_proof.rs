//! What every index snapshot version shares: the file's name, the proof of
//! the segments it covers, and the fields recovery and readers use. Kept
//! apart so the current format (`snapshot`) and the previous one
//! (`snapshot_v4`, read once to migrate) both use it without depending on
//! each other.

use serde::{Deserialize, Serialize};

/// The snapshot's file name in the store directory.
pub(crate) const FILE: &str = "index.snap";

/// What a snapshot saw of one segment: the first `len` bytes hashed to `crc`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentProof {
    pub segment: u32,
    pub len: u64,
    pub crc: u32,
}

/// The fields every snapshot version has, for recovery and readers.
pub(crate) struct Common {
    pub store_id: u128,
    pub end_segment: u32,
    pub end_offset: u64,
    pub count: u64,
    pub proof: Vec<SegmentProof>,
}
