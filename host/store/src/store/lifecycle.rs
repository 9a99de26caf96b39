//! Opening and closing a store: lock the directory, recover, start the
//! flusher and sync threads (a panic on either marks the store failed and
//! wakes every waiter), report a cut torn tail, and on close flush, sync and
//! snapshot.

use super::core::Core;
use super::durability::Durability;
use super::durable_mark::DurableMark;
use super::lock::DirLock;
use super::read_path::ReadPath;
use super::recovery::recover;
use super::segment::{list_segments, segment_path};
use super::sequencer::Sequencer;
use super::sync_thread::sync_loop;
use super::writer::Writer;
use super::{AppendOptions, RecoveryInfo, StoreError, StoreNotice, StoreOptions};
use crate::event::{Coordinate, Proposal};
use crate::panic_message::panic_message;
use crate::system::{RECOVERED_KIND, STORE_ENTITY, SYSTEM_SCOPE};
use parking_lot::{Condvar, Mutex, RwLock};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What every [`Store`](super::Store) clone holds.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub core: Arc<Core>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    pub recovery: RecoveryInfo,
}

/// Opens the store in `dir`: lock, recover, start the threads.
/// Replaces a snapshot in the previous format with one in the current
/// format covering the same log, once, at the open that loaded it: written
/// to a temporary file, fsynced, renamed over `index.snap`, the directory
/// fsynced (all through the [`Disk`](super::Disk)). A crash or a failure at
/// any step leaves the old snapshot in place (still loaded and migrated by
/// the next open) or the new one; a failure fails the open, naming the
/// step.
fn migrate_snapshot(
    disk: &dyn super::Disk,
    dir: &Path,
    rec: &super::recovery::Recovered,
    active: &dyn super::DiskFile,
) -> Result<(), StoreError> {
    active.sync().map_err(StoreError::io(
        "syncing before migrating the index snapshot",
    ))?;
    let mut proof = rec.sealed.clone();
    proof.push(super::snapshot::SegmentProof {
        segment: rec.last_segment,
        len: rec.end_offset,
        crc: rec.tail_crc.clone().finalize(),
    });
    super::snapshot::save(disk, dir, rec.store_id, &rec.index, proof)
}

pub(crate) fn open(dir: &Path, options: StoreOptions) -> Result<Arc<Shared>, StoreError> {
    let disk = options.disk.clone();
    let lock = if disk.uses_lock_file() {
        Some(DirLock::acquire(dir)?)
    } else {
        disk.create_dir_all(dir)
            .map_err(StoreError::io(format!("creating {}", dir.display())))?;
        None
    };
    let rec = recover(&*disk, dir, true)?;
    let seg_dir = dir.join("segments");
    let mut readers = HashMap::new();
    for n in list_segments(&*disk, &seg_dir)? {
        let p = segment_path(&seg_dir, n);
        readers.insert(
            n,
            disk.open(&p)
                .map_err(StoreError::io(format!("opening {}", p.display())))?,
        );
    }
    let active = readers
        .get(&rec.last_segment)
        .cloned()
        .ok_or_else(|| StoreError::Corrupt {
            segment: rec.last_segment,
            offset: 0,
            reason: "the last segment vanished while opening".into(),
        })?;
    let end = (rec.last_segment, rec.end_offset);
    let mark =
        DurableMark::open(&*disk, dir).map_err(StoreError::io("opening the durable marker"))?;
    // Everything recovered is on disk (read back, and a cut tail synced).
    mark.record(end)
        .map_err(StoreError::io("recording the durable marker"))?;
    if rec.snapshot_outdated {
        migrate_snapshot(&*disk, dir, &rec, &*active)?;
    }
    let last = rec.index.last_sequence();
    let writer = Writer::new(
        dir.to_path_buf(),
        rec.last_segment,
        active.clone(),
        rec.end_offset,
        rec.replayed,
        rec.sealed,
        rec.tail_crc,
    );
    let core = Arc::new(Core {
        dir: dir.to_path_buf(),
        store_id: rec.store_id,
        reads: ReadPath {
            seg_dir,
            disk: disk.clone(),
            index: RwLock::new(rec.index),
            readers: RwLock::new(readers),
        },
        seq: Mutex::new(Sequencer::new(last, options.queue_capacity)),
        flush_cv: Condvar::new(),
        idle_cv: Condvar::new(),
        bulk_cv: Condvar::new(),
        writer: Mutex::new(writer),
        dur: Durability::new(last, end, active, mark),
        subscribers: Mutex::new(Vec::new()),
        has_subscribers: AtomicBool::new(false),
        lock,
        options,
        close_error: Mutex::new(None),
    });
    let c1 = core.clone();
    let wt = std::thread::Builder::new()
        .name("batpak-flusher".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c1.flusher()));
            if let Err(p) = r {
                c1.dur.poison(format!(
                    "the store's flusher thread panicked: {}",
                    panic_message(&*p)
                ));
                c1.dur.shut_down();
            }
        })
        .map_err(StoreError::io("starting the flusher thread"))?;
    let c2 = core.clone();
    let st = std::thread::Builder::new()
        .name("batpak-sync".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sync_loop(&c2.dur, c2.options.sync_interval)
            }));
            if let Err(p) = r {
                c2.dur.poison(format!(
                    "the store's sync thread panicked: {}",
                    panic_message(&*p)
                ));
            }
        })
        .map_err(StoreError::io("starting the sync thread"))?;
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        core,
        threads: Mutex::new(vec![wt, st]),
        closed: AtomicBool::new(false),
        recovery: RecoveryInfo {
            replayed: rec.replayed,
            truncated_tail: rec.truncated,
            dropped_transaction: rec.dropped_txn,
        },
    });
    // Say in the log itself what recovery dropped or cut, durably, before
    // anyone writes.
    let record = |payload: serde_json::Value| -> Result<(), StoreError> {
        let coord = Coordinate {
            entity: STORE_ENTITY.into(),
            scope: SYSTEM_SCOPE.into(),
        };
        shared.core.append(
            vec![Proposal::new(
                coord,
                RECOVERED_KIND,
                payload.to_string().into_bytes(),
            )],
            AppendOptions::durable(),
            true,
        )?;
        Ok(())
    };
    if let Some((segment, offset, events)) = rec.dropped_txn {
        record(serde_json::json!({
            "segment": segment,
            "offset": offset,
            "events_dropped": events,
            "reason": "bulk transaction never committed (the appending process stopped before its commit); none of its events count",
        }))?;
    }
    if let Some((segment, offset, bytes)) = rec.truncated {
        record(serde_json::json!({
            "segment": segment,
            "offset": offset,
            "bytes_cut": bytes,
            "reason": "torn write at the end of the log, never acknowledged as durable",
        }))?;
    }
    Ok(shared)
}

impl Shared {
    /// Stops accepting appends, lets the writer drain and sync, joins both
    /// threads and wakes everyone still waiting.
    pub(crate) fn close(&self) -> Result<(), StoreError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.core.seq.lock().close() {
            self.core.flush_cv.notify_all();
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        self.core.dur.shut_down();
        for s in self.core.subscribers.lock().drain(..) {
            s.close_store();
        }
        self.core.dur.check()?;
        match self.core.close_error.lock().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Nobody called `close` to receive its error: report it.
        if let Err(e) = self.close() {
            self.core.options.notices.send(StoreNotice::CloseFailed(e));
        }
    }
}
