//! Why a cluster command (`run`, `status`, `swap`, `pause`, `resume`
//! with `--store`) did not start or was refused, and the opening of the
//! cluster's log that refuses an uninitialised cluster by naming `cluster
//! init`.

use crate::cluster::address::ClusterAddress;
use batpak_nats::{LeaseError, LogError, NatsLog, NatsOptions, PluginStore, PluginStoreError};

/// Why a cluster command (`run`, `status`, `swap`, `pause`, `resume` with
/// `--store`) did not start or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterRunError {
    /// A flag or file that cannot be used (the message names the fix).
    #[error("{0}")]
    Usage(String),
    /// A plugin did not load (the message names its file).
    #[error("{0:#}")]
    Load(anyhow::Error),
    /// The cluster holds no batpak layout.
    #[error(
        "the cluster at {address} is not initialised for batpak ({source}): run `batpak-host \
         cluster init --store {address} --partitions K --replicas R` first"
    )]
    NotInitialised {
        /// The cluster.
        address: String,
        /// What was missing.
        #[source]
        source: LogError,
    },
    /// The cluster did not answer.
    #[error("connecting to the cluster at {address}")]
    Connect {
        /// The cluster.
        address: String,
        /// Why.
        #[source]
        source: LogError,
    },
    /// The cluster's plugin store failed.
    #[error("the plugins on the cluster at {address}")]
    Plugins {
        /// The cluster.
        address: String,
        /// Why.
        #[source]
        source: PluginStoreError,
    },
    /// The HTTP API (`--listen`) could not start: the address, or the
    /// token file (the message names the fix).
    #[error("--listen: {0}")]
    Http(#[from] batpak_service::ServiceError),
    /// The leases bucket could not be opened.
    #[error("opening the leases bucket on {address}")]
    Leases {
        /// The cluster.
        address: String,
        /// Why.
        #[source]
        source: LeaseError,
    },
}

/// Opens the cluster's log, refusing one without a batpak layout by naming
/// `cluster init`.
pub(crate) fn open_log(
    address: &ClusterAddress,
    options: &NatsOptions,
) -> Result<NatsLog, ClusterRunError> {
    let shown = address.to_string();
    NatsLog::open(address.servers(), options.clone()).map_err(|e| match e {
        e @ (LogError::NoLayout { .. } | LogError::NotInitialised { .. }) => {
            ClusterRunError::NotInitialised {
                address: shown.clone(),
                source: e,
            }
        }
        e => ClusterRunError::Connect {
            address: shown.clone(),
            source: e,
        },
    })
}

/// The error for a failure of the plugin store of the cluster at
/// `address`, as a function to hand to `map_err`.
pub(crate) fn plugins_error(
    address: &ClusterAddress,
) -> impl Fn(PluginStoreError) -> ClusterRunError {
    let shown = address.to_string();
    move |source| ClusterRunError::Plugins {
        address: shown.clone(),
        source,
    }
}

/// Opens the plugin store of the cluster at `address`, whose log `log`
/// gives the replica count its buckets are made with.
pub(crate) fn open_plugin_store(
    address: &ClusterAddress,
    options: &NatsOptions,
    log: &NatsLog,
) -> Result<PluginStore, ClusterRunError> {
    PluginStore::open(address.servers(), options, log.layout().replicas)
        .map_err(plugins_error(address))
}
