//! The durable marker: `DURABLE` records how far the log is known to be on
//! stable storage, so recovery can tell an acknowledged frame that was later
//! damaged (fail closed) from a torn write nobody was told about (cut).
//!
//! `[magic "BPKDUR01" 8][segment u32 LE][offset u64 LE][crc32 of the 20
//! bytes before u32 LE]`. It is rewritten in place *after* each fsync of the
//! log and never fsynced itself: whenever a version of it reaches the disk,
//! the log bytes it names reached the disk before it. A torn marker only
//! weakens the check (an older or no marker), never strengthens it; a
//! missing one in a store with events is a lost file, and recovery then
//! refuses to cut a damaged tail it can no longer judge (the index snapshot
//! is the other evidence, see `recovery.rs`).

use super::disk::{read_all, Disk, DiskFile};
use parking_lot::Mutex;
use std::path::Path;
use std::sync::Arc;

/// File name of the marker in the store directory.
pub(crate) const FILE: &str = "DURABLE";
const MAGIC: [u8; 8] = *b"BPKDUR01";
const LEN: usize = 24;

/// A log position: (segment, byte offset of the end of the durable frames).
pub(crate) type Position = (u32, u64);

fn encode(p: Position) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&p.0.to_le_bytes());
    b[12..20].copy_from_slice(&p.1.to_le_bytes());
    let c = crc32fast::hash(&b[..20]);
    b[20..].copy_from_slice(&c.to_le_bytes());
    b
}

/// Decodes a marker; `None` when it is absent, torn or not a marker.
pub(crate) fn decode(b: &[u8]) -> Option<Position> {
    if b.len() < LEN || b[..8] != MAGIC {
        return None;
    }
    if crc32fast::hash(&b[..20]).to_le_bytes() != b[20..24] {
        return None;
    }
    Some((
        u32::from_le_bytes(b[8..12].try_into().ok()?),
        u64::from_le_bytes(b[12..20].try_into().ok()?),
    ))
}

/// Reads the marker of the store in `dir`, if there is a sound one.
pub(crate) fn read(disk: &dyn Disk, dir: &Path) -> Option<Position> {
    decode(&read_all(disk, &dir.join(FILE)).ok()?)
}

/// What the store directory holds for a marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Marker {
    /// A sound marker: the log up to here was durable.
    At(Position),
    /// The file is there but holds no sound marker (never written, or torn
    /// by a power cut: it is never fsynced while the store runs).
    Unreadable,
    /// No `DURABLE` file. Every open creates it (and fsyncs the directory)
    /// before the first append, so in a store with events this is a lost
    /// file, not a crash — or a store written before the marker existed.
    Absent,
}

/// Reads the marker of the store in `dir`, telling a missing file from an
/// unreadable one.
pub(crate) fn read_state(disk: &dyn Disk, dir: &Path) -> Marker {
    match read_all(disk, &dir.join(FILE)) {
        Ok(b) => decode(&b).map_or(Marker::Unreadable, Marker::At),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Marker::Absent,
        Err(_) => Marker::Unreadable,
    }
}

/// The open marker file; positions only move forward.
#[derive(Debug)]
pub(crate) struct DurableMark {
    file: Arc<dyn DiskFile>,
    last: Mutex<Position>,
}

impl DurableMark {
    /// Opens (or creates) the marker of the store in `dir`.
    ///
    /// # Errors
    /// The disk failed.
    pub fn open(disk: &dyn Disk, dir: &Path) -> std::io::Result<DurableMark> {
        let path = dir.join(FILE);
        let file = match disk.open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let f = disk.create(&path, false)?;
                disk.sync_dir(dir)?;
                f
            }
            Err(e) => return Err(e),
        };
        Ok(DurableMark {
            file,
            last: Mutex::new((0, 0)),
        })
    }

    /// Records that the log up to `p` is durable (call after the fsync).
    ///
    /// # Errors
    /// The disk failed.
    pub fn record(&self, p: Position) -> std::io::Result<()> {
        let mut last = self.last.lock();
        if p <= *last {
            return Ok(());
        }
        self.file.write_all_at(&encode(p), 0)?;
        *last = p;
        Ok(())
    }

    /// Makes the marker itself durable (on clean close).
    ///
    /// # Errors
    /// The disk failed.
    pub fn sync(&self) -> std::io::Result<()> {
        let p = *self.last.lock();
        self.file.write_all_at(&encode(p), 0)?;
        self.file.sync()
    }
}
