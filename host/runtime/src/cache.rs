//! The compile cache: compiled components on disk, so a plugin that took
//! seconds to compile loads in milliseconds the next time, in any process.
//!
//! **Location**: the directory given in [`RuntimeConfig::cache_dir`]; the
//! CLI uses the user's cache directory ([`default_cache_dir`]:
//! `$XDG_CACHE_HOME/batpak-host`, else `~/.cache/batpak-host`). It must be
//! owner-only (0700): see [`prepare_cache_dir`], which [`CompileCache::new`]
//! applies.
//!
//! **Layout**: one directory per component, `<key>/`, holding
//! `code.cwasm` — exactly the bytes of `Component::serialize`, so it loads
//! with `Component::deserialize_file`, which memory-maps it instead of
//! copying (a 35 MB Python component then loads in about a millisecond
//! instead of 50) — and `meta`, its integrity record. The key hashes the
//! component's digest, the wasmtime version and the engine's compatibility
//! hash (config and CPU features), because a serialized component only
//! loads into exactly that engine. Beside the entries, `files/` holds one
//! record per plugin path saying which component (digest) the file held
//! at which device, inode, size, mtime and ctime, so a load of an
//! unchanged file finds its entry without reading and hashing the file
//! ([`super::file_record`], which also argues why that is sound).
//!
//! **Shared between processes**: an entry is written complete in a private
//! temporary directory (`.tmp-…`, files 0600, fsynced) and published by
//! renaming that directory to `<key>`, so a reader sees a whole entry or
//! none. When two processes compile the same component at once, the first
//! rename wins and the second finds `<key>` taken and drops its copy; both
//! use the component they compiled. Entries are removed by renaming them
//! out of the way first (`.old-…`) and only then deleting the files; an
//! artifact another process has mapped stays valid after it is unlinked
//! (the kernel keeps the file until the last mapping goes), so eviction
//! never breaks a running host.
//!
//! **Integrity without re-hashing**: loading compiled code is `unsafe`, so a
//! damaged or replaced file must never reach wasmtime. The record holds the
//! artifact's length, inode, mtime and **ctime** as written, a blake3 of
//! its first and last 64 KiB, and a blake3 of the whole artifact. A load
//! opens the entry's directory without following links and both files
//! relative to it, checks the cheap parts only — both files are regular,
//! owned by this user, not writable by group or others, in owner-only
//! directories; length, inode, mtime and ctime match; the edge digest
//! matches (damage to the headers wasmtime parses first) — and hands
//! wasmtime the very file it checked (`/proc/self/fd/N`). The ctime is what
//! makes this enough: the kernel sets it on every write, truncation,
//! rename or `utimes` of the file and no user-space call can set it back,
//! so an artifact whose content changed after its record was written — a
//! torn write, a bit flipped in place, a file swapped in, even with its
//! mtime restored — fails the check without hashing 35 MB (only a clock
//! change by root could forge it). The whole-artifact digest is kept for
//! [`CompileCache::verify_all`]. Re-hashing the artifact on every load is
//! what this replaces, not a cheaper digest: the check costs 0.05–0.1 ms
//! for the 37 MB Python artifact, where wasmtime's own deserialisation of
//! it takes 2–3 ms (see the README's cached load figures). Checking a
//! digest lazily, after the artifact is mapped, would not be sound —
//! wasmtime trusts the bytes it deserialises — and neither would a digest
//! of the headers alone without the ctime: a flipped byte in the code
//! would pass it.
//!
//! **Eviction**: after each write, when the entries together exceed
//! [`CacheLimits::max_bytes`], the least recently used ones (the record's
//! mtime is refreshed on every hit) are removed until they fit; the entry
//! just written is always kept.
//!
//! An entry that fails any check is removed and the component recompiled —
//! the cache can only ever cost time, never correctness.
//!
//! [`RuntimeConfig::cache_dir`]: super::RuntimeConfig::cache_dir
//! [`default_cache_dir`]: super::default_cache_dir
//! [`prepare_cache_dir`]: super::prepare_cache_dir

use super::cache_dir::{
    ctime_ns, mtime_ns, open_dir, open_in, prepare_cache_dir, private, unique, CacheDirError,
    DirRepair,
};
use super::file_record::{FileRecords, Known};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use wasmtime::component::Component;
use wasmtime::Engine;

