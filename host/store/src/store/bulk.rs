//! Bulk transactions: one all-or-nothing append of any size.
//!
//! A batch is one frame, so it is atomic by its CRC, but a frame holds at
//! most 256 MiB and must be built in memory. A [`BulkAppend`] writes its
//! events as *part* frames (each as large as the caller's chunk), then one
//! *commit* frame once every part is durable. Nothing of it counts before
//! the commit frame is intact on disk: readers (the index, cursors,
//! subscriptions, [`LogReader`](super::LogReader), `verify`) see no part of
//! it until then; recovery after a crash before the commit writes an
//! *abort* frame after the parts (they stay on disk, dead) and reports the
//! dropped transaction; an abandoned transaction (error, drop) writes the
//! abort frame at once.
//!
//! While a transaction is open it owns the log (it holds the drain role):
//! every other append waits until it commits or aborts, then goes after it.
//! So the parts of one transaction are never interleaved with other frames.
//!
//! Memory: each part is indexed as soon as it is written, hidden from
//! readers until the commit (`uncommitted.rs`), and later parts are checked
//! against the index (deduplication, causation, chain heads). So an open
//! transaction holds nothing per event beyond what the index holds after
//! its commit anyway, plus one part in flight and the sequencer's bounded
//! chain-head cache.

use super::le_bytes::u32_at;
use super::segment::{decode_body, end_body, Body};
use super::sequencer::{Appender, Queue};
use super::{frame, Store, StoreError};
use crate::event::{Event, Proposal, Receipt};
use parking_lot::MutexGuard;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// An open bulk transaction on a [`Store`] (see [`Store::begin_bulk`]).
/// Dropping it without [`commit`](Self::commit) abandons it: nothing of it
/// is ever read.
#[must_use = "a bulk transaction counts only once committed"]
pub struct BulkAppend {
    store: Store,
    txn: u64,
    /// First sequence of the transaction.
    first: u64,
    parts: u32,
    events: u64,
    /// Where each part frame starts: (segment, offset).
    parts_at: Vec<(u32, u64)>,
    done: bool,
}

impl std::fmt::Debug for BulkAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkAppend")
            .field("txn", &self.txn)
            .field("parts", &self.parts)
            .field("events", &self.events)
            .finish()
    }
}

impl Store {
    /// Opens a bulk transaction: appends of any total size that count all
    /// together or not at all, whatever happens to the process or the
    /// machine (see [`BulkAppend`]). Until it commits or aborts, every
    /// other append to this store waits and then goes after it; do not
    /// append to the store by other means on the thread that holds it.
    ///
    /// # Errors
    /// The store is closed or failed.
    pub fn begin_bulk(&self) -> Result<BulkAppend, StoreError> {
        let core = &self.inner.core;
        let mut seq = core.seq.lock();
        loop {
            core.dur.check()?;
            if seq.closed {
                return Err(StoreError::Closed);
            }
            if seq.bulk_open {
                core.bulk_cv.wait(&mut seq);
            } else if seq.draining {
                core.idle_cv.wait(&mut seq);
            } else if !seq.queue.is_empty() {
                // Write what others queued first, so the transaction's
                // frames follow everything sequenced before it.
                seq.draining = true;
                MutexGuard::unlocked(&mut seq, || core.drain(false));
            } else {
                break;
            }
        }
        seq.draining = true;
        seq.bulk_open = true;
        let first = seq.next_seq;
        {
            // Everything sequenced before is written and indexed (the
            // queue was drained): the transaction's events follow, hidden.
            let mut ix = core.reads.index.write();
            debug_assert_eq!(ix.len() + 1, first);
            ix.begin_uncommitted();
        }
        drop(seq);
        let mut id = [0u8; 8];
        let _ = getrandom::fill(&mut id);
        Ok(BulkAppend {
            store: self.clone(),
            txn: u64::from_le_bytes(id),
            first,
            parts: 0,
            events: 0,
            parts_at: Vec::new(),
            done: false,
        })
    }
}

