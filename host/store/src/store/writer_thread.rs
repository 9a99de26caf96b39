//! The writer at work, the drain role (its state, [`Writer`], is in
//! `writer.rs`). Whichever thread holds the drain role (an appender waiting
//! for its write, or the flusher
//! thread; see `sequencer.rs`) takes every queued frame, writes them with
//! one positional write, publishes the entries to the index (visible),
//! notifies subscribers and rotates segments. The flusher thread drains
//! what accepted-only appends left queued, writes index snapshots (with
//! their proof) when idle, and closes the writer on shutdown.

use super::core::Core;
use super::durability::unpark_all;
use super::segment::{create_segment, segment_path, SEGMENT_HEADER};
use super::sequencer::Queue;
use super::snapshot::{self, SegmentProof};
use super::writer::Writer;
use super::{StoreError, StoreNotice};
use crate::event::Event;
use crate::panic_message::panic_message;
use parking_lot::MutexGuard;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the flusher lets accepted-only appends gather after it was
/// asked, so they are written together (they promised no visibility).
const FLUSH_DELAY: Duration = Duration::from_micros(200);

impl Core {
    /// Writes the queue until it is empty, then releases the drain role.
    /// The caller holds the drain role. A failure (or a panic in the disk
    /// layer) poisons the store, whose waiters then wake with it; queued
    /// frames are then dropped, never written.
    /// `leads`: the caller waits for durability next (it will lead the
    /// fsync for what it wrote).
    pub fn drain(&self, leads: bool) {
        let mut w = self.writer.lock();
        w.drainer_leads = leads;
        self.drain_locked(&mut w, true);
    }

    fn drain_locked(&self, w: &mut MutexGuard<'_, Writer>, release: bool) {
        loop {
            {
                let mut seq = self.seq.lock();
                if seq.queue.is_empty() {
                    if release {
                        seq.draining = false;
                        drop(seq);
                        self.idle_cv.notify_all();
                    }
                    return;
                }
                std::mem::swap(&mut seq.queue, &mut w.taken);
            }
            let mut taken = std::mem::take(&mut w.taken);
            if self.dur.check().is_err() {
                taken.clear();
                w.taken = taken;
                continue;
            }
            let taken_ref = &taken;
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match w.check_lock(self) {
                    Err(why) => Err(Some(why)),
                    Ok(()) => w.write(self, taken_ref).map_err(|e| {
                        self.dur.poison(e.to_string());
                        None
                    }),
                }
            }));
            match r {
                Ok(Ok(())) => {}
                Ok(Err(Some(why))) => self.dur.poison_lock_lost(why),
                Ok(Err(None)) => {}
                Err(p) => self.dur.poison(format!(
                    "a write of the log panicked: {}",
                    panic_message(&*p)
                )),
            }
            taken.clear();
            w.taken = taken;
        }
    }

    /// Drains the queue on `sync_interval`-free terms: the last write before
    /// close, then the writer's clean shutdown. The caller holds the drain
    /// role, for good.
    fn drain_and_close(&self) {
        let mut w = self.writer.lock();
        w.drainer_leads = false;
        self.drain_locked(&mut w, false);
        w.close(self);
    }

    /// The flusher thread: drains what accepted-only appends queued, writes
    /// periodic snapshots when idle, and on close drains and shuts the
    /// writer down.
    pub fn flusher(&self) {
        let mut seq = self.seq.lock();
        loop {
            if seq.closed {
                break;
            }
            if !seq.flush_asked {
                let idle = self
                    .flush_cv
                    .wait_for(&mut seq, Duration::from_millis(500))
                    .timed_out();
                if idle && !seq.draining && !seq.closed && !seq.flush_asked {
                    // Holding the drain role keeps writes out of the
                    // snapshot; frames queued meanwhile (their appenders
                    // saw the role taken) are written before releasing it.
                    seq.draining = true;
                    MutexGuard::unlocked(&mut seq, || {
                        {
                            let mut w = self.writer.lock();
                            if w.since_snapshot >= self.options.snapshot_every
                                && self.dur.check().is_ok()
                            {
                                if let Err(e) = w.snapshot(self) {
                                    self.options.notices.send(StoreNotice::SnapshotFailed(e));
                                }
                            }
                        }
                        self.drain(false);
                    });
                }
                continue;
            }
            // Let more accepted-only appends gather, then write them together.
            MutexGuard::unlocked(&mut seq, || std::thread::sleep(FLUSH_DELAY));
            seq.flush_asked = false;
            if seq.draining || seq.queue.is_empty() {
                continue;
            }
            seq.draining = true;
            MutexGuard::unlocked(&mut seq, || self.drain(false));
        }
        while seq.draining {
            self.idle_cv.wait(&mut seq);
        }
        seq.draining = true;
        drop(seq);
        self.drain_and_close();
    }
}

