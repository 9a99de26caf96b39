//! `run --store nats://…`: one host of a cluster. It loads the plugins as
//! the embedded host does, then, every lease tick (a third of the lease
//! TTL), beats its heartbeat, reads the leases bucket once, and:
//!
//! - renews each slot it owns; a renew refused (another host took it) or
//!   failing for longer than the TTL stops that slot's runner;
//! - hands a slot back (runner stopped at a batch boundary, lease
//!   released) when another live host running the reactor is preferred
//!   for it (rendezvous hashing, [`batpak_nats::preferred`]);
//! - takes a free or expired slot it is preferred for — or any slot left
//!   free for a TTL — and, before its runner starts, seals the slot's
//!   checkpoint ([`batpak_nats::seal_for_takeover`]) so a zombie's commit
//!   is refused whole;
//! - drops a slot whose runner ended: fenced (another host took over:
//!   refused whole, nothing landed) or failed (lease released so a host
//!   takes it again).
//!
//! Plugins live in the cluster ([`batpak_nats::PluginStore`]) with their
//! `--plugin-config` entry: at start a reactor the cluster lacks is
//! published with this host's entry, and for one it has in another version
//! or with another entry the cluster's is loaded instead (said in a
//! `cluster |` line), so every host's instances run the same code with the
//! same config.
//! Every tick the host also follows each reactor's version key — a `swap
//! NAME FILE --store` from any machine — handing the new version to every
//! instance it owns for its next batch boundary (the runtime's own swap,
//! with its records), and each reactor's pause flag (`pause`/`resume
//! --store`): paused, its instances stop at a batch boundary with the
//! checkpoint at their position and no host takes its slots.
//!
//! A slot is `reactor/<name>/<partition>`; its runner is the runtime's own
//! (`batpak_runtime::spawn`) over that partition's [`PartitionLog`], with
//! the reactor's settings and gates as the embedded host configures them.
//! On a stop request every runner stops at a batch boundary and every
//! lease is released, so standbys take over at once. Each acquire, release
//! and loss is printed as one `cluster |` line naming the slot and host.

use crate::cluster::address::ClusterAddress;
pub(crate) use crate::cluster::cluster_run_error::open_log;
pub use crate::cluster::cluster_run_error::ClusterRunError;
use crate::cluster::free_slots::FreeSlots;
use crate::cluster::held_slots::HeldSlots;
use crate::cluster::relay_slots::RelaySlots;
pub use crate::cluster::slots::DEFAULT_LEASE_TTL;
use crate::cluster::slots::{shared, Ended, OwnedSlot};
use crate::host::log_filter::{Console, LogFilter};
use crate::hot_swap::watch::expand_plugin_args;
use crate::plugins::compile_cache::CacheOptions;
use crate::plugins::loader::{Loaded, Loader};
use crate::plugins::plugin_config::{Flags, PluginConfigFile, Resolved};
use batpak_nats::{
    host_id, preferred, reactor_slot, seal_for_takeover, LeaseError, LeaseSnapshot, Leases,
    NatsLog, NatsOptions, PartitionLog, PluginStore, PluginStoreError, ReactorVersion, Running,
};
use batpak_runtime::{cursor_id, FailurePolicy, Reactor, RunnerSettings, Runtime};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a cluster host is started with.
#[derive(Debug, Clone)]
pub struct ClusterRunConfig {
    /// The cluster.
    pub address: ClusterAddress,
    /// Plugin components (`.wasm` or `.wat`).
    pub plugins: Vec<PathBuf>,
    /// The operator's per-plugin config file.
    pub plugin_config: Option<PathBuf>,
    /// Limits and log level for every plugin.
    pub flags: Flags,
    /// Calls of a failing batch before it is bisected and parked (≥ 1).
    pub attempts: u32,
    /// Wait before the first retry.
    pub backoff: Duration,
    /// Hot swap: batches a new version is on probation.
    pub swap_rollback: u32,
    /// Most log lines per second from one source (0: no limit).
    pub log_rate: u32,
    /// The compile cache.
    pub cache: CacheOptions,
    /// Where log lines and the `cluster |` lines go.
    pub console: Console,
    /// The lease TTL: a slot whose lease was not renewed for this long (on
    /// an observer's own clock) is taken over.
    pub lease_ttl: Duration,
    /// This host's id in the leases bucket (default: hostname-pid).
    pub host_id: Option<String>,
    /// `--listen`: serve the HTTP API against the cluster
    /// ([`crate::cluster::cluster_http`]); the token comes from
    /// `token_file`, which a cluster host needs (it keeps no local
    /// directory to generate one into).
    pub service: batpak_service::ServiceOptions,
}