/// The wasmtime release this host is built against (pinned in Cargo.toml).
pub const WASMTIME_VERSION: &str = "48.0.8";

const META_MAGIC: [u8; 8] = *b"BPKCMET1";
/// Bytes hashed at each end of an artifact by the per-load check.
const EDGE_BYTES: u64 = 64 << 10;
const META_LEN: usize = 8 + 8 + 16 + 16 + 8 + 32 + 32;
/// The artifact in an entry directory.
const CODE: &str = "code.cwasm";
/// The integrity record in an entry directory.
const META: &str = "meta";
/// Length of an entry directory's name (hex of the key).
const KEY_LEN: usize = 48;
/// An entry being written.
const TMP_PREFIX: &str = ".tmp-";
/// An entry being removed.
const OLD_PREFIX: &str = ".old-";
/// A temporary entry older than this was left by a process that died.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// Size limits of a compile cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most bytes of compiled artifacts kept; least recently used entries
    /// are evicted past it (the entry just written is always kept).
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits { max_bytes: 1 << 30 }
    }
}

/// Where a component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompileSource {
    /// Compiled now (and written to the cache when there is one).
    Compiled,
    /// Loaded from the cache.
    Cached,
}

/// A directory of compiled components for one engine configuration.
#[derive(Clone, Debug)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    limits: CacheLimits,
    files: FileRecords,
}

/// A component loaded from the cache, and how long its two steps took.
pub(crate) struct CacheHit {
    pub(crate) component: Component,
    /// Checking the entry (see the module docs).
    pub(crate) check: Duration,
    /// wasmtime's deserialisation of the checked artifact.
    pub(crate) deserialize: Duration,
}

/// Why a cache entry was not used (logged, then the entry is recompiled).
#[derive(Debug, thiserror::Error)]
enum EntryError {
    /// No such entry: an ordinary miss.
    #[error("not in the cache")]
    Missing,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Untrusted(String),
    #[error("wasmtime refused it: {0}")]
    Wasmtime(String),
}

/// Feeds `Hash` output into blake3 so the engine's compatibility hash becomes
/// a stable file-name component.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0.finalize().as_bytes()[..8]);
        u64::from_le_bytes(b)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The integrity record of one artifact.
#[derive(Debug, PartialEq, Eq)]
struct Meta {
    len: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    edges: [u8; 32],
    full: [u8; 32],
}

impl Meta {
    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(META_LEN);
        b.extend_from_slice(&META_MAGIC);
        b.extend_from_slice(&self.len.to_le_bytes());
        b.extend_from_slice(&self.mtime_ns.to_le_bytes());
        b.extend_from_slice(&self.ctime_ns.to_le_bytes());
        b.extend_from_slice(&self.ino.to_le_bytes());
        b.extend_from_slice(&self.edges);
        b.extend_from_slice(&self.full);
        b
    }

    fn decode(b: &[u8]) -> Option<Meta> {
        if b.len() != META_LEN || b[..8] != META_MAGIC {
            return None;
        }
        Some(Meta {
            len: u64::from_le_bytes(b[8..16].try_into().ok()?),
            mtime_ns: i128::from_le_bytes(b[16..32].try_into().ok()?),
            ctime_ns: i128::from_le_bytes(b[32..48].try_into().ok()?),
            ino: u64::from_le_bytes(b[48..56].try_into().ok()?),
            edges: b[56..88].try_into().ok()?,
            full: b[88..120].try_into().ok()?,
        })
    }
}

/// blake3 of the first and last [`EDGE_BYTES`] of `f` (the whole file when
/// it is shorter than both).
fn edge_digest(f: &mut File, len: u64) -> std::io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    h.update(&len.to_le_bytes());
    let mut buf = vec![0u8; EDGE_BYTES.min(len) as usize];
    f.seek(SeekFrom::Start(0))?;
    f.read_exact(&mut buf)?;
    h.update(&buf);
    if len > EDGE_BYTES {
        let tail = EDGE_BYTES.min(len - EDGE_BYTES);
        buf.resize(tail as usize, 0);
        f.seek(SeekFrom::Start(len - tail))?;
        f.read_exact(&mut buf)?;
        h.update(&buf);
    }
    Ok(*h.finalize().as_bytes())
}