impl Writer {
    /// Clean shutdown: make everything durable, record it, snapshot.
    fn close(&mut self, core: &Core) {
        let dur = &core.dur;
        let synced = self.file.sync();
        let mut st = dur.state.lock();
        if synced.is_ok() {
            st.durable = st.written;
        } else if st.poisoned.is_none() {
            st.poisoned = Some("the final fsync of the log failed".into());
        }
        let ok = st.poisoned.is_none();
        let pos = st.written_pos;
        let waiters = st.take_done_waiters();
        drop(st);
        unpark_all(waiters);
        if ok {
            // Both failures leave the log intact; `Store::close` returns the
            // first (the next open rebuilds what is missing).
            let mut failed = None;
            if let Err(e) = dur.mark.record(pos).and_then(|_| dur.mark.sync()) {
                failed = Some(StoreError::Io {
                    context: "recording the durable marker on close (the log is unaffected)".into(),
                    source: e,
                });
            }
            if self.since_snapshot > 0 {
                if let Err(e) = self.snapshot(core) {
                    failed.get_or_insert(StoreError::Io {
                        context: "writing the index snapshot on close (the log is unaffected; the next open rebuilds the index)".into(),
                        source: std::io::Error::other(e.to_string()),
                    });
                }
            }
            *core.close_error.lock() = failed;
        }
        dur.shut_down();
    }

    /// Refuses to write once the LOCK file is no longer ours (checked at
    /// most every 50 ms: one `stat`).
    pub(crate) fn check_lock(&mut self, core: &Core) -> Result<(), String> {
        let Some(lock) = &core.lock else {
            return Ok(());
        };
        if self
            .lock_checked
            .is_some_and(|t| t.elapsed() < Duration::from_millis(50))
        {
            return Ok(());
        }
        self.lock_checked = Some(Instant::now());
        lock.check()
    }

    fn snapshot(&mut self, core: &Core) -> Result<(), StoreError> {
        if core.reads.index.read().has_uncommitted() {
            // An open bulk transaction's events are indexed, not committed:
            // a snapshot now would keep them if it never commits. The next
            // snapshot (or open) covers them.
            return Ok(());
        }
        self.file
            .sync()
            .map_err(StoreError::io("syncing before an index snapshot"))?;
        let mut proof = self.sealed.clone();
        proof.push(SegmentProof {
            segment: self.segment,
            len: self.len,
            crc: self.crc.clone().finalize(),
        });
        let ix = core.reads.index.read();
        snapshot::save(&*core.reads.disk, &self.dir, core.store_id, &ix, proof)?;
        self.since_snapshot = 0;
        Ok(())
    }

    pub(crate) fn rotate(&mut self, core: &Core) -> Result<(), StoreError> {
        self.file.sync().map_err(StoreError::io(format!(
            "syncing segment {:08} before rotation",
            self.segment
        )))?;
        let n = self.segment + 1;
        let reads = &core.reads;
        let f = create_segment(&*reads.disk, &reads.seg_dir, core.store_id, n)?;
        let p = segment_path(&reads.seg_dir, n);
        let r = reads
            .disk
            .open(&p)
            .map_err(StoreError::io(format!("opening {}", p.display())))?;
        reads.readers.write().insert(n, r);
        self.sealed.push(SegmentProof {
            segment: self.segment,
            len: self.len,
            crc: std::mem::take(&mut self.crc).finalize(),
        });
        self.crc
            .update(&super::segment::segment_header(core.store_id, n));
        core.dur
            .mark
            .record((n, SEGMENT_HEADER))
            .map_err(StoreError::io("recording the durable marker"))?;
        {
            // Everything in the old segment is durable now.
            let dur = &core.dur;
            let mut st = dur.state.lock();
            st.durable = st.durable.max(st.written);
            st.sync_file = f.clone();
            st.written_pos = (n, SEGMENT_HEADER);
            let waiters = st.take_done_waiters();
            drop(st);
            unpark_all(waiters);
            dur.durable_cv.notify_all();
        }
        self.file = f;
        self.segment = n;
        self.len = SEGMENT_HEADER;
        Ok(())
    }