impl ClusterRunConfig {
    /// `run`'s defaults for `plugins` on the cluster at `address`.
    pub fn new(address: ClusterAddress, plugins: Vec<PathBuf>) -> ClusterRunConfig {
        ClusterRunConfig {
            address,
            plugins,
            plugin_config: None,
            flags: Flags::default(),
            attempts: 3,
            backoff: Duration::from_millis(50),
            swap_rollback: 0,
            log_rate: 50,
            cache: CacheOptions::default(),
            console: Console::stderr(),
            lease_ttl: DEFAULT_LEASE_TTL,
            host_id: None,
            service: batpak_service::ServiceOptions::default(),
        }
    }
}

/// How a cluster host's run went.
#[derive(Debug, Default, Clone)]
pub struct ClusterReport {
    /// Slots taken over the run.
    pub acquired: u64,
    /// Runners whose commit was refused by the fence (another host had
    /// taken their slot over).
    pub fenced: u64,
    /// Runners that failed otherwise (messages).
    pub failed: Vec<String>,
}

/// One reactor of this host: its loaded plugin (a fresh instance per
/// slot) and settings.
struct HostedReactor {
    name: String,
    loaded: Loaded,
    /// The plugin-config entry `loaded` was configured with (the
    /// cluster's, once adopted).
    plugin_config: Option<serde_json::Value>,
    /// A cluster version (code and entry) that did not load here (not
    /// tried again).
    refused: Option<ReactorVersion>,
    /// Paused cluster-wide (`pause NAME --store`): no instance runs.
    paused: bool,
}

