//! A lock-free, read-only view of a store directory, for tools that inspect
//! a log while another process owns it (`batpak-host events`, `--follow`).
//!
//! It reads segment files directly, frame by frame, checking each frame's
//! CRC and each event's hash. A bad frame is an error naming segment and
//! offset when anything shows it was complete — an intact frame after it, a
//! later segment, or the durable marker covering it. Only an incomplete
//! frame at the very end of the log, beyond the marker, may be a write in
//! progress: the reader stops before it, reports it in
//! [`LogReader::incomplete_tail`], and reads it again on the next poll.
//!
//! Like an open and `verify`, it holds the log to every piece of evidence
//! of how far it was acknowledged durable — the durable marker, a sound
//! index snapshot, later segments — so a log that ends (or is damaged)
//! before one of them is reported as lost acknowledged data
//! ([`StoreError::AcknowledgedLoss`]), even when the marker is gone.
//!
//! It reads one whole frame at a time, of any size the writer writes (up to
//! 256 MiB), through [`Disk`] like every other segment read. The parts of a
//! bulk transaction are handed out only once its commit frame is found
//! after them (looking ahead through frame headers only); an aborted
//! transaction is skipped; one still open (being written, or the writer
//! died) ends the read there and is reported in
//! [`LogReader::uncommitted_transaction`].

use super::disk::{Disk, DiskFile, OsDisk};
use super::durable_mark;
use super::frame::{decode_frame, FrameError, FRAME_HEADER, FRAME_MAGIC, MAX_FRAME_BODY};
use super::le_bytes::u32_at;
use super::recovery::{
    check_shape, intact_frame_after, snapshot_frame_damaged, snapshot_segment_missing,
    snapshot_segment_short,
};
use super::segment::{
    check_segment_header, decode_body, decode_header, list_segments, segment_path, Body, RawEvent,
    SEGMENT_HEADER, TAG_TXN_ABORT, TAG_TXN_COMMIT, TAG_TXN_PART,
};
use super::snapshot::Claim;
use super::StoreError;
use crate::event::{hash_encoded, Event};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Reads events straight from the segment files, without taking the lock.
pub struct LogReader {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    seg_dir: PathBuf,
    segment: u32,
    offset: u64,
    tail: Option<(u32, u64)>,
    uncommitted: Option<(u32, u64)>,
    store_id: Option<u128>,
    /// The bulk transaction being read and whether it committed (its parts
    /// are handed out) or aborted (skipped).
    txn: Option<(u64, bool)>,
    /// Damage found after some events of the same poll: those are returned
    /// first, the error on the next poll.
    deferred: Option<StoreError>,
    /// The frame being read (kept between polls: frames can be large).
    buf: Vec<u8>,
}

/// How a bulk transaction ends, as far as the log shows now.
enum TxnEnd {
    Committed,
    Aborted,
    /// No commit or abort (yet): being written, or its writer died.
    Open,
}

impl LogReader {
    /// A reader positioned at the start of the log in `dir`.
    ///
    /// # Errors
    /// The directory holds no store ([`StoreError::NoStore`]); its segment
    /// files are not 1, 2, … without gaps ([`StoreError::Corrupt`]); or the
    /// log ends before a sound index snapshot says it was acknowledged
    /// durable ([`StoreError::AcknowledgedLoss`]: a lost last segment, or
    /// one cut short, with or without the durable marker).
    pub fn open(dir: &Path) -> Result<LogReader, StoreError> {
        Self::open_disk(Arc::new(OsDisk), dir)
    }

    /// [`LogReader::open`] on any [`Disk`] (a `SimDisk` in fault tests; a
    /// test hook: the `testing` feature).
    ///
    /// # Errors
    /// As [`LogReader::open`].
    #[cfg(any(test, feature = "testing"))]
    pub fn open_on(disk: Arc<dyn Disk>, dir: &Path) -> Result<LogReader, StoreError> {
        Self::open_disk(disk, dir)
    }

    fn open_disk(disk: Arc<dyn Disk>, dir: &Path) -> Result<LogReader, StoreError> {
        let seg_dir = dir.join("segments");
        // The evidence first, then the log: a writer extends the log before
        // either (fsync, then marker or snapshot), so evidence read first
        // never runs ahead of a live log read after it.
        let marker = durable_mark::read(&*disk, dir);
        let claim = Claim::read(&*disk, dir);
        let segs = list_segments(&*disk, &seg_dir).map_err(|_| StoreError::NoStore {
            dir: dir.to_path_buf(),
        })?;
        check_shape(&segs, marker)?;
        if let (Some(c), Some(&last)) = (claim, segs.last()) {
            check_snapshot(&*disk, &seg_dir, &c, last)?;
        }
        Ok(LogReader {
            disk,
            dir: dir.to_path_buf(),
            seg_dir,
            segment: 1,
            offset: SEGMENT_HEADER,
            tail: None,
            uncommitted: None,
            store_id: None,
            txn: None,
            deferred: None,
            buf: Vec::new(),
        })
    }

