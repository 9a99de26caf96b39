//! The running host as a value: [`Host::prepare`] loads every plugin (a bad
//! one refuses the whole start, naming its file; nothing is started yet),
//! [`PreparedHost::start`] opens the store, starts a runner per reactor,
//! the plugin watcher (`watch`) and the service (control socket, HTTP), and
//! [`Host::run`] serves until asked to stop; [`Host::stop`] stops the
//! runners (each commits its batch) and closes the store.
//!
//! ```no_run
//! use batpak_host_lib::{Host, HostConfig, NoObserver};
//! let config = HostConfig::new("./batpak-data", vec!["plugins/inventory.wasm".into()]);
//! let mut host = Host::start(config, Box::new(NoObserver), &|| false)?;
//! let control = host.control(); // status, pause, resume, swap… from any thread
//! host.run(true, &|| false); // until every reactor caught up
//! let report = host.stop()?;
//! assert!(report.ok());
//! # Ok::<(), anyhow::Error>(())
//! ```

use crate::host::log_filter::{Console, LogFilter, SinkGuard};
use crate::host::supervisor::{Control, HostObserver, RunPolicy, ShutdownReport, Supervisor};
use crate::hot_swap::watch::expand_plugin_args;
use crate::plugins::compile_cache::CacheOptions;
use crate::plugins::loader::{Loaded, Loader};
use crate::plugins::plugin_config::{Flags, PluginConfigFile};
use batpak_runtime::{LogLevel, Runtime};
use batpak_service::{Service, ServiceOptions};
use batpak_store::{Notices, Store, StoreError, StoreOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Everything a host is started with. [`HostConfig::new`] gives the
/// defaults of `batpak-host run`.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The store directory (created when missing).
    pub data: PathBuf,
    /// Plugin components (`.wasm` or `.wat`); with `watch` also directories
    /// (every plugin file in them).
    pub plugins: Vec<PathBuf>,
    /// Hot swap: watch the plugin files and directories; a replaced file is
    /// swapped in, a new one started, a removed one stopped.
    pub watch: bool,
    /// Hot swap: batches a new version is on probation before it stays.
    pub swap_rollback: u32,
    /// The operator's per-plugin config file (`--plugin-config`), re-read on
    /// every swap.
    pub plugin_config: Option<PathBuf>,
    /// Limits and log level given for every plugin (the config file's
    /// per-plugin values beat them).
    pub flags: Flags,
    /// Calls of a failing batch before it is bisected and parked (≥ 1).
    pub attempts: u32,
    /// Wait before the first retry (each later one is 4 times longer).
    pub backoff: Duration,
    /// Most log lines per second from one source (0: no limit).
    pub log_rate: u32,
    /// The compile cache.
    pub cache: CacheOptions,
    /// What the service serves besides the control socket.
    pub service: ServiceOptions,
    /// Where log lines and notices go.
    pub console: Console,
}

impl HostConfig {
    /// A config for `plugins` on the store in `data`, with `run`'s defaults.
    pub fn new(data: impl Into<PathBuf>, plugins: Vec<PathBuf>) -> HostConfig {
        HostConfig {
            data: data.into(),
            plugins,
            watch: false,
            swap_rollback: 0,
            plugin_config: None,
            flags: Flags::default(),
            attempts: 3,
            backoff: Duration::from_millis(50),
            log_rate: 50,
            cache: CacheOptions::default(),
            service: ServiceOptions::default(),
            console: Console::stderr(),
        }
    }
}

/// Why a host did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The config asks for something that cannot be (a zero limit, an
    /// unreadable `--plugin-config`, a directory without `watch`).
    #[error("{0}")]
    Usage(String),
    /// A plugin did not load (the message names its file).
    #[error("{0:#}")]
    Load(anyhow::Error),
    /// Two plugins are the same reactor.
    #[error("plugin {}: reactor name {name:?} is already used by plugin {}; each reactor needs its own name (it keys the checkpoint)", path.display(), first.display())]
    NameTaken {
        /// The second plugin.
        path: PathBuf,
        /// The reactor name.
        name: String,
        /// The plugin that has it.
        first: PathBuf,
    },
    /// The store did not open.
    #[error("opening the store in {}", data.display())]
    Store {
        /// The store directory.
        data: PathBuf,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// A runner, the watcher or the service did not start; what had started
    /// was stopped and the store closed.
    #[error("{0:#}")]
    Start(anyhow::Error),
}