/// Runs a cluster host until `stop()` says so (see the module docs).
///
/// # Errors
/// [`ClusterRunError`] before anything runs; once running, failures are
/// handled per slot and reported in the [`ClusterReport`].
pub fn run_cluster_host(
    config: ClusterRunConfig,
    stop: &dyn Fn() -> bool,
) -> Result<ClusterReport, ClusterRunError> {
    if config.flags.timeout_ms == Some(0)
        || config.flags.memory_mb == Some(0)
        || config.flags.max_batch == Some(0)
        || config.attempts == 0
    {
        return Err(ClusterRunError::Usage(
            "--timeout-ms, --memory-mb, --max-batch and --attempts must be at least 1".into(),
        ));
    }
    if config.lease_ttl < Duration::from_millis(300) {
        return Err(ClusterRunError::Usage(format!(
            "--lease-ttl-ms {} is too short: use at least 300 (a host renews every third of it)",
            config.lease_ttl.as_millis()
        )));
    }
    if let (Some(addr), None) = (config.service.listen, &config.service.token_file) {
        return Err(ClusterRunError::Usage(format!(
            "`run --listen {addr}` on a cluster needs --token-file FILE: a cluster host keeps no \
             local directory to generate a token into (give every host of the cluster the same \
             file, so a client can use any of them); create one with {}",
            batpak_service::MAKE_TOKEN_FILE
        )));
    }
    let file = match &config.plugin_config {
        Some(p) => PluginConfigFile::read(p).map_err(ClusterRunError::Usage)?,
        None => PluginConfigFile::default(),
    };
    let log_filter = LogFilter::new(config.console.clone(), config.log_rate);
    let _sink = log_filter.install();
    let runtime = Runtime::new(
        config
            .cache
            .runtime_config()
            .map_err(ClusterRunError::Load)?,
    )
    .map_err(|e| ClusterRunError::Load(e.into()))?;
    let entries = ConfigBase {
        runtime: runtime.clone(),
        file: file.clone(),
        flags: config.flags.clone(),
    };
    let loader = Loader::new(runtime, file, config.flags.clone())
        .with_config_path(config.plugin_config.clone());
    let (files, _) = expand_plugin_args(&config.plugins, false).map_err(ClusterRunError::Usage)?;
    let mut reactors: Vec<HostedReactor> = Vec::new();
    for path in &files {
        let loaded = loader.load(path).map_err(ClusterRunError::Load)?;
        let name = loaded.name().to_string();
        if loaded.settings.instances > 1 {
            return Err(ClusterRunError::Usage(format!(
                "reactor {name:?}: \"instances\": {} in the plugin config does not apply on a \
                 cluster, where each partition runs one instance (set the parallelism with \
                 `cluster init --partitions K`); remove it for --store",
                loaded.settings.instances
            )));
        }
        if let Some(first) = reactors.iter().find(|r| r.name == name) {
            return Err(ClusterRunError::Usage(format!(
                "plugin {}: reactor name {name:?} is already used by plugin {}; each reactor \
                 needs its own name (it keys the checkpoint)",
                path.display(),
                first.loaded.path.display()
            )));
        }
        reactors.push(HostedReactor {
            plugin_config: entries.file.entry(&name),
            name,
            loaded,
            refused: None,
            paused: false,
        });
    }
    let address = config.address.to_string();
    let options = NatsOptions::default();
    let log = open_log(&config.address, &options)?;
    let log = Arc::new(log);
    let layout = log.layout();
    let id = host_id(
        &config
            .host_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id())),
    );
    let leases = Leases::open(
        config.address.servers(),
        &options,
        &id,
        config.lease_ttl,
        layout.replicas,
    )
    .map_err(|source| ClusterRunError::Leases {
        address: address.clone(),
        source,
    })?;
    let plugins = PluginStore::open(config.address.servers(), &options, layout.replicas).map_err(
        |source| ClusterRunError::Plugins {
            address: address.clone(),
            source,
        },
    )?;
    let fetched = std::env::temp_dir().join(format!("batpak-cluster-{}", std::process::id()));
    let console = config.console.clone();
    console.println(&format!(
        "cluster | host {id} on {address}: {} partition(s); reactors {}; lease TTL {} ms",
        layout.partitions,
        reactors
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        config.lease_ttl.as_millis()
    ));
    let mut host = ClusterHost {
        id,
        log,
        leases,
        reactors,
        owned: Vec::new(),
        relays: RelaySlots::default(),
        free: FreeSlots::default(),
        console,
        policy: (config.attempts, config.backoff, config.swap_rollback),
        report: ClusterReport::default(),
        plugins,
        entries,
        fetched,
        held: Arc::default(),
    };
    host.held.set_host(&host.id, host.names());
    host.adopt_cluster_versions().map_err(|e| match e {
        Adopt::Store(source) => ClusterRunError::Plugins {
            address: address.clone(),
            source,
        },
        Adopt::Load(e) => ClusterRunError::Load(e),
    })?;
    let service = match (config.service.listen, &config.service.token_file) {
        (Some(addr), Some(token)) => {
            let s = crate::cluster::cluster_http::serve(
                &config.address,
                host.log.clone(),
                host.held.clone(),
                addr,
                token,
            )?;
            if let Some(bound) = s.http_addr() {
                // Printed whatever the log level, as the embedded host does.
                host.console.println(&format!(
                    "http: listening on http://{bound} (bearer token in {}; order is per partition)",
                    token.display()
                ));
            }
            Some(s)
        }
        _ => None,
    };
    let tick = config.lease_ttl / 3;
    while !stop() {
        let started = Instant::now();
        host.tick(stop);
        // Sleep in short steps so a stop request is seen at once.
        while started.elapsed() < tick && !stop() {
            std::thread::sleep(Duration::from_millis(20).min(tick));
        }
    }
    if let Some(s) = service {
        s.stop();
    }
    host.shutdown();
    let _ = std::fs::remove_dir_all(&host.fetched);
    Ok(host.report)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "host".into())
}