impl BulkAppend {
    /// Events written so far (not yet counting).
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Appends `proposals` as one part: checked and sequenced like a batch
    /// (idempotency keys and ids deduplicate, against the store and earlier
    /// parts), written to the log but not readable before the commit. The
    /// receipts are final once [`commit`](Self::commit) succeeds.
    ///
    /// # Errors
    /// An invalid proposal, a sequence conflict or an unknown causation
    /// refuses this part only (the transaction stays open; abandon it or go
    /// on); a failed write poisons the store.
    pub fn append(&mut self, proposals: Vec<Proposal>) -> Result<Vec<Receipt>, StoreError> {
        for (index, p) in proposals.iter().enumerate() {
            p.validate(false)
                .map_err(|source| StoreError::Invalid { index, source })?;
        }
        let core = &self.store.inner.core;
        let mut w = core.writer.lock();
        let (receipts, added) = {
            let mut seq = core.seq.lock();
            core.dur.check()?;
            let appender = Appender {
                seq: &core.seq,
                reads: &core.reads,
                dur: &core.dur,
                flush_cv: &core.flush_cv,
                drain: &|_| {},
                bulk_cv: &core.bulk_cv,
            };
            let r = appender.sequence_part(&mut seq, proposals, self.txn, self.parts)?;
            if r.1 > 0 {
                std::mem::swap(&mut seq.queue, &mut w.taken);
            }
            r
        };
        if added > 0 {
            let mut taken = std::mem::take(&mut w.taken);
            let r = match w.check_lock(core) {
                Err(why) => {
                    core.dur.poison_lock_lost(why);
                    Err(core.dur.check().expect_err("just poisoned"))
                }
                Ok(()) => w
                    .write_unpublished(core, &taken.bytes)
                    .and_then(|at| index_part(core, &taken, at).map(|()| at))
                    .inspect_err(|e| {
                        core.dur.poison(e.to_string());
                    }),
            };
            if r.is_ok() {
                // The index answers for these events now.
                core.seq.lock().forget_pending(&taken.events);
            }
            taken.clear();
            w.taken = taken;
            self.parts_at.push(r?);
            self.parts += 1;
            self.events += added as u64;
        }
        Ok(receipts)
    }

    /// Commits: makes every part durable, writes and syncs the commit frame,
    /// then publishes the events (shows them in the index, moves the
    /// watermarks, feeds subscribers) and releases the log to other
    /// appenders. Returns how many events the
    /// transaction appended (deduplicated ones are not counted).
    ///
    /// # Errors
    /// The store failed (it is then poisoned). A failure before the commit
    /// frame is written keeps nothing; after it, reopening the store shows
    /// whether the commit reached the disk (all events) or not (none).
    pub fn commit(mut self) -> Result<u64, StoreError> {
        self.done = true;
        if self.parts == 0 {
            self.release(false);
            return Ok(0);
        }
        let core = self.store.inner.core.clone();
        let mut w = core.writer.lock();
        let written = core.dur.check().and_then(|()| {
            // The parts before the commit: a commit frame on disk always
            // means its parts are there too (earlier segments were synced
            // when the log rotated).
            w.file
                .sync()
                .map_err(StoreError::io("syncing a bulk transaction's parts"))?;
            let mut f = Vec::with_capacity(64);
            frame::encode_frame(&end_body(true, self.txn, self.parts, self.events), &mut f);
            w.write_unpublished(&core, &f)
        });
        if let Err(e) = written {
            core.dur.poison(e.to_string());
            drop(w);
            self.release(true);
            return Err(core.dur.check().err().unwrap_or(e));
        }
        let last = self.first + self.events - 1;
        core.reads.index.write().commit_uncommitted();
        if let Err(e) = self.notify_subscribers(&core) {
            core.dur.poison(format!(
                "feeding a committed bulk transaction to subscribers failed (it is in the index; subscribers miss it until the store is reopened): {e}"
            ));
            drop(w);
            self.release(false);
            return Err(e);
        }
        w.since_snapshot += self.events;
        {
            let mut st = core.dur.state.lock();
            st.written = last;
            st.written_pos = (w.segment, w.len);
            st.visible = last;
            st.unsynced_since.get_or_insert_with(Instant::now);
            if st.sync_should_wake() {
                core.dur.sync_cv.notify_one();
            }
            core.dur.accepted.store(last, Ordering::Release);
            core.dur.visible_cv.notify_all();
        }
        drop(w);
        self.release(false);
        core.dur.wait(last, true, true)?;
        Ok(self.events)
    }

    /// Abandons the transaction: writes its abort frame (so its parts are
    /// never read) and releases the log. Nothing of it is kept.
    pub fn abort(mut self) {
        self.abandon();
    }

