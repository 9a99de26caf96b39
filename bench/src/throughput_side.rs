//! What the throughput benchmark's groups share: the builds under test
//! (`Side`), the plugin and input files (`Inputs`) and the scratch root
//! (`Env`). Apart from `throughput.rs` so that a group in its own file
//! (`follow_latency.rs`) needs only these, not the whole table.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One build under test: its two binaries and its own compile cache.
pub(crate) struct Side {
    /// Column name.
    pub name: String,
    /// Its `batpak-bench`.
    pub bench: PathBuf,
    /// Its `batpak-host`.
    pub host: PathBuf,
    /// Its compile cache (`BATPAK_CACHE_DIR`), so one build's cached code
    /// never serves the other.
    pub cache: PathBuf,
}

impl Side {
    /// A command of this side's `batpak-host`, with its cache.
    pub fn host_cmd(&self) -> Command {
        let mut c = Command::new(&self.host);
        c.env("BATPAK_CACHE_DIR", &self.cache);
        c
    }
}

/// The shared inputs: plugin files and generated input files.
pub(crate) struct Inputs {
    pub passthrough: PathBuf,
    pub python: PathBuf,
    pub inventory: PathBuf,
    pub low_stock: PathBuf,
    pub shipping: PathBuf,
    /// `run --plugin-config` of the demo rows: the demo's config with
    /// stock that never runs out, so every order is reserved and shipped.
    pub shop_config: PathBuf,
}

/// What every group needs.
pub(crate) struct Env<'a> {
    pub root: &'a Path,
    pub inputs: &'a Inputs,
}