struct ClusterHost {
    id: String,
    log: Arc<NatsLog>,
    leases: Leases,
    reactors: Vec<HostedReactor>,
    owned: Vec<OwnedSlot>,
    /// The relays (one per target partition) this host runs.
    relays: RelaySlots,
    /// Slots seen takeable, since when (a slot left free for a TTL is
    /// taken by any host, preferred or not).
    free: FreeSlots,
    console: Console,
    /// attempts, backoff, swap_rollback.
    policy: (u32, Duration, u32),
    report: ClusterReport,
    plugins: PluginStore,
    /// What a reactor is loaded with besides the cluster's entry.
    entries: ConfigBase,
    /// Where versions fetched from the cluster are written to be loaded.
    fetched: PathBuf,
    /// What this host holds, for its HTTP API and `/metrics`.
    held: Arc<HeldSlots>,
}

/// This host's `--plugin-config` file and flags, for loading a reactor
/// with the entry the cluster stores for it (which replaces the file's).
struct ConfigBase {
    runtime: Runtime,
    file: PluginConfigFile,
    flags: Flags,
}

impl ConfigBase {
    /// A loader that configures reactor `name` with `entry`.
    fn loader(&self, name: &str, entry: Option<&serde_json::Value>) -> anyhow::Result<Loader> {
        let file = self
            .file
            .with_entry(name, entry)
            .map_err(|m| anyhow::anyhow!("the cluster's plugin config of reactor {name}: {m}"))?;
        Ok(Loader::new(self.runtime.clone(), file, self.flags.clone()))
    }
}

/// Why adopting the cluster's versions failed at start.
enum Adopt {
    Store(PluginStoreError),
    Load(anyhow::Error),
}

impl ClusterHost {
    fn say(&self, line: &str) {
        self.console
            .println(&format!("cluster | {} {line}", self.id));
    }

    fn names(&self) -> Vec<String> {
        self.reactors.iter().map(|r| r.name.clone()).collect()
    }

    fn tick(&mut self, stop: &dyn Fn() -> bool) {
        if let Err(e) = self.leases.heartbeat(&self.names()) {
            self.say(&format!("heartbeat failed: {e}"));
        }
        let snap = match self.leases.snapshot() {
            Ok(s) => Some(s),
            Err(e) => {
                self.say(&format!("reading the leases failed: {e}"));
                None
            }
        };
        self.follow_versions();
        self.poll_swaps();
        self.keep_owned(snap.as_ref());
        if let Some(snap) = &snap {
            self.take_free(snap, stop);
        }
        let (console, id) = (&self.console, &self.id);
        let say = |line: &str| console.println(&format!("cluster | {id} {line}"));
        self.relays
            .tick(&self.log, &self.leases, snap.as_ref(), &say);
    }

    /// The live hosts running reactor `r`, this one included.
    fn candidates(&self, snap: &LeaseSnapshot, r: usize) -> Vec<String> {
        let mut hosts = snap.hosts_running(&self.reactors[r].name);
        if !hosts.contains(&self.id) {
            hosts.push(self.id.clone());
        }
        hosts
    }

