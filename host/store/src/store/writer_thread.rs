//! The writer thread: drains the sequencer's queue, writes every queued
//! frame with one positional write, publishes the entries to the index
//! (visible), notifies subscribers, rotates segments and writes index
//! snapshots (with their proof) when idle and on close.

use super::core::Core;
use super::disk::DiskFile;
use super::durability::unpark_all;
use super::segment::{create_segment, segment_path, SEGMENT_HEADER};
use super::sequencer::{Cmd, FrameCmd};
use super::snapshot::{self, SegmentProof};
use super::StoreError;
use crate::event::Event;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The writer's own state: the active segment and what snapshots prove.
pub(crate) struct Writer {
    pub core: Arc<Core>,
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
}

impl Writer {
    /// Runs until shutdown or the first failure (which poisons the store).
    pub fn run(mut self, rx: &Receiver<Cmd>) {
        let mut batch: Vec<FrameCmd> = Vec::new();
        let mut shutdown = false;
        while !shutdown {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(Cmd::Frame(f)) => batch.push(f),
                Ok(Cmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => shutdown = true,
                Err(RecvTimeoutError::Timeout) => {
                    if self.since_snapshot >= self.core.options.snapshot_every {
                        if let Err(e) = self.snapshot() {
                            eprintln!("batpak: periodic index snapshot failed (the log is unaffected): {e}");
                        }
                    }
                    continue;
                }
            }
            // Group everything already queued into one write.
            let mut bytes = batch.first().map_or(0, |f| f.bytes.len());
            while bytes < 16 << 20 && !shutdown {
                match rx.try_recv() {
                    Ok(Cmd::Frame(f)) => {
                        bytes += f.bytes.len();
                        batch.push(f);
                    }
                    Ok(Cmd::Shutdown) | Err(TryRecvError::Disconnected) => shutdown = true,
                    Err(TryRecvError::Empty) => break,
                }
            }
            if !batch.is_empty() {
                let r = match self.check_lock() {
                    Err(why) => {
                        self.core.dur.poison_lock_lost(why);
                        Err(())
                    }
                    Ok(()) => self
                        .write(&mut batch)
                        .map_err(|e| self.core.dur.poison(e.to_string())),
                };
                if r.is_err() {
                    // Keep draining so blocked senders are released.
                    drop(batch);
                    while rx.recv().is_ok() {}
                    return;
                }
            }
        }
        self.close();
    }

