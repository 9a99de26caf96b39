//! Opening a store: check the log's shape, load a proven snapshot, replay
//! the tail, and apply the recovery policy.
//!
//! **Recovery policy** (DESIGN.md): a torn write of data nobody was told is
//! durable — damage at the very end of the last segment, with no intact frame
//! after it and beyond the durable marker — is cut off and reported; any
//! other damage (an acknowledged frame, a missing, extra or reordered
//! segment, data the marker says was durable but is gone) fails closed with
//! the segment and offset, changing nothing.
//!
//! [`recover`] with `apply = false` only reports what an open would do:
//! `verify` uses it and never changes what it checks.

use super::disk::{read_all, Disk};
use super::durable_mark::{self, Marker, Position};
use super::frame::{
    decode_frame, encode_frame, FrameError, FRAME_HEADER, FRAME_MAGIC, MAX_FRAME_BODY,
};
use super::index::Index;
use super::le_bytes::u32_at;
use super::segment::{
    check_segment_header, create_segment, decode_body, decode_header, end_body, list_segments,
    segment_path, Body, RawEvent, SEGMENT_HEADER,
};
use super::snapshot::{self, SegmentProof};
use super::StoreError;
use std::path::Path;

/// The state recovered from disk.
pub(crate) struct Recovered {
    pub index: Index,
    pub store_id: u128,
    pub last_segment: u32,
    pub end_offset: u64,
    /// Events read from segments (not from the snapshot).
    pub replayed: u64,
    /// (segment, offset, bytes removed) when a torn tail was (or, without
    /// `apply`, would be) cut off.
    pub truncated: Option<(u32, u64, u64)>,
    /// CRC-32 of every sealed segment (all but the last), for snapshots.
    pub sealed: Vec<SegmentProof>,
    /// CRC-32 state of the last segment's first `end_offset` bytes.
    pub tail_crc: crc32fast::Hasher,
    /// (segment, offset of its first part, events) of a bulk transaction
    /// the log ends in without its commit: an abort frame was (or, without
    /// `apply`, would be) written after it, and none of it is indexed.
    pub dropped_txn: Option<(u32, u64, u64)>,
    /// The evidence of acknowledgement the log was checked against.
    pub evidence: Evidence,
    /// The index came from a snapshot in the previous format: the open
    /// writes one in the current format (the migration, once).
    pub snapshot_outdated: bool,
}

/// Independent evidence of how far the log was acknowledged durable. Each
/// is written only after the log bytes it names were fsynced, so the log
/// may be longer than any of them, never shorter: a log that ends (or is
/// damaged) before one of them lost acknowledged events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Evidence {
    /// The durable marker (`DURABLE`).
    pub marker: Marker,
    /// (end position, events) of a sound index snapshot of this store
    /// (`index.snap`, CRC and store id checked; whether or not the
    /// segments still hash to its proof): the writer fsyncs the log before
    /// it writes one.
    pub snapshot: Option<(Position, u64)>,
}

impl Evidence {
    /// The furthest acknowledged position and the file that says so.
    pub fn furthest(&self) -> Option<(Position, String)> {
        let marker = match self.marker {
            Marker::At(p) => Some((p, "the durable marker (DURABLE)".to_string())),
            _ => None,
        };
        let snap = self.snapshot.map(|(p, count)| {
            (
                p,
                format!("the index snapshot (index.snap, {count} events)"),
            )
        });
        match (marker, snap) {
            (Some(m), Some(s)) => Some(if s.0 > m.0 { s } else { m }),
            (m, s) => m.or(s),
        }
    }

    /// Whether the frame at `(segment, offset)` was acknowledged durable,
    /// and by which file.
    fn covering(&self, segment: u32, offset: u64) -> Option<String> {
        self.furthest()
            .filter(|&((ms, mo), _)| segment < ms || (segment == ms && offset < mo))
            .map(|(_, by)| by)
    }
}

