//! Opening a store: load the snapshot, replay the tail, repair a torn tail.
//!
//! Rules (see DESIGN.md):
//! - a bad frame in the **last** segment with no intact frame after it is a
//!   torn write: the file is truncated there (and synced) so that a second
//!   crash still opens;
//! - any other damage fails closed with the segment and offset;
//! - an intact frame whose content does not decode is damage, not a tear.

use super::frame::{decode_frame, FRAME_MAGIC};
use super::index::Index;
use super::segment::{
    check_segment_header, create_segment, decode_batch, decode_header, list_segments, segment_path,
    SEGMENT_HEADER,
};
use super::{snapshot, StoreError};
use std::fs::OpenOptions;
use std::path::Path;

/// The state recovered from disk.
pub(crate) struct Recovered {
    pub index: Index,
    pub store_id: u128,
    pub last_segment: u32,
    pub end_offset: u64,
    /// Events read from segments (not from the snapshot).
    pub replayed: u64,
    /// (segment, offset, bytes removed) when a torn tail was cut off.
    pub truncated: Option<(u32, u64, u64)>,
}

/// True when an intact frame starts anywhere in `buf`.
fn intact_frame_after(buf: &[u8]) -> bool {
    let mut i = 0;
    while i + 4 <= buf.len() {
        if buf[i..i + 4] == FRAME_MAGIC && decode_frame(&buf[i..]).is_ok() {
            return true;
        }
        i += 1;
    }
    false
}

/// Recovers the store in `dir` (which holds `segments/`).
pub(crate) fn recover(dir: &Path) -> Result<Recovered, StoreError> {
    let seg_dir = dir.join("segments");
    std::fs::create_dir_all(&seg_dir)
        .map_err(StoreError::io(format!("creating {}", seg_dir.display())))?;
    let segments = list_segments(&seg_dir)?;
    if segments.is_empty() {
        let mut idb = [0u8; 16];
        getrandom::fill(&mut idb).map_err(|e| StoreError::Io {
            context: "drawing a store id".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let store_id = u128::from_le_bytes(idb);
        create_segment(&seg_dir, store_id, 1)?;
        return Ok(Recovered {
            index: Index::default(),
            store_id,
            last_segment: 1,
            end_offset: SEGMENT_HEADER,
            replayed: 0,
            truncated: None,
        });
    }
    for w in segments.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(StoreError::Corrupt {
                segment: w[0] + 1,
                offset: 0,
                reason: format!(
                    "segment file is missing (found {:08} then {:08})",
                    w[0], w[1]
                ),
            });
        }
    }
    let first = segments[0];
    let last = *segments.last().expect("non-empty");
    let head = read_prefix(&seg_dir, first, SEGMENT_HEADER as usize)?;
    let store_id = check_segment_header(&head, first).map_err(|reason| StoreError::Corrupt {
        segment: first,
        offset: 0,
        reason,
    })?;

    // Start from the snapshot when it is sound and consistent with the files.
    let mut start = (first, SEGMENT_HEADER);
    let mut index = Index::default();
    if let Some(s) = snapshot::load(dir, store_id) {
        let ok = segments.contains(&s.end_segment)
            && std::fs::metadata(segment_path(&seg_dir, s.end_segment))
                .map(|m| m.len() >= s.end_offset)
                .unwrap_or(false);
        if ok {
            start = (s.end_segment, s.end_offset);
            index = s.index;
        }
    }

    let mut replayed = 0u64;
    let mut truncated = None;
    let mut end_offset = SEGMENT_HEADER;
    for &n in segments.iter().filter(|&&n| n >= start.0) {
        let path = segment_path(&seg_dir, n);
        let bytes =
            std::fs::read(&path).map_err(StoreError::io(format!("reading {}", path.display())))?;
        let is_last = n == last;
        if bytes.len() < SEGMENT_HEADER as usize && is_last {
            // A crash while creating the segment: its header never became
            // durable, so nothing can be in it. Recreate it.
            std::fs::remove_file(&path)
                .map_err(StoreError::io(format!("removing {}", path.display())))?;
            create_segment(&seg_dir, store_id, n)?;
            end_offset = SEGMENT_HEADER;
            continue;
        }
        let sid = check_segment_header(&bytes, n).map_err(|reason| StoreError::Corrupt {
            segment: n,
            offset: 0,
            reason,
        })?;
        if sid != store_id {
            return Err(StoreError::Corrupt {
                segment: n,
                offset: 0,
                reason: "segment belongs to another store (store id differs)".into(),
            });
        }
        let mut pos = if n == start.0 {
            start.1 as usize
        } else {
            SEGMENT_HEADER as usize
        };
        while pos < bytes.len() {
            match decode_frame(&bytes[pos..]) {
                Ok((body, total)) => {
                    let events = decode_batch(body).map_err(|reason| StoreError::Corrupt {
                        segment: n,
                        offset: pos as u64,
                        reason,
                    })?;
                    let body_start = pos + super::frame::FRAME_HEADER;
                    for ev in events {
                        let h = decode_header(ev.header_bytes).map_err(|reason| {
                            StoreError::Corrupt {
                                segment: n,
                                offset: (body_start + ev.rel_offset) as u64,
                                reason,
                            }
                        })?;
                        index
                            .insert(
                                &h,
                                n,
                                (body_start + ev.rel_offset) as u64,
                                ev.header_bytes.len() as u32,
                                ev.payload,
                            )
                            .map_err(|reason| StoreError::Corrupt {
                                segment: n,
                                offset: (body_start + ev.rel_offset) as u64,
                                reason,
                            })?;
                        replayed += 1;
                    }
                    pos += total;
                }
                Err(e) => {
                    if !is_last || intact_frame_after(&bytes[pos + 1..]) {
                        return Err(StoreError::Corrupt {
                            segment: n,
                            offset: pos as u64,
                            reason: format!(
                                "{e}; intact data follows, so this is damage, not a torn write"
                            ),
                        });
                    }
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(StoreError::io(format!("opening {}", path.display())))?;
                    f.set_len(pos as u64)
                        .and_then(|_| f.sync_all())
                        .map_err(StoreError::io(format!(
                            "truncating torn tail of {}",
                            path.display()
                        )))?;
                    truncated = Some((n, pos as u64, (bytes.len() - pos) as u64));
                    break;
                }
            }
        }
        end_offset = pos.min(bytes.len()) as u64;
    }
    Ok(Recovered {
        index,
        store_id,
        last_segment: last,
        end_offset,
        replayed,
        truncated,
    })
}