    fn keep_owned(&mut self, snap: Option<&LeaseSnapshot>) {
        let ttl = self.leases.ttl();
        let mut i = 0;
        while i < self.owned.len() {
            // A runner that ended by itself.
            if self.owned[i].finished() {
                let mut s = self.owned.remove(i);
                let how = s.stop();
                self.ended(&s, how, "its runner ended");
                // Released so another host (or this one, next tick) takes
                // it; a fenced slot is another host's already.
                let _ = self.leases.release(&s.slot, s.revision);
                continue;
            }
            let slot = self.owned[i].slot.clone();
            let running = self.owned[i].running();
            match self.leases.renew(&slot, self.owned[i].revision, running) {
                Ok(rev) => {
                    self.owned[i].revision = rev;
                    self.owned[i].renewed = Instant::now();
                }
                Err(LeaseError::Lost { .. }) => {
                    let mut s = self.owned.remove(i);
                    let how = s.stop();
                    self.ended(&s, how, "lost its lease to another host");
                    continue;
                }
                Err(e) => {
                    if self.owned[i].renewed.elapsed() >= ttl {
                        let mut s = self.owned.remove(i);
                        let how = s.stop();
                        self.ended(
                            &s,
                            how,
                            &format!("could not renew its lease for {ttl:?} ({e})"),
                        );
                        continue;
                    }
                }
            }
            // Hand back to a preferred live host.
            if let Some(snap) = snap {
                let hosts = self.candidates(snap, self.owned[i].reactor);
                if let Some(pref) = preferred(&slot, &hosts).filter(|p| **p != self.id).cloned() {
                    let mut s = self.owned.remove(i);
                    let how = s.stop();
                    let released = self.leases.release(&s.slot, s.revision);
                    self.ended(&s, how, &format!("handed to {pref}"));
                    if let Err(e) = released {
                        self.say(&format!("releasing {}: {e}", s.slot));
                    }
                    continue;
                }
            }
            i += 1;
        }
    }

    fn ended(&mut self, s: &OwnedSlot, how: Ended, why: &str) {
        self.held.released(&s.slot, matches!(how, Ended::Fenced(_)));
        match how {
            Ended::Clean => self.say(&format!("released {} ({why})", s.slot)),
            Ended::Fenced(e) => {
                self.report.fenced += 1;
                self.say(&format!(
                    "released {} ({why}): its commit was refused, fenced — another host took \
                     the slot over: {e}",
                    s.slot
                ));
            }
            Ended::Failed(e) => {
                self.report.failed.push(format!("{}: {e}", s.slot));
                self.say(&format!(
                    "released {} ({why}): its runner failed: {e}",
                    s.slot
                ));
            }
        }
    }

    fn take_free(&mut self, snap: &LeaseSnapshot, stop: &dyn Fn() -> bool) {
        let ttl = self.leases.ttl();
        for r in 0..self.reactors.len() {
            if self.reactors[r].paused {
                continue;
            }
            for p in 0..self.log.layout().partitions {
                if stop() {
                    return;
                }
                let slot = reactor_slot(&self.reactors[r].name, p);
                let view = snap.lease(&slot);
                let held_here = self.owned.iter().any(|o| o.slot == slot);
                let Some(free_for) = self.free.free_for(&slot, held_here, &view) else {
                    continue;
                };
                let hosts = self.candidates(snap, r);
                let mine = preferred(&slot, &hosts).is_some_and(|h| *h == self.id);
                if !mine && free_for < ttl {
                    continue;
                }
                let loaded = &self.reactors[r].loaded.plugin;
                let running = Running {
                    version: loaded.descriptor().version.clone(),
                    digest: loaded.component_digest().to_string(),
                };
                let revision = match self.leases.acquire(&slot, &view, Some(running)) {
                    Ok(rev) => rev,
                    Err(LeaseError::Lost { .. }) => continue,
                    Err(e) => {
                        self.say(&format!("acquiring {slot}: {e}"));
                        continue;
                    }
                };
                self.free.taken(&slot);
                self.start_slot(r, p, slot, revision, view.holder().map(str::to_string));
            }
        }
    }

