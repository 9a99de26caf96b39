//! Index snapshots: what reopening needs, so a large store does not rescan
//! every frame at each open.
//!
//! `index.snap` = `[magic "BPKSNAP5" 8][len u64][crc32 u32][body]`, body =
//! `[meta_len u32][postcard meta][entry; count]` with fixed 44-byte entries
//! in the compact index's own terms (id, cause and correlation-head
//! sequences, 32-bit offset, body length, frame distance, entity, class;
//! see [`put_entry`]). The meta holds the names, (scope, kind) classes, the
//! segment table, the rare ids that name no earlier event, keys,
//! checkpoints and a **proof**: for every segment the snapshot covers, its
//! length covered and the CRC-32 of those bytes. Opening trusts the snapshot
//! only when the segment files still hash to the proof (one sequential read
//! of the covered log, far cheaper than decoding it); a snapshot that is
//! damaged, from another store, older than `BPKSNAP4` or whose proof does
//! not match is ignored and the index is rebuilt from the segments — where
//! any damage is then found frame by frame. A sound `BPKSNAP4` (the previous
//! format, [`super::snapshot_v4`]) is loaded and converted, and the open
//! then writes a `BPKSNAP5` in its place (the migration, once).

use super::disk::{Disk, DiskFile};
use super::id_table::IdTable;
use super::index::{Index, Raw, FOREIGN};
use super::le_bytes::{u128_at, u32_at};
use super::snapshot_v4;
use super::Checkpoint;
use super::StoreError;
use crate::event::EventId;
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: [u8; 8] = *b"BPKSNAP5";
const ENTRY_LEN: usize = 44;
pub(crate) use super::snapshot_proof::{Common, SegmentProof, FILE};

#[derive(Serialize, Deserialize)]
struct Meta {
    store_id: u128,
    end_segment: u32,
    end_offset: u64,
    names: Vec<String>,
    classes: Vec<(u32, u32)>,
    segments: Vec<(u32, u32)>,
    cause_foreign: Vec<(u32, u128)>,
    corr_foreign: Vec<(u128, u32)>,
    keys: Vec<(String, u64)>,
    checkpoints: Vec<Checkpoint>,
    count: u64,
    proof: Vec<SegmentProof>,
}

/// [`Meta`] as written: the same encoding, borrowing the index's names and
/// keys instead of copying them (a copy of every entity name was the peak
/// of a large bulk append's close).
#[derive(Serialize)]
struct MetaOut<'a> {
    store_id: u128,
    end_segment: u32,
    end_offset: u64,
    names: Names<'a>,
    classes: &'a [(u32, u32)],
    segments: &'a [(u32, u32)],
    cause_foreign: Vec<(u32, u128)>,
    corr_foreign: Vec<(u128, u32)>,
    keys: Keys<'a>,
    checkpoints: Vec<Checkpoint>,
    count: u64,
    proof: Vec<SegmentProof>,
}

/// The interned names, encoded as a sequence of strings.
struct Names<'a>(&'a [std::sync::Arc<str>]);

impl Serialize for Names<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|n| &**n))
    }
}

/// The idempotency keys, encoded as a sequence of (key, sequence).
struct Keys<'a>(&'a super::index::FastMap<String, u64>);

impl Serialize for Keys<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(k, v)| (k.as_str(), *v)))
    }
}

/// A loaded snapshot: the index and the log position it covers.
pub(crate) struct Loaded {
    pub index: Index,
    pub end_segment: u32,
    pub end_offset: u64,
    /// One entry per covered segment, ascending, the last one being
    /// `end_segment` up to `end_offset`.
    pub proof: Vec<SegmentProof>,
    /// The snapshot was in the previous format: the open writes it anew.
    pub outdated: bool,
}

/// A snapshot's meta, in the version its magic names.
enum AnyMeta {
    V4(snapshot_v4::MetaV4),
    V5(Meta),
}

impl AnyMeta {
    fn common(&self) -> Common {
        match self {
            AnyMeta::V4(m) => m.common(),
            AnyMeta::V5(m) => Common {
                store_id: m.store_id,
                end_segment: m.end_segment,
                end_offset: m.end_offset,
                count: m.count,
                proof: m.proof.clone(),
            },
        }
    }
    fn entry_len(&self) -> u64 {
        match self {
            AnyMeta::V4(_) => snapshot_v4::ENTRY_LEN as u64,
            AnyMeta::V5(_) => ENTRY_LEN as u64,
        }
    }
}