    /// Writes whole frames `bytes` at the end of the log (rotating first
    /// when they would overflow the active segment) without publishing
    /// anything: a bulk transaction's parts, commit or abort (`bulk.rs`).
    /// Returns where they start.
    pub(crate) fn write_unpublished(
        &mut self,
        core: &Core,
        bytes: &[u8],
    ) -> Result<(u32, u64), StoreError> {
        if self.len + bytes.len() as u64 > segment_size(core) && self.len > SEGMENT_HEADER {
            self.rotate(core)?;
        }
        let at = self.len;
        self.file
            .write_all_at(bytes, at)
            .map_err(StoreError::io(format!(
                "writing segment {:08}",
                self.segment
            )))?;
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
        Ok((self.segment, at))
    }

    /// Writes the queued frames (one write per segment they land in) and
    /// publishes them.
    fn write(&mut self, core: &Core, q: &Queue) -> Result<(), StoreError> {
        let (mut run_from, mut f_from, mut start) = (0usize, 0usize, 0usize);
        for (fi, &(end, _)) in q.frames.iter().enumerate() {
            let fl = (end - start) as u64;
            let pending = (start - run_from) as u64;
            if self.len + pending + fl > segment_size(core) && self.len + pending > SEGMENT_HEADER {
                self.write_run(core, q, run_from, start, f_from, fi)?;
                self.rotate(core)?;
                run_from = start;
                f_from = fi;
            }
            start = end;
        }
        self.write_run(core, q, run_from, start, f_from, q.frames.len())
    }

    /// Writes `q.bytes[from..to]` (frames `f_from..f_to`) at the end of the
    /// active segment, then publishes those frames to the index, the
    /// watermarks and subscribers.
    fn write_run(
        &mut self,
        core: &Core,
        q: &Queue,
        from: usize,
        to: usize,
        f_from: usize,
        f_to: usize,
    ) -> Result<(), StoreError> {
        if from == to {
            return Ok(());
        }
        let base = self.len;
        self.file
            .write_all_at(&q.bytes[from..to], base)
            .map_err(StoreError::io(format!(
                "writing segment {:08}",
                self.segment
            )))?;
        self.crc.update(&q.bytes[from..to]);
        self.len += (to - from) as u64;
        let seg = self.segment;
        let at_seg = |buf_at: usize| base + (buf_at - from) as u64;
        let mut last = 0;
        let subs = core.has_subscribers.load(Ordering::Acquire);
        let mut notify: Vec<Event> = Vec::new();
        let ev_from = if f_from == 0 {
            0
        } else {
            q.frames[f_from - 1].1
        };
        let ev_to = q.frames[f_to - 1].1;
        {
            let mut ix = core.reads.index.write();
            q.visit(f_from..f_to, |e| {
                let offset = at_seg(e.at);
                ix.insert(
                    e.header,
                    seg,
                    at_seg(e.frame_at),
                    offset,
                    e.header_len,
                    e.payload,
                )
                .map_err(|reason| StoreError::Corrupt {
                    segment: seg,
                    offset,
                    reason,
                })?;
                last = e.header.sequence;
                if subs {
                    notify.push(Event {
                        header: Arc::new(e.header.clone()),
                        payload: Arc::from(e.payload),
                        hash: e.hash,
                    });
                }
                Ok(())
            })?;
        }
        self.since_snapshot += (ev_to - ev_from) as u64;
        {
            let dur = &core.dur;
            let mut st = dur.state.lock();
            st.written = last;
            st.written_pos = (self.segment, self.len);
            st.visible = last;
            st.unsynced_since.get_or_insert_with(Instant::now);
            if st.sync_should_wake() {
                dur.sync_cv.notify_one();
            }
            let lead = if self.drainer_leads {
                None
            } else {
                st.next_leader()
            };
            dur.visible_cv.notify_all();
            dur.gather_cv.notify_one();
            drop(st);
            if let Some(t) = lead {
                t.unpark();
            }
        }
        if subs {
            let mut list = core.subscribers.lock();
            list.retain(|s| !s.is_dropped());
            for s in list.iter() {
                s.push_all(&notify);
            }
            core.has_subscribers
                .store(!list.is_empty(), Ordering::Release);
        }
        Ok(())
    }
}

/// Largest segment size used: offsets in the index are 32-bit, and a
/// segment may exceed its size by one frame (at most 256 MiB).
pub(crate) const MAX_SEGMENT_SIZE: u64 = 3 << 30;

/// The configured segment size, capped at [`MAX_SEGMENT_SIZE`].
fn segment_size(core: &Core) -> u64 {
    core.options.segment_size.min(MAX_SEGMENT_SIZE)
}