    fn start_slot(&mut self, r: usize, p: u32, slot: String, revision: u64, from: Option<String>) {
        let name = self.reactors[r].name.clone();
        let cursor = cursor_id(&name);
        let limit = self.leases.ttl().max(Duration::from_secs(5));
        let sealed = match seal_for_takeover(&self.log, p, &cursor, limit) {
            Ok(s) => s,
            Err(e) => {
                self.say(&format!(
                    "could not seal {slot} for the takeover ({e}); releasing it"
                ));
                let _ = self.leases.release(&slot, revision);
                return;
            }
        };
        let started = (|| -> anyhow::Result<_> {
            let part = PartitionLog::new(self.log.clone(), p)?;
            let plugin = self.reactors[r].loaded.plugin.fresh()?;
            let settings = self.runner_settings(&self.reactors[r].loaded.settings);
            Ok(batpak_runtime::spawn(
                shared(&part, &name, self.held.commits(&name, p)),
                Box::new(plugin),
                settings,
            )?)
        })();
        match started {
            Ok(handle) => {
                self.report.acquired += 1;
                self.held.acquired(&name, p, handle.status().clone());
                let from = from.map_or(String::new(), |h| format!(", from {h}"));
                self.say(&format!(
                    "acquired {slot} (checkpoint sealed at sequence {sealed}{from})"
                ));
                self.owned.push(OwnedSlot {
                    slot,
                    reactor: r,
                    revision,
                    renewed: Instant::now(),
                    handle: Some(handle),
                    swap: None,
                });
            }
            Err(e) => {
                self.say(&format!("could not start {slot}: {e:#}; releasing it"));
                self.report.failed.push(format!("{slot}: {e:#}"));
                let _ = self.leases.release(&slot, revision);
            }
        }
    }

    /// The version the cluster holds of `loaded` (its key) with
    /// `plugin_config`, as it would be published.
    fn version_of(loaded: &Loaded, plugin_config: Option<serde_json::Value>) -> ReactorVersion {
        ReactorVersion {
            plugin_config,
            version: loaded.plugin.descriptor().version.clone(),
            digest: loaded.plugin.component_digest().to_string(),
            extension: loaded
                .path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("wasm")
                .to_string(),
        }
    }

