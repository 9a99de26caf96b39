//! The [`Writer`]'s state: the active segment, the CRC state that proves
//! it, and the queue taken from the sequencer. What the writer does with it
//! (draining the queue, rotating, snapshotting, closing) is in
//! `writer_thread.rs`.

use super::disk::DiskFile;
use super::sequencer::Queue;
use super::snapshot::SegmentProof;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// The writer's own state: the active segment and what snapshots prove.
pub(crate) struct Writer {
    pub dir: PathBuf,
    pub segment: u32,
    pub file: Arc<dyn DiskFile>,
    pub len: u64,
    pub since_snapshot: u64,
    /// CRC-32 of each sealed segment.
    pub sealed: Vec<SegmentProof>,
    /// CRC-32 state of the active segment's first `len` bytes.
    pub crc: crc32fast::Hasher,
    pub lock_checked: Option<Instant>,
    /// The queue taken from the sequencer (swapped with its empty one, so
    /// both keep their capacity).
    pub taken: Queue,
    /// The draining thread will wait for durability itself (and so lead an
    /// fsync): a write need not hand the fsync to a parked waiter.
    pub drainer_leads: bool,
}

impl Writer {
    /// A writer appending to `file` (segment `segment`, `len` bytes long).
    pub fn new(
        dir: PathBuf,
        segment: u32,
        file: Arc<dyn DiskFile>,
        len: u64,
        since_snapshot: u64,
        sealed: Vec<SegmentProof>,
        crc: crc32fast::Hasher,
    ) -> Writer {
        Writer {
            dir,
            segment,
            file,
            len,
            since_snapshot,
            sealed,
            crc,
            lock_checked: None,
            taken: Queue::default(),
            drainer_leads: false,
        }
    }
}
