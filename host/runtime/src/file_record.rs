//! File records: which component a plugin file holds, remembered by the
//! file's identity and change stamps, so a load of an unchanged file skips
//! reading and hashing it (for the 18 MB Python component 6–15 ms, measured
//! under load, of a cached load that otherwise takes about 5).
//!
//! **Layout**: `<cache dir>/files/<slot>`, one record per plugin path
//! (`slot` hashes the absolute path, so hot swaps that replace the file
//! rewrite the same record instead of adding one). A record holds the
//! file's device, inode, size, mtime and ctime as seen on the descriptor
//! the content was read from, the blake3 digest of that content, the
//! component's length, memory and table counts (what the structure scan
//! found, checked again against the limits of the loading runtime), and a
//! checksum of all that. Written to a temporary file and renamed into
//! place, so a reader sees a whole record or the previous one; a damaged
//! record fails its checksum and is a miss. The directory and records are
//! checked like cache entries (owner-only, regular files, links not
//! followed).
//!
//! **Why a match proves the content unchanged.** A load opens the file,
//! `fstat`s the descriptor, and trusts the record only if device, inode,
//! size, mtime and ctime are all equal. The kernel sets a file's ctime to
//! the current time on every change of its content or metadata (write,
//! truncate, `utimes`, chmod, a rename of it) and no user-space call can
//! set it, so `touch -d` cannot hide a rewrite; a file replaced by a
//! rename is another inode (and a reused inode number comes with a new
//! ctime). What remains is the timestamp granularity: two changes within
//! one clock tick (a few ms) can leave the same ctime, so a record taken
//! between them would match content it never hashed (git's "racily clean"
//! entries). Hence a record is written only when the file's ctime is at
//! least [`SETTLED`] older than the moment *before* the descriptor was
//! opened: every change after that moment gets a later ctime, and the
//! content read afterwards is the content of that stamp, or the stamp is
//! gone for good (a change during the read moves the ctime past the
//! recorded one). A file changed less than [`SETTLED`] ago is simply read
//! and hashed, as before. The residual risks: the one the compile cache's
//! own check carries, the system clock set back (root) so that a later
//! change lands on the very nanosecond recorded; and a file written through
//! a shared writable memory mapping, whose ctime the kernel moves on the
//! first write to each clean page rather than on every write, so a process
//! that keeps such a mapping of a plugin file and writes to it while the
//! file is loaded could leave a record of content it changed since (git's
//! index has the same blind spot). Toolchains write plugin files with
//! `write` or as a new file renamed into place; any later ordinary write,
//! or a rename, moves the stamps again.
//!
//! The argument needs a filesystem whose ctime the kernel keeps, to the
//! tick: records are written and trusted only on local filesystems known
//! to (ext2/3/4, xfs, btrfs, tmpfs, ramfs, overlayfs, f2fs, zfs). On NFS, FUSE,
//! 9p, virtiofs, vfat and the rest a file's stamps may be cached,
//! synthesised or coarse, so every load there reads and hashes the file.

use super::cache_dir::{ctime_ns, mtime_ns, open_dir, open_in, private, unique};
use std::fs::{File, Metadata};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How much older than the moment its file was opened a file's ctime must
/// be before its content is recorded: far above the kernel's timestamp
/// tick (1–10 ms) on the filesystems records are kept on.
pub(crate) const SETTLED: Duration = Duration::from_secs(1);
/// Most records kept; past it the least recently used go first.
const MAX_RECORDS: usize = 4096;
/// The directory of records inside the cache directory.
pub(crate) const FILES_DIR: &str = "files";
const MAGIC: [u8; 8] = *b"BPKFREC1";
const BODY_LEN: usize = 8 + 8 + 8 + 8 + 16 + 16 + 32 + 8 + 4 + 4;
const RECORD_LEN: usize = BODY_LEN + 16;
const TMP_PREFIX: &str = ".tmp-";

/// What a record says about a file: its content's digest and what the
/// structure scan found in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Known {
    /// blake3 hex digest of the component bytes.
    pub(crate) digest: String,
    /// Length of the component bytes (after parsing component text).
    pub(crate) len: u64,
    /// Linear memories defined by its core modules.
    pub(crate) memories: u32,
    /// Tables defined by its core modules.
    pub(crate) tables: u32,
}

/// The stamps of a file that any change to it moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime_ns: mtime_ns(m),
            ctime_ns: ctime_ns(m),
        }
    }
}