/// How to proceed when the log ends before its evidence.
const RESTORE_FIX: &str = "restore the store directory (or the named segment) from a backup. To accept the loss instead and open with what is left, move index.snap aside (it is only a cache) and, if DURABLE is missing, create it empty (`: > DURABLE`): the open then cuts a damaged tail and records the cut in a batpak.store.recovered event";

/// How to proceed when a damaged tail cannot be judged without the marker.
const NO_MARKER_FIX: &str = "restore DURABLE (or the whole store directory) from a backup. If this store was written by a batpak-host from before the durable marker existed, or you accept losing the damaged tail, create an empty marker (`: > DURABLE` in the store directory) and open again: the open then cuts the tail and records the cut in a batpak.store.recovered event";

fn loss(segment: u32, offset: u64, reason: String, fix: &str) -> StoreError {
    StoreError::AcknowledgedLoss {
        segment,
        offset,
        reason,
        fix: fix.to_string(),
    }
}

/// The log ends at segment `last`, before segment `ss` that a sound index
/// snapshot of `count` events covers up to offset `so`.
pub(crate) fn snapshot_segment_missing(last: u32, (ss, so): Position, count: u64) -> StoreError {
    loss(
        last + 1,
        0,
        format!(
            "segment file {ss:08} is missing: the index snapshot (index.snap) covers the log up to segment {ss:08} offset {so} ({count} events), but the log ends at segment {last:08}"
        ),
        RESTORE_FIX,
    )
}

/// Segment `n` ends at `end`, before offset `so` that a sound index
/// snapshot of `count` events covers.
pub(crate) fn snapshot_segment_short(n: u32, end: u64, so: u64, count: u64) -> StoreError {
    loss(
        n,
        end,
        format!(
            "the segment ends at offset {end}, but the index snapshot (index.snap, {count} events) covers it up to offset {so}, written after those bytes were fsynced: acknowledged events are missing"
        ),
        RESTORE_FIX,
    )
}

/// A damaged frame at (`n`, `at`) that a sound index snapshot of `count`
/// events covers: damage to acknowledged data, not a torn write.
pub(crate) fn snapshot_frame_damaged(n: u32, at: u64, e: &FrameError, count: u64) -> StoreError {
    loss(
        n,
        at,
        format!(
            "{e}; this frame was acknowledged as durable (the index snapshot (index.snap, {count} events) covers it), so this is damage, not a torn write"
        ),
        RESTORE_FIX,
    )
}

/// A bulk transaction whose parts were met but not yet its commit or abort.
struct OpenTxn {
    txn: u64,
    /// (segment, offset) of each part frame.
    parts: Vec<(u32, u64)>,
    events: u64,
}

/// Reads the whole frame at `offset` of segment `n` (a committed part in an
/// earlier segment than the commit).
fn read_frame_at(
    disk: &dyn Disk,
    seg_dir: &Path,
    n: u32,
    offset: u64,
) -> Result<Vec<u8>, StoreError> {
    let path = segment_path(seg_dir, n);
    let io = || StoreError::io(format!("reading {} at offset {offset}", path.display()));
    let f = disk.open(&path).map_err(io())?;
    let mut head = [0u8; FRAME_HEADER];
    f.read_exact_at(&mut head, offset).map_err(io())?;
    let len = u32_at(&head, 4) as usize;
    let mut buf = vec![0u8; FRAME_HEADER + len.min(MAX_FRAME_BODY)];
    f.read_exact_at(&mut buf, offset).map_err(io())?;
    Ok(buf)
}

/// Inserts the events of the frame at (`n`, `pos`) into `index`.
fn index_events(
    index: &mut Index,
    n: u32,
    pos: u64,
    events: Vec<RawEvent<'_>>,
) -> Result<u64, StoreError> {
    let body_start = pos + FRAME_HEADER as u64;
    let mut count = 0;
    for ev in events {
        let at = body_start + ev.rel_offset as u64;
        let h = decode_header(ev.header_bytes).map_err(|r| corrupt(n, at, r))?;
        index
            .insert(&h, n, pos, at, ev.header_bytes.len() as u32, ev.payload)
            .map_err(|r| corrupt(n, at, r))?;
        count += 1;
    }
    Ok(count)
}

