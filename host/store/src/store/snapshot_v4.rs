//! The previous index snapshot format, `BPKSNAP4`, read once to migrate a
//! store written by an older binary: its 96-byte entries (three 128-bit
//! ids, 64-bit offsets) are converted into the compact index, and the open
//! that loaded it writes a `BPKSNAP5` in its place (see [`super::snapshot`]).
//!
//! `BPKSNAP4` body = `[meta_len u32][postcard meta][entry; count]`, entry =
//! `id u128 | causation u128 | entity_seq u64 | offset u64 | segment u32 |
//! header_len u32 | payload_len u32 | entity u32 | scope u32 | kind u32 |
//! has_causation u8 | frame_back u32 | pad 3 | correlation u128`.

use super::disk::DiskFile;
use super::index::{Index, Raw};
use super::le_bytes::{u128_at, u32_at, u64_at};
use super::snapshot_proof::{Common, SegmentProof};
use super::Checkpoint;
use crate::event::EventId;
use serde::{Deserialize, Serialize};

pub(crate) const MAGIC: [u8; 8] = *b"BPKSNAP4";
pub(crate) const ENTRY_LEN: usize = 96;

/// The `BPKSNAP4` meta, field for field.
#[derive(Serialize, Deserialize)]
pub(crate) struct MetaV4 {
    store_id: u128,
    end_segment: u32,
    end_offset: u64,
    names: Vec<String>,
    keys: Vec<(String, u64)>,
    checkpoints: Vec<Checkpoint>,
    count: u64,
    proof: Vec<SegmentProof>,
}

impl MetaV4 {
    pub(crate) fn common(&self) -> Common {
        Common {
            store_id: self.store_id,
            end_segment: self.end_segment,
            end_offset: self.end_offset,
            count: self.count,
            proof: self.proof.clone(),
        }
    }
}

/// One `BPKSNAP4` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EntryV4 {
    id: EventId,
    causation: Option<EventId>,
    correlation: EventId,
    offset: u64,
    segment: u32,
    header_len: u32,
    payload_len: u32,
    entity: u32,
    scope: u32,
    kind: u32,
    frame_back: u32,
}

fn get_entry(b: &[u8]) -> EntryV4 {
    EntryV4 {
        id: EventId(u128_at(b, 0)),
        causation: (b[72] == 1).then(|| EventId(u128_at(b, 16))),
        correlation: EventId(u128_at(b, 80)),
        offset: u64_at(b, 40),
        segment: u32_at(b, 48),
        header_len: u32_at(b, 52),
        payload_len: u32_at(b, 56),
        entity: u32_at(b, 60),
        scope: u32_at(b, 64),
        kind: u32_at(b, 68),
        frame_back: u32_at(b, 73),
    }
}

/// Builds the compact index from a `BPKSNAP4` body (read in chunks, hashed
/// on the way); `None` unless every entry is consistent and the CRC comes
/// out as `want_crc`.
pub(crate) fn build(
    meta: &MetaV4,
    f: &dyn DiskFile,
    start: u64,
    mut crc: crc32fast::Hasher,
    want_crc: u32,
) -> Option<Index> {
    /// Entries per read: about 4 MiB.
    const CHUNK: usize = 43_690;
    let mut index = Index::default();
    for n in &meta.names {
        index.names.intern(n);
    }
    let names = index.names.names.len() as u32;
    if names as usize != meta.names.len() {
        return None;
    }
    let count = usize::try_from(meta.count).ok()?;
    let mut buf = vec![0u8; CHUNK.min(count.max(1)) * ENTRY_LEN];
    let mut done = 0usize;
    while done < count {
        let n = CHUNK.min(count - done);
        let bytes = &mut buf[..n * ENTRY_LEN];
        f.read_exact_at(bytes, start + (done * ENTRY_LEN) as u64)
            .ok()?;
        crc.update(bytes);
        for chunk in bytes.chunks_exact(ENTRY_LEN) {
            let e = get_entry(chunk);
            if e.entity >= names || e.scope >= names || e.kind >= names {
                return None;
            }
            if e.segment > meta.end_segment || e.frame_back as u64 > e.offset {
                return None;
            }
            let class = index.class_of(e.scope, e.kind);
            index
                .push(Raw {
                    id: e.id,
                    causation: e.causation,
                    correlation: e.correlation,
                    segment: e.segment,
                    offset: u32::try_from(e.offset).ok()?,
                    body_len: e.header_len.checked_add(e.payload_len)?,
                    frame_back: e.frame_back,
                    entity: e.entity,
                    class,
                })
                .ok()?;
        }
        done += n;
    }
    if crc.finalize() != want_crc {
        return None;
    }
    index.shrink_lists();
    index.keys = meta.keys.iter().cloned().collect();
    index.checkpoints = meta
        .checkpoints
        .iter()
        .map(|c| (c.cursor.clone(), c.clone()))
        .collect();
    Some(index)
}

/// Writes `index` as a `BPKSNAP4` snapshot, as the previous binary did (its
/// `save`, kept for the migration tests). The previous format stored header
/// and payload lengths apart; only their sum is kept now, written as the
/// header length with an empty payload (a reader of either adds them).
#[cfg(test)]
pub(crate) fn save_v4(
    disk: &dyn super::disk::Disk,
    dir: &std::path::Path,
    store_id: u128,
    index: &Index,
    proof: Vec<SegmentProof>,
) -> std::io::Result<()> {
    let last = *proof.last().expect("a proof");
    let meta = MetaV4 {
        store_id,
        end_segment: last.segment,
        end_offset: last.len,
        names: index.names.names.iter().map(|s| s.to_string()).collect(),
        keys: index.keys.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        checkpoints: index.checkpoints.values().cloned().collect(),
        count: index.last_sequence(),
        proof,
    };
    let meta = postcard::to_stdvec(&meta).map_err(std::io::Error::other)?;
    let mut body = Vec::new();
    body.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    body.extend_from_slice(&meta);
    for s in 1..=index.last_sequence() {
        let e = index.entry(s).expect("in range");
        let entity_seq = index
            .entity_seqs(e.entity)
            .partition_point(|&x| (x as u64) < s) as u64
            + 1;
        body.extend_from_slice(&e.id.0.to_le_bytes());
        body.extend_from_slice(&e.causation.map_or(0, |c| c.0).to_le_bytes());
        body.extend_from_slice(&entity_seq.to_le_bytes());
        body.extend_from_slice(&e.offset.to_le_bytes());
        for v in [e.segment, e.body_len, 0, e.entity, e.scope, e.kind] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        body.push(e.causation.is_some() as u8);
        body.extend_from_slice(&e.frame_back.to_le_bytes());
        body.extend_from_slice(&[0u8; 3]);
        body.extend_from_slice(&e.correlation.0.to_le_bytes());
    }
    let mut head = Vec::new();
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&(body.len() as u64).to_le_bytes());
    head.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let tmp = dir.join("index.snap.tmp");
    let f = disk.create(&tmp, true)?;
    f.write_all_at(&head, 0)?;
    f.write_all_at(&body, head.len() as u64)?;
    f.sync()?;
    disk.rename(&tmp, &dir.join(super::snapshot_proof::FILE))?;
    disk.sync_dir(dir)
}