    /// At start: publishes each reactor the cluster does not have (with
    /// this host's plugin-config entry); for one it has in another version
    /// or with another entry, loads the cluster's (the cluster's wins) and
    /// says so.
    fn adopt_cluster_versions(&mut self) -> Result<(), Adopt> {
        for r in 0..self.reactors.len() {
            let name = self.reactors[r].name.clone();
            let mine = Self::version_of(
                &self.reactors[r].loaded,
                self.reactors[r].plugin_config.clone(),
            );
            let mut tries = 0;
            loop {
                match self.plugins.current(&name).map_err(Adopt::Store)? {
                    None => {
                        let path = self.reactors[r].loaded.path.clone();
                        let bytes = std::fs::read(&path).map_err(|e| {
                            Adopt::Load(anyhow::anyhow!("reading {}: {e}", path.display()))
                        })?;
                        match self.plugins.publish(&name, &mine, bytes, None) {
                            Ok(_) => {
                                self.say(&format!(
                                    "published reactor {name} version {} ({}) to the cluster",
                                    mine.version,
                                    short(&mine.digest)
                                ));
                                break;
                            }
                            // Another host published first: read it again.
                            Err(PluginStoreError::Raced { .. }) => continue,
                            // Hosts starting together publish at once: the
                            // server can refuse a create while another is
                            // in flight on the key. Read it again, bounded.
                            Err(e @ PluginStoreError::Unavailable(_)) => {
                                tries += 1;
                                if tries >= 20 {
                                    return Err(Adopt::Store(e));
                                }
                                std::thread::sleep(Duration::from_millis(100));
                                continue;
                            }
                            Err(e) => return Err(Adopt::Store(e)),
                        }
                    }
                    Some((v, _)) if v == mine => break,
                    Some((v, _)) => {
                        let loaded = self.load_version(&name, &v).map_err(Adopt::Load)?;
                        if v.digest == mine.digest {
                            self.say(&format!(
                                "the cluster runs reactor {name} with its own plugin config ({}); using it instead of this host's ({})",
                                shown_entry(v.plugin_config.as_ref()),
                                shown_entry(mine.plugin_config.as_ref())
                            ));
                        } else {
                            self.say(&format!(
                                "the cluster runs reactor {name} version {} ({}); using it instead of {} (version {}, {})",
                                v.version,
                                short(&v.digest),
                                self.reactors[r].loaded.path.display(),
                                mine.version,
                                short(&mine.digest)
                            ));
                        }
                        self.reactors[r].loaded = loaded;
                        self.reactors[r].plugin_config = v.plugin_config;
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Fetches and loads version `v` of reactor `name` from the cluster,
    /// configured with the entry stored with it.
    fn load_version(&self, name: &str, v: &ReactorVersion) -> anyhow::Result<Loaded> {
        let bytes = self.plugins.fetch(v)?;
        std::fs::create_dir_all(&self.fetched)?;
        let path = self.fetched.join(format!("{}.{}", v.digest, v.extension));
        std::fs::write(&path, bytes)?;
        let loaded = self
            .entries
            .loader(name, v.plugin_config.as_ref())?
            .load(&path)?;
        if loaded.settings.instances > 1 {
            anyhow::bail!(
                "the cluster's plugin config of reactor {name} sets \"instances\": {}, which does not apply on a cluster (each partition runs one instance)",
                loaded.settings.instances
            );
        }
        if loaded.name() != name {
            anyhow::bail!(
                "the cluster's version {} of reactor {name} is reactor {:?}",
                short(&v.digest),
                loaded.name()
            );
        }
        Ok(loaded)
    }

    /// Every tick: a reactor whose version in the cluster moved (a `swap`
    /// from any machine) is loaded, and every instance this host owns is
    /// handed the new version for its next batch boundary (the runtime's
    /// own swap: swap, refusal and rollback records per partition); slots
    /// taken later start on it.
    fn follow_versions(&mut self) {
        for r in 0..self.reactors.len() {
            let name = self.reactors[r].name.clone();
            self.follow_pause(r);
            let current = match self.plugins.current(&name) {
                Ok(Some((v, _))) => v,
                Ok(None) => continue,
                Err(e) => {
                    self.say(&format!("reading reactor {name}'s version: {e}"));
                    continue;
                }
            };
            let running = Self::version_of(
                &self.reactors[r].loaded,
                self.reactors[r].plugin_config.clone(),
            );
            if (current.digest == running.digest && current.plugin_config == running.plugin_config)
                || self.reactors[r].refused.as_ref() == Some(&current)
            {
                continue;
            }
            let loaded = match self.load_version(&name, &current) {
                Ok(l) => l,
                Err(e) => {
                    self.say(&format!(
                        "refusing version {} ({}) of reactor {name}: {e:#}; version {} keeps serving",
                        current.version,
                        short(&current.digest),
                        self.reactors[r].loaded.plugin.descriptor().version
                    ));
                    self.reactors[r].refused = Some(current.clone());
                    continue;
                }
            };
            self.say(&format!(
                "reactor {name} moves to version {} ({}): swapping the instances held here at their next batch boundary",
                current.version,
                short(&current.digest)
            ));
            let grant = loaded.settings.grant_emits.clone();
            for i in 0..self.owned.len() {
                if self.owned[i].reactor != r {
                    continue;
                }
                let Some(h) = &self.owned[i].handle else {
                    continue;
                };
                let asked = loaded
                    .plugin
                    .fresh()
                    .map_err(|e| e.to_string())
                    .and_then(|p| {
                        h.request_swap(Box::new(p), grant.clone())
                            .map_err(|e| e.to_string())
                    });
                match asked {
                    Ok(ticket) => self.owned[i].swap = Some(ticket),
                    Err(e) => {
                        let slot = self.owned[i].slot.clone();
                        self.say(&format!("swap of {slot} refused: {e}"));
                    }
                }
            }
            self.reactors[r].loaded = loaded;
            self.reactors[r].plugin_config = current.plugin_config;
        }
    }

    /// Follows reactor `r`'s cluster-wide pause flag: once set, every
    /// instance held here stops at a batch boundary with its checkpoint at
    /// its position, and its lease is released (no host takes a paused
    /// reactor's slot); once cleared, slots are taken again as usual.
    fn follow_pause(&mut self, r: usize) {
        let name = self.reactors[r].name.clone();
        let paused = match self.plugins.paused(&name) {
            Ok(p) => p,
            Err(e) => {
                self.say(&format!("reading reactor {name}'s pause flag: {e}"));
                return;
            }
        };
        if paused == self.reactors[r].paused {
            return;
        }
        self.reactors[r].paused = paused;
        if !paused {
            self.say(&format!("reactor {name} resumed: taking its slots again"));
            return;
        }
        for s in &self.owned {
            if s.reactor == r {
                if let Some(h) = &s.handle {
                    h.stop_at_position();
                }
            }
        }
        let mut i = 0;
        while i < self.owned.len() {
            if self.owned[i].reactor != r {
                i += 1;
                continue;
            }
            let mut s = self.owned.remove(i);
            let how = s.stop();
            let released = self.leases.release(&s.slot, s.revision);
            self.ended(&s, how, "paused");
            if let Err(e) = released {
                self.say(&format!("releasing {}: {e}", s.slot));
            }
        }
    }

    /// Reports the swaps that reached a batch boundary.
    fn poll_swaps(&mut self) {
        for i in 0..self.owned.len() {
            let (Some(h), Some(t)) = (&self.owned[i].handle, &self.owned[i].swap) else {
                continue;
            };
            let Some(result) = h.poll_swap(t) else {
                continue;
            };
            self.owned[i].swap = None;
            let slot = self.owned[i].slot.clone();
            match result {
                Ok(o) => self.say(&format!(
                    "swapped {slot}: version {} ({}) → {} ({}) after sequence {}",
                    o.old_version,
                    short(&o.old_digest),
                    o.new_version,
                    short(&o.new_digest),
                    o.position
                )),
                Err(r) => self.say(&format!("swap of {slot} refused: {r}")),
            }
        }
    }

    /// As the embedded host's supervisor configures a runner.
    fn runner_settings(&self, s: &Resolved) -> RunnerSettings {
        let (attempts, backoff, swap_rollback) = self.policy;
        RunnerSettings {
            max_batch: s.max_batch,
            grant_emits: s.grant_emits.clone(),
            policy: FailurePolicy {
                attempts,
                backoff,
                ..FailurePolicy::default()
            },
            log_level: s.log_level,
            swap_rollback,
            ..RunnerSettings::default()
        }
    }

    /// Stops every runner at a batch boundary, releases every lease (a
    /// standby takes over at once) and leaves the host registry.
    fn shutdown(&mut self) {
        // Ask all first, so they stop together.
        for s in &self.owned {
            if let Some(h) = &s.handle {
                batpak_store::CanalHandle::stop(h);
            }
        }
        for mut s in std::mem::take(&mut self.owned) {
            let how = s.stop();
            let released = self.leases.release(&s.slot, s.revision);
            self.ended(&s, how, "stopping");
            if let Err(e) = released {
                self.say(&format!("releasing {}: {e}", s.slot));
            }
        }
        let (console, id) = (&self.console, &self.id);
        let say = |line: &str| console.println(&format!("cluster | {id} {line}"));
        self.relays.shutdown(&self.leases, &say);
        if let Err(e) = self.leases.leave() {
            self.say(&format!("leaving the host registry: {e}"));
        }
    }
}

/// A plugin-config entry for a `cluster |` line.
fn shown_entry(entry: Option<&serde_json::Value>) -> String {
    entry.map_or_else(|| "none".into(), |v| v.to_string())
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}