/// True when an intact frame starts anywhere in `buf`.
pub(crate) fn intact_frame_after(buf: &[u8]) -> bool {
    let mut i = 0;
    while i + 4 <= buf.len() {
        if buf[i..i + 4] == FRAME_MAGIC && decode_frame(&buf[i..]).is_ok() {
            return true;
        }
        i += 1;
    }
    false
}

fn corrupt(segment: u32, offset: u64, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        segment,
        offset,
        reason: reason.into(),
    }
}

/// Checks that segment numbers are 1, 2, … without gaps and that the
/// durable marker names no segment beyond them.
pub(crate) fn check_shape(segments: &[u32], marker: Option<Position>) -> Result<(), StoreError> {
    let Some(&first) = segments.first() else {
        if let Some((ms, mo)) = marker {
            return Err(corrupt(ms, 0, format!(
                "every segment file is missing, but the durable marker says segment {ms:08} up to offset {mo} was acknowledged"
            )));
        }
        return Ok(());
    };
    if first != 1 {
        return Err(corrupt(
            1,
            0,
            format!("segment file 00000001 is missing (the log starts at {first:08}); the events it held are lost"),
        ));
    }
    for w in segments.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(corrupt(
                w[0] + 1,
                0,
                format!(
                    "segment file is missing (found {:08} then {:08})",
                    w[0], w[1]
                ),
            ));
        }
    }
    let last = *segments.last().expect("non-empty");
    if let Some((ms, mo)) = marker {
        if ms > last {
            return Err(corrupt(ms, 0, format!(
                "segment file is missing: the durable marker says segment {ms:08} up to offset {mo} was acknowledged, but the log ends at {last:08}"
            )));
        }
    }
    Ok(())
}

/// Whether the first `p.len` bytes of segment `p.segment` are all of it
/// and hash to `p.crc`; read in chunks through one reused buffer (a whole
/// segment in memory at once cost page faults and peak memory at open).
fn segment_matches(disk: &dyn Disk, seg_dir: &Path, p: &SegmentProof) -> bool {
    const CHUNK: u64 = 4 << 20;
    let Ok(f) = disk.open(&segment_path(seg_dir, p.segment)) else {
        return false;
    };
    if f.len().ok() != Some(p.len) {
        return false;
    }
    let mut buf = vec![0u8; CHUNK.min(p.len) as usize];
    let mut crc = crc32fast::Hasher::new();
    let mut at = 0u64;
    while at < p.len {
        let n = CHUNK.min(p.len - at) as usize;
        if f.read_exact_at(&mut buf[..n], at).is_err() {
            return false;
        }
        crc.update(&buf[..n]);
        at += n as u64;
    }
    crc.finalize() == p.crc
}

/// Recovers the store in `dir` (which holds `segments/`). With `apply`,
/// creates a new store when there is none and cuts a torn tail; without, it
/// changes nothing and reports what it would do.
pub(crate) fn recover(disk: &dyn Disk, dir: &Path, apply: bool) -> Result<Recovered, StoreError> {
    recover_from(disk, dir, apply, None)
}

