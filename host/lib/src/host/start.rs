//! `batpak-host run`: load every plugin, open the store, hand both to the
//! [`Supervisor`] and run until a signal, idleness (`--until-idle`) or every
//! reactor ending.

use crate::loader::Loader;
use crate::log_filter::LogFilter;
use crate::plugin_config::{Flags, PluginConfigFile};
use crate::signals;
use crate::status_display::{Mode, StatusDisplay};
use crate::supervisor::{RunPolicy, Supervisor};
use crate::usage::usage;
use crate::watch::expand_plugin_args;
use anyhow::Context;
use batpak_runtime::{LogLevel, Runtime};
use batpak_store::{Store, StoreError};
use clap::Args;
use std::collections::HashMap;
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
    ///  "log_level"}}}.
    /// Per-plugin values beat command-line flags, which beat "defaults".
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
    pub cache: crate::compile_cache::CacheArgs,
    /// The service: `--listen ADDR` (HTTP) and `--token-file FILE`.
    #[command(flatten)]
    pub service: crate::operate::ServiceArgs,
}

pub(crate) fn run(data: &Path, a: RunArgs) -> anyhow::Result<ExitCode> {
    // First, so a signal at any later moment is handled (while loading it
    // ends the process with 0: nothing has been started).
    let _signals = signals::install();
    if a.timeout_ms == Some(0)
        || a.memory_mb == Some(0)
        || a.max_batch == Some(0)
        || a.attempts == 0
    {
        return usage("--timeout-ms, --memory-mb, --max-batch and --attempts must be at least 1");
    }
    let config = match &a.plugin_config {
        Some(p) => match PluginConfigFile::read(p) {
            Ok(c) => c,
            Err(m) => return usage(m),
        },
        None => PluginConfigFile::default(),
    };
    let flags = Flags {
        timeout_ms: a.timeout_ms,
        memory_mb: a.memory_mb,
        max_batch: a.max_batch,
        log_level: a.log_level,
    };
    let display = StatusDisplay::new(Mode::detect(a.quiet));
    let log = LogFilter::new(display.console(), a.log_rate);
    let _sink = log.install();
    let runtime = Runtime::new(a.cache.runtime_config()?)?;
    let loader = Loader::new(runtime, config, flags).with_config_path(a.plugin_config.clone());
    // Hot swap: with --watch a directory stands for the plugin files in it.
    let (files, dirs) = match expand_plugin_args(&a.plugins, a.watch) {
        Ok(x) => x,
        Err(m) => return usage(m),
    };

    // Load everything before starting anything: a bad plugin refuses the
    // whole run with a message naming its file.
    let mut loaded = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for path in &files {
        // Said first: a cold compile of a large component takes seconds.
        loader.log(
            LogLevel::Info,
            &format!(
                "loading {} ({}): compiling it unless the compile cache has it",
                path.display(),
                crate::status_display::human_bytes(crate::pending_op::file_size(path))
            ),
        );
        let l = loader.load(path)?;
        if let Some(first) = names.insert(l.name().to_string(), path.clone()) {
            anyhow::bail!(
                "plugin {}: reactor name {:?} is already used by plugin {}; each reactor needs its own name (it keys the checkpoint)",
                path.display(),
                l.name(),
                first.display()
            );
        }
        loaded.push(l);
    }
    for name in loader.config().configured() {
        if !names.contains_key(name) {
            loader.log(
                LogLevel::Warn,
                &format!("--plugin-config configures reactor {name:?}, which none of the given plugins is"),
            );
        }
    }

    // From here a signal asks for a clean stop: the store may be recovering
    // or the runners committing.
    signals::enter_running();
    let store = open_waiting_for_readers(data)
        .with_context(|| format!("opening the store in {}", data.display()))?;
    crate::store_cmds::report_recovery(&store);
    let policy = RunPolicy {
        attempts: a.attempts,
        backoff: Duration::from_millis(a.backoff_ms),
        swap_rollback: a.swap_rollback,
    };
    let mut supervisor = Supervisor::new(store, loader, policy, display, log);
    for l in loaded {
        if signals::stop_requested() {
            break;
        }
        if let Err(e) = supervisor.add(l) {
            // Stop what started, commit, close; then report.
            let _ = supervisor.shutdown();
            return Err(e);
        }
    }
    if a.watch {
        if let Err(e) = supervisor.watch(&files, &dirs) {
            let _ = supervisor.shutdown();
            return Err(e);
        }
    }
    // Other commands on this store go through the running host from here.
    let service = match crate::operate::serve(supervisor.control(), &a.service, a.log_level) {
        Ok(s) => s,
        Err(e) => {
            let _ = supervisor.shutdown();
            return Err(e);
        }
    };
    supervisor.run(a.until_idle);
    // No new requests while the reactors stop.
    service.stop();
    Ok(if supervisor.shutdown()? {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How long `run` waits for another process to release the store before
/// giving up: a query (`events`, `trace`, `verify`) without a running host
/// holds it for the moment of its read, and must not make a `run` started
/// at that moment fail.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens the store, retrying while another process holds it, for at most
/// [`LOCK_WAIT`]; a holder that stays (another `run`) is reported with its
/// pid and command, as before.
fn open_waiting_for_readers(data: &Path) -> Result<Store, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut said = false;
    loop {
        match Store::open(data) {
            Err(StoreError::Locked { .. })
                if std::time::Instant::now() < deadline && !signals::stop_requested() =>
            {
                if !said {
                    eprintln!(
                        "run: the store is held by another process; waiting up to {} s for it",
                        LOCK_WAIT.as_secs()
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}
