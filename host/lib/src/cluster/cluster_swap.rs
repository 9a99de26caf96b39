//! `swap NAME FILE --store nats://…` from any machine: loads FILE here
//! (a file that does not load, or is another reactor, is refused before
//! anything changes), stores it in the cluster's plugin store and moves
//! the reactor's version key to it. Every host running the reactor swaps
//! each instance it owns at that instance's next batch boundary through
//! the runtime's swap (the same swap, refusal and rollback records, each
//! in its instance's own partition); slots taken later start on the new
//! version.
//!
//! The key carries the reactor's plugin-config entry too. Without
//! `--plugin-config` the swap keeps the entry the cluster stores (as the
//! embedded swap keeps the host's `--plugin-config`); with `--plugin-config
//! CFG` it stores CFG's `plugins.<name>` entry with the new version — also
//! with the same FILE, a config-only swap. FILE is loaded with the entry
//! that will apply, so an `init` that refuses it is refused here.

use crate::cluster::address::ClusterAddress;
use crate::cluster::cluster_run_error::{
    open_log, open_plugin_store, plugins_error, ClusterRunError,
};
use crate::plugins::compile_cache::CacheOptions;
use crate::plugins::loader::Loader;
use crate::plugins::plugin_config::{Flags, PluginConfigFile};
use batpak_nats::{NatsOptions, ReactorVersion};
use batpak_runtime::{Reactor, Runtime};
use std::path::Path;

/// What a cluster swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterSwap {
    /// The key moved from `from` to `to`.
    Stored {
        /// The version the cluster ran.
        from: ReactorVersion,
        /// The version it runs from now on.
        to: ReactorVersion,
    },
    /// The cluster runs that version with that entry already: nothing
    /// changed.
    Unchanged(ReactorVersion),
}

/// Stores `file` as the new version of reactor `name` on the cluster at
/// `address`, with the entry of `plugin_config` for `name` when given,
/// else the entry the cluster stores (see the module docs).
///
/// # Errors
/// [`ClusterRunError::Usage`] when the cluster has no reactor `name`,
/// `file` is another reactor, or `plugin_config` does not read or has no
/// entry for `name`; [`ClusterRunError::Load`] when `file` does not load
/// with that entry; the connection errors.
pub fn cluster_swap(
    address: &ClusterAddress,
    name: &str,
    file: &Path,
    plugin_config: Option<&Path>,
    cache: &CacheOptions,
) -> Result<ClusterSwap, ClusterRunError> {
    let options = NatsOptions::default();
    let log = open_log(address, &options)?;
    let store = open_plugin_store(address, &options, &log)?;
    let plugins_error = plugins_error(address);
    let Some((from, revision)) = store.current(name).map_err(&plugins_error)? else {
        return Err(ClusterRunError::Usage(format!(
            "the cluster at {address} runs no reactor {name:?}: start it with `batpak-host run \
             --store {address} {}`",
            file.display()
        )));
    };
    let entry = match plugin_config {
        None => from.plugin_config.clone(),
        Some(path) => {
            let cfg = PluginConfigFile::read(path).map_err(ClusterRunError::Usage)?;
            Some(cfg.entry(name).ok_or_else(|| {
                ClusterRunError::Usage(format!(
                    "--plugin-config {} has no entry for reactor {name} (\"plugins\": {{\"{name}\": \
                     {{…}}}}); add one (an empty {{}} runs it with no config), or swap without \
                     --plugin-config to keep the cluster's",
                    path.display()
                ))
            })?)
        }
    };
    let base = PluginConfigFile::default()
        .with_entry(name, entry.as_ref())
        .map_err(|m| ClusterRunError::Usage(format!("the plugin config of reactor {name}: {m}")))?;
    let runtime = Runtime::new(cache.runtime_config().map_err(ClusterRunError::Load)?)
        .map_err(|e| ClusterRunError::Load(e.into()))?;
    let loader = Loader::new(runtime, base, Flags::default());
    let loaded = loader.load(file).map_err(ClusterRunError::Load)?;
    if loaded.name() != name {
        return Err(ClusterRunError::Usage(format!(
            "{} is reactor {:?}, not {name:?}: a swap replaces a reactor by a version of itself",
            file.display(),
            loaded.name()
        )));
    }
    if loaded.settings.instances > 1 {
        return Err(ClusterRunError::Usage(format!(
            "reactor {name:?}: \"instances\": {} in the plugin config does not apply on a \
             cluster, where each partition runs one instance; remove it",
            loaded.settings.instances
        )));
    }
    let to = ReactorVersion {
        version: loaded.plugin.descriptor().version.clone(),
        digest: loaded.plugin.component_digest().to_string(),
        extension: file
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("wasm")
            .to_string(),
        plugin_config: entry,
    };
    if from.digest == to.digest && from.plugin_config == to.plugin_config {
        return Ok(ClusterSwap::Unchanged(from));
    }
    let bytes = std::fs::read(file)
        .map_err(|e| ClusterRunError::Load(anyhow::anyhow!("reading {}: {e}", file.display())))?;
    store
        .publish(name, &to, bytes, Some(revision))
        .map_err(&plugins_error)?;
    Ok(ClusterSwap::Stored { from, to })
}
