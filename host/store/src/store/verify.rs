//! `verify`: checks a store's files without changing them — what an open
//! would do (recover in report-only mode), then every frame CRC, event hash,
//! sequence, entity chain and causation link, and agreement with an
//! in-memory index when the store is open.

use super::disk::{read_all, Disk};
use super::durable_mark::Marker;
use super::frame::{decode_frame, FRAME_HEADER, FRAME_MAGIC};
use super::index::Index;
use super::le_bytes::u32_at;
use super::recovery::recover;
use super::segment::{
    check_segment_header, decode_body, decode_header, list_segments, segment_path, Body,
    SEGMENT_HEADER, TAG_TXN_COMMIT,
};
use super::Checkpoint;
use super::StoreError;
use crate::system::CHECKPOINT_KIND;
use std::path::Path;

/// Result of a verification.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Frames checked.
    pub frames: u64,
    /// Events checked.
    pub events: u64,
    /// Segments checked.
    pub segments: u64,
    /// Everything found wrong, each naming segment, offset or event.
    pub problems: Vec<String>,
    /// Why opening the store would fail, if it would.
    pub open_error: Option<String>,
    /// `(segment, offset, bytes)` of a torn, never acknowledged tail that
    /// opening would cut off (and report). Not damage: the policy allows it.
    pub tail_to_cut: Option<(u32, u64, u64)>,
    /// `(segment, offset, events)` of a bulk transaction the log ends in
    /// without its commit: opening drops it (writes its abort) and reports
    /// it. Not damage: the process appending it stopped before committing.
    pub uncommitted_to_drop: Option<(u32, u64, u64)>,
}

/// The ids of the bulk transactions whose commit frame is in the log,
/// found by walking frame headers (the commit frames themselves are
/// checked whole by the main pass).
fn committed_txns(
    disk: &dyn Disk,
    seg_dir: &Path,
    segments: &[u32],
) -> std::collections::HashSet<u64> {
    let mut out = std::collections::HashSet::new();
    for &n in segments {
        let Ok(f) = disk.open(&segment_path(seg_dir, n)) else {
            continue;
        };
        let Ok(len) = f.len() else { continue };
        let mut at = SEGMENT_HEADER;
        let mut head = [0u8; FRAME_HEADER + 9];
        while at + head.len() as u64 <= len && f.read_exact_at(&mut head, at).is_ok() {
            if head[..4] != FRAME_MAGIC {
                break;
            }
            let blen = u32_at(&head, 4) as u64;
            if head[FRAME_HEADER] == TAG_TXN_COMMIT {
                out.insert(u64::from_le_bytes(
                    head[FRAME_HEADER + 1..].try_into().expect("8 bytes"),
                ));
            }
            at += FRAME_HEADER as u64 + blen;
        }
    }
    out
}

impl VerifyReport {
    /// True when nothing is wrong and the store opens (a torn tail an open
    /// would cut is allowed).
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty() && self.open_error.is_none()
    }
}

