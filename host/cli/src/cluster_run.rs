//! `run --store nats://…`: this process becomes one host of the cluster
//! (see `batpak_host_lib::run_cluster_host`): it takes the (reactor,
//! partition) slots it is preferred for or that nobody holds, stands by for
//! the rest, and prints one `cluster |` line per slot it acquires or
//! releases. Ctrl-C / SIGTERM stops its runners at a batch boundary and
//! releases its leases, so a standby takes over at once. With `--listen
//! ADDR --token-file FILE` it serves the HTTP API against the cluster.

use crate::run::RunArgs;
use crate::signals;
use batpak_host_lib as host;
use std::process::ExitCode;
use std::time::Duration;

/// Runs the plugins of `a` as a host of the cluster at `at`.
pub(crate) fn run(at: &host::ClusterAddress, a: RunArgs) -> anyhow::Result<ExitCode> {
    let unsupported = [
        (a.watch, "--watch"),
        (a.until_idle, "--until-idle"),
        (!a.instances.is_empty(), "--instances"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(on, _)| *on) {
        return Err(host::Usage(format!(
            "`run {flag}` does not work on a cluster yet (--store {at}): run without it (use \
             `batpak-host swap NAME FILE` for a new version)"
        ))
        .into());
    }
    let _signals = signals::install();
    let config = host::ClusterRunConfig {
        plugin_config: a.plugin_config,
        flags: host::Flags {
            timeout_ms: a.timeout_ms,
            memory_mb: a.memory_mb,
            max_batch: a.max_batch,
            log_level: a.log_level,
            instances: Default::default(),
        },
        attempts: a.attempts,
        backoff: Duration::from_millis(a.backoff_ms),
        swap_rollback: a.swap_rollback,
        log_rate: a.log_rate,
        cache: a.cache,
        lease_ttl: Duration::from_millis(a.lease_ttl_ms),
        host_id: a.host_id,
        service: host::ServiceOptions {
            listen: a.listen,
            token_file: a.token_file,
        },
        ..host::ClusterRunConfig::new(at.clone(), a.plugins)
    };
    signals::enter_running();
    let report = match host::run_cluster_host(config, &signals::stop_requested) {
        Ok(r) => r,
        Err(host::ClusterRunError::Usage(m)) => return Err(host::Usage(m).into()),
        Err(e) => return Err(e.into()),
    };
    eprintln!(
        "summary | {} slot(s) acquired, {} runner(s) fenced by a takeover, {} failed",
        report.acquired,
        report.fenced,
        report.failed.len()
    );
    for f in &report.failed {
        eprintln!("error: {f}");
    }
    // A takeover's fence is how the cluster works; a runner that failed
    // otherwise is reported as the embedded host reports one.
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
