//! `status --store nats://…`: one line per reactor and partition (host,
//! standbys, version, digest, position, lag), or `--json`. Read from the
//! cluster's leases and checkpoints; no running host is needed.

use crate::operate::StatusArgs;
use batpak_host_lib as host;
use std::process::ExitCode;

/// Prints the status of every reactor on the cluster at `at`.
pub(crate) fn status(at: &host::ClusterAddress, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let list = host::cluster_status(at)?;
    if a.json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:>9} {:<20} {:>8} {:<9} {:<12} {:>10} {:>8}",
        "REACTOR", "PARTITION", "HOST", "STANDBY", "VERSION", "DIGEST", "POSITION", "LAG"
    );
    for s in &list {
        let digest = s.digest.as_deref().unwrap_or("-");
        println!(
            "{:<16} {:>9} {:<20} {:>8} {:<9} {:<12} {:>10} {:>8}",
            s.reactor,
            s.partition,
            s.host.as_deref().unwrap_or("none"),
            s.standbys,
            s.version.as_deref().unwrap_or("-"),
            &digest[..digest.len().min(12)],
            s.position,
            s.lag
        );
    }
    if list.is_empty() {
        eprintln!("no reactor has run on this cluster yet (start `batpak-host run --store {at} PLUGIN.wasm`)");
    }
    eprintln!("positions and lags are per partition: each partition has its own sequence");
    Ok(ExitCode::SUCCESS)
}
