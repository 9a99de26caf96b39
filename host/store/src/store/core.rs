//! What one open store shares between its handles and its two threads:
//! the read path, the sequencer, the durability state, the subscribers,
//! the durable marker and the directory lock.

use super::durability::Durability;
use super::durable_mark::DurableMark;
use super::fanout::SubscriberQueue;
use super::lock::DirLock;
use super::read_path::ReadPath;
use super::sequencer::{Appender, Sequencer};
use super::verify::verify_dir;
use super::{AppendOptions, StoreError, StoreOptions, VerifyReport};
use crate::event::{Proposal, Receipt};
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// State shared by store handles and the writer and sync threads.
pub(crate) struct Core {
    pub dir: PathBuf,
    pub options: StoreOptions,
    pub store_id: u128,
    pub reads: ReadPath,
    pub seq: Mutex<Sequencer>,
    pub dur: Durability,
    pub subscribers: Mutex<Vec<Arc<SubscriberQueue>>>,
    pub has_subscribers: AtomicBool,
    pub mark: DurableMark,
    /// `None` on a disk without lock files (the simulated one).
    pub lock: Option<DirLock>,
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