/// Fixed 44-byte entry: `id u128 | cause u32 | corr_head u32 | offset u32 |
/// body_len u32 | frame_back u32 | entity u32 | class u32`.
fn put_entry(out: &mut Vec<u8>, ix: &Index, i: usize) {
    out.extend_from_slice(&ix.ids[i].0.to_le_bytes());
    for v in [
        ix.cause[i],
        ix.corr[i],
        ix.offset[i],
        ix.body_len[i],
        ix.frame_back(i as u64 + 1),
        ix.entity[i],
        ix.class[i],
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Writes a snapshot of `index` covering the log up to the end of `proof`'s
/// last segment, atomically (tmp, fsync, rename, dir fsync). The entries are
/// streamed through one buffer of about 4 MiB (hashed on the way, the head
/// written last), never assembled whole.
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
    let meta = MetaOut {
        store_id,
        end_segment,
        end_offset,
        names: Names(&index.names.names),
        classes: &index.classes,
        segments: &index.segments,
        cause_foreign: index.cause_foreign.iter().map(|(s, c)| (*s, c.0)).collect(),
        corr_foreign: index.corr_foreign.iter().map(|(c, s)| (c.0, *s)).collect(),
        keys: Keys(&index.keys),
        checkpoints: index.checkpoints.values().cloned().collect(),
        count: index.last_sequence(),
        proof,
    };
    let meta = postcard::to_stdvec(&meta).map_err(|e| StoreError::Io {
        context: "encoding index snapshot".into(),
        source: std::io::Error::other(e),
    })?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let write = || -> std::io::Result<()> {
        let f = disk.create(&tmp, true)?;
        let mut crc = crc32fast::Hasher::new();
        // The meta's length and the meta, written as they are (not copied
        // into the entries' buffer).
        let len = (meta.len() as u32).to_le_bytes();
        crc.update(&len);
        crc.update(&meta);
        f.write_all_at(&len, 20)?;
        f.write_all_at(&meta, 24)?;
        let mut at = 24 + meta.len() as u64;
        let mut buf = Vec::with_capacity((4 << 20) + ENTRY_LEN);
        let n = index.ids.len();
        let mut i = 0;
        loop {
            while i < n && buf.len() < 4 << 20 {
                put_entry(&mut buf, index, i);
                i += 1;
            }
            crc.update(&buf);
            f.write_all_at(&buf, at)?;
            at += buf.len() as u64;
            buf.clear();
            if i == n {
                break;
            }
        }
        let mut head = Vec::with_capacity(20);
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&(at - 20).to_le_bytes());
        head.extend_from_slice(&crc.finalize().to_le_bytes());
        f.write_all_at(&head, 0)?;
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
/// The entries are streamed through one small buffer (not read whole); the
/// CRC of the body is checked at the end, before anything built from it is
/// returned.
pub(crate) fn load<T: Send>(
    disk: &dyn Disk,
    dir: &Path,
    store_id: u128,
    while_building: impl FnOnce(&[SegmentProof]) -> T + Send,
) -> Option<(Loaded, T)> {
    let f = disk.open(&dir.join(FILE)).ok()?;
    let head = decode_head(&*f)?;
    let common = head.meta.common();
    if common.store_id != store_id {
        return None;
    }
    let proof = &common.proof;
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
        let built = match &head.meta {
            AnyMeta::V5(meta) => build(meta, &*f, head.body_start, head.crc.clone(), head.want_crc),
            AnyMeta::V4(meta) => {
                snapshot_v4::build(meta, &*f, head.body_start, head.crc.clone(), head.want_crc)
            }
        };
        let loaded = built.map(|index| Loaded {
            index,
            end_segment: common.end_segment,
            end_offset: common.end_offset,
            proof: common.proof.clone(),
            outdated: matches!(head.meta, AnyMeta::V4(_)),
        });
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
/// pay for reading the snapshot. Either format (`BPKSNAP4` or `BPKSNAP5`)
/// is evidence.
pub(crate) struct Claim {
    file: std::sync::Arc<dyn DiskFile>,
    common: Common,
    entry_len: u64,
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
        let head = decode_head(&*file)?;
        Some(Claim {
            file,
            common: head.meta.common(),
            entry_len: head.meta.entry_len(),
            body_start: head.body_start,
            crc: head.crc,
            want_crc: head.want_crc,
        })
    }

    /// The store the snapshot belongs to.
    pub fn store_id(&self) -> u128 {
        self.common.store_id
    }

    /// The log position the snapshot covers and how many events it holds.
    pub fn end(&self) -> ((u32, u64), u64) {
        (
            (self.common.end_segment, self.common.end_offset),
            self.common.count,
        )
    }

    /// True when the whole body hashes to the CRC in its head (read in
    /// chunks through one buffer): a damaged snapshot is no evidence.
    pub fn is_sound(&self) -> bool {
        const CHUNK: u64 = 4 << 20;
        let Some(end) = (self.common.count)
            .checked_mul(self.entry_len)
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

/// A snapshot's head and meta, checked for shape.
struct Head {
    meta: AnyMeta,
    /// Where the entries start.
    body_start: u64,
    /// The CRC hasher fed with the body up to the entries.
    crc: crc32fast::Hasher,
    /// The CRC the whole body must have.
    want_crc: u32,
}

/// Reads the snapshot's frame head and meta, in either format. `None` for
/// anything but a sound snapshot head (never a panic, whatever the bytes;
/// the builders check the entries and the CRC).
fn decode_head(f: &dyn DiskFile) -> Option<Head> {
    let total = f.len().ok()?;
    let mut head = [0u8; 24];
    if total < head.len() as u64 {
        return None;
    }
    f.read_exact_at(&mut head, 0).ok()?;
    let v5 = match &head[..8] {
        m if *m == MAGIC => true,
        m if *m == snapshot_v4::MAGIC => false,
        _ => return None,
    };
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
    let meta = if v5 {
        AnyMeta::V5(postcard::from_bytes(&meta_bytes).ok()?)
    } else {
        AnyMeta::V4(postcard::from_bytes(&meta_bytes).ok()?)
    };
    let c = meta.common();
    let raw_len = len - 4 - meta_len;
    if raw_len != c.count.checked_mul(meta.entry_len())? {
        return None;
    }
    let proof_ok = c
        .proof
        .last()
        .is_some_and(|p| p.segment == c.end_segment && p.len == c.end_offset)
        && c.proof.windows(2).all(|w| w[1].segment == w[0].segment + 1);
    if !proof_ok {
        return None;
    }
    Some(Head {
        meta,
        body_start: 24 + meta_len,
        crc,
        want_crc,
    })
}

/// Rebuilds the index from a snapshot's meta and the `meta.count` entries
/// at `start` in `f`, read in chunks and hashed on the way; `None` unless
/// every entry is consistent and the body's CRC comes out as `want_crc`.
fn build(
    meta: &Meta,
    f: &dyn DiskFile,
    start: u64,
    mut crc: crc32fast::Hasher,
    want_crc: u32,
) -> Option<Index> {
    /// Entries per read: about 4 MiB.
    const CHUNK: usize = 95_325;
    let mut index = Index::default();
    for n in &meta.names {
        index.names.intern(n);
    }
    let names = index.names.names.len() as u32;
    if names as usize != meta.names.len() {
        return None;
    }
    for (i, &(s, k)) in meta.classes.iter().enumerate() {
        if s >= names || k >= names || index.class_of(s, k) != i as u32 {
            return None;
        }
    }
    let classes = index.classes.len() as u32;
    let count = u32::try_from(meta.count).ok()?;
    // The segment table: ascending, starting at sequence 1, within the log.
    let segs = &meta.segments;
    let segs_ok = (count == 0 || segs.first().is_some_and(|s| s.1 == 1))
        && segs.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
        && segs
            .last()
            .is_none_or(|s| s.0 <= meta.end_segment && s.1 <= count);
    if !segs_ok {
        return None;
    }
    index.segments = segs.clone();
    index.cause_foreign = meta
        .cause_foreign
        .iter()
        .map(|&(s, c)| (s, EventId(c)))
        .collect();
    for &(c, h) in &meta.corr_foreign {
        index.corr_foreign.insert(EventId(c), h);
        index.corr_foreign_head.insert(h, EventId(c));
    }
    let n = count as usize;
    index.ids.reserve_exact(n);
    index.cause.reserve_exact(n);
    index.corr.reserve_exact(n);
    index.corr_next.reserve_exact(n);
    index.offset.reserve_exact(n);
    index.body_len.reserve_exact(n);
    index.frame.reserve_exact(n);
    index.entity.reserve_exact(n);
    index.class.reserve_exact(n);
    let mut buf = vec![0u8; CHUNK.min(n.max(1)) * ENTRY_LEN];
    let mut done = 0usize;
    let mut foreign_causes = 0usize;
    while done < n {
        let k = CHUNK.min(n - done);
        let bytes = &mut buf[..k * ENTRY_LEN];
        f.read_exact_at(bytes, start + (done * ENTRY_LEN) as u64)
            .ok()?;
        crc.update(bytes);
        for b in bytes.chunks_exact(ENTRY_LEN) {
            let seq = done as u32 + 1;
            let r = Raw {
                id: EventId(u128_at(b, 0)),
                causation: None,
                correlation: EventId(0),
                segment: 0,
                offset: u32_at(b, 24),
                body_len: u32_at(b, 28),
                frame_back: u32_at(b, 32),
                entity: u32_at(b, 36),
                class: u32_at(b, 40),
            };
            let (cause, head) = (u32_at(b, 16), u32_at(b, 20));
            if r.entity >= names || r.class >= classes || r.frame_back > r.offset {
                return None;
            }
            match cause {
                0 => {}
                FOREIGN => {
                    let c = *index.cause_foreign.get(&seq)?;
                    index.children_foreign.entry(c).or_default().push(seq);
                    foreign_causes += 1;
                }
                c if c < seq => index.add_child(c, seq),
                _ => return None,
            }
            // A head is the event itself or an earlier head.
            if head == 0 || head > seq || (head < seq && index.corr[head as usize - 1] != head) {
                return None;
            }
            super::seq_list::push(&mut index.ids, r.id);
            index.push_columns(seq, cause, head, &r);
            done += 1;
        }
    }
    if crc.finalize() != want_crc
        || foreign_causes != index.cause_foreign.len()
        || index
            .corr_foreign_head
            .keys()
            .any(|&h| h == 0 || h > count || index.corr[h as usize - 1] != h)
    {
        return None;
    }
    index.by_id = IdTable::build(&index.ids);
    index.shrink_lists();
    index.keys = meta.keys.iter().cloned().collect();
    index.checkpoints = meta
        .checkpoints
        .iter()
        .map(|c| (c.cursor.clone(), c.clone()))
        .collect();
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Coordinate, EventHeader};

    /// An index of `n` events with correlations naming earlier events,
    /// later events and no event, causes, and two segments.
    pub(crate) fn sample_index(n: u64, seed: u64) -> Index {
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
                kind: format!("k{}", s % 3),
                causation: (s % 3 == 0).then(|| id(s / 3)),
                correlation,
                timestamp_us: s,
                prev: None,
                idempotency_key: None,
                meta: Default::default(),
            };
            let segment = if s <= n / 2 { 1 } else { 2 };
            index
                .insert(&h, segment, 100 + s * 10, 100 + s * 10, 8, b"")
                .unwrap();
        }
        index
    }

    /// Every query the index answers, for comparing two indexes.
    pub(crate) fn assert_same(l: &Index, index: &Index) {
        assert_eq!(l.last_sequence(), index.last_sequence());
        for s in 1..=index.last_sequence() {
            let e = index.entry(s).unwrap();
            assert_eq!(l.entry(s), Some(e), "entry {s}");
            assert_eq!(l.seq_of(e.id), index.seq_of(e.id));
            assert_eq!(
                l.correlated(e.correlation).collect::<Vec<_>>(),
                index.correlated(e.correlation).collect::<Vec<_>>()
            );
            assert_eq!(l.children_of(e.id), index.children_of(e.id));
            assert_eq!(l.entity_seqs(e.entity), index.entity_seqs(e.entity));
        }
        assert_eq!(l.by_entity, index.by_entity);
        assert_eq!(l.children, index.children);
        assert_eq!(l.children_many, index.children_many);
        assert_eq!(l.corr_next, index.corr_next);
        assert_eq!(l.corr_tail, index.corr_tail);
        assert_eq!(l.corr_foreign, index.corr_foreign);
        assert_eq!(l.keys, index.keys);
    }

    /// A loaded snapshot answers exactly what inserting the events in order
    /// did — with the id table built in table order, and with correlations
    /// naming earlier events, later events and no event.
    #[test]
    fn loaded_index_equals_the_index_built_in_order() {
        // Above the size where ids are filled in table order.
        let n: u64 = 70_000;
        let seed = 0x5eed_u64;
        eprintln!("seed {seed:#x}");
        let index = sample_index(n, seed);
        let disk = crate::store::SimDisk::new(seed);
        let dir = Path::new("/snap");
        disk.create_dir_all(dir).unwrap();
        let proof = vec![
            SegmentProof {
                segment: 1,
                len: 100,
                crc: 0,
            },
            SegmentProof {
                segment: 2,
                len: 100 + (n + 1) * 10,
                crc: 0,
            },
        ];
        save(&disk, dir, 7, &index, proof).unwrap();
        let (loaded, ()) = load(&disk, dir, 7, |_| ()).expect("a sound snapshot");
        assert!(!loaded.outdated);
        assert_same(&loaded.index, &index);
        // A wrong store id is not this store's snapshot.
        assert!(load(&disk, dir, 8, |_| ()).is_none());
        // A damaged entry is no snapshot.
        let mut bytes = disk.read_file(&dir.join(FILE)).unwrap();
        let at = bytes.len() - 3;
        bytes[at] ^= 1;
        disk.write_file(&dir.join(FILE), &bytes);
        assert!(load(&disk, dir, 7, |_| ()).is_none());
    }
}
