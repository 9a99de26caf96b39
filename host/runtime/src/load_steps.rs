//! [`LoadSteps`]: where the time of one [`Plugin::load`] went, step by
//! step, so a slow load can be explained by measurement instead of guessed
//! at (the language figures benchmark prints it).
//!
//! [`Plugin::load`]: super::Plugin::load

use std::time::Duration;

/// The steps of one plugin load and how long each took. A step that did
/// not happen (nothing read because the file was known unchanged; no
/// cache lookup without a cache) is zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadSteps {
    /// Opening the file and checking it on the descriptor (regular, within
    /// the size limit).
    pub open: Duration,
    /// Looking up the file's record (its identity and change stamps mapped
    /// to the digest of its content) in the compile cache.
    pub file_record: Duration,
    /// Reading the file (and parsing component text).
    pub read: Duration,
    /// Scanning the component's structure (memories, tables, async).
    pub scan: Duration,
    /// Hashing the component (blake3).
    pub hash: Duration,
    /// Checking the compile cache entry before it is loaded: ownership,
    /// permissions, length, inode, mtime, ctime, and the digest of its first
    /// and last 64 KiB.
    pub cache_check: Duration,
    /// wasmtime's deserialisation of the memory-mapped artifact.
    pub deserialize: Duration,
    /// Compiling (when the component was not in the cache).
    pub compile: Duration,
    /// Checking the component's world and linking it against the host.
    pub link: Duration,
    /// Instantiating it (the first instance: `describe` runs in it).
    pub instantiate: Duration,
    /// The `describe` call.
    pub describe: Duration,
    /// Instantiating the instance that serves (with the reactor's own
    /// settings).
    pub reinstantiate: Duration,
    /// The `init` call.
    pub init: Duration,
    /// False when the file's record showed it unchanged since its content
    /// was hashed, so it was neither read nor hashed again.
    pub file_read: bool,
}

impl LoadSteps {
    /// The sum of the steps.
    pub fn total(&self) -> Duration {
        self.open
            + self.file_record
            + self.read
            + self.scan
            + self.hash
            + self.cache_check
            + self.deserialize
            + self.compile
            + self.link
            + self.instantiate
            + self.describe
            + self.reinstantiate
            + self.init
    }
}