/// Removes an entry directory: renamed out of the way first (a reader then
/// misses it instead of seeing it half deleted), then deleted.
fn remove_entry(dir: &Path, entry: &Path) {
    let name = entry
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("entry");
    let old = dir.join(format!("{OLD_PREFIX}{name}-{}", unique()));
    if std::fs::rename(entry, &old).is_ok() {
        let _ = std::fs::remove_dir_all(&old);
    }
}

fn is_key(name: &str) -> bool {
    name.len() == KEY_LEN && name.bytes().all(|b| b.is_ascii_hexdigit())
}

impl CompileCache {
    /// A cache in `dir` for `engine`. The directory is created owner-only
    /// when missing; one this host created that was opened to others since
    /// is closed again (and emptied when others could write it), with a
    /// warning saying so.
    ///
    /// # Errors
    /// The directory cannot be used safely: see [`prepare_cache_dir`]
    /// (another user's, open to others and not created here, not a
    /// directory, or not creatable).
    ///
    /// [`prepare_cache_dir`]: super::prepare_cache_dir
    pub fn new(
        dir: impl Into<PathBuf>,
        engine: &Engine,
        limits: CacheLimits,
    ) -> Result<CompileCache, CacheDirError> {
        let dir = dir.into();
        let mut h = Blake3Hasher(blake3::Hasher::new());
        WASMTIME_VERSION.hash(&mut h);
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = batpak_store::hex(&h.0.finalize().as_bytes()[..12]);
        let cache = CompileCache {
            files: FileRecords::new(&dir),
            dir,
            engine_key,
            limits,
        };
        let mut discarded = 0;
        match prepare_cache_dir(&cache.dir, || discarded = cache.clear())? {
            DirRepair::None => {}
            DirRepair::Closed { was } => warn(&format!(
                "the compile cache directory {} was readable by others (mode {was:03o}); made it owner-only (700)",
                cache.dir.display()
            )),
            DirRepair::ClosedAndEmptied { was } => warn(&format!(
                "the compile cache directory {} was writable by others (mode {was:03o}), so anyone could have replaced its compiled code; made it owner-only (700) and discarded the compiled plugins in it ({discarded})",
                cache.dir.display()
            )),
        }
        Ok(cache)
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The size limits it keeps to.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    fn entry_dir(&self, digest: &str) -> PathBuf {
        let key =
            blake3::hash(format!("{digest}/{WASMTIME_VERSION}/{}", self.engine_key).as_bytes());
        self.dir.join(&key.to_hex()[..KEY_LEN])
    }

    /// The artifact file that holds component `digest` for this engine
    /// (its integrity record `meta` is beside it, in the entry's own
    /// directory).
    pub fn path_for(&self, digest: &str) -> PathBuf {
        self.entry_dir(digest).join(CODE)
    }

    /// Loads component `digest` from the cache, or compiles `bytes` and
    /// stores the result. Returns the component, where it came from and how
    /// long that took.
    ///
    /// # Errors
    /// Only a failed compilation; cache trouble is logged and skipped.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<(Component, CompileSource, Duration)> {
        let started = Instant::now();
        if let Some((c, took)) = self.load(engine, digest) {
            return Ok((c, CompileSource::Cached, took));
        }
        let entry = self.entry_dir(digest);
        let component = Component::new(engine, bytes)?;
        let elapsed = started.elapsed();
        match self.store(&entry, &component) {
            Ok(()) => self.evict(&entry),
            Err(e) => warn(&format!(
                "could not write cache entry {}: {e}",
                entry.display()
            )),
        }
        Ok((component, CompileSource::Compiled, elapsed))
    }

    /// What the cache's record of `path` says its content is, when the
    /// record describes exactly the file opened as `file` (whose metadata,
    /// from that descriptor, is `meta`): see [`super::file_record`].
    pub(crate) fn known_file(
        &self,
        path: &Path,
        file: &File,
        meta: &std::fs::Metadata,
    ) -> Option<Known> {
        self.files.lookup(path, file, meta)
    }

    /// Records what `path` holds, when that is sound (see
    /// [`super::file_record`]).
    pub(crate) fn remember_file(
        &self,
        path: &Path,
        file: &File,
        meta: &std::fs::Metadata,
        opened_at: SystemTime,
        known: &Known,
    ) {
        self.files.remember(path, file, meta, opened_at, known);
    }