fn read_prefix(seg_dir: &Path, n: u32, len: usize) -> Result<Vec<u8>, StoreError> {
    use std::io::Read;
    let path = segment_path(seg_dir, n);
    let mut f = std::fs::File::open(&path)
        .map_err(StoreError::io(format!("opening {}", path.display())))?;
    let mut buf = Vec::with_capacity(len);
    f.by_ref()
        .take(len as u64)
        .read_to_end(&mut buf)
        .map_err(StoreError::io(format!("reading {}", path.display())))?;
    Ok(buf)
}

/// Checks every segment in `dir` without changing anything: frame CRCs,
/// event hashes, sequence continuity, entity chains, causation links and,
/// when given, agreement with an in-memory index.
pub(crate) fn verify_dir(
    dir: &Path,
    index: Option<&Index>,
) -> Result<super::VerifyReport, StoreError> {
    use crate::event::{hash_encoded, ChainLink, EventId};
    use std::collections::{HashMap, HashSet};
    let seg_dir = dir.join("segments");
    let mut rep = super::VerifyReport::default();
    let segments = list_segments(&seg_dir)?;
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
            std::fs::read(&path).map_err(StoreError::io(format!("reading {}", path.display())))?;
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
            let body_start = pos + super::frame::FRAME_HEADER;
            let events = match decode_batch(body) {
                Ok(e) => e,
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
                    match ix.entry(h.sequence) {
                        Some(e) if e.id == h.id && e.segment == n && e.offset == at as u64 => {}
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
