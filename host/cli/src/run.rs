//! `run`, `inspect` and `parked`: the reactor runtime's commands.

use anyhow::Context;
use batpak_runtime::{
    self, FailurePolicy, LogLevel, ParkedEvent, ParkedSet, Plugin, PluginSettings, Reactor,
    RunState, RunnerHandle, RunnerSettings, Runtime, RuntimeConfig,
};
use batpak_store::CanalHandle;
use batpak_store::EventId;
use batpak_store::{LogReader, Store, StoreError};
use clap::{Args, Subcommand};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Arguments of `batpak-host run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Plugin components (`.wasm`, or component text `.wat`).
    #[arg(required = true, value_name = "PLUGIN")]
    pub plugins: Vec<PathBuf>,
    /// Exit (0) once every reactor has caught up with the log and nothing is
    /// pending, instead of running until Ctrl-C / SIGTERM.
    #[arg(long)]
    pub until_idle: bool,
    /// JSON file with per-plugin config, grants and limits:
    /// {"defaults": {"timeout_ms","memory_mb","max_batch"},
    ///  "plugins": {"<reactor name>": {"config": <JSON for init>,
    ///  "grant_emits": [kinds], "timeout_ms", "memory_mb", "max_batch"}}}.
    /// Per-plugin values beat command-line flags, which beat "defaults".
    #[arg(long, value_name = "FILE")]
    pub plugin_config: Option<PathBuf>,
    /// Wall-time limit of one call into a plugin [default: 5000].
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Memory limit of one plugin instance [default: 256].
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
    /// off).
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: LogLevel,
    /// Do not print the live status line (the final summary is printed).
    #[arg(long)]
    pub quiet: bool,
    /// Compile every plugin afresh instead of using `<data>/cache`.
    #[arg(long)]
    pub no_cache: bool,
    // service (issue 8): --listen / --token-file.
    #[command(flatten)]
    pub service: crate::operate::ServiceArgs,
}

/// Arguments of `batpak-host inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Plugin component (`.wasm`, or component text `.wat`).
    pub plugin: PathBuf,
    /// JSON text handed to `init` (to see whether a config is accepted).
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// Wall-time limit of one call into the plugin.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Memory limit of the instance.
    #[arg(long, default_value_t = 256, value_name = "MIB")]
    pub memory_mb: u64,
}

/// Arguments of `batpak-host parked`.
#[derive(Args, Debug)]
pub struct ParkedArgs {
    /// What to do (default: list unresolved parked events as JSON lines).
    #[command(subcommand)]
    pub action: Option<ParkedAction>,
    /// Only this reactor's parked events.
    #[arg(long, value_name = "REACTOR")]
    pub plugin: Option<String>,
}

/// Subcommands of `batpak-host parked`.
#[derive(Subcommand, Debug)]
pub enum ParkedAction {
    /// Ask the next `run` of the reactor to re-deliver its parked events
    /// (before anything else). Prints one JSON line per request.
    Replay {
        /// Only this reactor's parked events.
        #[arg(long, value_name = "REACTOR")]
        plugin: Option<String>,
        /// Only the parked event with this id (32 hex digits).
        #[arg(long, value_name = "ID")]
        event: Option<String>,
    },
}

