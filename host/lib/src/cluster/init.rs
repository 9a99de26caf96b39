//! `batpak-host cluster init`: creates what the host needs on a cluster
//! (one stream per partition, the layout and plugins buckets) through
//! [`batpak_nats::init_cluster`], after checking every node for
//! nats-server 2.12+ and `sync_interval: always`. Its refusals stay typed
//! ([`batpak_nats::InitError`]) so the CLI adds its advice by variant.

use crate::cluster::address::ClusterAddress;
use batpak_nats::partition::stream_name;
use batpak_nats::{init_cluster, InitSpec, NatsLog, NatsOptions, LAYOUT_BUCKET, PLUGINS_BUCKET};
use std::io::Write;
use std::process::ExitCode;

/// Arguments of `batpak-host cluster init`.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ClusterInitArgs {
    /// Partitions K: entity → partition is fnv1a64(entity) % K, fixed once
    /// created. Order is per partition.
    #[cfg_attr(feature = "cli", arg(long, value_name = "K"))]
    pub partitions: u32,
    /// Replicas R of every stream and bucket (3 survives the loss of one
    /// node; at most the number of nodes).
    #[cfg_attr(feature = "cli", arg(long, value_name = "R"))]
    pub replicas: u32,
    /// The monitoring endpoint of every node (`http: HOST:PORT` in its
    /// config), comma-separated: each node's version and `sync_interval`
    /// are read there before anything is created.
    #[cfg_attr(
        feature = "cli",
        arg(
            long,
            value_name = "http://HOST:PORT[,…]",
            value_delimiter = ',',
            required = true
        )
    )]
    pub monitor: Vec<String>,
}

/// Runs `cluster init` on the cluster at `at`; prints one JSON line saying
/// what exists now and whether this run created it (`"created": false`
/// when the same layout was there already: nothing changed).
///
/// # Errors
/// [`batpak_nats::InitError`] (a node too old, without `sync_interval:
/// always`, too few nodes for R, another layout already there, …).
pub fn cluster_init(
    at: &ClusterAddress,
    args: &ClusterInitArgs,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let monitors: Vec<String> = args
        .monitor
        .iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    // Whether a layout was there before: same layout → nothing created.
    let before = NatsLog::open(at.servers(), NatsOptions::default())
        .ok()
        .map(|l| l.layout());
    let spec = InitSpec {
        servers: at.servers().to_vec(),
        monitors,
        partitions: args.partitions,
        replicas: args.replicas,
    };
    let (layout, nodes) = init_cluster(&spec, NatsOptions::default())?;
    let created = before != Some(layout);
    let line = serde_json::json!({
        "created": created,
        "partitions": layout.partitions,
        "replicas": layout.replicas,
        "streams": (0..layout.partitions).map(stream_name).collect::<Vec<_>>(),
        "buckets": [LAYOUT_BUCKET, PLUGINS_BUCKET],
        "partition_of": "fnv1a64(entity) % partitions",
        "nodes": nodes.iter().map(|n| serde_json::json!({
            "server": n.server, "version": n.version,
        })).collect::<Vec<_>>(),
    });
    writeln!(out, "{line}")?;
    if created {
        eprintln!(
            "cluster init: created {} partition stream(s) (BATPAK_P0…) × {} replica(s) and the \
             buckets {LAYOUT_BUCKET}, {PLUGINS_BUCKET} on {} node(s); order is per partition",
            layout.partitions,
            layout.replicas,
            nodes.len()
        );
    } else {
        eprintln!(
            "cluster init: the cluster already holds this layout ({} × {}); nothing changed",
            layout.partitions, layout.replicas
        );
    }
    Ok(ExitCode::SUCCESS)
}