    /// Where the last poll stopped before an incomplete frame at the end of
    /// the log: `(segment, offset)`. `None` when the log ended cleanly. A
    /// writer may still be completing it; if it stays, it is a torn write
    /// the next open of the store will cut.
    pub fn incomplete_tail(&self) -> Option<(u32, u64)> {
        self.tail
    }

    /// Where the last poll stopped before a bulk transaction with no commit
    /// (yet): `(segment, offset)` of its first part. A writer may still be
    /// appending it; if it stays, the next open of the store drops it.
    pub fn uncommitted_transaction(&self) -> Option<(u32, u64)> {
        self.uncommitted
    }

    /// Every complete event written since the last call (at most about
    /// `max_bytes` of frames per call, but always at least one whole frame;
    /// call again for more).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] naming segment and offset for damage anywhere
    /// but an incomplete last frame; I/O.
    pub fn poll(&mut self, max_bytes: usize) -> Result<Vec<Event>, StoreError> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let mut out = Vec::new();
        match self.poll_into(max_bytes, &mut out) {
            Ok(()) => Ok(out),
            // Hand out the intact events before the damage first.
            Err(e) if !out.is_empty() => {
                self.deferred = Some(e);
                Ok(out)
            }
            Err(e) => Err(e),
        }
    }

    fn exists(&self, segment: u32) -> bool {
        self.disk
            .open(&segment_path(&self.seg_dir, segment))
            .is_ok()
    }

    fn poll_into(&mut self, max_bytes: usize, out: &mut Vec<Event>) -> Result<(), StoreError> {
        self.tail = None;
        self.uncommitted = None;
        let mut consumed = 0usize;
        loop {
            let path = segment_path(&self.seg_dir, self.segment);
            let io = || StoreError::io(format!("reading {}", path.display()));
            let f = match self.disk.open(&path) {
                Ok(f) => f,
                Err(_) => return Ok(()),
            };
            let len = f.len().map_err(io())?;
            let next_exists = self.exists(self.segment + 1);
            if self.offset == SEGMENT_HEADER {
                let mut h = [0u8; SEGMENT_HEADER as usize];
                if len >= SEGMENT_HEADER {
                    f.read_exact_at(&mut h, 0).map_err(io())?;
                } else {
                    if next_exists {
                        return Err(StoreError::Corrupt {
                            segment: self.segment,
                            offset: 0,
                            reason: "segment header is truncated".into(),
                        });
                    }
                    return Ok(());
                }
                let id = check_segment_header(&h, self.segment).map_err(|reason| {
                    StoreError::Corrupt {
                        segment: self.segment,
                        offset: 0,
                        reason,
                    }
                })?;
                if *self.store_id.get_or_insert(id) != id {
                    return Err(StoreError::Corrupt {
                        segment: self.segment,
                        offset: 0,
                        reason: "segment belongs to another store (store id differs)".into(),
                    });
                }
            }
            if self.offset >= len {
                if next_exists {
                    self.segment += 1;
                    self.offset = SEGMENT_HEADER;
                    continue;
                }
                return Ok(());
            }
            let at = self.offset;
            let total = match read_frame(&*f, len, at, &mut self.buf).map_err(io())? {
                Ok(total) => total,
                Err(e) => return self.bad_frame(&*f, len, at, e, next_exists),
            };
            let segment = self.segment;
            let corrupt = |reason| StoreError::Corrupt {
                segment,
                offset: at,
                reason,
            };
            let (body, _) = decode_frame(&self.buf[..total]).expect("checked by read_frame");
            match decode_body(body).map_err(corrupt)? {
                Body::Batch(events) => {
                    if self.txn.is_some() {
                        return Err(corrupt(
                            "a batch frame inside an open bulk transaction".into(),
                        ));
                    }
                    push_events(events, out).map_err(corrupt)?;
                }
                Body::Part { txn, part, events } => {
                    let committed = match self.txn {
                        Some((t, c)) if t == txn => c,
                        Some((t, _)) => {
                            return Err(corrupt(format!(
                                "part of bulk transaction {txn:016x} inside transaction {t:016x}"
                            )))
                        }
                        None if part != 0 => {
                            return Err(corrupt(format!(
                                "bulk transaction {txn:016x} starts with part {part}, not 0"
                            )))
                        }
                        None => match self.find_end(txn, segment, at + total as u64)? {
                            TxnEnd::Committed => true,
                            TxnEnd::Aborted => false,
                            TxnEnd::Open => {
                                self.uncommitted = Some((segment, at));
                                return Ok(());
                            }
                        },
                    };
                    self.txn = Some((txn, committed));
                    if committed {
                        push_events(events, out).map_err(corrupt)?;
                    }
                }
                Body::Commit { txn, .. } => self.end_txn(txn, true).map_err(corrupt)?,
                Body::Abort { txn, .. } => self.end_txn(txn, false).map_err(corrupt)?,
            }
            self.offset += total as u64;
            consumed += total;
            if consumed >= max_bytes {
                return Ok(());
            }
        }
    }

    /// The commit (`commit`) or abort of transaction `txn`: it must be the
    /// one being read, ended as the look-ahead found.
    fn end_txn(&mut self, txn: u64, commit: bool) -> Result<(), String> {
        if self.txn != Some((txn, commit)) {
            return Err(format!(
                "end of bulk transaction {txn:016x} that is not open here"
            ));
        }
        self.txn = None;
        Ok(())
    }

    /// A frame that does not decode at `at`: a write in progress at the end
    /// of the log (stop before it), or damage.
    fn bad_frame(
        &mut self,
        f: &dyn DiskFile,
        len: u64,
        at: u64,
        e: FrameError,
        next_exists: bool,
    ) -> Result<(), StoreError> {
        // Read while the writer was still writing it: the file has grown
        // since its length was taken, and the marker (or a later segment)
        // read now may already cover the frame. Not damage: read it next poll.
        if f.len().is_ok_and(|now| now > len) {
            return Ok(());
        }
        let marker = durable_mark::read(&*self.disk, &self.dir);
        let acked =
            marker.is_some_and(|(ms, mo)| self.segment < ms || (self.segment == ms && at < mo));
        if !acked && !next_exists {
            // Without the marker's word, a sound snapshot of this store
            // covering the frame still says it was acknowledged. (Read now,
            // not kept from the open: a reader that follows the log for
            // days would pin every replaced snapshot file.)
            let claim =
                Claim::read(&*self.disk, &self.dir).filter(|c| self.store_id == Some(c.store_id()));
            if let Some(c) = claim {
                let ((ss, so), count) = c.end();
                if (self.segment < ss || (self.segment == ss && at < so)) && c.is_sound() {
                    return Err(snapshot_frame_damaged(self.segment, at, &e, count));
                }
            }
        }
        let why = if next_exists {
            Some("a later segment exists")
        } else if acked {
            Some("the durable marker says it was acknowledged")
        } else {
            let mut rest = vec![0u8; (len - at).saturating_sub(1) as usize];
            f.read_exact_at(&mut rest, at + 1)
                .map_err(StoreError::io(format!(
                    "reading segment {:08}",
                    self.segment
                )))?;
            intact_frame_after(&rest).then_some("intact data follows it")
        };
        if let Some(why) = why {
            return Err(StoreError::Corrupt {
                segment: self.segment,
                offset: at,
                reason: format!("{e}; {why}, so this is damage, not a write in progress"),
            });
        }
        self.tail = Some((self.segment, at));
        Ok(())
    }

    /// Whether transaction `txn`, whose frames continue at (`segment`,
    /// `at`), has its commit or abort in the log yet: walks frame headers
    /// only (one small read per frame), checking the end frame whole.
    fn find_end(&self, txn: u64, mut segment: u32, mut at: u64) -> Result<TxnEnd, StoreError> {
        let mut head = [0u8; FRAME_HEADER + 17];
        loop {
            let path = segment_path(&self.seg_dir, segment);
            let Ok(f) = self.disk.open(&path) else {
                return Ok(TxnEnd::Open);
            };
            let len = f
                .len()
                .map_err(StoreError::io(format!("reading {}", path.display())))?;
            if at >= len {
                if self.exists(segment + 1) {
                    segment += 1;
                    at = SEGMENT_HEADER;
                    continue;
                }
                return Ok(TxnEnd::Open);
            }
            let n = ((len - at) as usize).min(head.len());
            if n < FRAME_HEADER + 9 || f.read_exact_at(&mut head[..n], at).is_err() {
                return Ok(TxnEnd::Open);
            }
            let blen = u32_at(&head, 4) as usize;
            if head[..4] != FRAME_MAGIC || blen > MAX_FRAME_BODY {
                return Ok(TxnEnd::Open);
            }
            let total = (FRAME_HEADER + blen) as u64;
            let id_at = |o: usize| {
                head.get(FRAME_HEADER + o..FRAME_HEADER + o + 8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            };
            match head[FRAME_HEADER] {
                TAG_TXN_PART if id_at(5) == Some(txn) => at += total,
                t @ (TAG_TXN_COMMIT | TAG_TXN_ABORT) if id_at(1) == Some(txn) => {
                    let mut end = Vec::new();
                    let whole = read_frame(&*f, len, at, &mut end)
                        .map_err(StoreError::io(format!("reading {}", path.display())))?;
                    return Ok(match whole {
                        Ok(_) if t == TAG_TXN_COMMIT => TxnEnd::Committed,
                        Ok(_) => TxnEnd::Aborted,
                        Err(_) => TxnEnd::Open,
                    });
                }
                _ => return Ok(TxnEnd::Open),
            }
        }
    }
}

