//! Segment files and the batch body codec.
//!
//! A segment is `segments/NNNNNNNN.seg`: a 32-byte header (magic, the store's
//! id, the segment number, a CRC of those) followed by frames. A frame body holds one batch:
//! `[tag 1][count u32]` then per event
//! `[header_len u32][postcard header][hash 32][payload_len u32][payload]`.

use super::disk::{Disk, DiskFile};
use super::le_bytes::{u128_at, u32_at, u64_at};
use super::StoreError;
use crate::event::EventHeader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Segment header length.
pub(crate) const SEGMENT_HEADER: u64 = 32;
/// Current segment magic: the header's last 4 bytes are a CRC32 of its first
/// 28, so a damaged store id or number is found even in a store with one
/// segment (nothing else to compare it with).
const SEGMENT_MAGIC: [u8; 8] = *b"BPKSEG02";
/// Segments written before the header CRC: the last 4 bytes are zero.
const SEGMENT_MAGIC_V1: [u8; 8] = *b"BPKSEG01";
/// Body tag of a batch frame.
pub(crate) const TAG_BATCH: u8 = 1;
/// Body tag of one part of a bulk transaction: `[2][count u32][txn u64]
/// [part u32]` then events as in a batch. Its events count only once the
/// transaction's commit frame follows.
pub(crate) const TAG_TXN_PART: u8 = 2;
/// Body tag of a bulk transaction's commit: `[3][txn u64][parts u32]
/// [events u64]`. Written after every part is durable.
pub(crate) const TAG_TXN_COMMIT: u8 = 3;
/// Body tag of a bulk transaction's abort: `[4][txn u64][parts u32]
/// [events u64]`: the parts before it are dead (never read as events).
pub(crate) const TAG_TXN_ABORT: u8 = 4;
/// Bytes of a part body before its events.
pub(crate) const PART_PREFIX: usize = 1 + 4 + 8 + 4;
/// Bytes of a commit or abort body.
pub(crate) const END_BODY: usize = 1 + 8 + 4 + 8;

/// Path of segment `n` in `dir`.
pub(crate) fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.seg"))
}

/// Segment numbers present in `dir`, ascending.
pub(crate) fn list_segments(disk: &dyn Disk, dir: &Path) -> Result<Vec<u32>, StoreError> {
    let mut out = Vec::new();
    let names = disk
        .list(dir)
        .map_err(StoreError::io(format!("listing {}", dir.display())))?;
    for name in names {
        if let Some(stem) = name.strip_suffix(".seg") {
            if let Ok(n) = stem.parse::<u32>() {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Encodes a segment header.
pub(crate) fn segment_header(store_id: u128, n: u32) -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..24].copy_from_slice(&store_id.to_le_bytes());
    h[24..28].copy_from_slice(&n.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header; returns the store id.
pub(crate) fn check_segment_header(bytes: &[u8], n: u32) -> Result<u128, String> {
    if bytes.len() < SEGMENT_HEADER as usize {
        return Err("segment header is truncated".into());
    }
    let tail = u32_at(bytes, 28);
    if bytes[..8] == SEGMENT_MAGIC {
        let crc = crc32fast::hash(&bytes[..28]);
        if tail != crc {
            return Err(format!(
                "segment header checksum mismatch (stored {tail:08x}, computed {crc:08x}): its store id or number is damaged"
            ));
        }
    } else if bytes[..8] == SEGMENT_MAGIC_V1 {
        if tail != 0 {
            return Err("segment header's reserved bytes are not zero".into());
        }
    } else {
        return Err("not a batpak segment (bad magic)".into());
    }
    let id = u128_at(bytes, 8);
    let num = u32_at(bytes, 24);
    if num != n {
        return Err(format!("header says segment {num}, file name says {n}"));
    }
    Ok(id)
}

/// Creates segment `n` with its header, durably (file and directory synced).
pub(crate) fn create_segment(
    disk: &dyn Disk,
    dir: &Path,
    store_id: u128,
    n: u32,
) -> Result<Arc<dyn DiskFile>, StoreError> {
    let path = segment_path(dir, n);
    let f = disk
        .create(&path, false)
        .map_err(StoreError::io(format!("creating {}", path.display())))?;
    f.write_all_at(&segment_header(store_id, n), 0)
        .and_then(|_| f.sync())
        .map_err(StoreError::io(format!("writing {}", path.display())))?;
    disk.sync_dir(dir).map_err(StoreError::io(format!(
        "syncing directory {}",
        dir.display()
    )))?;
    Ok(f)
}

/// One event decoded from a batch body; offsets are relative to the body.
pub(crate) struct RawEvent<'a> {
    /// Offset of the `header_len` field within the body.
    pub rel_offset: usize,
    pub header_bytes: &'a [u8],
    pub hash: [u8; 32],
    pub payload: &'a [u8],
}

impl RawEvent<'_> {
    /// Bytes this event occupies in the body.
    pub fn encoded_len(&self) -> usize {
        4 + self.header_bytes.len() + 32 + 4 + self.payload.len()
    }
}

/// What a frame body holds.
pub(crate) enum Body<'a> {
    /// A batch: events that count as soon as the frame is intact.
    Batch(Vec<RawEvent<'a>>),
    /// Part `part` (from 0) of bulk transaction `txn`.
    Part {
        txn: u64,
        part: u32,
        events: Vec<RawEvent<'a>>,
    },
    /// Transaction `txn` of `parts` parts and `events` events is committed.
    Commit { txn: u64, parts: u32, events: u64 },
    /// Transaction `txn` is abandoned: its parts never count.
    Abort { txn: u64, parts: u32, events: u64 },
}

/// Decodes a frame body of any kind.
pub(crate) fn decode_body(body: &[u8]) -> Result<Body<'_>, String> {
    match body.first() {
        Some(&TAG_BATCH) => decode_batch(body).map(Body::Batch),
        Some(&TAG_TXN_PART) if body.len() >= PART_PREFIX => Ok(Body::Part {
            txn: u64_at(body, 5),
            part: u32_at(body, 13),
            events: decode_events(body, PART_PREFIX)?,
        }),
        Some(&t @ (TAG_TXN_COMMIT | TAG_TXN_ABORT)) if body.len() == END_BODY => {
            let (txn, parts, events) = (u64_at(body, 1), u32_at(body, 9), u64_at(body, 13));
            Ok(if t == TAG_TXN_COMMIT {
                Body::Commit { txn, parts, events }
            } else {
                Body::Abort { txn, parts, events }
            })
        }
        _ => Err("frame body is not a batch, transaction part, commit or abort".into()),
    }
}

/// The body of a commit (`commit`) or abort frame.
pub(crate) fn end_body(commit: bool, txn: u64, parts: u32, events: u64) -> [u8; END_BODY] {
    let mut b = [0u8; END_BODY];
    b[0] = if commit {
        TAG_TXN_COMMIT
    } else {
        TAG_TXN_ABORT
    };
    b[1..9].copy_from_slice(&txn.to_le_bytes());
    b[9..13].copy_from_slice(&parts.to_le_bytes());
    b[13..21].copy_from_slice(&events.to_le_bytes());
    b
}

/// Walks the events of a batch body.
pub(crate) fn decode_batch(body: &[u8]) -> Result<Vec<RawEvent<'_>>, String> {
    if body.len() < 5 || body[0] != TAG_BATCH {
        return Err("frame body is not a batch".into());
    }
    decode_events(body, 5)
}

