//! `pause NAME --store …` / `resume NAME --store …`: a reactor paused or
//! resumed on every host of the cluster (see
//! `batpak_host_lib::cluster_pause`).

use crate::operate::NameArgs;
use batpak_host_lib as host;
use std::process::ExitCode;

/// Pauses (`paused`) or resumes `a.name` cluster-wide.
pub(crate) fn pause(
    at: &host::ClusterAddress,
    a: NameArgs,
    paused: bool,
) -> anyhow::Result<ExitCode> {
    let list = match host::cluster_pause(at, &a.name, paused) {
        Ok(l) => l,
        Err(host::ClusterRunError::Usage(m)) => return Err(host::Usage(m).into()),
        Err(e) => return Err(e.into()),
    };
    println!("{}", serde_json::to_string(&list)?);
    let positions: Vec<String> = list
        .iter()
        .map(|s| format!("partition {} at {}", s.partition, s.position))
        .collect();
    if paused {
        eprintln!(
            "paused {} on every host: {} (`resume {} --store {at}` continues after them)",
            a.name,
            positions.join(", "),
            a.name
        );
    } else {
        eprintln!(
            "resumed {}: hosts take its slots at their next lease tick ({})",
            a.name,
            positions.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
