//! `swap NAME FILE --store nats://…`: stores a new version of a reactor in
//! the cluster; every host running it swaps the instances it owns at their
//! next batch boundary (see `batpak_host_lib::cluster_swap`).

use crate::swap_cmd::SwapArgs;
use batpak_host_lib as host;
use std::process::ExitCode;

/// Stores `a.plugin` as the new version of `a.name` on the cluster at `at`.
pub(crate) fn swap(at: &host::ClusterAddress, a: SwapArgs) -> anyhow::Result<ExitCode> {
    if a.shadow.is_some() {
        return Err(host::Usage(format!(
            "`swap --shadow` does not work on a cluster yet (--store {at}): run the shadow replay \
             on an embedded store, then swap without --shadow"
        ))
        .into());
    }
    let short = |d: &str| d[..d.len().min(12)].to_string();
    match host::cluster_swap(at, &a.name, &a.plugin, a.plugin_config.as_deref(), &a.cache) {
        Ok(host::ClusterSwap::Stored { from, to }) => {
            println!(
                "{}",
                serde_json::json!({
                    "reactor": a.name,
                    "old_version": from.version,
                    "old_digest": from.digest,
                    "new_version": to.version,
                    "new_digest": to.digest,
                    "plugin_config": to.plugin_config,
                })
            );
            eprintln!(
                "stored {} version {} ({}) in the cluster, replacing {} ({}): every host running it swaps its instances at their next batch boundary (`status --store {at}` shows each partition's version)",
                a.name,
                to.version,
                short(&to.digest),
                from.version,
                short(&from.digest)
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(host::ClusterSwap::Unchanged(v)) => {
            eprintln!(
                "the cluster runs {} version {} ({}) with that plugin config already: nothing changed",
                a.name,
                v.version,
                short(&v.digest)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(host::ClusterRunError::Usage(m)) => Err(host::Usage(m).into()),
        Err(e) => Err(e.into()),
    }
}
