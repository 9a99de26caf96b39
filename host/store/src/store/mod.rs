//! The store: one directory, one owner, an append-only log of events.
//!
//! See `host/store/DESIGN.md` for the file format. In short:
//! - callers validate and sequence their appends under a short lock (the
//!   sequencer), encoding frames into one queue; one thread at a time (the
//!   **drain role**: an appender that waits, or the flusher thread for
//!   appends that do not) writes the whole queue and publishes it to the
//!   index, so a waiting append needs no hand-off to another thread;
//! - a durable appender **leads** the fsync when none is in flight, covering
//!   everything written, and advances the durable watermark, so concurrent
//!   durable appends share one fsync (group commit); a **sync thread**
//!   fsyncs what nobody waits for within `sync_interval`;
//! - a batch is one CRC-checked frame, so it is all or nothing; a bulk
//!   transaction ([`BulkAppend`]) of any size is many part frames made to
//!   count by one commit frame;
//! - recovery cuts a torn write nobody was told was durable (and records a
//!   `batpak.store.recovered` event) and fails closed on any other damage,
//!   naming segment and offset; `verify` reports which, changing nothing;
//! - all file I/O goes through [`Disk`] ([`OsDisk`], or `SimDisk` in tests:
//!   the `testing` feature).

mod bulk;
mod checkpoint;
mod core;
mod disk;
mod durability;
mod durable_mark;
mod error;
mod fanout;
mod frame;
mod id_table;
mod index;
mod index_memory;
mod le_bytes;
mod lifecycle;
mod lock;
mod lookup;
#[cfg(test)]
mod migration_tests;
mod name_table;
mod notice;
mod partition;
mod plan;
mod private_dir;
mod read_path;
mod reader;
mod recovery;
mod region;
mod region_match;
mod segment;
mod seq_list;
mod sequencer;
#[cfg(any(test, feature = "testing"))]
mod sim_disk;
mod snapshot;
mod snapshot_proof;
mod snapshot_v4;
mod sync_thread;
mod uncommitted;
mod verify;
mod watermarks;
mod writer;
mod writer_thread;

pub use bulk::BulkAppend;
pub(crate) use checkpoint::validate_cursor_id;
pub use checkpoint::Checkpoint;
pub use disk::{Disk, DiskFile, OsDisk};
pub(crate) use durability::Stopped;
pub use error::{IdempotencyConflict, StoreError};
pub(crate) use fanout::SubscriberQueue;
#[cfg(any(test, feature = "testing"))]
pub use frame::{decode_frame, encode_frame, FrameError};
pub(crate) use index::Entry;
pub use index_memory::IndexMemory;
pub use lookup::Lookup;
pub use notice::{Notices, StoreNotice};
pub use partition::{fnv1a64, partition_of};
pub use plan::{AppendPlan, PLAN_MAX_ENTRIES};
pub(crate) use read_path::{FrameCache, ReadPath};
pub use reader::LogReader;
pub use region::{Region, Shard};
#[cfg(any(test, feature = "testing"))]
pub use sim_disk::{SimDisk, SimError, SimOp};
pub use verify::VerifyReport;
pub use watermarks::Watermarks;

use crate::event::{Event, EventId, Proposal, Receipt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Tunables for [`Store::open_with`]. The defaults suit most uses.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Rotate to a new segment file once the active one reaches this size
    /// (at most 3 GiB is used: the index holds 32-bit offsets within a
    /// segment, and a segment may exceed this by one frame of up to 256 MiB).
    pub segment_size: u64,
    /// Capacity of the write queue, in frames; beyond it appenders wait
    /// for their write (backpressure).
    pub queue_capacity: usize,
    /// Longest time a written but not yet durable event waits for an fsync
    /// when nobody asked for durability.
    pub sync_interval: Duration,
    /// Write an index snapshot after this many new events (and on close), so
    /// reopening replays only the tail.
    pub snapshot_every: u64,
    /// Where the files live: the real file system ([`OsDisk`], the default)
    /// or a simulation (`SimDisk`, with the `testing` feature) for crash
    /// and fault tests.
    pub disk: Arc<dyn Disk>,
    /// Where the store reports what no call returns (a failed periodic
    /// snapshot, a failed close on drop): the store never prints. Ignored
    /// by default.
    pub notices: Notices,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            segment_size: 128 << 20,
            queue_capacity: 4096,
            sync_interval: Duration::from_millis(20),
            snapshot_every: 250_000,
            disk: Arc::new(OsDisk),
            notices: Notices::ignore(),
        }
    }
}

