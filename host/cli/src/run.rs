//! `batpak-host run`: the library's [`Host`] with the status display and
//! the signals of a terminal: load every plugin, open the store, run until a
//! signal, idleness (`--until-idle`) or every reactor ending, then print a
//! summary line per reactor.

use crate::signals;
use crate::status_display::{summary_body, Mode, StatusDisplay};
use crate::usage::usage;
use batpak_host_lib::{Flags, Host, HostConfig, HostError, LogLevel, ServiceOptions};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `batpak-host run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Plugin components (`.wasm`, or component text `.wat`); with `--watch`
    /// also directories (every plugin file in them).
    #[arg(required = true, value_name = "PLUGIN")]
    pub plugins: Vec<PathBuf>,
    /// Hot swap: watch the plugin files (and directories) and swap a
    /// replaced file in at a batch boundary, start a new file's plugin, stop
    /// a removed file's (its checkpoint is kept). A file that does not load
    /// is refused and the running version keeps serving.
    #[arg(long)]
    pub watch: bool,
    /// Hot swap: roll a new version back to the one it replaced when it
    /// fails (errs, traps, times out) within its first N batches.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub swap_rollback: u32,
    /// Exit (0) once every reactor has caught up with the log and nothing is
    /// pending, instead of running until Ctrl-C / SIGTERM.
    #[arg(long)]
    pub until_idle: bool,
    /// JSON file with per-plugin config, grants and limits:
    /// {"defaults": {"timeout_ms","memory_mb","max_batch"},
    ///  "plugins": {"<reactor name>": {"config": <JSON for init>,
    ///  "grant_emits": [kinds], "timeout_ms", "memory_mb", "max_batch",
    ///  "log_level", "instances"}}}.
    /// Per-plugin values beat command-line flags, which beat "defaults"
    /// (except `--instances`, which beats "instances").
    #[arg(long, value_name = "FILE")]
    pub plugin_config: Option<PathBuf>,
    /// Wall-time limit of one call into a plugin [default: 5000].
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Memory budget of one plugin instance: all its linear memories and
    /// tables together [default: 256].
    #[arg(long, value_name = "MIB")]
    pub memory_mb: Option<u64>,
    /// Largest batch handed to `react` [default: 256].
    #[arg(long, value_name = "N")]
    pub max_batch: Option<usize>,
    /// Run reactor NAME as N parallel instances by key (repeatable): each
    /// handles the entities with fnv1a64(entity) % N == its index, with its
    /// own plugin instance and checkpoint. The store's checkpoints must
    /// record the same N (changing it: `reset NAME --instances N`).
    #[arg(long, value_name = "NAME=N", value_parser = batpak_host_lib::parse_instances_flag)]
    pub instances: Vec<(String, u32)>,
    /// Calls of a failing batch before it is bisected and the failing event
    /// parked.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub attempts: u32,
    /// Wait before the first retry; each later wait is 4 times longer.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub backoff_ms: u64,
    /// Lowest level of log lines printed (trace, debug, info, warn, error,
    /// off); a reactor's "log_level" in --plugin-config beats it.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: LogLevel,
    /// Most log lines printed per second from one source (a plugin's log,
    /// its stdout, its stderr, the runtime about it); the rest are counted
    /// and reported in one line. 0 prints everything.
    #[arg(long, default_value_t = 50, value_name = "LINES")]
    pub log_rate: u32,
    /// Do not show the live status (the final summary is printed). On a
    /// terminal the status redraws in place; otherwise it prints `status |`
    /// lines when something changed, at most once a second.
    #[arg(long)]
    pub quiet: bool,
    /// The compile cache.
    #[command(flatten)]
    pub cache: batpak_host_lib::CacheOptions,
    /// Serve the HTTP API on this address (e.g. 127.0.0.1:8080; off by
    /// default). Every event endpoint needs the bearer token.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Read the HTTP bearer token from this file instead of generating one
    /// into <data>/run/http.token (owner-only). Needed on a cluster
    /// (`--store`), where every host can be given the same file.
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub token_file: Option<PathBuf>,
    /// On a cluster (`--store`): a (reactor, partition) slot whose lease
    /// was not renewed for this long is taken over by a standby host; this
    /// host renews every third of it.
    #[arg(long, default_value_t = 4000, value_name = "MS")]
    pub lease_ttl_ms: u64,
    /// On a cluster (`--store`): this host's id in the leases bucket
    /// [default: HOSTNAME-PID].
    #[arg(long, value_name = "ID")]
    pub host_id: Option<String>,
}

pub(crate) fn run(data: &Path, a: RunArgs) -> anyhow::Result<ExitCode> {
    // First, so a signal at any later moment is handled (while loading it
    // ends the process with 0: nothing has been started).
    let _signals = signals::install();
    let display = StatusDisplay::new(Mode::detect(a.quiet));
    let config = HostConfig {
        data: data.to_path_buf(),
        plugins: a.plugins,
        watch: a.watch,
        swap_rollback: a.swap_rollback,
        plugin_config: a.plugin_config,
        flags: Flags {
            timeout_ms: a.timeout_ms,
            memory_mb: a.memory_mb,
            max_batch: a.max_batch,
            log_level: a.log_level,
            instances: a.instances.into_iter().collect(),
        },
        attempts: a.attempts,
        backoff: Duration::from_millis(a.backoff_ms),
        log_rate: a.log_rate,
        cache: a.cache,
        service: ServiceOptions {
            listen: a.listen,
            token_file: a.token_file,
        },
        console: display.console(),
    };
    let stop = signals::stop_requested;
    let started = Host::prepare(config).and_then(|prepared| {
        // From here a signal asks for a clean stop: the store may be
        // recovering or the runners committing.
        signals::enter_running();
        prepared.start(Box::new(display), &stop)
    });
    let mut host = match started {
        Ok(h) => h,
        Err(HostError::Usage(m)) => return usage(m),
        Err(e) => return Err(e.into()),
    };
    host.run(a.until_idle, &stop);
    let report = host.stop()?;
    for r in &report.reactors {
        if let Some(e) = &r.error {
            eprintln!("error: reactor {}: {e}", r.view.label());
        }
        eprintln!(
            "summary | {} (version {})",
            summary_body(&r.view),
            r.view.version
        );
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
