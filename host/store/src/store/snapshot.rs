//! Index snapshots: what reopening needs, so a large store does not rescan
//! every frame at each open.
//!
//! `index.snap` = `[magic "BPKSNAP4" 8][len u64][crc32 u32][body]`, body =
//! `[meta_len u32][postcard meta][entry; count]` with fixed 96-byte entries
//! (`BPKSNAP4` added each event's correlation, for the correlation index).
//! The meta holds a **proof**: for every segment the snapshot covers, its
//! length covered and the CRC-32 of those bytes. Opening trusts the snapshot
//! only when the segment files still hash to the proof (one sequential read
//! of the covered log, far cheaper than decoding it); a snapshot that is
//! damaged, from another store, older (`BPKSNAP2`, no proof; `BPKSNAP3`, no correlations) or whose proof
//! does not match is ignored and the index is rebuilt from the segments —
//! where any damage is then found frame by frame.

use super::disk::{Disk, DiskFile};
use super::index::{Entry, Index};
use super::le_bytes::{u128_at, u32_at, u64_at};
use super::Checkpoint;
use super::StoreError;
use crate::event::EventId;
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: [u8; 8] = *b"BPKSNAP4";
const ENTRY_LEN: usize = 96;
pub(crate) const FILE: &str = "index.snap";

#[derive(Serialize, Deserialize)]
struct Meta {
    store_id: u128,
    end_segment: u32,
    end_offset: u64,
    names: Vec<String>,
    keys: Vec<(String, u64)>,
    checkpoints: Vec<Checkpoint>,
    count: u64,
    proof: Vec<SegmentProof>,
}

/// What a snapshot saw of one segment: the first `len` bytes hashed to `crc`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentProof {
    pub segment: u32,
    pub len: u64,
    pub crc: u32,
}

/// A loaded snapshot: the index and the log position it covers.
pub(crate) struct Loaded {
    pub index: Index,
    pub end_segment: u32,
    pub end_offset: u64,
    /// One entry per covered segment, ascending, the last one being
    /// `end_segment` up to `end_offset`.
    pub proof: Vec<SegmentProof>,
}