/// How long an append waits before returning its receipts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wait {
    /// Return once the batch is sequenced and queued for the writer. The
    /// receipt is final (ids and sequences never change), but the events may
    /// not be readable yet and are lost if the process dies before they are
    /// written. Use [`Store::sync`] to make them durable later.
    Accepted,
    /// Return once the events are written and readable (not yet fsynced).
    #[default]
    Visible,
    /// Return once the events are on stable storage (fsynced). Concurrent
    /// durable appends share one fsync.
    Durable,
}

/// How an append should behave.
#[derive(Clone, Debug, Default)]
pub struct AppendOptions {
    /// When the call returns.
    pub wait: Wait,
    /// Move a cursor's checkpoint in the same atomic write as the events.
    pub checkpoint: Option<CheckpointUpdate>,
}

impl AppendOptions {
    /// Return once the events are durable.
    pub fn durable() -> Self {
        AppendOptions {
            wait: Wait::Durable,
            checkpoint: None,
        }
    }

    /// Return once the events are visible (written, maybe not durable).
    pub fn visible() -> Self {
        AppendOptions::default()
    }

    /// Return as soon as the batch is accepted (see [`Wait::Accepted`]).
    pub fn accepted() -> Self {
        AppendOptions {
            wait: Wait::Accepted,
            checkpoint: None,
        }
    }

    /// Also commit `checkpoint` atomically with the events.
    pub fn with_checkpoint(mut self, checkpoint: CheckpointUpdate) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    pub(crate) fn wait_durable(&self) -> bool {
        self.wait == Wait::Durable
    }

    pub(crate) fn wait_visible(&self) -> bool {
        self.wait != Wait::Accepted
    }
}

/// A new position for a named cursor, committed atomically with an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointUpdate {
    /// The cursor's id (1 to 64 of `a-z 0-9 - _ .`).
    pub cursor: String,
    /// Fingerprint of the cursor's region ([`Region::fingerprint`]).
    pub region: [u8; 32],
    /// Last global sequence the cursor has fully handled.
    pub sequence: u64,
    /// Id of the event at `sequence` (checked on reopen).
    pub event_id: EventId,
}

/// What [`Store::open`] found and repaired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecoveryInfo {
    /// Events read from segment files rather than the index snapshot.
    pub replayed: u64,
    /// `(segment, offset, bytes)` when a torn tail was truncated: an append
    /// that never completed (and was never acknowledged as durable).
    pub truncated_tail: Option<(u32, u64, u64)>,
    /// `(segment, offset, events)` when the log ended in a bulk transaction
    /// without its commit (the process died while appending it): none of
    /// its events count, and an abort frame now says so.
    pub dropped_transaction: Option<(u32, u64, u64)>,
}

