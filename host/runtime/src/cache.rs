//! The compile cache: compiled components on disk, so a plugin that took
//! seconds to compile loads in milliseconds the next time.
//!
//! **Location**: the directory given in [`RuntimeConfig::cache_dir`]
//! (`<data>/cache` for the CLI), created owner-only (0700).
//!
//! **Layout**: per component, `<key>.cwasm` — exactly the bytes of
//! `Component::serialize`, so it loads with `Component::deserialize_file`,
//! which memory-maps it instead of copying (a 35 MB Python component then
//! loads in about a millisecond instead of 50) — and `<key>.meta`, its
//! integrity record. The key hashes the component's digest, the wasmtime
//! version and the engine's compatibility hash (config and CPU features),
//! because a serialized component only loads into exactly that engine.
//!
//! **Integrity without re-hashing**: loading compiled code is `unsafe`, so a
//! damaged or replaced file must never reach wasmtime. Once the artifact is
//! in place, the meta records its length, inode, mtime and **ctime**, a
//! blake3 of its first and last 64 KiB, and a blake3 of the whole artifact.
//! A load checks the cheap parts only: both files are regular, owned by this
//! user, not writable by group or others, in an owner-only directory;
//! length, inode, mtime and ctime match; the edge digest matches (damage to
//! the headers wasmtime parses first). The ctime is what makes this enough:
//! the kernel sets it on every write, truncation, rename or `utimes` of the
//! file and no user-space call can set it back, so an artifact whose content
//! changed after its record was written — a torn write, a bit flipped in
//! place, a file swapped in, even with its mtime restored — fails the check
//! without hashing 35 MB (only a clock change by root could forge it). The
//! whole-artifact digest is kept for [`CompileCache::verify_all`].
//!
//! **Eviction**: after each write, when the entries together exceed
//! [`CacheLimits::max_bytes`], the least recently used ones (the meta
//! file's mtime is refreshed on every hit) are deleted until they fit.
//!
//! A file that fails any check is deleted and the component recompiled —
//! the cache can only ever cost time, never correctness.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
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

/// Size limits of a compile cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most bytes of compiled artifacts kept; least recently used entries
    /// are evicted past it.
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits { max_bytes: 1 << 30 }
    }
}

/// Where a component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