    /// Loads component `digest` from the cache when it is there and passes
    /// every check; returns it and how long loading took. An entry that
    /// fails a check is logged and removed (the caller compiles instead).
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<(Component, Duration)> {
        let started = Instant::now();
        self.hit(engine, digest)
            .map(|h| (h.component, started.elapsed()))
    }

    /// [`load`](Self::load), with the time of its check and of wasmtime's
    /// deserialisation apart.
    pub(crate) fn hit(&self, engine: &Engine, digest: &str) -> Option<CacheHit> {
        let entry = self.entry_dir(digest);
        match self.load_checked(engine, &entry) {
            Ok(h) => Some(h),
            Err(EntryError::Missing) => None,
            Err(e) => {
                warn(&format!(
                    "ignoring unusable cache entry {}: {e}; recompiling",
                    entry.display()
                ));
                remove_entry(&self.dir, &entry);
                None
            }
        }
    }

    fn load_checked(&self, engine: &Engine, entry: &Path) -> Result<CacheHit, EntryError> {
        let started = Instant::now();
        let top = match std::fs::metadata(&self.dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(EntryError::Missing),
            Err(e) => return Err(e.into()),
        };
        if !private(&top) || top.mode() & 0o077 != 0 {
            return Err(EntryError::Untrusted(format!(
                "the cache directory {} must be owned by this user and closed to others (chmod 700)",
                self.dir.display()
            )));
        }
        let d = match open_dir(entry) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(EntryError::Missing),
            Err(e) => return Err(e.into()),
        };
        let dm = d.metadata()?;
        if !private(&dm) || dm.mode() & 0o077 != 0 {
            return Err(EntryError::Untrusted(
                "its directory is not owned by this user and closed to others".into(),
            ));
        }
        let mut mf = open_in(&d, META)?;
        let mut raw = Vec::with_capacity(META_LEN);
        (&mut mf).take(META_LEN as u64 + 1).read_to_end(&mut raw)?;
        let meta = Meta::decode(&raw)
            .ok_or_else(|| EntryError::Untrusted("its integrity record is damaged".into()))?;
        let mut f = open_in(&d, CODE)?;
        let m = f.metadata()?;
        let mm = mf.metadata()?;
        if !m.is_file() || !mm.is_file() || !private(&m) || !private(&mm) {
            return Err(EntryError::Untrusted(
                "it is not a regular file owned by this user and closed to others".into(),
            ));
        }
        if m.len() != meta.len
            || m.ino() != meta.ino
            || mtime_ns(&m) != meta.mtime_ns
            || ctime_ns(&m) != meta.ctime_ns
        {
            return Err(EntryError::Untrusted(
                "it changed since it was written (size, inode, mtime or ctime differ from its integrity record)".into(),
            ));
        }
        if edge_digest(&mut f, m.len())? != meta.edges {
            return Err(EntryError::Untrusted(
                "its content does not match its integrity record (damaged or modified)".into(),
            ));
        }
        // The file just checked, by its descriptor, so a rename in between
        // cannot substitute another (the entry's path where /proc is not).
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()));
        let load_path = if by_fd.exists() {
            by_fd
        } else {
            entry.join(CODE)
        };
        // SAFETY: the file is what `store` wrote from `Component::serialize`
        // of an engine with this exact wasmtime version and compatibility
        // hash (both are in the entry's name), as far as the checks above
        // can tell without re-hashing it (see the module docs for why that
        // is enough); wasmtime checks its header and configuration again.
        // The mapping stays valid because entries are published and removed
        // by rename and unlink, never rewritten in place.
        let checked = Instant::now();
        let c = unsafe { Component::deserialize_file(engine, &load_path) }
            .map_err(|e| EntryError::Wasmtime(format!("{e:#}")))?;
        let deserialized = Instant::now();
        drop(f);
        // Least recently used: a hit refreshes the record's mtime.
        let _ = mf.set_modified(SystemTime::now());
        Ok(CacheHit {
            component: c,
            check: checked - started,
            deserialize: deserialized - checked,
        })
    }

    fn store(&self, entry: &Path, component: &Component) -> Result<(), EntryError> {
        let bytes = component
            .serialize()
            .map_err(|e| EntryError::Wasmtime(format!("{e:#}")))?;
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("entry");
        let tmp = self.dir.join(format!("{TMP_PREFIX}{name}-{}", unique()));
        let mkdir = || std::fs::DirBuilder::new().mode(0o700).create(&tmp);
        if let Err(e) = mkdir() {
            // The cache directory was deleted while this process ran: made
            // again under the same rules, once.
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e.into());
            }
            prepare_cache_dir(&self.dir, || {})
                .map_err(|e| EntryError::Untrusted(e.to_string()))?;
            mkdir()?;
        }
        let result = (|| -> Result<(), EntryError> {
            let new_file = |name: &str| {
                File::options()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(tmp.join(name))
            };
            let mut f = new_file(CODE)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            // The record is taken from the file as written: renaming its
            // directory later changes neither its inode nor its ctime.
            let m = f.metadata()?;
            let meta = Meta {
                len: m.len(),
                mtime_ns: mtime_ns(&m),
                ctime_ns: ctime_ns(&m),
                ino: m.ino(),
                edges: edge_digest(&mut f, m.len())?,
                full: *blake3::hash(&bytes).as_bytes(),
            };
            drop(f);
            let mut mf = new_file(META)?;
            mf.write_all(&meta.encode())?;
            mf.sync_all()?;
            drop(mf);
            File::open(&tmp)?.sync_all()?;
            // Publish: one rename makes the whole entry visible. A process
            // that compiled the same component first already published an
            // equivalent entry; this copy is then dropped.
            match std::fs::rename(&tmp, entry) {
                Ok(()) => Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                    let _ = std::fs::remove_dir_all(&tmp);
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result
    }

    /// The entries in the cache: (entry directory, artifact size, last
    /// use). Leftovers of interrupted writes and removals are deleted on
    /// the way.
    fn entries(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let name = name.to_str()?;
                let p = e.path();
                let ft = e.file_type().ok()?;
                if !ft.is_dir() {
                    return None;
                }
                if name.starts_with(OLD_PREFIX)
                    || (name.starts_with(TMP_PREFIX)
                        && e.metadata()
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|age| age > STALE_TMP))
                {
                    let _ = std::fs::remove_dir_all(&p);
                    return None;
                }
                if !is_key(name) {
                    return None;
                }
                let size = std::fs::metadata(p.join(CODE))
                    .map(|m| m.len())
                    .unwrap_or(0);
                let used = std::fs::metadata(p.join(META))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Some((p, size, used))
            })
            .collect()
    }

    /// Removes least recently used entries (never `keep`) until the cache
    /// fits its size cap.
    fn evict(&self, keep: &Path) {
        self.files.prune(STALE_TMP);
        let mut entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        if total <= self.limits.max_bytes {
            return;
        }
        entries.sort_by_key(|e| e.2);
        for (p, size, _) in entries {
            if total <= self.limits.max_bytes {
                break;
            }
            if p == keep {
                continue;
            }
            remove_entry(&self.dir, &p);
            total = total.saturating_sub(size);
        }
    }

    /// Removes every entry, and every file record; returns how many
    /// entries there were.
    fn clear(&self) -> usize {
        self.files.clear();
        let entries = self.entries();
        for (p, _, _) in &entries {
            remove_entry(&self.dir, p);
        }
        // Also what is not shaped like an entry but sits where one would.
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                if name.as_bytes().starts_with(TMP_PREFIX.as_bytes()) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        entries.len()
    }

    /// Total bytes of compiled artifacts in the cache.
    pub fn size(&self) -> u64 {
        self.entries().iter().map(|e| e.1).sum()
    }

    /// Re-hashes every entry in full against its integrity record and
    /// returns the artifacts that do not match (the per-load check is
    /// cheaper; see the module docs).
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn verify_all(&self) -> std::io::Result<Vec<PathBuf>> {
        std::fs::read_dir(&self.dir)?;
        let mut bad = Vec::new();
        for (p, _, _) in self.entries() {
            let ok = std::fs::read(p.join(META))
                .ok()
                .and_then(|raw| Meta::decode(&raw))
                .zip(std::fs::read(p.join(CODE)).ok())
                .is_some_and(|(m, bytes)| *blake3::hash(&bytes).as_bytes() == m.full);
            if !ok {
                bad.push(p.join(CODE));
            }
        }
        Ok(bad)
    }
}

fn warn(msg: &str) {
    super::log::log(
        super::log::LogLevel::Warn,
        super::log::LogLevel::Warn,
        "cache",
        msg,
    );
}