fn encode(stamp: &Stamp, known: &Known) -> Option<Vec<u8>> {
    let mut digest = [0u8; 32];
    if known.digest.len() != 64 {
        return None;
    }
    for (i, d) in digest.iter_mut().enumerate() {
        *d = u8::from_str_radix(known.digest.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    let mut b = Vec::with_capacity(RECORD_LEN);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&stamp.dev.to_le_bytes());
    b.extend_from_slice(&stamp.ino.to_le_bytes());
    b.extend_from_slice(&stamp.size.to_le_bytes());
    b.extend_from_slice(&stamp.mtime_ns.to_le_bytes());
    b.extend_from_slice(&stamp.ctime_ns.to_le_bytes());
    b.extend_from_slice(&digest);
    b.extend_from_slice(&known.len.to_le_bytes());
    b.extend_from_slice(&known.memories.to_le_bytes());
    b.extend_from_slice(&known.tables.to_le_bytes());
    let check = blake3::hash(&b);
    b.extend_from_slice(&check.as_bytes()[..16]);
    Some(b)
}

fn decode(b: &[u8]) -> Option<(Stamp, Known)> {
    if b.len() != RECORD_LEN || b[..8] != MAGIC {
        return None;
    }
    let (body, check) = b.split_at(BODY_LEN);
    if blake3::hash(body).as_bytes()[..16] != *check {
        return None;
    }
    let u64_at = |at: usize| body[at..at + 8].try_into().ok().map(u64::from_le_bytes);
    let i128_at = |at: usize| body[at..at + 16].try_into().ok().map(i128::from_le_bytes);
    let u32_at = |at: usize| body[at..at + 4].try_into().ok().map(u32::from_le_bytes);
    let stamp = Stamp {
        dev: u64_at(8)?,
        ino: u64_at(16)?,
        size: u64_at(24)?,
        mtime_ns: i128_at(32)?,
        ctime_ns: i128_at(48)?,
    };
    let known = Known {
        digest: batpak_store::hex(&body[64..96]),
        len: u64_at(96)?,
        memories: u32_at(104)?,
        tables: u32_at(108)?,
    };
    Some((stamp, known))
}

/// Whether `file` lives on a filesystem whose ctime the kernel maintains
/// to the tick (see the module docs).
fn stamps_kept(file: &File) -> bool {
    // Magic numbers from <linux/magic.h> (zfs: its own).
    const KEPT: [u32; 8] = [
        0xEF53,      // ext2, ext3, ext4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0x794C_7630, // overlayfs
        0xF2F5_2010, // f2fs
        0x2FC1_2FC1, // zfs
        0x8584_58F6, // ramfs
    ];
    let mut s = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `file` is an open descriptor and `s` is writable memory of
    // the right type for the duration of the call.
    if unsafe { libc::fstatfs(file.as_raw_fd(), s.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstatfs succeeded, so it filled `s`.
    let s = unsafe { s.assume_init() };
    // `f_type` is a signed or unsigned word by platform; the magic numbers
    // are 32-bit.
    #[allow(clippy::unnecessary_cast)]
    let t = s.f_type as u64 as u32;
    KEPT.contains(&t)
}

/// The file records of one compile cache directory.
#[derive(Clone, Debug)]
pub(crate) struct FileRecords {
    dir: PathBuf,
}

impl FileRecords {
    /// The records kept in `cache_dir` (the compile cache's directory,
    /// whose checks also cover them).
    pub(crate) fn new(cache_dir: &Path) -> FileRecords {
        FileRecords {
            dir: cache_dir.join(FILES_DIR),
        }
    }

    fn slot(path: &Path) -> String {
        let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let mut h = blake3::Hasher::new();
        h.update(std::os::unix::ffi::OsStrExt::as_bytes(abs.as_os_str()));
        h.finalize().to_hex()[..32].to_string()
    }

    /// What the record of `path` says, when it describes exactly the file
    /// opened as `file` with metadata `meta` (taken from that descriptor).
    pub(crate) fn lookup(&self, path: &Path, file: &File, meta: &Metadata) -> Option<Known> {
        if !meta.is_file() || !stamps_kept(file) {
            return None;
        }
        let d = open_dir(&self.dir).ok()?;
        let dm = d.metadata().ok()?;
        if !private(&dm) || dm.mode() & 0o077 != 0 {
            return None;
        }
        let mut f = open_in(&d, &Self::slot(path)).ok()?;
        let fm = f.metadata().ok()?;
        if !fm.is_file() || !private(&fm) {
            return None;
        }
        let mut raw = Vec::with_capacity(RECORD_LEN);
        (&mut f)
            .take(RECORD_LEN as u64 + 1)
            .read_to_end(&mut raw)
            .ok()?;
        let (stamp, known) = decode(&raw)?;
        if stamp != Stamp::of(meta) {
            return None;
        }
        // Least recently used: a hit refreshes the record's mtime.
        let _ = f.set_modified(SystemTime::now());
        Some(known)
    }

    /// Records that `path`, opened as `file` with metadata `meta` (taken
    /// from that descriptor after `opened_at`), holds `known` — when that
    /// is sound (see the module docs): the file's ctime is at least
    /// [`SETTLED`] older than `opened_at`, and its filesystem keeps
    /// stamps. Failing to write is only a later miss, so it is not
    /// reported.
    pub(crate) fn remember(
        &self,
        path: &Path,
        file: &File,
        meta: &Metadata,
        opened_at: SystemTime,
        known: &Known,
    ) {
        let stamp = Stamp::of(meta);
        let Ok(since_epoch) = opened_at.duration_since(SystemTime::UNIX_EPOCH) else {
            return;
        };
        let settled_before = since_epoch.as_nanos() as i128 - SETTLED.as_nanos() as i128;
        if stamp.ctime_ns >= settled_before || !meta.is_file() || !stamps_kept(file) {
            return;
        }
        let Some(bytes) = encode(&stamp, known) else {
            return;
        };
        let _ = self.write(&Self::slot(path), &bytes);
    }

    fn write(&self, slot: &str, bytes: &[u8]) -> std::io::Result<()> {
        let parent = self
            .dir
            .parent()
            .ok_or_else(|| std::io::Error::other("no cache directory"))?;
        // Only inside a cache directory that is there and owner-only (the
        // compile cache made it so, or refused it).
        let top = std::fs::metadata(parent)?;
        if !private(&top) || top.mode() & 0o077 != 0 {
            return Err(std::io::Error::other("cache directory not owner-only"));
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let d = open_dir(&self.dir)?;
        let dm = d.metadata()?;
        if !private(&dm) || dm.mode() & 0o077 != 0 {
            return Err(std::io::Error::other("records directory not owner-only"));
        }
        let tmp = self.dir.join(format!("{TMP_PREFIX}{}", unique()));
        let result = (|| {
            let mut f = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(bytes)?;
            drop(f);
            std::fs::rename(&tmp, self.dir.join(slot))
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Keeps at most [`MAX_RECORDS`] records, dropping the least recently
    /// used, and removes temporary files older than `stale`.
    pub(crate) fn prune(&self, stale: Duration) {
        self.prune_to(MAX_RECORDS, stale);
    }

    fn prune_to(&self, max_records: usize, stale: Duration) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut records: Vec<(PathBuf, SystemTime)> = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            let used = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                if used.elapsed().is_ok_and(|age| age > stale) {
                    let _ = std::fs::remove_file(&p);
                }
                continue;
            }
            records.push((p, used));
        }
        if records.len() > max_records {
            records.sort_by_key(|r| r.1);
            let excess = records.len() - max_records;
            for (p, _) in records.into_iter().take(excess) {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// Removes every record (with the entries they lead to, when the cache
    /// directory could have been written by others).
    pub(crate) fn clear(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("bpk-fr-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    fn known() -> Known {
        Known {
            digest: blake3::hash(b"x").to_hex().to_string(),
            len: 5,
            memories: 1,
            tables: 2,
        }
    }

    #[test]
    fn a_record_round_trips_and_a_damaged_one_is_refused() {
        let stamp = Stamp {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: 4,
            ctime_ns: -5,
        };
        let b = encode(&stamp, &known()).unwrap();
        assert_eq!(decode(&b), Some((stamp, known())));
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 1;
            assert_eq!(decode(&d), None, "byte {i} flipped");
        }
        assert_eq!(decode(&b[..b.len() - 1]), None);
    }

    #[test]
    fn pruning_keeps_the_most_recently_used_records_and_drops_stale_temporaries() {
        let d = scratch("prune");
        let records = FileRecords::new(&d);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&records.dir)
            .unwrap();
        let epoch = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for (i, name) in ["a", "b", "c", "d", ".tmp-old"].iter().enumerate() {
            let f = File::create(records.dir.join(name)).unwrap();
            f.set_modified(epoch + Duration::from_secs(i as u64))
                .unwrap();
        }
        let fresh_tmp = records.dir.join(".tmp-new");
        File::create(&fresh_tmp).unwrap();
        records.prune_to(2, Duration::from_secs(3600));
        let mut left: Vec<String> = std::fs::read_dir(&records.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".tmp-new", "c", "d"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn only_a_settled_file_is_recorded_and_any_change_misses() {
        let d = scratch("settled");
        let records = FileRecords::new(&d);
        let f = d.join("p.wasm");
        std::fs::write(&f, b"one").unwrap();
        let open = || {
            let file = File::open(&f).unwrap();
            let meta = file.metadata().unwrap();
            (file, meta)
        };
        let on_kept_fs = stamps_kept(&open().0);
        // Changed just now: not recorded.
        let (file, meta) = open();
        records.remember(&f, &file, &meta, SystemTime::now(), &known());
        assert_eq!(records.lookup(&f, &file, &meta), None);
        // Opened SETTLED after the change: recorded, and found.
        std::thread::sleep(SETTLED + Duration::from_millis(50));
        let opened_at = SystemTime::now();
        let (file, meta) = open();
        records.remember(&f, &file, &meta, opened_at, &known());
        let found = records.lookup(&f, &file, &meta);
        if !on_kept_fs {
            assert_eq!(
                found, None,
                "no records on a filesystem without kept stamps"
            );
            return;
        }
        assert_eq!(found, Some(known()));
        // Rewritten in place, same size, mtime put back: the ctime moved.
        let mtime = meta.modified().unwrap();
        std::fs::write(&f, b"two").unwrap();
        File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let (file, meta) = open();
        assert_eq!(records.lookup(&f, &file, &meta), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
