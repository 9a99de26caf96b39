//! The compile cache: compiled components on disk, so a plugin that took
//! seconds to compile loads in milliseconds the next time.
//!
//! A cache file is named by the component's digest, the wasmtime version and
//! the engine's compatibility hash (config and CPU features), because a
//! serialized component only loads into exactly that engine. Files are
//! written atomically (temporary file, then rename) as
//! `"BPKCWASM" | blake3(artifact) | artifact`, and the digest is checked
//! before wasmtime sees a byte: loading compiled code is `unsafe`, so a
//! damaged or tampered file must never reach it. A file that fails any check
//! is deleted and the component recompiled — the cache can only ever cost
//! time, never correctness.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime::Engine;

/// The wasmtime release this host is built against (pinned in Cargo.toml).
pub const WASMTIME_VERSION: &str = "48.0.8";

const CACHE_MAGIC: [u8; 8] = *b"BPKCWASM";

/// Reads a cache entry, checks its magic and digest, then deserializes it.
fn load_checked(engine: &Engine, path: &Path) -> anyhow::Result<Component> {
    let file = std::fs::read(path)?;
    if file.len() < 40 || file[..8] != CACHE_MAGIC {
        anyhow::bail!("not a batpak cache entry");
    }
    let (digest, artifact) = file[8..].split_at(32);
    if blake3::hash(artifact).as_bytes() != digest {
        anyhow::bail!("its digest does not match its content (damaged or modified)");
    }
    // SAFETY: the artifact is byte-for-byte what `store` wrote from
    // `Component::serialize` (the digest above proves it) of an engine with
    // this exact wasmtime version and compatibility hash (both are in the
    // file name); wasmtime checks header and configuration again.
    unsafe { Component::deserialize(engine, artifact) }.map_err(super::wasm_error)
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

impl CompileCache {
    /// A cache in `dir` (created on first write) for `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> CompileCache {
        let mut h = Blake3Hasher(blake3::Hasher::new());
        WASMTIME_VERSION.hash(&mut h);
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = batpak_store::hex(&h.0.finalize().as_bytes()[..12]);
        CompileCache {
            dir: dir.into(),
            engine_key,
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds component `digest` for this engine.
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
        if path.is_file() {
            match load_checked(engine, &path) {
                Ok(c) => return Ok((c, CompileSource::Cached, started.elapsed())),
                Err(e) => {
                    super::log::log(
                        super::LogLevel::Warn,
                        super::LogLevel::Warn,
                        "cache",
                        &format!(
                            "ignoring unusable cache entry {}: {e}; recompiling",
                            path.display()
                        ),
                    );
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        let elapsed = started.elapsed();
        if let Err(e) = self.store(&path, &component) {
            super::log::log(
                super::LogLevel::Warn,
                super::LogLevel::Warn,
                "cache",
                &format!("could not write cache entry {}: {e:#}", path.display()),
            );
        }
        Ok((component, CompileSource::Compiled, elapsed))
    }

    fn store(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        use std::io::Write;
        let bytes = component.serialize().map_err(super::wasm_error)?;
        std::fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
            std::process::id(),
            batpak_store::EventId::generate()
        ));
        let result = (|| -> anyhow::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&CACHE_MAGIC)?;
            f.write_all(blake3::hash(&bytes).as_bytes())?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}
