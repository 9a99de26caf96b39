//! What one open store shares between its handles and its two threads
//! (flusher and sync): the read path, the sequencer and its queue, the
//! writer (the active segment, used by whichever thread holds the drain
//! role), the durability state with the durable marker, the subscribers
//! and the directory lock.

use super::durability::Durability;
use super::fanout::SubscriberQueue;
use super::lock::DirLock;
use super::read_path::ReadPath;
use super::sequencer::{Appender, Sequencer};
use super::verify::verify_dir;
use super::writer::Writer;
use super::{AppendOptions, StoreError, StoreOptions, VerifyReport};
use crate::event::{Proposal, Receipt};
use parking_lot::{Condvar, Mutex};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// State shared by store handles and the flusher and sync threads.
pub(crate) struct Core {
    pub dir: PathBuf,
    pub options: StoreOptions,
    pub store_id: u128,
    pub reads: ReadPath,
    pub seq: Mutex<Sequencer>,
    /// Wakes the flusher thread (with the `seq` lock): asked to drain, or
    /// the store closes.
    pub flush_cv: Condvar,
    /// Signalled (with the `seq` lock) when the drain role is released.
    pub idle_cv: Condvar,
    /// Signalled (with the `seq` lock) when a bulk transaction ends.
    pub bulk_cv: Condvar,
    /// The active segment; locked only by the holder of the drain role.
    pub writer: Mutex<Writer>,
    pub dur: Durability,
    pub subscribers: Mutex<Vec<Arc<SubscriberQueue>>>,
    pub has_subscribers: AtomicBool,
    /// `None` on a disk without lock files (the simulated one).
    pub lock: Option<DirLock>,
    /// What the clean shutdown failed to do after the final fsync (the
    /// durable marker, the index snapshot): [`Store::close`](super::Store::close)
    /// returns it.
    pub close_error: Mutex<Option<StoreError>>,
}

impl Core {
    /// Sequences and queues a batch, then waits as `options` ask.
    pub fn append(
        &self,
        proposals: Vec<Proposal>,
        options: AppendOptions,
        system: bool,
    ) -> Result<Vec<Receipt>, StoreError> {
        Appender {
            seq: &self.seq,
            reads: &self.reads,
            dur: &self.dur,
            flush_cv: &self.flush_cv,
            drain: &|leads| self.drain(leads),
            bulk_cv: &self.bulk_cv,
        }
        .append(proposals, options, system)
    }

    /// Registers a lossy subscriber's queue with the writer.
    pub fn add_subscriber(&self, q: Arc<SubscriberQueue>) {
        let mut subs = self.subscribers.lock();
        subs.push(q);
        self.has_subscribers.store(true, Ordering::Release);
    }

    /// Syncs, then checks the files against the index.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        self.dur.sync()?;
        let ix = self.reads.index.read();
        verify_dir(&*self.reads.disk, &self.dir, Some(&ix))
    }
}