/// Holds the log, whose last segment is `last`, to the index snapshot
/// `claim`: a sound snapshot of this store covering a segment that is
/// missing, or more of the last segment than it holds, means acknowledged
/// events are lost (the same error an open gives). A snapshot of another
/// store, or a damaged one, is no evidence.
fn check_snapshot(
    disk: &dyn Disk,
    seg_dir: &Path,
    claim: &Claim,
    last: u32,
) -> Result<(), StoreError> {
    let mut head = [0u8; SEGMENT_HEADER as usize];
    let ours = disk
        .open(&segment_path(seg_dir, 1))
        .and_then(|f| f.read_exact_at(&mut head, 0))
        .ok()
        .and_then(|()| check_segment_header(&head, 1).ok())
        .is_some_and(|id| id == claim.store_id());
    if !ours {
        // Another store's (or unreadable segment 1: the read reports it).
        return Ok(());
    }
    let (end, count) = claim.end();
    if end.0 > last {
        if claim.is_sound() {
            return Err(snapshot_segment_missing(last, end, count));
        }
        return Ok(());
    }
    if end.0 == last {
        let path = segment_path(seg_dir, last);
        let len = disk
            .open(&path)
            .and_then(|f| f.len())
            .map_err(StoreError::io(format!("reading {}", path.display())))?;
        if len < end.1 && claim.is_sound() {
            return Err(snapshot_segment_short(last, len, end.1, count));
        }
    }
    Ok(())
}

