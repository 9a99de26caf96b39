//! The read path: the index (under a read-write lock taken only to copy
//! entries, never across I/O) and positional reads of segment files.
//!
//! Every read checks the CRC of the whole frame each event comes from (the
//! index records where the frame starts; neighbouring events share one
//! read and one check); a mismatch is [`StoreError::Corrupt`] naming segment
//! and offset, never a damaged event handed on. Entity reads also check each
//! event links to the one before (the chain commits to the hashes).
//!
//! Sparse reads — a few events out of a large frame, as index lookups by
//! entity or correlation make — would pay for hashing a whole frame per
//! event. There each event read is checked by its own hash instead (the
//! BLAKE3 over its header and payload that the frame carries beside them):
//! damage to any byte handed on is still [`StoreError::Corrupt`], and damage
//! elsewhere in the frame is found when those events are read or by verify.

use super::disk::{Disk, DiskFile};
use super::frame::decode_frame;
use super::index::{Entry, Index};
use super::le_bytes::u32_at;
use super::region_match::RegionMatch;
use super::segment::{decode_event_at, decode_header, segment_path};
use super::{Checkpoint, Lookup, Region, StoreError};
use crate::event::{hash_encoded, ChainLink, Event, EventId};
use crate::event_view::EventView;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The bytes of the last whole-frame run read, and which frames in them
/// were CRC-checked. A cursor keeps one: its next pull usually falls in the
/// same large frame (a 4096-event batch pulled 1024 at a time), and then
/// neither the read nor the frame check is repeated. Frames never change
/// once written, and the cache is tied to the open file it was read from.
#[derive(Default)]
pub(crate) struct FrameCache {
    file: Option<Arc<dyn DiskFile>>,
    start: u64,
    buf: Vec<u8>,
    /// `buf` as a shared buffer, once views of it were handed out (see
    /// [`RunBytes::shared`]); dropped whenever `buf` is refilled.
    shared: Option<Arc<[u8]>>,
    /// Starts of the checked frames, ascending.
    checked: Vec<u64>,
}

/// The bytes of one read run as the visitor of
/// [`ReadPath::visit_entries`] sees them: a slice, and on demand the same
/// bytes as one shared buffer that views can keep (copied once per run, so
/// later pulls served from the same cached frames share it).
pub(crate) struct RunBytes<'a> {
    bytes: &'a [u8],
    shared: &'a mut Option<Arc<[u8]>>,
}

impl RunBytes<'_> {
    /// The run's bytes.
    fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// The run's bytes as a shared buffer (made on first use).
    fn shared(&mut self) -> &Arc<[u8]> {
        let bytes = self.bytes;
        self.shared.get_or_insert_with(|| Arc::from(bytes))
    }
}

impl FrameCache {
    /// Largest buffer kept between reads.
    const KEEP: usize = 16 << 20;

    fn forget(&mut self) {
        self.file = None;
        self.shared = None;
        self.checked.clear();
    }

    /// Hands out `run` from the cached bytes when they hold every event of
    /// it and its whole frame (checking frames not checked yet); `false`,
    /// touching nothing, otherwise.
    fn serve(
        &mut self,
        file: &Arc<dyn DiskFile>,
        run: &[Entry],
        f: &mut impl FnMut(&Entry, &mut RunBytes<'_>, usize) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        let same = self
            .file
            .as_ref()
            .is_some_and(|c| std::ptr::addr_eq(Arc::as_ptr(c), Arc::as_ptr(file)));
        if !same {
            return Ok(false);
        }
        let (lo, hi) = (self.start, self.start + self.buf.len() as u64);
        for e in run {
            let fs = e.frame_start();
            if fs < lo || e.offset + e.disk_len() > hi {
                return Ok(false);
            }
            if self.checked.binary_search(&fs).is_err() {
                let at = (fs - lo) as usize;
                let Some(len) = self
                    .buf
                    .get(at + 4..at + 8)
                    .map(|b| 12 + u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64)
                else {
                    return Ok(false);
                };
                if fs + len > hi {
                    return Ok(false);
                }
            }
        }
        for e in run {
            let fs = e.frame_start();
            if let Err(pos) = self.checked.binary_search(&fs) {
                decode_frame(&self.buf[(fs - lo) as usize..]).map_err(|err| {
                    StoreError::Corrupt {
                        segment: e.segment,
                        offset: fs,
                        reason: err.to_string(),
                    }
                })?;
                self.checked.insert(pos, fs);
            }
            let mut run = RunBytes {
                bytes: &self.buf,
                shared: &mut self.shared,
            };
            f(e, &mut run, (e.offset - lo) as usize)?;
        }
        Ok(true)
    }
}

/// The index and the open segment files for reading.
pub(crate) struct ReadPath {
    pub seg_dir: PathBuf,
    pub disk: Arc<dyn Disk>,
    pub index: RwLock<Index>,
    pub readers: RwLock<HashMap<u32, Arc<dyn DiskFile>>>,
}

impl ReadPath {
    pub(crate) fn reader(&self, segment: u32) -> Result<Arc<dyn DiskFile>, StoreError> {
        if let Some(f) = self.readers.read().get(&segment) {
            return Ok(f.clone());
        }
        let p = segment_path(&self.seg_dir, segment);
        let f = self
            .disk
            .open(&p)
            .map_err(StoreError::io(format!("opening {}", p.display())))?;
        self.readers.write().insert(segment, f.clone());
        Ok(f)
    }