/// Handle to an open store. Cheap to clone; every clone shares the same
/// writer. The store closes (flushing, syncing and snapshotting) when
/// [`Store::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<lifecycle::Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` with default options.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another process owns the directory,
    /// [`StoreError::Corrupt`] when a segment is damaged other than at its
    /// tail, or an I/O error.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, StoreError> {
        Self::open_with(dir, StoreOptions::default())
    }

    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StoreError> {
        lifecycle::open(dir.as_ref(), options).map(|inner| Store { inner })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends one event.
    ///
    /// # Errors
    /// Validation errors, a sequence conflict, or a store failure.
    pub fn append(
        &self,
        proposal: Proposal,
        options: AppendOptions,
    ) -> Result<Receipt, StoreError> {
        let mut r = self.append_batch(vec![proposal], options)?;
        Ok(r.remove(0))
    }

    /// Appends a batch atomically: after any crash either every event of the
    /// batch is in the log or none is, and readers see them together.
    /// Receipts come back in proposal order. Proposals whose idempotency key
    /// or explicit id already exists are not appended again; their receipts
    /// are the originals with `deduplicated` set.
    ///
    /// # Errors
    /// Any invalid proposal or a failed `expected_sequence` refuses the whole
    /// batch; nothing is written.
    pub fn append_batch(
        &self,
        proposals: Vec<Proposal>,
        options: AppendOptions,
    ) -> Result<Vec<Receipt>, StoreError> {
        self.inner.core.append(proposals, options, false)
    }

    /// Like [`append_batch`](Self::append_batch) but admits `batpak.*` kinds.
    /// For the host's own records (denials, parking, checkpoints); never
    /// hand it input from a plugin or a user.
    ///
    /// # Errors
    /// As [`append_batch`](Self::append_batch).
    pub fn append_system(
        &self,
        proposals: Vec<Proposal>,
        options: AppendOptions,
    ) -> Result<Vec<Receipt>, StoreError> {
        self.inner.core.append(proposals, options, true)
    }

    /// Reads one event by id (visible events only).
    ///
    /// # Errors
    /// An I/O error reading the segment.
    pub fn get(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        self.inner.core.reads.get(id)
    }

    /// Reads the event at a global sequence.
    ///
    /// # Errors
    /// An I/O error reading the segment.
    pub fn get_by_sequence(&self, sequence: u64) -> Result<Option<Event>, StoreError> {
        self.inner.core.reads.get_by_sequence(sequence)
    }

    /// Reads an entity's events with entity sequence greater than `after`,
    /// oldest first, at most `max`.
    ///
    /// # Errors
    /// An I/O error reading the segment.
    pub fn entity_events(
        &self,
        entity: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner.core.reads.entity_events(entity, after, max)
    }

    /// The ids of events whose causation is `id` (the causal graph forward).
    pub fn caused_by(&self, id: EventId) -> Vec<EventId> {
        self.inner.core.reads.caused_by(id)
    }

    /// Reads visible events matching `region` with sequence greater than
    /// `after`, at most `limit`. System events only match when the region
    /// lists their kind; pass `include_system` to see them all.
    ///
    /// # Errors
    /// An I/O error reading the segment.
    pub fn scan(
        &self,
        region: &Region,
        after: u64,
        limit: usize,
        include_system: bool,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner
            .core
            .reads
            .scan(region, after, limit, include_system, u64::MAX)
    }

    /// Reads visible events found through an index — an entity's, a
    /// correlation's, an event's direct reactions, one id, or the log from a
    /// position — that match `region`, have a sequence greater than `after`,
    /// at most `limit`, in sequence order. Only the chosen index's list is
    /// walked, never the log from its start. System events match as in
    /// [`scan`](Self::scan).
    ///
    /// # Errors
    /// An I/O error reading the segment, or [`StoreError::Corrupt`].
    pub fn lookup(
        &self,
        lookup: &Lookup,
        region: &Region,
        after: u64,
        limit: usize,
        include_system: bool,
    ) -> Result<Vec<Event>, StoreError> {
        self.inner
            .core
            .reads
            .lookup(lookup, region, after, limit, include_system)
    }

    /// As [`lookup`](Self::lookup), but ends early once the events' header
    /// and payload bytes would pass `max_bytes` (the first event is always
    /// returned). The sizes come from the index, so a read never loads more
    /// than the budget plus one event. The flag is true when the budget
    /// ended the list (more matching events may follow).
    ///
    /// # Errors
    /// As [`lookup`](Self::lookup).
    pub fn lookup_bounded(
        &self,
        lookup: &Lookup,
        region: &Region,
        after: u64,
        limit: usize,
        include_system: bool,
        max_bytes: usize,
    ) -> Result<(Vec<Event>, bool), StoreError> {
        self.inner.core.reads.lookup_bounded(
            lookup,
            region,
            after,
            limit,
            include_system,
            max_bytes,
        )
    }

    /// Current watermarks.
    pub fn watermarks(&self) -> Watermarks {
        self.inner.core.dur.watermarks()
    }

    /// Waits until `sequence` is durable or `timeout` passes; `Ok(true)`
    /// when durable, `Ok(false)` on timeout.
    ///
    /// # Errors
    /// The store failed ([`StoreError::Poisoned`]): every waiter wakes with it.
    pub fn wait_durable(&self, sequence: u64, timeout: Duration) -> Result<bool, StoreError> {
        self.inner.core.dur.wait_durable(sequence, timeout)
    }

    /// Makes everything appended so far durable.
    ///
    /// # Errors
    /// The fsync failed (the store is then poisoned: later appends fail).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.inner.core.dur.sync()
    }

    /// The last committed checkpoint of cursor `id`.
    pub fn checkpoint(&self, id: &str) -> Option<Checkpoint> {
        self.inner.core.reads.checkpoint(id)
    }

    /// Every committed checkpoint, by cursor id.
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        self.inner.core.reads.checkpoints()
    }

    /// Checks every frame CRC, every event hash and entity chain link, and
    /// that the index agrees with the segments.
    ///
    /// # Errors
    /// Only when the check itself cannot run (I/O); problems found go into
    /// the report.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.inner.core.verify()
    }

    /// Flushes, syncs, writes an index snapshot and releases the directory
    /// (once every clone of this handle is gone).
    ///
    /// # Errors
    /// The store failed earlier or its final fsync failed
    /// ([`StoreError::Poisoned`]), or recording the durable marker or
    /// writing the index snapshot failed ([`StoreError::Io`]; the log
    /// itself stays intact and the next open rebuilds what is missing).
    pub fn close(self) -> Result<(), StoreError> {
        self.inner.close()
    }

    /// What opening had to do: how many events were replayed from the
    /// segments (not covered by the snapshot) and whether a torn tail was cut.
    pub fn recovery(&self) -> RecoveryInfo {
        self.inner.recovery
    }
}