    fn abandon(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if self.parts > 0 {
            let core = self.store.inner.core.clone();
            let mut w = core.writer.lock();
            if core.dur.check().is_ok() {
                let mut f = Vec::with_capacity(64);
                frame::encode_frame(&end_body(false, self.txn, self.parts, self.events), &mut f);
                // Not synced: if it is lost, recovery finds the parts
                // uncommitted and writes it again.
                match w.write_unpublished(&core, &f) {
                    Ok(_) => core.dur.state.lock().written_pos = (w.segment, w.len),
                    Err(e) => core.dur.poison(e.to_string()),
                }
            }
        }
        self.release(true);
    }

    /// Ends the transaction's hold on the log; `rewind`: it did not commit,
    /// so its events leave the index and its sequences are handed out
    /// again.
    fn release(&mut self, rewind: bool) {
        let core = &self.store.inner.core;
        {
            let mut ix = core.reads.index.write();
            if rewind {
                ix.abort_uncommitted();
            } else {
                ix.commit_uncommitted();
            }
        }
        let mut seq = core.seq.lock();
        if rewind {
            seq.rewind(self.first);
        }
        seq.bulk_open = false;
        seq.draining = false;
        drop(seq);
        core.bulk_cv.notify_all();
        core.idle_cv.notify_all();
    }

    /// Reads the committed parts back through the disk, one frame at a
    /// time (memory stays one part), into the subscribers' queues (the
    /// index holds them already).
    fn notify_subscribers(&self, core: &super::core::Core) -> Result<(), StoreError> {
        if !core.has_subscribers.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut buf = Vec::new();
        for &(segment, at) in &self.parts_at {
            let f = core.reads.reader(segment)?;
            let corrupt = |reason: String| StoreError::Corrupt {
                segment,
                offset: at,
                reason,
            };
            let io = || StoreError::io(format!("reading segment {segment:08} at offset {at}"));
            let mut head = [0u8; frame::FRAME_HEADER];
            f.read_exact_at(&mut head, at).map_err(io())?;
            let len = u32_at(&head, 4) as usize;
            buf.resize(frame::FRAME_HEADER + len.min(frame::MAX_FRAME_BODY), 0);
            f.read_exact_at(&mut buf, at).map_err(io())?;
            let (body, _) = frame::decode_frame(&buf).map_err(|e| corrupt(e.to_string()))?;
            let Body::Part { events, .. } = decode_body(body).map_err(corrupt)? else {
                return Err(corrupt("expected a bulk transaction part".into()));
            };
            let mut notify = Vec::with_capacity(events.len());
            for ev in events {
                let h = super::segment::decode_header(ev.header_bytes).map_err(corrupt)?;
                notify.push(Event {
                    header: Arc::new(h),
                    payload: Arc::from(ev.payload),
                    hash: ev.hash,
                });
            }
            let list = core.subscribers.lock();
            for s in list.iter() {
                s.push_all(&notify);
            }
        }
        Ok(())
    }
}

/// Indexes a written part (`q`, written at `(segment, base)`), hidden from
/// readers until the commit: later parts are checked against it there.
fn index_part(
    core: &super::core::Core,
    q: &Queue,
    (segment, base): (u32, u64),
) -> Result<(), StoreError> {
    let mut ix = core.reads.index.write();
    q.visit(0..q.frames.len(), |e| {
        let offset = base + e.at as u64;
        ix.insert(
            e.header,
            segment,
            base + e.frame_at as u64,
            offset,
            e.header_len,
            e.payload,
        )
        .map_err(|reason| StoreError::Corrupt {
            segment,
            offset,
            reason,
        })
    })
}

impl Drop for BulkAppend {
    fn drop(&mut self) {
        self.abandon();
    }
}

#[cfg(test)]
mod tests {
    use crate::event::{Coordinate, Proposal};
    use crate::store::sequencer::HEADS_CACHE_MAX;
    use crate::store::{SimDisk, Store, StoreError, StoreOptions};
    use std::sync::Arc;

    const PART: usize = 4096;

    fn order(i: usize) -> Proposal {
        Proposal::new(
            Coordinate::new(format!("order:{i}"), "shop").unwrap(),
            "order.placed",
            format!("{{\"i\":{i}}}").into_bytes(),
        )
    }

    fn store(name: &str) -> Store {
        let options = StoreOptions {
            disk: Arc::new(SimDisk::new(7)),
            ..StoreOptions::default()
        };
        Store::open_with(format!("/sim/{name}"), options).unwrap()
    }