    fn decode_at(e: &Entry, buf: &mut RunBytes<'_>, at: usize) -> Result<Event, StoreError> {
        let buf = buf.bytes();
        let corrupt = |reason: String| StoreError::Corrupt {
            segment: e.segment,
            offset: e.offset,
            reason,
        };
        let raw = decode_event_at(buf, at).map_err(corrupt)?;
        let header = decode_header(raw.header_bytes).map_err(corrupt)?;
        if header.id != e.id {
            return Err(corrupt(format!(
                "expected event {} but found {}",
                e.id, header.id
            )));
        }
        Ok(Event {
            header: Arc::new(header),
            payload: Arc::from(raw.payload),
            hash: raw.hash,
        })
    }

    fn read_at(
        f: &dyn DiskFile,
        segment: u32,
        buf: &mut Vec<u8>,
        start: u64,
        end: u64,
    ) -> Result<(), StoreError> {
        buf.resize((end - start) as usize, 0);
        f.read_exact_at(buf, start).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StoreError::Corrupt {
                    segment,
                    offset: start,
                    reason: "the segment file is shorter than the index says: indexed events are missing".into(),
                }
            } else {
                StoreError::Io {
                    context: format!("reading segment {segment:08} at offset {start}"),
                    source: e,
                }
            }
        })
    }

    /// Reads the events of `entries`, coalescing neighbouring reads, and
    /// checks the CRC of every frame they come from.
    pub fn read_entries(&self, entries: &[Entry]) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::with_capacity(entries.len());
        self.visit_entries(entries, |e, buf, at| {
            out.push(Self::decode_at(e, buf, at)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The chain link (id and hash) of each of `entries`, read and checked
    /// as [`read_entries`](Self::read_entries) does (coalesced reads, frame
    /// CRCs, the id in the header) but without decoding whole headers: what
    /// the sequencer needs to extend an entity's chain.
    pub fn read_links(&self, entries: &[Entry]) -> Result<Vec<ChainLink>, StoreError> {
        let mut out = Vec::with_capacity(entries.len());
        self.visit_entries(entries, |e, buf, at| {
            let buf = buf.bytes();
            let corrupt = |reason: String| StoreError::Corrupt {
                segment: e.segment,
                offset: e.offset,
                reason,
            };
            let raw = decode_event_at(buf, at).map_err(corrupt)?;
            // The id leads the header (see `EventHeader`).
            let (id, _) = postcard::take_from_bytes::<EventId>(raw.header_bytes)
                .map_err(|err| corrupt(format!("undecodable header id: {err}")))?;
            if id != e.id {
                return Err(corrupt(format!("expected event {} but found {id}", e.id)));
            }
            out.push(ChainLink { id, hash: raw.hash });
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads the bytes of `entries` (coalescing neighbouring reads into one
    /// buffer), checks them — the CRC of every frame they come from, or
    /// each event's own hash on the sparse path — and hands each event's
    /// position in the buffer to `f`, in order.
    fn visit_entries(
        &self,
        entries: &[Entry],
        mut f: impl FnMut(&Entry, &mut RunBytes<'_>, usize) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        thread_local! {
            /// One read buffer per thread, kept between calls: a cursor
            /// pulling batch after batch out of large frames would
            /// otherwise map, fault in and zero a fresh buffer per pull.
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        /// Larger buffers are released after the call, not kept.
        const KEEP: usize = 16 << 20;
        // `f` never reads through this path again, so the buffer is free;
        // a nested call (none today) would get a fresh one instead.
        let buf = BUF
            .with(|b| b.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)))
            .unwrap_or_default();
        let mut cache = FrameCache {
            buf,
            ..FrameCache::default()
        };
        let result = self.visit_with(entries, &mut cache, &mut f);
        let buf = cache.buf;
        if buf.capacity() <= KEEP {
            BUF.with(|b| {
                if let Ok(mut b) = b.try_borrow_mut() {
                    *b = buf;
                }
            });
        }
        result
    }

    /// [`read_entries`](Self::read_entries) through `cache`, which keeps
    /// the last frames read between calls (see [`FrameCache`]).
    pub fn read_entries_cached(
        &self,
        entries: &[Entry],
        cache: &mut FrameCache,
    ) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::with_capacity(entries.len());
        self.visit_with(entries, cache, &mut |e, buf, at| {
            out.push(Self::decode_at(e, buf, at)?);
            Ok(())
        })?;
        if cache.buf.capacity() > FrameCache::KEEP {
            *cache = FrameCache::default();
        }
        Ok(out)
    }

    /// [`read_entries_cached`](Self::read_entries_cached) as views that
    /// share the bytes read (see [`EventView`]): the same checks (frame
    /// CRCs or, on the sparse path, each event's hash; the id in the
    /// header; a header that decodes), no names or payloads copied.
    pub fn read_views_cached(
        &self,
        entries: &[Entry],
        cache: &mut FrameCache,
    ) -> Result<Vec<EventView>, StoreError> {
        let mut out = Vec::with_capacity(entries.len());
        self.visit_with(entries, cache, &mut |e, run, at| {
            out.push(Self::view_at(e, run, at)?);
            Ok(())
        })?;
        if cache.buf.capacity() > FrameCache::KEEP {
            *cache = FrameCache::default();
        }
        Ok(out)
    }

    fn view_at(e: &Entry, run: &mut RunBytes<'_>, at: usize) -> Result<EventView, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            segment: e.segment,
            offset: e.offset,
            reason,
        };
        let (header, payload, hash) = {
            let buf = run.bytes();
            let raw = decode_event_at(buf, at).map_err(corrupt)?;
            let base = buf.as_ptr() as usize;
            let span = |s: &[u8]| {
                let from = s.as_ptr() as usize - base;
                from..from + s.len()
            };
            (span(raw.header_bytes), span(raw.payload), raw.hash)
        };
        let view = EventView::from_stored(run.shared(), header, payload, hash).map_err(corrupt)?;
        if view.id() != e.id {
            return Err(corrupt(format!(
                "expected event {} but found {}",
                e.id,
                view.id()
            )));
        }
        Ok(view)
    }

    fn visit_with(
        &self,
        entries: &[Entry],
        cache: &mut FrameCache,
        f: &mut impl FnMut(&Entry, &mut RunBytes<'_>, usize) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut i = 0;
        while i < entries.len() {
            // Extend the run while the next entry sits close after this one.
            let first = entries[i];
            let start = first.frame_start();
            let mut end = first.offset + first.disk_len();
            let mut j = i + 1;
            while j < entries.len()
                && entries[j].segment == first.segment
                && entries[j].offset >= end
                && entries[j].offset - end <= 4096
                && entries[j].offset + entries[j].disk_len() - start <= 8 << 20
            {
                end = entries[j].offset + entries[j].disk_len();
                j += 1;
            }
            let file = self.reader(first.segment)?;
            if cache.serve(&file, &entries[i..j], f)? {
                i = j;
                continue;
            }
            cache.forget();
            if self.sparse_run(&*file, &entries[i..j], cache, f)? {
                i = j;
                continue;
            }
            let buf = &mut cache.buf;
            Self::read_at(&*file, first.segment, buf, start, end)?;
            // Whole frames are needed for their CRC: a frame may run past
            // the last requested event (a batch read in part).
            let frame_len = |buf: &[u8], fs: u64| -> Option<u64> {
                let at = (fs - start) as usize;
                buf.get(at + 4..at + 8)
                    .map(|b| 12 + u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64)
            };
            let mut need = end;
            let mut seen = u64::MAX;
            for e in &entries[i..j] {
                let fs = e.frame_start();
                if fs == seen {
                    continue;
                }
                seen = fs;
                let len = frame_len(buf, fs).ok_or_else(|| StoreError::Corrupt {
                    segment: e.segment,
                    offset: fs,
                    reason: "frame header lies outside the read (index and segment disagree)"
                        .into(),
                })?;
                need = need.max(fs + len.min(super::frame::MAX_FRAME_BODY as u64 + 12));
            }
            if need > end {
                Self::read_at(&*file, first.segment, buf, start, need)?;
            }
            let buf: &[u8] = &cache.buf;
            let mut run = RunBytes {
                bytes: buf,
                shared: &mut cache.shared,
            };
            let mut checked = u64::MAX;
            for e in &entries[i..j] {
                let fs = e.frame_start();
                if fs != checked {
                    let at = (fs - start) as usize;
                    decode_frame(&buf[at..]).map_err(|err| StoreError::Corrupt {
                        segment: e.segment,
                        offset: fs,
                        reason: err.to_string(),
                    })?;
                    checked = fs;
                    // Ascending: entries come in log order.
                    cache.checked.push(fs);
                }
                f(e, &mut run, (e.offset - start) as usize)?;
            }
            cache.file = Some(file);
            cache.start = start;
            i = j;
        }
        Ok(())
    }

    /// When the run's events are a small part of a large frame, reads only
    /// their bytes and checks each by its own hash (see the module comment)
    /// before handing it to `f`; `false` (nothing read) when the
    /// whole-frame path is as cheap.
    fn sparse_run(
        &self,
        file: &dyn DiskFile,
        run: &[Entry],
        cache: &mut FrameCache,
        f: &mut impl FnMut(&Entry, &mut RunBytes<'_>, usize) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        /// Below this many bytes of frame around the events, whole-frame
        /// checks cost no more than hashing the events.
        const SLACK: u64 = 64 << 10;
        let first = run[0];
        let last = run[run.len() - 1];
        let (start, end) = (first.offset, last.offset + last.disk_len());
        let wanted = end - start;
        // Frame length: 4 bytes after the frame's start (see `frame.rs`).
        let mut head = [0u8; 8];
        if file.read_exact_at(&mut head, first.frame_start()).is_err() {
            return Ok(false); // the whole-frame path reports it
        }
        let frame_len = 12 + u32_at(&head, 4) as u64;
        let frames_span = last.frame_start()
            + frame_len.max(last.frame_back as u64 + last.disk_len())
            - first.frame_start();
        if frames_span <= wanted.saturating_mul(4) + SLACK {
            return Ok(false);
        }
        Self::read_at(file, first.segment, &mut cache.buf, start, end)?;
        let buf: &[u8] = &cache.buf;
        let mut bytes = RunBytes {
            bytes: buf,
            shared: &mut cache.shared,
        };
        for e in run {
            let at = (e.offset - start) as usize;
            let corrupt = |reason: String| StoreError::Corrupt {
                segment: e.segment,
                offset: e.offset,
                reason,
            };
            let raw = decode_event_at(buf, at).map_err(corrupt)?;
            if hash_encoded(raw.header_bytes, raw.payload) != raw.hash {
                return Err(corrupt(format!(
                    "event {} does not match its hash (damaged on disk)",
                    e.id
                )));
            }
            f(e, &mut bytes, at)?;
        }
        Ok(true)
    }

    pub fn get_by_sequence(&self, s: u64) -> Result<Option<Event>, StoreError> {
        let e = match self.index.read().entry(s) {
            Some(e) => e,
            None => return Ok(None),
        };
        Ok(self.read_entries(&[e])?.pop())
    }

    pub fn get(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        let s = self.index.read().seq_of(id);
        match s {
            Some(s) => self.get_by_sequence(s),
            None => Ok(None),
        }
    }

    pub fn entity_events(
        &self,
        entity: &str,
        after: u64,
        max: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let entries: Vec<Entry> = {
            let ix = self.index.read();
            let Some(eid) = ix.names.get(entity) else {
                return Ok(Vec::new());
            };
            let seqs = ix.entity_seqs(eid);
            // Entity sequences are 1-based positions in this list.
            seqs.iter()
                .skip(after.min(seqs.len() as u64) as usize)
                .take(max)
                .filter_map(|s| ix.entry(*s as u64))
                .collect()
        };
        let events = self.read_entries(&entries)?;
        // The chain allows a second check: each event names the one before.
        for (w, e) in events.windows(2).zip(entries.iter().skip(1)) {
            let want = ChainLink {
                id: w[0].header.id,
                hash: w[0].hash,
            };
            if w[1].header.prev != Some(want) {
                return Err(StoreError::Corrupt {
                    segment: e.segment,
                    offset: e.offset,
                    reason: format!(
                        "event {} does not link to its entity's previous event (chain broken)",
                        w[1].header.id
                    ),
                });
            }
        }
        Ok(events)
    }

    pub fn caused_by(&self, id: EventId) -> Vec<EventId> {
        let ix = self.index.read();
        ix.children_of(id)
            .into_iter()
            .filter_map(|s| ix.entry(s).map(|e| e.id))
            .collect()
    }

    /// Matching entries with sequence in `(after, upto]`, at most `limit`,
    /// and the last sequence looked at.
    pub fn scan_entries(
        &self,
        region: &Region,
        after: u64,
        limit: usize,
        include_system: bool,
        upto: u64,
    ) -> (Vec<Entry>, u64) {
        let ix = self.index.read();
        let end = ix.last_sequence().min(upto);
        let mut out = Vec::new();
        let mut s = after;
        let mut matcher = RegionMatch::new(region, include_system);
        while s < end && out.len() < limit {
            s += 1;
            let e = ix.entry(s).expect("in range");
            if matcher.matches(&ix, &e) {
                out.push(e);
            }
        }
        (out, s)
    }

    pub fn scan(
        &self,
        region: &Region,
        after: u64,
        limit: usize,
        include_system: bool,
        upto: u64,
    ) -> Result<Vec<Event>, StoreError> {
        let (entries, _) = self.scan_entries(region, after, limit, include_system, upto);
        self.read_entries(&entries)
    }

    pub fn checkpoint(&self, id: &str) -> Option<Checkpoint> {
        self.index.read().checkpoints.get(id).cloned()
    }

    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        let mut v: Vec<Checkpoint> = self.index.read().checkpoints.values().cloned().collect();
        v.sort_by(|a, b| a.cursor.cmp(&b.cursor));
        v
    }

    /// Entries found through `lookup` with sequence greater than `after`
    /// that match `region`, at most `limit`, in sequence order. Only the
    /// lookup's own list is walked ([`Lookup::All`] walks the log from
    /// `after`, which is itself positional).
    pub fn lookup_entries(
        &self,
        lookup: &Lookup,
        region: &Region,
        after: u64,
        limit: usize,
        include_system: bool,
    ) -> Vec<Entry> {
        if *lookup == Lookup::All {
            return self
                .scan_entries(region, after, limit, include_system, u64::MAX)
                .0;
        }
        let ix = self.index.read();
        let one;
        let listed: Vec<u32>;
        // Sequences are held as u32 in the index (at most MAX_EVENTS).
        let seqs: &[u32] = match lookup {
            Lookup::All => unreachable!("handled above"),
            Lookup::Entity(name) => ix.names.get(name).map_or(&[], |i| ix.entity_seqs(i)),
            Lookup::Correlation(c) => {
                listed = ix
                    .correlated(*c)
                    .filter(|s| *s > after)
                    .map(|s| s as u32)
                    .collect();
                &listed
            }
            Lookup::CausedBy(c) => {
                listed = ix.children_of(*c).into_iter().map(|s| s as u32).collect();
                &listed
            }
            Lookup::Id(id) => match ix.seq_of(*id) {
                Some(s) => {
                    one = [s as u32];
                    &one
                }
                None => &[],
            },
        };
        let start = seqs.partition_point(|s| (*s as u64) <= after);
        let mut matcher = RegionMatch::new(region, include_system);
        let mut out = Vec::new();
        for s in &seqs[start..] {
            if out.len() >= limit {
                break;
            }
            let Some(e) = ix.entry(*s as u64) else { break };
            if matcher.matches(&ix, &e) {
                out.push(e);
            }
        }
        out
    }

    /// Reads the events [`lookup_entries`](Self::lookup_entries) finds.
    pub fn lookup(
        &self,
        lookup: &Lookup,
        region: &Region,
        after: u64,
        limit: usize,
        include_system: bool,
    ) -> Result<Vec<Event>, StoreError> {
        self.lookup_bounded(lookup, region, after, limit, include_system, usize::MAX)
            .map(|(events, _)| events)
    }

    /// As [`lookup`](Self::lookup), but stops before the event that would
    /// take the payload and header bytes read past `max_bytes` (always
    /// keeping the first): sizes come from the index, so nothing over the
    /// budget is read. The flag says the byte budget ended the list.
    pub fn lookup_bounded(
        &self,
        lookup: &Lookup,
        region: &Region,
        after: u64,
        limit: usize,
        include_system: bool,
        max_bytes: usize,
    ) -> Result<(Vec<Event>, bool), StoreError> {
        let mut entries = self.lookup_entries(lookup, region, after, limit, include_system);
        let mut total = 0usize;
        let keep = entries
            .iter()
            .position(|e| {
                total = total.saturating_add(e.body_len as usize);
                total > max_bytes
            })
            .unwrap_or(entries.len())
            .max(1);
        let cut = keep < entries.len();
        entries.truncate(keep);
        Ok((self.read_entries(&entries)?, cut))
    }
}