impl Store {
    /// Starts a dry run of appends: check proposals one by one against this
    /// store and against each other, writing nothing (see [`AppendPlan`]).
    pub fn plan(&self) -> AppendPlan<'_> {
        AppendPlan::new(&self.inner.core.reads)
    }
}

/// True when the store in `dir` ends exactly where its durable marker says
/// — it was closed (or synced) cleanly and nothing was written after — so
/// opening it repairs nothing: no torn tail to cut, no unacknowledged frames.
/// A read-only tool may then open it to read through the index; otherwise
/// it should read the segments ([`LogReader`]) and report what it finds.
/// Damage inside the log is not looked for here (opening finds it).
pub fn opens_clean(dir: &Path) -> bool {
    // An open refuses a directory others can access; a read-only tool then
    // reads the segments instead (it changes nothing, so it does not refuse).
    if private_dir::check(dir).is_err() {
        return false;
    }
    let disk = OsDisk;
    let Some((segment, offset)) = durable_mark::read(&disk, dir) else {
        return false;
    };
    let seg_dir = dir.join("segments");
    let Ok(segments) = segment::list_segments(&disk, &seg_dir) else {
        return false;
    };
    if segments.last() != Some(&segment) {
        return false;
    }
    disk.open(&segment::segment_path(&seg_dir, segment))
        .and_then(|f| f.len())
        .is_ok_and(|len| len == offset)
}

/// Verifies the store in `dir` straight from its segment files, without
/// opening (or repairing) it: for a store that fails to open.
///
/// # Errors
/// Only when the check itself cannot run (I/O).
pub fn verify_dir(dir: &Path) -> Result<VerifyReport, StoreError> {
    verify::verify_dir(&OsDisk, dir, None)
}

/// [`verify_dir`] on any [`Disk`] (a test hook: the `testing` feature).
///
/// # Errors
/// As [`verify_dir`].
#[cfg(any(test, feature = "testing"))]
pub fn verify_dir_on(disk: &dyn Disk, dir: &Path) -> Result<VerifyReport, StoreError> {
    verify::verify_dir(disk, dir, None)
}