/// Exit code for bad usage (matches clap's).
fn usage(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {msg}");
    Ok(ExitCode::from(2))
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct Limits {
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    max_batch: Option<usize>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct PluginEntry {
    config: Option<serde_json::Value>,
    grant_emits: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    memory_mb: Option<u64>,
    max_batch: Option<usize>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct PluginConfigFile {
    #[serde(default)]
    defaults: Limits,
    #[serde(default)]
    plugins: BTreeMap<String, PluginEntry>,
}

fn read_plugin_config(path: &Path) -> Result<PluginConfigFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--plugin-config {}: {e}", path.display()))?;
    let cfg: PluginConfigFile = serde_json::from_str(&text)
        .map_err(|e| format!("--plugin-config {}: {e}", path.display()))?;
    let check = |what: String, l: &Limits| -> Result<(), String> {
        if l.timeout_ms == Some(0) || l.memory_mb == Some(0) || l.max_batch == Some(0) {
            return Err(format!(
                "--plugin-config {}: {what}: timeout_ms, memory_mb and max_batch must be at least 1",
                path.display()
            ));
        }
        Ok(())
    };
    check("defaults".into(), &cfg.defaults)?;
    for (name, e) in &cfg.plugins {
        batpak_runtime::validate_reactor_name(name)
            .map_err(|m| format!("--plugin-config {}: plugins: {m}", path.display()))?;
        check(
            format!("plugins.{name}"),
            &Limits {
                timeout_ms: e.timeout_ms,
                memory_mb: e.memory_mb,
                max_batch: e.max_batch,
            },
        )?;
        for k in e.grant_emits.iter().flatten() {
            batpak_store::validate_kind(k).map_err(|err| {
                format!(
                    "--plugin-config {}: plugins.{name}.grant_emits: {err}",
                    path.display()
                )
            })?;
        }
    }
    Ok(cfg)
}

/// The limits for reactor `name`: per-plugin, then flags, then defaults.
struct Resolved {
    timeout: Duration,
    memory_bytes: usize,
    max_batch: usize,
    config: String,
    grant_emits: Option<Vec<String>>,
}

fn resolve(cfg: &PluginConfigFile, a: &RunArgs, name: &str) -> Resolved {
    let e = cfg.plugins.get(name).cloned().unwrap_or_default();
    let d = &cfg.defaults;
    let timeout_ms = e
        .timeout_ms
        .or(a.timeout_ms)
        .or(d.timeout_ms)
        .unwrap_or(5000);
    let memory_mb = e.memory_mb.or(a.memory_mb).or(d.memory_mb).unwrap_or(256);
    let max_batch = e.max_batch.or(a.max_batch).or(d.max_batch).unwrap_or(256);
    Resolved {
        timeout: Duration::from_millis(timeout_ms),
        memory_bytes: usize::try_from(memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        max_batch,
        config: e
            .config
            .map(|v| v.to_string())
            .unwrap_or_else(|| "{}".into()),
        grant_emits: e.grant_emits,
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

pub(crate) fn run(data: &Path, a: RunArgs) -> anyhow::Result<ExitCode> {
    if a.timeout_ms == Some(0)
        || a.memory_mb == Some(0)
        || a.max_batch == Some(0)
        || a.attempts == 0
    {
        return usage("--timeout-ms, --memory-mb, --max-batch and --attempts must be at least 1");
    }
    let cfg = match &a.plugin_config {
        Some(p) => match read_plugin_config(p) {
            Ok(c) => c,
            Err(m) => return usage(m),
        },
        None => PluginConfigFile::default(),
    };
    let rt = Runtime::new(if a.no_cache {
        RuntimeConfig::default()
    } else {
        RuntimeConfig::with_cache(data.join("cache"))
    })?;

    // Load everything before starting anything: a bad plugin refuses the
    // whole run with a message naming its file.
    let mut plugins: Vec<(Plugin, Resolved, PathBuf)> = Vec::new(); // service: + path, to resume
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for path in &a.plugins {
        let base = resolve(&cfg, &a, "");
        let mut resolved = None;
        let plugin = rt.load_plugin_with(
            path,
            PluginSettings {
                timeout: base.timeout,
                memory_bytes: base.memory_bytes,
                log_level: a.log_level,
                config: "{}".into(),
            },
            |d| {
                let r = resolve(&cfg, &a, &d.name);
                let s = PluginSettings {
                    config: r.config.clone(),
                    timeout: r.timeout,
                    memory_bytes: r.memory_bytes,
                    log_level: a.log_level,
                };
                resolved = Some(r);
                Ok(s)
            },
        )?;
        let name = plugin.descriptor().name.clone();
        if let Some(first) = names.insert(name.clone(), path.clone()) {
            anyhow::bail!(
                "plugin {}: reactor name {name:?} is already used by plugin {}; each reactor needs its own name (it keys the checkpoint)",
                path.display(),
                first.display()
            );
        }
        let r = resolved.expect("settings were chosen");
        for k in r.grant_emits.iter().flatten() {
            if !plugin.descriptor().emits.contains(k) {
                batpak_runtime::log(
                    a.log_level,
                    LogLevel::Warn,
                    "run",
                    &format!("plugins.{name}.grant_emits lists {k:?}, which reactor {name} does not declare in emits; ignored"),
                );
            }
        }
        let (source, took) = plugin.compile_info();
        batpak_runtime::log(
            a.log_level,
            LogLevel::Info,
            "run",
            &format!(
                "loaded {} {} from {} ({}, {} in {:.1} ms)",
                name,
                plugin.descriptor().version,
                path.display(),
                &plugin.component_digest()[..12],
                match source {
                    batpak_runtime::CompileSource::Cached => "compile cache",
                    batpak_runtime::CompileSource::Compiled => "compiled",
                },
                took.as_secs_f64() * 1e3
            ),
        );
        plugins.push((plugin, r, path.clone()));
    }
    for name in cfg.plugins.keys() {
        if !names.contains_key(name) {
            batpak_runtime::log(
                a.log_level,
                LogLevel::Warn,
                "run",
                &format!("--plugin-config configures reactor {name:?}, which none of the given plugins is"),
            );
        }
    }

    // The store is opened only once every plugin is known to be good.
    let store =
        Store::open(data).with_context(|| format!("opening the store in {}", data.display()))?;
    STOP.store(false, Ordering::SeqCst);
    // First Ctrl-C / SIGTERM: finish the batches in flight, commit, exit 0.
    // A second one exits at once (everything committed so far is safe).
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });

    // service (issue 8): the reactors live in `operate::Reactors`, shared
    // with the control socket / HTTP threads (pause, resume, reset, status).
    let reactors = crate::operate::Reactors::new(&store);
    let mut handles: Vec<RunnerHandle> = Vec::new();
    for (plugin, r, path) in plugins {
        let plugin_settings = PluginSettings {
            config: r.config.clone(),
            timeout: r.timeout,
            memory_bytes: r.memory_bytes,
            log_level: a.log_level,
        };
        let settings = RunnerSettings {
            max_batch: r.max_batch,
            grant_emits: r.grant_emits,
            policy: FailurePolicy {
                attempts: a.attempts,
                backoff: Duration::from_millis(a.backoff_ms),
                ..FailurePolicy::default()
            },
            log_level: a.log_level,
            ..RunnerSettings::default()
        };
        let (digest, descriptor) = (
            plugin.component_digest().to_string(),
            plugin.descriptor().clone(),
        );
        let recipe = crate::operate::Recipe {
            runtime: rt.clone(),
            path,
            plugin: plugin_settings,
            runner: settings.clone(),
        };
        let boxed: Box<dyn Reactor> = Box::new(plugin);
        match batpak_runtime::spawn(&store, boxed, settings) {
            Ok(h) => reactors.add(&digest, &descriptor, recipe, h),
            Err(e) => {
                for h in reactors.take_handles() {
                    let _ = Box::new(h).stop_and_join();
                }
                return Err(e);
            }
        }
    }

    let service = match crate::operate::serve(&store, reactors.clone(), &a.service, a.log_level) {
        Ok(s) => s,
        Err(e) => {
            for h in reactors.take_handles() {
                let _ = Box::new(h).stop_and_join();
            }
            return Err(e);
        }
    };
    let mut last_line = String::new();
    let mut last_print = Instant::now() - Duration::from_secs(2);
    loop {
        std::thread::sleep(Duration::from_millis(25));
        if STOP.load(Ordering::SeqCst) {
            break;
        }
        let durable = store.watermarks().durable;
        // service: a paused reactor counts as idle and keeps the host up.
        let current = reactors.statuses();
        if a.until_idle && current.iter().all(|(s, p)| *p || s.is_idle_at(durable)) {
            break;
        }
        if current
            .iter()
            .all(|(s, p)| !*p && matches!(s.state(), RunState::Stopped | RunState::Failed))
        {
            break;
        }
        let statuses: Vec<_> = current.into_iter().map(|(s, _)| s).collect();
        if !a.quiet && last_print.elapsed() >= Duration::from_secs(1) {
            let line = statuses
                .iter()
                .map(|s| s.snapshot(durable).to_string())
                .collect::<Vec<_>>()
                .join(" | ");
            if line != last_line {
                let _ = writeln!(std::io::stderr(), "status | {line}");
                last_line = line;
                last_print = Instant::now();
            }
        }
    }

    service.stop(); // service: no new requests while the reactors stop
    handles.extend(reactors.take_handles());
    let statuses: Vec<_> = reactors.statuses().into_iter().map(|(s, _)| s).collect();
    let mut failed = false;
    for h in handles {
        let name = h.name().to_string();
        if let Err(e) = Box::new(h).stop_and_join() {
            failed = true;
            let _ = writeln!(std::io::stderr(), "error: reactor {name}: {e:#}");
        }
    }
    let durable = store.watermarks().durable;
    for s in &statuses {
        let snap = s.snapshot(durable);
        let _ = writeln!(
            std::io::stderr(),
            "summary | {snap} (version {})",
            snap.version
        );
    }
    store.close().context("closing the store")?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub(crate) fn inspect(data: &Path, a: InspectArgs) -> anyhow::Result<ExitCode> {
    if a.timeout_ms == 0 || a.memory_mb == 0 {
        return usage("--timeout-ms and --memory-mb must be at least 1");
    }
    // The store is not opened (it may be in use by `run`); the compile cache
    // is shared when the data directory exists.
    let rt = Runtime::new(if data.is_dir() {
        RuntimeConfig::with_cache(data.join("cache"))
    } else {
        RuntimeConfig::default()
    })?;
    let settings = PluginSettings {
        config: a.config,
        timeout: Duration::from_millis(a.timeout_ms),
        memory_bytes: usize::try_from(a.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        log_level: LogLevel::Warn,
    };
    let i = batpak_runtime::inspect(&rt, &a.plugin, settings)?;
    let invalid = i.descriptor.get("invalid").is_some();
    println!("{}", serde_json::to_string_pretty(&i)?);
    if invalid {
        eprintln!(
            "error: plugin {}: describe() returned an invalid descriptor: {}",
            a.plugin.display(),
            i.descriptor["invalid"].as_str().unwrap_or("")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn parked_json(p: &ParkedEvent) -> serde_json::Value {
    let r = &p.record;
    serde_json::json!({
        "parked": p.parked.to_string(),
        "parked_seq": p.parked_seq,
        "parked_at_us": p.parked_at_us,
        "reactor": r.reactor,
        "version": r.version,
        "component": r.component,
        "event": r.event,
        "sequence": r.sequence,
        "kind": r.kind,
        "entity": r.entity,
        "scope": r.scope,
        "failure": r.failure,
        "cause": r.cause,
        "attempts": r.attempts,
        "replaces": r.replaces,
        "replay_requested": p.replay_requested,
    })
}

/// `parked` reads an existing store; it never creates one.
fn no_store_is_an_error(data: &Path) -> anyhow::Result<()> {
    if !data.join("segments").is_dir() {
        anyhow::bail!(
            "no store in {} (no segments directory); pass the --data directory `run` used",
            data.display()
        );
    }
    Ok(())
}

fn check_plugin_name(flag: &str, name: &Option<String>) -> Result<(), String> {
    match name {
        Some(n) => batpak_runtime::validate_reactor_name(n).map_err(|e| format!("{flag}: {e}")),
        None => Ok(()),
    }
}

pub(crate) fn parked(data: &Path, a: ParkedArgs) -> anyhow::Result<ExitCode> {
    // service (issue 8): through the running host when there is one.
    if let Some(c) = batpak_service::Client::connect(data)? {
        let name = match &a.action {
            Some(ParkedAction::Replay { plugin, .. }) => plugin.clone().or(a.plugin.clone()),
            None => a.plugin.clone(),
        };
        if let Err(m) = check_plugin_name("--plugin", &name) {
            return usage(m);
        }
        return crate::remote::parked(c, a);
    }
    match a.action {
        None => {
            if let Err(m) = check_plugin_name("--plugin", &a.plugin) {
                return usage(m);
            }
            no_store_is_an_error(data)?;
            let list = match Store::open(data) {
                Ok(store) => {
                    let l = batpak_runtime::parked_events(&store, a.plugin.as_deref())?;
                    store.close()?;
                    l
                }
                // A running `run` owns the store: read the segments without
                // the lock instead.
                Err(StoreError::Locked { .. }) => {
                    let mut reader = LogReader::open(data)?;
                    let mut set = ParkedSet::new(a.plugin.as_deref());
                    loop {
                        let events = reader.poll(64 << 20)?;
                        if events.is_empty() {
                            break;
                        }
                        events.iter().for_each(|e| set.add(e));
                    }
                    set.into_vec()
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("opening the store in {}", data.display())))
                }
            };
            let mut out = std::io::stdout().lock();
            for p in &list {
                writeln!(out, "{}", parked_json(p))?;
            }
            drop(out);
            Ok(ExitCode::SUCCESS)
        }
        Some(ParkedAction::Replay { plugin, event }) => {
            let plugin = plugin.or(a.plugin);
            if let Err(m) = check_plugin_name("--plugin", &plugin) {
                return usage(m);
            }
            let event = match event.as_deref().map(str::parse::<EventId>) {
                None => None,
                Some(Ok(id)) => Some(id),
                Some(Err(_)) => return usage("--event: expected an event id of 32 hex digits (the \"event\" field of `parked`)"),
            };
            no_store_is_an_error(data)?;
            let store = Store::open(data)
                .with_context(|| format!("opening the store in {}", data.display()))?;
            let made = batpak_runtime::request_replay(&store, plugin.as_deref(), event)?;
            let mut out = std::io::stdout().lock();
            for (id, p) in &made {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "replay_requested": id.to_string(),
                        "parked": p.parked.to_string(),
                        "reactor": p.record.reactor,
                        "event": p.record.event,
                    })
                )?;
            }
            drop(out);
            store.close()?;
            if made.is_empty() {
                eprintln!("no unresolved parked event without a pending replay matches");
                if event.is_some() {
                    return Ok(ExitCode::FAILURE);
                }
            } else {
                eprintln!(
                    "{} replay request(s) recorded; the next `batpak-host run` of the reactor re-delivers them first",
                    made.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