    /// Clean shutdown: make everything durable, record it, snapshot.
    fn close(&mut self) {
        let core = self.core.clone();
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
            if let Err(e) = self
                .core
                .mark
                .record(pos)
                .and_then(|_| self.core.mark.sync())
            {
                eprintln!("batpak: recording the durable marker on close failed (the log is unaffected): {e}");
            }
            if self.since_snapshot > 0 {
                if let Err(e) = self.snapshot() {
                    eprintln!(
                        "batpak: index snapshot on close failed (the log is unaffected): {e}"
                    );
                }
            }
        }
        dur.shut_down();
    }

    /// Refuses to write once the LOCK file is no longer ours (checked at
    /// most every 50 ms: one `stat`).
    fn check_lock(&mut self) -> Result<(), String> {
        let Some(lock) = &self.core.lock else {
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

    fn snapshot(&mut self) -> Result<(), StoreError> {
        self.file
            .sync()
            .map_err(StoreError::io("syncing before an index snapshot"))?;
        let mut proof = self.sealed.clone();
        proof.push(SegmentProof {
            segment: self.segment,
            len: self.len,
            crc: self.crc.clone().finalize(),
        });
        let ix = self.core.reads.index.read();
        snapshot::save(
            &*self.core.reads.disk,
            &self.dir,
            self.core.store_id,
            &ix,
            proof,
        )?;
        self.since_snapshot = 0;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), StoreError> {
        self.file.sync().map_err(StoreError::io(format!(
            "syncing segment {:08} before rotation",
            self.segment
        )))?;
        let n = self.segment + 1;
        let reads = &self.core.reads;
        let f = create_segment(&*reads.disk, &reads.seg_dir, self.core.store_id, n)?;
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
            .update(&super::segment::segment_header(self.core.store_id, n));
        self.core
            .mark
            .record((n, SEGMENT_HEADER))
            .map_err(StoreError::io("recording the durable marker"))?;
        {
            // Everything in the old segment is durable now.
            let dur = &self.core.dur;
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

    fn write(&mut self, batch: &mut Vec<FrameCmd>) -> Result<(), StoreError> {
        let mut out: Vec<u8> = Vec::new();
        let mut placed: Vec<(u32, u64, FrameCmd)> = Vec::with_capacity(batch.len());
        for f in batch.drain(..) {
            let fl = f.bytes.len() as u64;
            if self.len + out.len() as u64 + fl > self.core.options.segment_size
                && self.len + out.len() as u64 > SEGMENT_HEADER
            {
                self.flush(&mut out)?;
                self.publish(&mut placed)?;
                self.rotate()?;
            }
            let base = self.len + out.len() as u64;
            out.extend_from_slice(&f.bytes);
            placed.push((self.segment, base, f));
        }
        self.flush(&mut out)?;
        self.publish(&mut placed)
    }

    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), StoreError> {
        if out.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(out, self.len)
            .map_err(StoreError::io(format!(
                "writing segment {:08}",
                self.segment
            )))?;
        self.crc.update(out);
        self.len += out.len() as u64;
        out.clear();
        Ok(())
    }

    /// Publishes written frames to the index, watermarks and subscribers.
    fn publish(&mut self, placed: &mut Vec<(u32, u64, FrameCmd)>) -> Result<(), StoreError> {
        if placed.is_empty() {
            return Ok(());
        }
        let mut last = 0;
        let subs = self.core.has_subscribers.load(Ordering::Acquire);
        let mut notify: Vec<Event> = Vec::new();
        {
            let mut ix = self.core.reads.index.write();
            for (seg, base, f) in placed.iter() {
                for (h, rel, hlen) in &f.events {
                    let at = *rel as usize;
                    let plen_at = at + 4 + *hlen as usize + 32;
                    let plen = u32::from_le_bytes(
                        f.bytes[plen_at..plen_at + 4].try_into().expect("4 bytes"),
                    ) as usize;
                    let payload = &f.bytes[plen_at + 4..plen_at + 4 + plen];
                    ix.insert(h, *seg, *base, base + *rel as u64, *hlen, payload)
                        .map_err(|reason| StoreError::Corrupt {
                            segment: *seg,
                            offset: base + *rel as u64,
                            reason,
                        })?;
                    last = h.sequence;
                    if subs {
                        let hash: [u8; 32] = f.bytes[at + 4 + *hlen as usize..plen_at]
                            .try_into()
                            .expect("32 bytes");
                        notify.push(Event {
                            header: Arc::new(h.clone()),
                            payload: Arc::from(payload),
                            hash,
                        });
                    }
                }
            }
        }
        self.since_snapshot += placed.iter().map(|p| p.2.events.len() as u64).sum::<u64>();
        placed.clear();
        {
            let dur = &self.core.dur;
            let mut st = dur.state.lock();
            st.written = last;
            st.written_pos = (self.segment, self.len);
            st.visible = last;
            st.unsynced_since.get_or_insert_with(Instant::now);
            if st.sync_should_wake() {
                dur.sync_cv.notify_one();
            }
            dur.visible_cv.notify_all();
        }
        if subs {
            let mut list = self.core.subscribers.lock();
            list.retain(|s| !s.is_dropped());
            for s in list.iter() {
                s.push_all(&notify);
            }
            self.core
                .has_subscribers
                .store(!list.is_empty(), Ordering::Release);
        }
        Ok(())
    }
}