fn put_entry(out: &mut Vec<u8>, e: &Entry) {
    out.extend_from_slice(&e.id.0.to_le_bytes());
    let (flag, c) = match e.causation {
        Some(c) => (1u8, c.0),
        None => (0, 0),
    };
    out.extend_from_slice(&c.to_le_bytes());
    out.extend_from_slice(&e.entity_seq.to_le_bytes());
    out.extend_from_slice(&e.offset.to_le_bytes());
    for v in [
        e.segment,
        e.header_len,
        e.payload_len,
        e.entity,
        e.scope,
        e.kind,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.push(flag);
    out.extend_from_slice(&e.frame_back.to_le_bytes());
    out.extend_from_slice(&[0u8; 3]);
    out.extend_from_slice(&e.correlation.0.to_le_bytes());
}

fn get_entry(b: &[u8]) -> Entry {
    let u128_at = |i| u128_at(b, i);
    let u64_at = |i| u64_at(b, i);
    let u32_at = |i| u32_at(b, i);
    Entry {
        id: EventId(u128_at(0)),
        causation: (b[72] == 1).then(|| EventId(u128_at(16))),
        correlation: EventId(u128_at(80)),
        entity_seq: u64_at(32),
        offset: u64_at(40),
        segment: u32_at(48),
        header_len: u32_at(52),
        payload_len: u32_at(56),
        entity: u32_at(60),
        scope: u32_at(64),
        kind: u32_at(68),
        frame_back: u32_at(73),
    }
}

/// Writes a snapshot of `index` covering the log up to
/// (`end_segment`, `end_offset`), atomically (tmp, fsync, rename, dir fsync).
pub(crate) fn save(
    disk: &dyn Disk,
    dir: &Path,
    store_id: u128,
    index: &Index,
    proof: Vec<SegmentProof>,
) -> Result<(), StoreError> {
    let last = proof.last().copied().ok_or_else(|| StoreError::Io {
        context: "writing index snapshot".into(),
        source: std::io::Error::other("a snapshot needs at least one segment"),
    })?;
    let (end_segment, end_offset) = (last.segment, last.len);
    let meta = Meta {
        store_id,
        end_segment,
        end_offset,
        names: index.names.names.iter().map(|s| s.to_string()).collect(),
        keys: index.keys.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        checkpoints: index.checkpoints.values().cloned().collect(),
        count: index.entries.len() as u64,
        proof,
    };
    let meta = postcard::to_stdvec(&meta).map_err(|e| StoreError::Io {
        context: "encoding index snapshot".into(),
        source: std::io::Error::other(e),
    })?;
    let mut body = Vec::with_capacity(4 + meta.len() + index.entries.len() * ENTRY_LEN);
    body.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    body.extend_from_slice(&meta);
    for e in &index.entries {
        put_entry(&mut body, e);
    }
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut head = Vec::with_capacity(20);
    head.extend_from_slice(&MAGIC);
    head.extend_from_slice(&(body.len() as u64).to_le_bytes());
    head.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let write = || -> std::io::Result<()> {
        let f = disk.create(&tmp, true)?;
        f.write_all_at(&head, 0)?;
        f.write_all_at(&body, head.len() as u64)?;
        f.sync()?;
        disk.rename(&tmp, &dir.join(FILE))?;
        disk.sync_dir(dir)
    };
    write().map_err(StoreError::io(format!(
        "writing index snapshot in {}",
        dir.display()
    )))
}

/// Loads the snapshot if there is a sound one for this store.
/// `while_building` runs on another thread while the index is rebuilt from
/// the entries, with the snapshot's proof (one per covered segment): the
/// caller checks the segments against it there, so the two costs of a
/// reopen — hashing the covered log and linking every entry — overlap.
/// Returns the loaded snapshot and what `while_building` returned.
///
/// The entries are streamed through one small buffer (not read whole: at
/// 10M events that was a gigabyte of peak memory); the CRC of the body is
/// checked at the end, before anything built from it is returned.
pub(crate) fn load<T: Send>(
    disk: &dyn Disk,
    dir: &Path,
    store_id: u128,
    while_building: impl FnOnce(&[SegmentProof]) -> T + Send,
) -> Option<(Loaded, T)> {
    let f = disk.open(&dir.join(FILE)).ok()?;
    let (meta, body_start, crc, want_crc) = decode_head(&*f, store_id)?;
    let proof = &meta.proof;
    // Taken by whichever thread runs it (the main one when no second
    // thread can be started).
    let task = std::sync::Mutex::new(Some(while_building));
    let run = || {
        let f = task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .expect("run once");
        f(proof)
    };
    std::thread::scope(|scope| {
        let check = std::thread::Builder::new()
            .name("batpak-open-check".into())
            .spawn_scoped(scope, run);
        let loaded = build(&meta, &*f, body_start, crc, want_crc);
        let checked = match check {
            // The check never panics on bad input; a panic is a bug.
            Ok(check) => check.join().expect("the snapshot check panicked"),
            Err(_) => run(),
        };
        loaded.map(|l| (l, checked))
    })
}

/// What an index snapshot says about the log before anything is built from
/// it: how far the log was acknowledged durable (the writer fsyncs the log
/// before it writes a snapshot). A read-only reader weighs it against the
/// segments it finds, and checks the whole snapshot's CRC only when that
/// matters (the log ends before it), so a read of a healthy store does not
/// pay for reading the snapshot.
pub(crate) struct Claim {
    file: std::sync::Arc<dyn DiskFile>,
    meta: Meta,
    body_start: u64,
    crc: crc32fast::Hasher,
    want_crc: u32,
}

impl Claim {
    /// The snapshot in `dir`, when its head and meta are sound (its body's
    /// CRC is not checked yet: [`Claim::is_sound`]). The file stays open,
    /// so a snapshot written later does not change what this one says.
    pub fn read(disk: &dyn Disk, dir: &Path) -> Option<Claim> {
        let file = disk.open(&dir.join(FILE)).ok()?;
        let (meta, body_start, crc, want_crc) = decode_head_of_any(&*file)?;
        Some(Claim {
            file,
            meta,
            body_start,
            crc,
            want_crc,
        })
    }

    /// The store the snapshot belongs to.
    pub fn store_id(&self) -> u128 {
        self.meta.store_id
    }

    /// The log position the snapshot covers and how many events it holds.
    pub fn end(&self) -> ((u32, u64), u64) {
        (
            (self.meta.end_segment, self.meta.end_offset),
            self.meta.count,
        )
    }

    /// True when the whole body hashes to the CRC in its head (read in
    /// chunks through one buffer): a damaged snapshot is no evidence.
    pub fn is_sound(&self) -> bool {
        const CHUNK: u64 = 4 << 20;
        let Some(end) = (self.meta.count)
            .checked_mul(ENTRY_LEN as u64)
            .and_then(|n| n.checked_add(self.body_start))
        else {
            return false;
        };
        let mut crc = self.crc.clone();
        let mut buf = vec![0u8; CHUNK.min(end - self.body_start) as usize];
        let mut at = self.body_start;
        while at < end {
            let n = CHUNK.min(end - at) as usize;
            if self.file.read_exact_at(&mut buf[..n], at).is_err() {
                return false;
            }
            crc.update(&buf[..n]);
            at += n as u64;
        }
        crc.finalize() == self.want_crc
    }
}

/// Reads the snapshot's frame head and meta. Returns the meta, where the
/// entries start, the CRC hasher fed with the body so far and the CRC the
/// whole body must have. `None` for anything but a sound snapshot head of
/// this store (never a panic, whatever the bytes; [`build`] checks the
/// entries and the CRC).
fn decode_head(f: &dyn DiskFile, store_id: u128) -> Option<(Meta, u64, crc32fast::Hasher, u32)> {
    decode_head_of_any(f).filter(|(meta, ..)| meta.store_id == store_id)
}

/// [`decode_head`] for whichever store the snapshot belongs to.
fn decode_head_of_any(f: &dyn DiskFile) -> Option<(Meta, u64, crc32fast::Hasher, u32)> {
    let total = f.len().ok()?;
    let mut head = [0u8; 24];
    if total < head.len() as u64 {
        return None;
    }
    f.read_exact_at(&mut head, 0).ok()?;
    if head[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(head[8..16].try_into().ok()?);
    let want_crc = u32::from_le_bytes(head[16..20].try_into().ok()?);
    if total < 20u64.checked_add(len)? {
        return None;
    }
    let meta_len = u32::from_le_bytes(head[20..24].try_into().ok()?) as u64;
    if meta_len.checked_add(4)? > len {
        return None;
    }
    let mut meta_bytes = vec![0u8; meta_len as usize];
    f.read_exact_at(&mut meta_bytes, 24).ok()?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[20..24]);
    crc.update(&meta_bytes);
    let meta: Meta = postcard::from_bytes(&meta_bytes).ok()?;
    let raw_len = len - 4 - meta_len;
    if raw_len != meta.count.checked_mul(ENTRY_LEN as u64)? {
        return None;
    }
    let proof_ok = meta
        .proof
        .last()
        .is_some_and(|p| p.segment == meta.end_segment && p.len == meta.end_offset)
        && meta
            .proof
            .windows(2)
            .all(|w| w[1].segment == w[0].segment + 1);
    if !proof_ok {
        return None;
    }
    Some((meta, 24 + meta_len, crc, want_crc))
}

/// Fills the id table with every entry's id in roughly the table's own
/// order: one random insert per event into a table of hundreds of megabytes
/// was half of a 10M-event reopen (a cache and TLB miss each). The ids are
/// first spread into bins by the top bits of their home bucket (a counting
/// sort), then inserted bin by bin, so the writes of one bin stay within a
/// small stretch of the table. Equal ids keep sequence order, so the last
/// one wins as it would inserted in order.
fn fill_ids(index: &mut Index) {
    const BIN_BITS: u32 = 12;
    let n = index.entries.len();
    if n < 1 << 16 {
        for (i, e) in index.entries.iter().enumerate() {
            index.by_id.insert(e.id, i as u64 + 1);
        }
        return;
    }
    // The table hashbrown allocates for `n`: buckets a power of two above
    // n × 8/7; an entry's home bucket is its hash masked to that.
    let buckets = (n * 8 / 7).next_power_of_two().max(1 << BIN_BITS);
    let shift = buckets.trailing_zeros() - BIN_BITS;
    let mask = buckets as u64 - 1;
    let hasher = *index.by_id.hasher();
    let bin = |id: &EventId| {
        use std::hash::BuildHasher;
        ((hasher.hash_one(id) & mask) >> shift) as usize
    };
    let mut starts = vec![0usize; (1 << BIN_BITS) + 1];
    for e in &index.entries {
        starts[bin(&e.id) + 1] += 1;
    }
    for b in 1..starts.len() {
        starts[b] += starts[b - 1];
    }
    let mut order: Vec<(EventId, u64)> = vec![(EventId(0), 0); n];
    for (i, e) in index.entries.iter().enumerate() {
        let b = bin(&e.id);
        order[starts[b]] = (e.id, i as u64 + 1);
        starts[b] += 1;
    }
    for (id, seq) in order {
        index.by_id.insert(id, seq);
    }
}

/// Rebuilds the index from a snapshot's meta and the `meta.count` entries
/// at `start` in `f`, read in chunks and hashed on the way; `None` unless
/// the body's CRC comes out as `want_crc`.
fn build(
    meta: &Meta,
    f: &dyn DiskFile,
    start: u64,
    mut crc: crc32fast::Hasher,
    want_crc: u32,
) -> Option<Loaded> {
    /// Entries per read: about 4 MiB.
    const CHUNK: usize = 43_690;
    let mut index = Index::default();
    for n in &meta.names {
        index.names.intern(n);
    }
    let names = index.names.names.len() as u32;
    let count = usize::try_from(meta.count).ok()?;
    index.entries.reserve(count);
    index.by_id.reserve(count);
    index.corr_next.reserve(count);
    index.corr_tail.reserve(count);
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
            index.entries.push(e);
        }
        done += n;
    }
    if crc.finalize() != want_crc {
        return None;
    }
    fill_ids(&mut index);
    for seq in 1..=count as u64 {
        let e = index.entries[seq as usize - 1];
        index.link_rest(&e, seq);
    }
    index.keys = meta.keys.iter().cloned().collect();
    index.checkpoints = meta
        .checkpoints
        .iter()
        .map(|c| (c.cursor.clone(), c.clone()))
        .collect();
    Some(Loaded {
        index,
        end_segment: meta.end_segment,
        end_offset: meta.end_offset,
        proof: meta.proof.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_through_fixed_layout() {
        let e = Entry {
            id: EventId(u128::MAX - 5),
            causation: Some(EventId(42)),
            correlation: EventId(u128::MAX - 9),
            entity_seq: 7,
            offset: 1 << 40,
            segment: 3,
            header_len: 99,
            payload_len: 100,
            entity: 1,
            scope: 2,
            kind: 3,
            frame_back: 17,
        };
        let mut b = Vec::new();
        put_entry(&mut b, &e);
        assert_eq!(b.len(), ENTRY_LEN);
        assert_eq!(get_entry(&b), e);
        let e2 = Entry {
            causation: None,
            ..e
        };
        b.clear();
        put_entry(&mut b, &e2);
        assert_eq!(get_entry(&b), e2);
    }

    /// A loaded snapshot links exactly what inserting the events in order
    /// did — also with the id table filled up front in table order, and
    /// with correlations naming earlier events, later events and no event.
    #[test]
    fn loaded_index_equals_the_index_built_in_order() {
        use crate::event::{Coordinate, EventHeader};
        // Above the size where ids are filled in table order.
        let n: u64 = 70_000;
        let seed = 0x5eed_u64;
        eprintln!("seed {seed:#x}");
        let id = |i: u64| {
            EventId(((i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed) as u128) << 20 | i as u128)
        };
        let mut index = Index::default();
        for s in 1..=n {
            let correlation = match s % 5 {
                0 => id(s),                                   // its own
                1 => id((s / 2).max(1)),                      // an earlier event
                2 if s + 7 <= n => id(s + 7),                 // a later event
                3 => EventId(1_000_000_000 + s as u128 % 97), // no event
                _ => id(s),
            };
            let h = EventHeader {
                id: id(s),
                sequence: s,
                entity_sequence: 1,
                coordinate: Coordinate::new(format!("e{}", s % 13), "s").unwrap(),
                kind: "k".into(),
                causation: (s % 3 == 0).then(|| id(s / 3)),
                correlation,
                timestamp_us: s,
                prev: None,
                idempotency_key: None,
                meta: Vec::new(),
            };
            index
                .insert(&h, 1, 100 + s * 10, 100 + s * 10, 8, b"")
                .unwrap();
        }
        let disk = crate::store::SimDisk::new(seed);
        let dir = Path::new("/snap");
        disk.create_dir_all(dir).unwrap();
        let proof = vec![SegmentProof {
            segment: 1,
            len: 100 + (n + 1) * 10,
            crc: 0,
        }];
        save(&disk, dir, 7, &index, proof).unwrap();
        let (loaded, ()) = load(&disk, dir, 7, |_| ()).expect("a sound snapshot");
        let l = loaded.index;
        assert_eq!(l.entries, index.entries);
        assert_eq!(l.by_id, index.by_id);
        assert_eq!(l.by_entity, index.by_entity);
        assert_eq!(l.children, index.children);
        assert_eq!(l.corr_next, index.corr_next);
        assert_eq!(l.corr_tail, index.corr_tail);
        assert_eq!(l.corr_foreign, index.corr_foreign);
        // A wrong store id is not this store's snapshot.
        assert!(load(&disk, dir, 8, |_| ()).is_none());
    }
}
