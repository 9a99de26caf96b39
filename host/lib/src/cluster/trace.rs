//! `trace` on a cluster: an event's causes and reactions, which can live in
//! other partitions than the event (a reaction to an entity elsewhere).
//! Causes and reactions are found by id, so every partition is read (the
//! cluster has no index of causation) into the embedded command's own
//! source of a scanned log, and drawn by the same code. Order within the
//! tree is by sequence, which is per partition; JSON nodes name their
//! `partition`.

use crate::cluster::address::ClusterAddress;
use crate::cluster::connect::open_log;
use crate::cluster::partition_scan::scan_partition;
use crate::trace::build::{draw, resolve, ScanSource, TraceArgs, TraceEvent};
use std::io::Write;
use std::process::ExitCode;

/// `trace ID|ENTITY` on the cluster at `at`.
///
/// # Errors
/// A target that is no event or entity in any partition, the cluster
/// unreachable, a damaged record.
pub fn cluster_trace(
    at: &ClusterAddress,
    a: TraceArgs,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let log = open_log(at)?;
    let mut src = ScanSource::new();
    let mut failure = None;
    for p in 0..log.layout().partitions {
        scan_partition(
            &log,
            p,
            0,
            |e| {
                let mut t = TraceEvent::from_event(e);
                t.json["partition"] = p.into();
                src.add(t);
                true
            },
            &mut |d| {
                failure.get_or_insert(d);
            },
        )?;
    }
    if let Some(d) = failure {
        return Err(anyhow::Error::from(d)
            .context("trace: a damaged record (`batpak-host verify --store …` reports them all)"));
    }
    let traced = resolve(&mut src, &a.target)?;
    eprintln!(
        "trace: order is per partition (#seq is the sequence within the event's partition; \
         JSON names it)"
    );
    draw(&traced, a.format, out)
}
