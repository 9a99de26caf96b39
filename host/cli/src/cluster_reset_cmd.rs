//! `reset NAME --to start|end|current --store nats://…` (or `--partition P
//! --to SEQ`): moves a paused reactor's checkpoint in every partition, each
//! move recorded in its partition (see `batpak_host_lib::cluster_reset`).

use crate::operate::ResetArgs;
use batpak_host_lib as host;
use std::process::ExitCode;

/// Resets `a.name` on the cluster at `at`: one JSON line per partition.
pub(crate) fn reset(at: &host::ClusterAddress, a: ResetArgs) -> anyhow::Result<ExitCode> {
    if a.instances.is_some() {
        return Err(host::Usage(format!(
            "`reset --instances` does not apply on a cluster (--store {at}): each partition runs \
             one instance; the parallelism is the partition count of `cluster init`"
        ))
        .into());
    }
    if a.plugin.is_some() {
        return Err(host::Usage(format!(
            "`reset --plugin` (a region change) does not work on a cluster yet (--store {at}): a \
             swap to a version with another region is refused; keep the region"
        ))
        .into());
    }
    let to = a.to.expect("clap requires --to without --instances");
    let list = match host::cluster_reset(at, &a.name, to, a.partition) {
        Ok(l) => l,
        Err(host::ClusterResetError::Cluster(host::ClusterRunError::Usage(m))) => {
            return Err(host::Usage(m).into())
        }
        Err(e) => return Err(e.into()),
    };
    for r in &list {
        println!("{}", serde_json::to_string(r)?);
    }
    let moves: Vec<String> = list
        .iter()
        .map(|r| format!("partition {}: {} -> {}", r.partition, r.from, r.to))
        .collect();
    eprintln!(
        "reset {} ({}), each recorded as a batpak.reactor.reset event in its partition; \
         `batpak-host resume {} --store {at}` continues from there",
        a.name,
        moves.join(", "),
        a.name
    );
    Ok(ExitCode::SUCCESS)
}