/// Why a cache entry was not used (logged, then the entry is recompiled).
#[derive(Debug, thiserror::Error)]
enum EntryError {
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

fn mtime_ns(m: &std::fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

fn ctime_ns(m: &std::fs::Metadata) -> i128 {
    i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec())
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Owned by this user and writable by nobody else.
fn private(m: &std::fs::Metadata) -> bool {
    m.uid() == euid() && m.mode() & 0o022 == 0
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

impl CompileCache {
    /// A cache in `dir` (created owner-only on first write) for `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine, limits: CacheLimits) -> CompileCache {
        let mut h = Blake3Hasher(blake3::Hasher::new());
        WASMTIME_VERSION.hash(&mut h);
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = batpak_store::hex(&h.0.finalize().as_bytes()[..12]);
        CompileCache {
            dir: dir.into(),
            engine_key,
            limits,
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The artifact file that holds component `digest` for this engine
    /// (its integrity record is the same path with extension `meta`).
    pub fn path_for(&self, digest: &str) -> PathBuf {
        let key =
            blake3::hash(format!("{digest}/{WASMTIME_VERSION}/{}", self.engine_key).as_bytes());
        self.dir.join(format!("{}.cwasm", &key.to_hex()[..48]))
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
        let path = self.path_for(digest);
        if path.exists() {
            match self.load_checked(engine, &path) {
                Ok(c) => return Ok((c, CompileSource::Cached, started.elapsed())),
                Err(e) => {
                    warn(&format!(
                        "ignoring unusable cache entry {}: {e}; recompiling",
                        path.display()
                    ));
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_file(path.with_extension("meta"));
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        let elapsed = started.elapsed();
        match self.store(&path, &component) {
            Ok(()) => self.evict(&path),
            Err(e) => warn(&format!(
                "could not write cache entry {}: {e}",
                path.display()
            )),
        }
        Ok((component, CompileSource::Compiled, elapsed))
    }

    fn load_checked(&self, engine: &Engine, path: &Path) -> Result<Component, EntryError> {
        let dir = std::fs::metadata(&self.dir)?;
        if !private(&dir) || dir.mode() & 0o077 != 0 {
            return Err(EntryError::Untrusted(format!(
                "the cache directory {} must be owned by this user and closed to others (chmod 700)",
                self.dir.display()
            )));
        }
        let meta_path = path.with_extension("meta");
        let mut mf = File::open(&meta_path)?;
        let mut raw = Vec::with_capacity(META_LEN);
        (&mut mf).take(META_LEN as u64 + 1).read_to_end(&mut raw)?;
        let meta = Meta::decode(&raw)
            .ok_or_else(|| EntryError::Untrusted("its integrity record is damaged".into()))?;
        let mut f = File::open(path)?;
        let m = f.metadata()?;
        if !m.is_file() || !private(&m) || !private(&mf.metadata()?) {
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
        drop(f);
        // SAFETY: the file is what `store` wrote from `Component::serialize`
        // of an engine with this exact wasmtime version and compatibility
        // hash (both are in the file name), as far as the checks above can
        // tell without re-hashing it (see the module docs for why that is
        // enough); wasmtime checks its header and configuration again. The
        // mapping stays valid because entries are replaced by rename, never
        // rewritten in place.
        let c = unsafe { Component::deserialize_file(engine, path) }
            .map_err(|e| EntryError::Wasmtime(format!("{e:#}")))?;
        // Least recently used: a hit refreshes the record's mtime.
        let _ = File::options()
            .write(true)
            .open(&meta_path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        Ok(c)
    }

    fn store(&self, path: &Path, component: &Component) -> Result<(), EntryError> {
        let bytes = component
            .serialize()
            .map_err(|e| EntryError::Wasmtime(format!("{e:#}")))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let unique = format!(
            "{}.{}",
            std::process::id(),
            batpak_store::EventId::generate()
        );
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
        let tmp = self.dir.join(format!(".{name}.{unique}.tmp"));
        let tmp_meta = self.dir.join(format!(".{name}.{unique}.meta.tmp"));
        let result = (|| -> Result<(), EntryError> {
            let mut f = File::create(&tmp)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            // Artifact first, then its record, taken from the file in place
            // (a rename may itself change the ctime): until the record
            // lands, the artifact is refused for lack of one.
            std::fs::rename(&tmp, path)?;
            let mut f = File::open(path)?;
            let m = f.metadata()?;
            let meta = Meta {
                len: m.len(),
                mtime_ns: mtime_ns(&m),
                ctime_ns: ctime_ns(&m),
                ino: m.ino(),
                edges: edge_digest(&mut f, m.len())?,
                full: *blake3::hash(&bytes).as_bytes(),
            };
            let mut mf = File::create(&tmp_meta)?;
            mf.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            mf.write_all(&meta.encode())?;
            mf.sync_all()?;
            std::fs::rename(&tmp_meta, path.with_extension("meta"))?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&tmp_meta);
        }
        result
    }

    /// The artifacts in the cache: (artifact path, size, last use).
    fn entries(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "cwasm").then_some(())?;
                let size = e.metadata().ok()?.len();
                let used = std::fs::metadata(p.with_extension("meta"))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Some((p, size, used))
            })
            .collect()
    }

    /// Deletes least recently used entries (never `keep`) until the cache
    /// fits its size cap.
    fn evict(&self, keep: &Path) {
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
            let _ = std::fs::remove_file(p.with_extension("meta"));
            if std::fs::remove_file(&p).is_ok() {
                total -= size;
            }
        }
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
        let mut bad = Vec::new();
        for (p, _, _) in self.entries() {
            let ok = std::fs::read(p.with_extension("meta"))
                .ok()
                .and_then(|raw| Meta::decode(&raw))
                .zip(std::fs::read(&p).ok())
                .is_some_and(|(m, bytes)| *blake3::hash(&bytes).as_bytes() == m.full);
            if !ok {
                bad.push(p);
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