/// Walks the events of a batch or part body whose events start at `pos`
/// (the count is at offset 1 in both).
fn decode_events(body: &[u8], mut pos: usize) -> Result<Vec<RawEvent<'_>>, String> {
    let count = u32_at(body, 1) as usize;
    let mut out = Vec::with_capacity(count.min(1 << 16));
    for i in 0..count {
        let ev = decode_event_at(body, pos).map_err(|e| format!("event {i} of batch: {e}"))?;
        pos += ev.encoded_len();
        out.push(ev);
    }
    if pos != body.len() {
        return Err(format!(
            "{} trailing bytes after the batch's events",
            body.len() - pos
        ));
    }
    Ok(out)
}

/// Decodes the event whose `header_len` field is at `pos` in `buf`.
pub(crate) fn decode_event_at(buf: &[u8], pos: usize) -> Result<RawEvent<'_>, String> {
    let rd_u32 = |at: usize| -> Result<usize, String> {
        buf.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| "event runs past the end of its frame".to_string())
    };
    let hlen = rd_u32(pos)?;
    let h0 = pos + 4;
    let header_bytes = buf
        .get(h0..h0 + hlen)
        .ok_or("event header runs past its frame")?;
    let hash: [u8; 32] = buf
        .get(h0 + hlen..h0 + hlen + 32)
        .ok_or("event hash runs past its frame")?
        .try_into()
        .expect("32 bytes");
    let plen = rd_u32(h0 + hlen + 32)?;
    let p0 = h0 + hlen + 36;
    let payload = buf
        .get(p0..p0 + plen)
        .ok_or("event payload runs past its frame")?;
    Ok(RawEvent {
        rel_offset: pos,
        header_bytes,
        hash,
        payload,
    })
}

/// Decodes a postcard event header.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<EventHeader, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("undecodable event header: {e}"))
}

/// Appends one encoded event (header already encoded) to a batch body.
pub(crate) fn push_event(body: &mut Vec<u8>, header: &[u8], hash: &[u8; 32], payload: &[u8]) {
    body.extend_from_slice(&(header.len() as u32).to_le_bytes());
    body.extend_from_slice(header);
    body.extend_from_slice(hash);
    body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    body.extend_from_slice(payload);
}