    /// Memory bounded by design: an open transaction keeps nothing per
    /// event outside the index (the sequencer's pending entries hold at
    /// most the part in flight, its chain-head cache stays bounded) however
    /// many parts it writes, while later parts still deduplicate against,
    /// chain after and name events of earlier parts, and readers see none
    /// of it until the commit.
    #[test]
    fn an_open_transaction_keeps_nothing_per_event_outside_the_index() {
        let store = store("bounded");
        let n = 3 * HEADS_CACHE_MAX + 1000;
        let mut b = store.begin_bulk().unwrap();
        let mut first = None;
        let mut keyed = None;
        let mut most = (0, 0);
        for start in (0..n).step_by(PART) {
            let mut part: Vec<Proposal> = (start..(start + PART).min(n)).map(order).collect();
            if start == 0 {
                part[1] = order(1).idempotency_key("k-1");
            }
            let rs = b.append(part).unwrap();
            if start == 0 {
                first = Some(rs[0]);
                keyed = Some(rs[1]);
            }
            let (pending, heads) = store.inner.core.seq.lock().held();
            most = (most.0.max(pending), most.1.max(heads));
        }
        assert!(most.0 <= 2 * PART, "{} pending entries", most.0);
        assert!(
            most.1 <= 2 * HEADS_CACHE_MAX + PART,
            "{} cached chain heads for {n} entities",
            most.1
        );
        let (first, keyed) = (first.unwrap(), keyed.unwrap());
        // Later parts against the first one, whose entries and chain heads
        // left the sequencer long ago.
        let rs = b
            .append(vec![
                order(0).caused_by(first.id),
                order(1).idempotency_key("k-1"),
            ])
            .unwrap();
        assert_eq!(rs[0].entity_sequence, 2, "order:0 chains after part 0");
        assert!(rs[1].deduplicated && rs[1].sequence == keyed.sequence);
        let e = b.append(vec![order(2).idempotency_key("k-1")]).unwrap_err();
        let StoreError::IdempotencyConflict(c) = e else {
            panic!("{e}")
        };
        assert_eq!(
            (c.original_entity.as_str(), c.original_sequence),
            ("order:1", keyed.sequence)
        );
        // Readers see nothing of it yet.
        assert!(store.get(first.id).unwrap().is_none());
        assert!(store.entity_events("order:0", 0, 10).unwrap().is_empty());
        assert!(store.caused_by(first.id).is_empty());
        assert_eq!(store.watermarks().visible, 0);
        assert_eq!(b.commit().unwrap(), n as u64 + 1);
        let chain = store.entity_events("order:0", 0, 10).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1].header.prev.map(|l| l.id), Some(first.id));
        assert_eq!(chain[1].header.correlation, first.id);
        assert_eq!(store.caused_by(first.id), vec![chain[1].header.id]);
        let rep = store.verify().unwrap();
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
        store.close().unwrap();
    }

    /// An abandoned transaction's events leave the index: the next append
    /// takes its first sequence, its entities start afresh and its keys are
    /// free again, before and after a reopen.
    #[test]
    fn an_aborted_transaction_leaves_the_index_as_it_was() {
        let store = store("aborted");
        let before = store
            .append_batch(
                vec![order(0), order(1).idempotency_key("k-1")],
                crate::store::AppendOptions::visible(),
            )
            .unwrap();
        let mut b = store.begin_bulk().unwrap();
        let rs = b
            .append(vec![order(0), order(5).idempotency_key("k-5"), order(6)])
            .unwrap();
        assert_eq!(rs[0].entity_sequence, 2);
        b.abort();
        assert!(store.get(rs[1].id).unwrap().is_none());
        let again = store
            .append_batch(
                vec![order(0), order(5).idempotency_key("k-5")],
                crate::store::AppendOptions::visible(),
            )
            .unwrap();
        assert_eq!(again[0].sequence, before[1].sequence + 1);
        assert_eq!(
            again[0].entity_sequence, 2,
            "order:0 goes on after its first"
        );
        assert!(!again[1].deduplicated, "the aborted key is free again");
        assert_eq!(again[1].entity_sequence, 1);
        // Reopened (from the close's snapshot): what was committed.
        let dir = store.dir().to_path_buf();
        let disk = store.inner.core.reads.disk.clone();
        store.close().unwrap();
        let options = StoreOptions {
            disk,
            ..StoreOptions::default()
        };
        let store = Store::open_with(&dir, options).unwrap();
        assert!(store.entity_events("order:6", 0, 10).unwrap().is_empty());
        assert_eq!(store.entity_events("order:0", 0, 10).unwrap().len(), 2);
        assert_eq!(store.entity_events("order:5", 0, 10).unwrap().len(), 1);
        let rep = store.verify().unwrap();
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
        store.close().unwrap();
    }
}