/// Checks every segment in `dir` without changing anything: frame CRCs,
/// event hashes, sequence continuity, entity chains, causation links and,
/// when given, agreement with an in-memory index.
pub(crate) fn verify_dir(
    disk: &dyn Disk,
    dir: &Path,
    index: Option<&Index>,
) -> Result<VerifyReport, StoreError> {
    use crate::event::{hash_encoded, ChainLink, EventId};
    use std::collections::{HashMap, HashSet};
    let seg_dir = dir.join("segments");
    let mut rep = VerifyReport::default();
    // First what an open would do (without doing it).
    let mut cut_at = None;
    let mut marker_absent = false;
    match recover(disk, dir, false) {
        Ok(r) => {
            rep.tail_to_cut = r.truncated;
            rep.uncommitted_to_drop = r.dropped_txn;
            cut_at = r.truncated.map(|(s, o, _)| (s, o));
            marker_absent = r.evidence.marker == Marker::Absent;
        }
        Err(e) => rep.open_error = Some(e.to_string()),
    }
    // An open also refuses a directory others can access (real files only).
    if disk.uses_lock_file() && rep.open_error.is_none() {
        if let Err(e) = super::private_dir::check(dir) {
            rep.open_error = Some(e.to_string());
        }
    }
    let segments = list_segments(disk, &seg_dir)?;
    let committed = committed_txns(disk, &seg_dir, &segments);
    let mut heads: HashMap<String, (u64, ChainLink)> = HashMap::new();
    let mut ids: HashSet<EventId> = HashSet::new();
    let mut next_seq = 1u64;
    let mut store_id = None;
    let max_problems = 100;
    for (i, &n) in segments.iter().enumerate() {
        if rep.problems.len() >= max_problems {
            break;
        }
        rep.segments += 1;
        if i > 0 && n != segments[i - 1] + 1 {
            rep.problems
                .push(format!("segment {:08} is missing", segments[i - 1] + 1));
        }
        let path = segment_path(&seg_dir, n);
        let bytes =
            read_all(disk, &path).map_err(StoreError::io(format!("reading {}", path.display())))?;
        match check_segment_header(&bytes, n) {
            Ok(id) => {
                if *store_id.get_or_insert(id) != id {
                    rep.problems
                        .push(format!("segment {n:08}: belongs to another store"));
                }
            }
            Err(e) => {
                rep.problems.push(format!("segment {n:08} offset 0: {e}"));
                continue;
            }
        }
        let mut pos = SEGMENT_HEADER as usize;
        while pos < bytes.len() && rep.problems.len() < max_problems {
            if cut_at == Some((n, pos as u64)) {
                // The torn tail an open would cut: reported in `tail_to_cut`.
                break;
            }
            let (body, total) = match decode_frame(&bytes[pos..]) {
                Ok(x) => x,
                Err(e) => {
                    rep.problems
                        .push(format!("segment {n:08} offset {pos}: {e}"));
                    // Resynchronise on the next intact frame, if any.
                    let mut j = pos + 1;
                    while j + 4 <= bytes.len()
                        && !(bytes[j..j + 4] == FRAME_MAGIC && decode_frame(&bytes[j..]).is_ok())
                    {
                        j += 1;
                    }
                    pos = if j + 4 <= bytes.len() { j } else { bytes.len() };
                    continue;
                }
            };
            rep.frames += 1;
            let body_start = pos + FRAME_HEADER;
            let events = match decode_body(body) {
                Ok(Body::Batch(e)) => e,
                // A committed transaction's events count like a batch's;
                // an aborted or uncommitted one's never do.
                Ok(Body::Part { txn, events, .. }) if committed.contains(&txn) => events,
                Ok(_) => {
                    pos += total;
                    continue;
                }
                Err(e) => {
                    rep.problems
                        .push(format!("segment {n:08} offset {pos}: {e}"));
                    pos += total;
                    continue;
                }
            };
            for ev in events {
                let at = body_start + ev.rel_offset;
                let here = format!("segment {n:08} offset {at}");
                rep.events += 1;
                let h = match decode_header(ev.header_bytes) {
                    Ok(h) => h,
                    Err(e) => {
                        rep.problems.push(format!("{here}: {e}"));
                        continue;
                    }
                };
                if hash_encoded(ev.header_bytes, ev.payload) != ev.hash {
                    rep.problems.push(format!(
                        "{here}: event {} hash does not match its header and payload",
                        h.id
                    ));
                }
                if h.sequence != next_seq {
                    rep.problems.push(format!(
                        "{here}: event {} has sequence {}, expected {next_seq}",
                        h.id, h.sequence
                    ));
                }
                next_seq = h.sequence + 1;
                if h.kind == CHECKPOINT_KIND {
                    // A checkpoint names an event the reactor had seen
                    // durable: always one before it in the log.
                    let named = Checkpoint::from_record(ev.payload).map(|c| c.sequence);
                    if let Some(s) = named.filter(|&s| s >= h.sequence) {
                        rep.problems.push(format!(
                            "{here}: checkpoint event {} names sequence {s}, which is not an earlier event",
                            h.id
                        ));
                    }
                }
                if !ids.insert(h.id) {
                    rep.problems
                        .push(format!("{here}: event id {} appears twice", h.id));
                }
                if let Some(c) = h.causation {
                    if !ids.contains(&c) {
                        rep.problems.push(format!(
                            "{here}: event {} names causation {c}, which is not an earlier event",
                            h.id
                        ));
                    }
                }
                let head = heads.get(&h.coordinate.entity);
                let (want_seq, want_prev) = match head {
                    Some((s, link)) => (s + 1, Some(*link)),
                    None => (1, None),
                };
                if h.entity_sequence != want_seq {
                    rep.problems.push(format!(
                        "{here}: event {} has entity sequence {} in {:?}, expected {want_seq}",
                        h.id, h.entity_sequence, h.coordinate.entity
                    ));
                }
                if h.prev != want_prev {
                    rep.problems.push(format!(
                        "{here}: event {} does not link to its entity's previous event (chain broken)",
                        h.id
                    ));
                }
                heads.insert(
                    h.coordinate.entity.clone(),
                    (
                        h.entity_sequence,
                        ChainLink {
                            id: h.id,
                            hash: ev.hash,
                        },
                    ),
                );
                if let Some(ix) = index {
                    // Every column of the compact index against the frame:
                    // place, size, frame, links and names.
                    match ix.entry(h.sequence) {
                        Some(e)
                            if e.id == h.id
                                && e.segment == n
                                && e.offset == at as u64
                                && e.frame_start() == pos as u64
                                && e.body_len as usize
                                    == ev.header_bytes.len() + ev.payload.len()
                                && e.causation == h.causation
                                && e.correlation == h.correlation
                                && ix.seq_of(h.id) == Some(h.sequence)
                                && ix.names.name(e.entity) == h.coordinate.entity
                                && ix.names.name(e.scope) == h.coordinate.scope
                                && ix.names.name(e.kind) == h.kind => {}
                        Some(_) => rep.problems.push(format!(
                            "{here}: index entry for sequence {} disagrees with the segment",
                            h.sequence
                        )),
                        None => rep.problems.push(format!(
                            "{here}: sequence {} is missing from the index",
                            h.sequence
                        )),
                    }
                }
            }
            pos += total;
        }
    }
    if marker_absent && next_seq > 1 && index.is_none() && rep.problems.len() < max_problems {
        // One of the two witnesses of how far the log was acknowledged is
        // gone: a log cut at a frame boundary could no longer be noticed
        // without the index snapshot. An open recreates the marker.
        rep.problems.push(format!(
            "the durable marker (DURABLE) is missing although the log holds {} events: one witness of how far the log was acknowledged is lost (an open recreates it; a store written before the marker existed has none)",
            next_seq - 1
        ));
    }
    if let Some(ix) = index {
        if ix.last_sequence() + 1 != next_seq && rep.problems.len() < max_problems {
            rep.problems.push(format!(
                "index holds {} events but the segments hold {}",
                ix.last_sequence(),
                next_seq - 1
            ));
        }
    }
    Ok(rep)
}