/// `known_snapshot`: `None` to load the snapshot; `Some(evidence)` on the
/// second pass, which replays without the snapshot (its proof failed) but
/// still holds the log to what a sound snapshot said was acknowledged.
fn recover_from(
    disk: &dyn Disk,
    dir: &Path,
    apply: bool,
    known_snapshot: Option<Option<(Position, u64)>>,
) -> Result<Recovered, StoreError> {
    let use_snapshot = known_snapshot.is_none();
    let seg_dir = dir.join("segments");
    if apply {
        disk.create_dir_all(&seg_dir)
            .map_err(StoreError::io(format!("creating {}", seg_dir.display())))?;
    }
    let segments = match list_segments(disk, &seg_dir) {
        Ok(s) => s,
        Err(_) if !apply => Vec::new(),
        Err(e) => return Err(e),
    };
    let marker_state = durable_mark::read_state(disk, dir);
    let marker = match marker_state {
        Marker::At(p) => Some(p),
        _ => None,
    };
    check_shape(&segments, marker)?;
    if segments.is_empty() {
        let mut idb = [0u8; 16];
        getrandom::fill(&mut idb).map_err(|e| StoreError::Io {
            context: "drawing a store id".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let store_id = u128::from_le_bytes(idb);
        if apply {
            create_segment(disk, &seg_dir, store_id, 1)?;
        }
        let mut tail_crc = crc32fast::Hasher::new();
        tail_crc.update(&super::segment::segment_header(store_id, 1));
        return Ok(Recovered {
            index: Index::default(),
            store_id,
            last_segment: 1,
            end_offset: SEGMENT_HEADER,
            replayed: 0,
            truncated: None,
            sealed: Vec::new(),
            tail_crc,
            dropped_txn: None,
            evidence: Evidence {
                marker: marker_state,
                snapshot: None,
            },
            snapshot_outdated: false,
        });
    }
    let last = *segments.last().expect("non-empty");
    let read = |n: u32| {
        let path = segment_path(&seg_dir, n);
        read_all(disk, &path).map_err(StoreError::io(format!("reading {}", path.display())))
    };
    let head = read(1)?;
    let store_id = check_segment_header(&head, 1).map_err(|reason| corrupt(1, 0, reason))?;
    drop(head);

    // Start from the snapshot only when the segments still hash to its
    // proof: sealed segments are checked here, the segment it ends in while
    // it is read for the replay (each file is read once).
    let mut start = (1u32, SEGMENT_HEADER);
    let mut index = Index::default();
    let mut covered: Vec<SegmentProof> = Vec::new();
    let mut end_proof: Option<SegmentProof> = None;
    let mut snapshot_outdated = false;
    // The sealed segments are hashed on a second thread while the index is
    // rebuilt from the snapshot's entries.
    let sealed_ok = |proof: &[SegmentProof]| {
        proof.split_last().is_some_and(|(_, sealed)| {
            sealed
                .iter()
                .all(|p| segments.contains(&p.segment) && segment_matches(disk, &seg_dir, p))
        })
    };
    let loaded = if use_snapshot {
        snapshot::load(disk, dir, store_id, sealed_ok)
    } else {
        None
    };
    let mut evidence = Evidence {
        marker: marker_state,
        snapshot: known_snapshot.flatten(),
    };
    if let Some((s, sealed_proven)) = loaded {
        // A sound snapshot (CRC, store id) is evidence whether or not the
        // segments still match its proof.
        evidence.snapshot = Some(((s.end_segment, s.end_offset), s.index.last_sequence()));
        let (end, sealed_proof) = s.proof.split_last().expect("a loaded snapshot has a proof");
        let proven = s.proof[0].segment == 1
            && end.segment == s.end_segment
            && segments.contains(&end.segment)
            && sealed_proven;
        if proven {
            start = (s.end_segment, s.end_offset);
            index = s.index;
            snapshot_outdated = s.outdated;
            covered = sealed_proof.to_vec();
            end_proof = Some(*end);
        }
    }

    if let Some((end, count)) = evidence.snapshot {
        if end.0 > last {
            return Err(snapshot_segment_missing(last, end, count));
        }
    }

    let mut replayed = 0u64;
    let mut truncated = None;
    let mut end_offset = SEGMENT_HEADER;
    let mut sealed = Vec::new();
    let mut tail_crc = crc32fast::Hasher::new();
    let mut open: Option<OpenTxn> = None;
    for &n in &segments {
        let is_last = n == last;
        if n < start.0 {
            // Covered by the proven snapshot, CRC checked above.
            sealed.push(covered[(n - 1) as usize]);
            continue;
        }
        let bytes = read(n)?;
        if let Some(p) = end_proof.filter(|p| p.segment == n) {
            let ok =
                bytes.len() as u64 >= p.len && crc32fast::hash(&bytes[..p.len as usize]) == p.crc;
            if !ok {
                // Nothing was changed yet: start over without the snapshot;
                // the frame-by-frame replay finds what is wrong.
                return recover_from(disk, dir, apply, Some(evidence.snapshot));
            }
        }
        if bytes.len() < SEGMENT_HEADER as usize && is_last && evidence.covering(n, 0).is_none() {
            if n > 1 && marker_state == Marker::Absent {
                // A rotation happens with the marker in place: without it
                // a cut-short later segment cannot be judged.
                return Err(loss(
                    n,
                    0,
                    format!("the last segment holds only {} bytes (not even its header), and the durable marker (DURABLE) is missing, so whether it held acknowledged events cannot be told", bytes.len()),
                    NO_MARKER_FIX,
                ));
            }
            // A crash while creating the segment: its header never became
            // durable, so nothing can be in it. Recreate it.
            if apply {
                let path = segment_path(&seg_dir, n);
                disk.remove(&path)
                    .map_err(StoreError::io(format!("removing {}", path.display())))?;
                create_segment(disk, &seg_dir, store_id, n)?;
            }
            tail_crc = crc32fast::Hasher::new();
            tail_crc.update(&super::segment::segment_header(store_id, n));
            if !bytes.is_empty() {
                truncated = Some((n, 0, bytes.len() as u64));
            }
            end_offset = SEGMENT_HEADER;
            continue;
        }
        let sid = check_segment_header(&bytes, n).map_err(|reason| corrupt(n, 0, reason))?;
        if sid != store_id {
            return Err(corrupt(
                n,
                0,
                "segment belongs to another store (store id differs)",
            ));
        }
        let mut pos = if n == start.0 {
            start.1 as usize
        } else {
            SEGMENT_HEADER as usize
        };
        while pos < bytes.len() {
            match decode_frame(&bytes[pos..]) {
                Ok((body, total)) => {
                    let at = pos as u64;
                    let here = |r: String| corrupt(n, at, r);
                    match decode_body(body).map_err(here)? {
                        Body::Batch(events) => {
                            if open.is_some() {
                                return Err(here("a batch frame inside an open bulk transaction (its parts must be followed by their commit or abort)".into()));
                            }
                            replayed += index_events(&mut index, n, at, events)?;
                        }
                        Body::Part { txn, part, events } => {
                            let o = open.get_or_insert(OpenTxn {
                                txn,
                                parts: Vec::new(),
                                events: 0,
                            });
                            if o.txn != txn || part as usize != o.parts.len() {
                                return Err(here(format!(
                                    "bulk transaction part {part} of {txn:016x} out of place (expected part {} of {:016x})",
                                    o.parts.len(),
                                    o.txn
                                )));
                            }
                            o.parts.push((n, at));
                            o.events += events.len() as u64;
                        }
                        Body::Commit { txn, parts, events } => {
                            let o = open.take().filter(|o| {
                                o.txn == txn
                                    && o.parts.len() == parts as usize
                                    && o.events == events
                            });
                            let Some(o) = o else {
                                return Err(here(format!("commit of bulk transaction {txn:016x} does not match the parts before it")));
                            };
                            for (s, p) in o.parts {
                                let other;
                                let frame: &[u8] = if s == n {
                                    &bytes[p as usize..]
                                } else {
                                    other = read_frame_at(disk, &seg_dir, s, p)?;
                                    &other
                                };
                                let (body, _) = decode_frame(frame)
                                    .map_err(|e| corrupt(s, p, e.to_string()))?;
                                let Ok(Body::Part { events, .. }) = decode_body(body) else {
                                    return Err(corrupt(
                                        s,
                                        p,
                                        "a bulk transaction part changed while it was read"
                                            .to_string(),
                                    ));
                                };
                                replayed += index_events(&mut index, s, p, events)?;
                            }
                        }
                        Body::Abort { txn, parts, events } => {
                            if !open.take().is_some_and(|o| {
                                o.txn == txn
                                    && o.parts.len() == parts as usize
                                    && o.events == events
                            }) {
                                return Err(here(format!("abort of bulk transaction {txn:016x} does not match the parts before it")));
                            }
                        }
                    }
                    pos += total;
                }
                Err(e) => {
                    let at = pos as u64;
                    if !is_last {
                        return Err(corrupt(n, at, format!(
                            "{e}; this segment is sealed (a later one exists), so this is damage, not a torn write"
                        )));
                    }
                    if let Some(by) = evidence.covering(n, at) {
                        let reason = format!(
                            "{e}; this frame was acknowledged as durable ({by} covers it), so this is damage, not a torn write"
                        );
                        return Err(if marker.is_some_and(|(ms, mo)| (n, at) < (ms, mo)) {
                            corrupt(n, at, reason)
                        } else {
                            loss(n, at, reason, RESTORE_FIX)
                        });
                    }
                    if intact_frame_after(&bytes[pos + 1..]) {
                        return Err(corrupt(
                            n,
                            at,
                            format!(
                                "{e}; intact data follows, so this is damage, not a torn write"
                            ),
                        ));
                    }
                    if marker_state == Marker::Absent {
                        return Err(loss(
                            n,
                            at,
                            format!(
                                "{e}, {} bytes before the end of the log; the durable marker (DURABLE) is missing, so whether this was a torn write nobody was told about or acknowledged data that was damaged cannot be told",
                                bytes.len() - pos
                            ),
                            NO_MARKER_FIX,
                        ));
                    }
                    if apply {
                        let path = segment_path(&seg_dir, n);
                        let f = disk
                            .open(&path)
                            .map_err(StoreError::io(format!("opening {}", path.display())))?;
                        f.set_len(at)
                            .and_then(|_| f.sync())
                            .map_err(StoreError::io(format!(
                                "truncating torn tail of {}",
                                path.display()
                            )))?;
                    }
                    truncated = Some((n, at, (bytes.len() - pos) as u64));
                    break;
                }
            }
        }
        let end = pos.min(bytes.len());
        if let Some((ms, mo)) = marker {
            if ms == n && (end as u64) < mo {
                return Err(corrupt(n, end as u64, format!(
                    "the segment ends at offset {end}, but the durable marker says up to offset {mo} was acknowledged: acknowledged data is missing"
                )));
            }
        }
        if let Some(((ss, so), count)) = evidence.snapshot {
            if ss == n && (end as u64) < so {
                return Err(snapshot_segment_short(n, end as u64, so, count));
            }
        }
        if is_last {
            tail_crc.update(&bytes[..end]);
            end_offset = end as u64;
        } else {
            sealed.push(SegmentProof {
                segment: n,
                len: bytes.len() as u64,
                crc: crc32fast::hash(&bytes),
            });
        }
    }
    // A transaction the log ends in without its commit never counts: an
    // abort frame after its parts says so for every later reader.
    let mut dropped_txn = None;
    if let Some(o) = open {
        let (s, p) = o.parts[0];
        dropped_txn = Some((s, p, o.events));
        if apply {
            let mut f = Vec::with_capacity(64);
            encode_frame(
                &end_body(false, o.txn, o.parts.len() as u32, o.events),
                &mut f,
            );
            let path = segment_path(&seg_dir, last);
            disk.open(&path)
                .and_then(|file| {
                    file.write_all_at(&f, end_offset)?;
                    file.sync()
                })
                .map_err(StoreError::io(format!(
                    "writing the abort of an uncommitted bulk transaction to {}",
                    path.display()
                )))?;
            tail_crc.update(&f);
            end_offset += f.len() as u64;
        }
    }
    Ok(Recovered {
        index,
        store_id,
        last_segment: last,
        end_offset,
        replayed,
        truncated,
        sealed,
        tail_crc,
        dropped_txn,
        evidence,
        snapshot_outdated,
    })
}