/// Reads the whole frame at `at` of a file `len` bytes long into `buf`,
/// checking it: its total length, or why it is not a whole, intact frame.
fn read_frame(
    f: &dyn DiskFile,
    len: u64,
    at: u64,
    buf: &mut Vec<u8>,
) -> std::io::Result<Result<usize, FrameError>> {
    let avail = (len - at) as usize;
    let mut head = [0u8; FRAME_HEADER];
    let n = avail.min(FRAME_HEADER);
    f.read_exact_at(&mut head[..n], at)?;
    if n < FRAME_HEADER {
        return Ok(decode_frame(&head[..n]).map(|(_, t)| t));
    }
    if head[..4] != FRAME_MAGIC {
        return Ok(Err(FrameError::BadMagic));
    }
    let blen = u32_at(&head, 4) as usize;
    if blen > MAX_FRAME_BODY {
        return Ok(Err(FrameError::BadLength(blen)));
    }
    let total = FRAME_HEADER + blen;
    if total > avail {
        return Ok(Err(FrameError::Truncated {
            need: total,
            have: avail,
        }));
    }
    buf.resize(total, 0);
    f.read_exact_at(buf, at)?;
    Ok(decode_frame(buf).map(|(_, t)| t))
}

/// Checks each event's hash and hands it out.
fn push_events(events: Vec<RawEvent<'_>>, out: &mut Vec<Event>) -> Result<(), String> {
    for ev in events {
        let header = decode_header(ev.header_bytes)?;
        if hash_encoded(ev.header_bytes, ev.payload) != ev.hash {
            return Err(format!(
                "event {} does not match its hash: its bytes changed after it was written",
                header.id
            ));
        }
        out.push(Event {
            header: Arc::new(header),
            payload: Arc::from(ev.payload),
            hash: ev.hash,
        });
    }
    Ok(())
}