/// Every plugin loaded and checked; nothing started, the store not opened.
pub struct PreparedHost {
    config: HostConfig,
    loader: Loader,
    loaded: Vec<Loaded>,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    log: Arc<LogFilter>,
    sink: SinkGuard,
}

/// A running host: its supervisor (reactors), the service, the log sink.
pub struct Host {
    supervisor: Supervisor,
    service: Option<Service>,
    _sink: SinkGuard,
}

impl Host {
    /// Loads every plugin of `config` (see [`PreparedHost`]).
    ///
    /// # Errors
    /// [`HostError::Usage`], [`HostError::Load`], [`HostError::NameTaken`].
    pub fn prepare(config: HostConfig) -> Result<PreparedHost, HostError> {
        if config.flags.timeout_ms == Some(0)
            || config.flags.memory_mb == Some(0)
            || config.flags.max_batch == Some(0)
            || config.attempts == 0
        {
            return Err(HostError::Usage(
                "--timeout-ms, --memory-mb, --max-batch and --attempts must be at least 1".into(),
            ));
        }
        let file = match &config.plugin_config {
            Some(p) => PluginConfigFile::read(p).map_err(HostError::Usage)?,
            None => PluginConfigFile::default(),
        };
        let log = LogFilter::new(config.console.clone(), config.log_rate);
        let sink = log.install();
        let runtime = Runtime::new(config.cache.runtime_config().map_err(HostError::Load)?)
            .map_err(|e| HostError::Load(e.into()))?;
        let loader = Loader::new(runtime, file, config.flags.clone())
            .with_config_path(config.plugin_config.clone());
        // Hot swap: with `watch` a directory stands for the plugin files in it.
        let (files, dirs) =
            expand_plugin_args(&config.plugins, config.watch).map_err(HostError::Usage)?;
        let mut loaded = Vec::new();
        let mut names: HashMap<String, PathBuf> = HashMap::new();
        for path in &files {
            // Said first: a cold compile of a large component takes seconds.
            loader.log(
                LogLevel::Info,
                &format!(
                    "loading {} ({}): compiling it unless the compile cache has it",
                    path.display(),
                    crate::views::human_bytes(crate::hot_swap::pending_op::file_size(path))
                ),
            );
            let l = loader.load(path).map_err(HostError::Load)?;
            if let Some(first) = names.insert(l.name().to_string(), path.clone()) {
                return Err(HostError::NameTaken {
                    path: path.clone(),
                    name: l.name().to_string(),
                    first,
                });
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
        Ok(PreparedHost {
            config,
            loader,
            loaded,
            files,
            dirs,
            log,
            sink,
        })
    }

    /// [`Host::prepare`] then [`PreparedHost::start`].
    ///
    /// # Errors
    /// As those two.
    pub fn start(
        config: HostConfig,
        observer: Box<dyn HostObserver>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Host, HostError> {
        Host::prepare(config)?.start(observer, stop)
    }

    /// A handle to operate the reactors from any thread (status, pause,
    /// resume, swap, add, stop).
    pub fn control(&self) -> Control {
        self.supervisor.control()
    }

    /// The control socket's path (other processes reach the host there).
    pub fn socket_path(&self) -> Option<&Path> {
        self.service.as_ref().and_then(Service::socket_path)
    }

    /// The HTTP address bound, when `service.listen` was given.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.service.as_ref().and_then(Service::http_addr)
    }

    /// The file holding the HTTP bearer token, when HTTP is served.
    pub fn token_path(&self) -> Option<&Path> {
        self.service.as_ref().and_then(Service::token_path)
    }

    /// Serves control requests and applies watched changes until `stop()`
    /// says so, [`Control::shutdown`] is called, every reactor ends, or —
    /// with `until_idle` — every reactor has caught up with the durable log.
    pub fn run(&mut self, until_idle: bool, stop: &dyn Fn() -> bool) {
        self.supervisor.run(until_idle, stop);
    }

    /// Stops serving, stops every runner (each finishes its batch and
    /// commits) and closes the store.
    ///
    /// # Errors
    /// Closing the store failed.
    pub fn stop(mut self) -> anyhow::Result<ShutdownReport> {
        // No new requests while the reactors stop.
        if let Some(s) = self.service.take() {
            s.stop();
        }
        self.supervisor.shutdown()
    }
}

impl PreparedHost {
    /// The reactor names loaded, in order.
    pub fn reactors(&self) -> Vec<String> {
        self.loaded.iter().map(|l| l.name().to_string()).collect()
    }

    /// Opens the store (waiting up to [`LOCK_WAIT`] for a reader that holds
    /// it), starts a runner per reactor, the watcher and the service.
    /// `observer` sees the reactors and their status; `stop` is asked while
    /// waiting and between starts (a signal arriving meanwhile).
    ///
    /// # Errors
    /// [`HostError::Store`]; [`HostError::Start`] after stopping what had
    /// started.
    pub fn start(
        self,
        observer: Box<dyn HostObserver>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Host, HostError> {
        let PreparedHost {
            config,
            loader,
            loaded,
            files,
            dirs,
            log,
            sink,
        } = self;
        let data = &config.data;
        let store = open_waiting_for_readers(data, stop, &config.console).map_err(|source| {
            HostError::Store {
                data: data.clone(),
                source,
            }
        })?;
        for line in crate::store_commands::recovery_notes(&store) {
            config.console.println(&line);
        }
        let policy = RunPolicy {
            attempts: config.attempts,
            backoff: config.backoff,
            swap_rollback: config.swap_rollback,
        };
        let mut supervisor = Supervisor::new(store, loader, policy, observer, log);
        for l in loaded {
            if stop() {
                break;
            }
            if let Err(e) = supervisor.add(l) {
                // Stop what started, commit, close; then report.
                let _ = supervisor.shutdown();
                return Err(HostError::Start(e));
            }
        }
        if config.watch {
            if let Err(e) = supervisor.watch(&files, &dirs) {
                let _ = supervisor.shutdown();
                return Err(HostError::Start(e));
            }
        }
        // Other commands on this store go through the running host from here.
        let service = match crate::host::operator::serve(
            supervisor.control(),
            &config.service,
            config.flags.log_level,
            &config.console,
        ) {
            Ok(s) => s,
            Err(e) => {
                let _ = supervisor.shutdown();
                return Err(HostError::Start(e));
            }
        };
        Ok(Host {
            supervisor,
            service: Some(service),
            _sink: sink,
        })
    }
}

/// How long a host waits for another process to release the store before
/// giving up: a query (`events`, `trace`, `verify`) without a running host
/// holds it for the moment of its read, and must not make a host started
/// at that moment fail.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens the store, retrying while another process holds it, for at most
/// [`LOCK_WAIT`]; a holder that stays (another `run`) is reported with its
/// pid and command, as before. What the store reports outside any call (a
/// failed periodic snapshot) goes to stderr.
fn open_waiting_for_readers(
    data: &Path,
    stop: &dyn Fn() -> bool,
    console: &Console,
) -> Result<Store, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut said = false;
    let options = || StoreOptions {
        notices: Notices::to(|n| eprintln!("batpak: {n}")),
        ..StoreOptions::default()
    };
    loop {
        match Store::open_with(data, options()) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline && !stop() => {
                if !said {
                    console.println(&format!(
                        "run: the store is held by another process; waiting up to {} s for it",
                        LOCK_WAIT.as_secs()
                    ));
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}
