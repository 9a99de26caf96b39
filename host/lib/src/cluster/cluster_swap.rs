//! `swap NAME FILE --store nats://…` from any machine: loads FILE here
//! (a file that does not load, or is another reactor, is refused before
//! anything changes), stores it in the cluster's plugin store and moves
//! the reactor's version key to it. Every host running the reactor swaps
//! each instance it owns at that instance's next batch boundary through
//! the runtime's swap (the same swap, refusal and rollback records, per
//! partition); slots taken later start on the new version.

use crate::cluster::address::ClusterAddress;
use crate::cluster::cluster_run_error::{open_log, ClusterRunError};
use crate::plugins::compile_cache::CacheOptions;
use crate::plugins::loader::Loader;
use crate::plugins::plugin_config::{Flags, PluginConfigFile};
use batpak_nats::{NatsOptions, PluginStore, ReactorVersion};
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
    /// The cluster runs that version already: nothing changed.
    Unchanged(ReactorVersion),
}

/// Stores `file` as the new version of reactor `name` on the cluster at
/// `address` (see the module docs).
///
/// # Errors
/// [`ClusterRunError::Usage`] when the cluster has no reactor `name` or
/// `file` is another reactor; [`ClusterRunError::Load`] when it does not
/// load; the connection errors.
pub fn cluster_swap(
    address: &ClusterAddress,
    name: &str,
    file: &Path,
    cache: &CacheOptions,
) -> Result<ClusterSwap, ClusterRunError> {
    let runtime = Runtime::new(cache.runtime_config().map_err(ClusterRunError::Load)?)
        .map_err(|e| ClusterRunError::Load(e.into()))?;
    let loader = Loader::new(runtime, PluginConfigFile::default(), Flags::default());
    let loaded = loader.load(file).map_err(ClusterRunError::Load)?;
    if loaded.name() != name {
        return Err(ClusterRunError::Usage(format!(
            "{} is reactor {:?}, not {name:?}: a swap replaces a reactor by a version of itself",
            file.display(),
            loaded.name()
        )));
    }
    let options = NatsOptions::default();
    let log = open_log(address, &options)?;
    let shown = address.to_string();
    let store = PluginStore::open(address.servers(), &options, log.layout().replicas).map_err(
        |source| ClusterRunError::Plugins {
            address: shown.clone(),
            source,
        },
    )?;
    let plugins_error = |source| ClusterRunError::Plugins {
        address: shown.clone(),
        source,
    };
    let to = ReactorVersion {
        version: loaded.plugin.descriptor().version.clone(),
        digest: loaded.plugin.component_digest().to_string(),
        extension: file
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("wasm")
            .to_string(),
    };
    let Some((from, revision)) = store.current(name).map_err(plugins_error)? else {
        return Err(ClusterRunError::Usage(format!(
            "the cluster at {address} runs no reactor {name:?}: start it with `batpak-host run \
             --store {address} {}`",
            file.display()
        )));
    };
    if from.digest == to.digest {
        return Ok(ClusterSwap::Unchanged(from));
    }
    let bytes = std::fs::read(file)
        .map_err(|e| ClusterRunError::Load(anyhow::anyhow!("reading {}: {e}", file.display())))?;
    store
        .publish(name, &to, bytes, Some(revision))
        .map_err(plugins_error)?;
    Ok(ClusterSwap::Stored { from, to })
}
