//! `status --store nats://…`: per reactor and partition, which host holds
//! the slot (and how many live hosts stand by for it), the version and
//! digest it runs, its position (the checkpoint) and its lag (the
//! partition's last sequence − the position). Read from the leases bucket
//! and the checkpoints; no running host is needed. A one-shot reader cannot
//! judge a lease's expiry (that takes watching it for a TTL), so a holder
//! that died moments ago is still shown until a standby takes over.

use crate::cluster::address::ClusterAddress;
use crate::cluster::cluster_run_error::{open_log, ClusterRunError};
use batpak_log::EventLog;
use batpak_nats::{host_id, reactor_slot, Leases, LogError, NatsOptions, PartitionLog};
use batpak_runtime::cursor_id;
use serde::Serialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// One (reactor, partition) of the cluster.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SlotStatus {
    /// The reactor.
    pub reactor: String,
    /// The partition.
    pub partition: u32,
    /// The host holding the slot's lease, if any.
    pub host: Option<String>,
    /// Live hosts running the reactor that do not hold the slot.
    pub standbys: usize,
    /// The version the holder runs (as it said when it last renewed).
    pub version: Option<String>,
    /// The component digest the holder runs.
    pub digest: Option<String>,
    /// The reactor's checkpoint in the partition (0: none yet).
    pub position: u64,
    /// The partition's last sequence minus the position.
    pub lag: u64,
}

/// Reads the status of every reactor the cluster knows (from live hosts'
/// heartbeats and the leases ever taken), over every partition.
///
/// # Errors
/// [`ClusterRunError::NotInitialised`], [`ClusterRunError::Connect`],
/// [`ClusterRunError::Leases`].
pub fn cluster_status(address: &ClusterAddress) -> Result<Vec<SlotStatus>, ClusterRunError> {
    let shown = address.to_string();
    let options = NatsOptions::default();
    let log = Arc::new(open_log(address, &options)?);
    let layout = log.layout();
    let leases = Leases::open(
        address.servers(),
        &options,
        &host_id(&format!("status-{}", std::process::id())),
        crate::cluster::slots::DEFAULT_LEASE_TTL,
        layout.replicas,
    )
    .map_err(|source| ClusterRunError::Leases {
        address: shown.clone(),
        source,
    })?;
    let snap = leases
        .snapshot()
        .map_err(|source| ClusterRunError::Leases {
            address: shown.clone(),
            source,
        })?;
    let mut reactors: BTreeSet<String> = snap
        .hosts
        .iter()
        .flat_map(|h| h.reactors.iter().cloned())
        .collect();
    for slot in snap.leases.keys() {
        if let Some(name) = slot
            .strip_prefix("reactor/")
            .and_then(|r| r.rsplit_once('/'))
            .map(|(n, _)| n)
        {
            reactors.insert(name.to_string());
        }
    }
    let connect = |source: LogError| ClusterRunError::Connect {
        address: shown.clone(),
        source,
    };
    let mut out = Vec::new();
    for name in &reactors {
        let hosts = snap.hosts_running(name);
        for p in 0..layout.partitions {
            let lease = snap.lease(&reactor_slot(name, p));
            let (host, running) = match lease {
                batpak_nats::LeaseView::Held {
                    holder, running, ..
                } => (Some(holder), running),
                batpak_nats::LeaseView::Free { .. } => (None, None),
            };
            let part = PartitionLog::new(log.clone(), p).map_err(connect)?;
            let position = part
                .checkpoint(&cursor_id(name))
                .map_err(|e| ClusterRunError::Connect {
                    address: shown.clone(),
                    source: LogError::Unavailable {
                        partition: p,
                        reason: e.to_string(),
                    },
                })?
                .map_or(0, |c| c.sequence);
            let last = log.last_sequence(p).map_err(connect)?;
            out.push(SlotStatus {
                reactor: name.clone(),
                partition: p,
                standbys: hosts.iter().filter(|h| Some(*h) != host.as_ref()).count(),
                host,
                version: running.as_ref().map(|r| r.version.clone()),
                digest: running.map(|r| r.digest),
                position,
                lag: last.saturating_sub(position),
            });
        }
    }
    Ok(out)
}
