//! Opening the NATS log at a [`ClusterAddress`] for one command.

use crate::cluster::address::ClusterAddress;
use batpak_nats::{NatsLog, NatsOptions};

/// The log on the cluster at `at`, its layout read. Refused (typed,
/// [`batpak_nats::LogError`]) when no node answers or `cluster init` has
/// not run.
///
/// # Errors
/// [`batpak_nats::LogError::Connect`], [`batpak_nats::LogError::NoLayout`].
pub fn open_log(at: &ClusterAddress) -> anyhow::Result<NatsLog> {
    Ok(NatsLog::open(at.servers(), NatsOptions::default())?)
}
