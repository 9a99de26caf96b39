//! A running host as a service: the supervisor's reactors behind the
//! [`Operator`] trait, the `--listen`/`--token-file` flags of `run`, and the
//! `status`, `pause`, `resume` and `reset` commands.

use anyhow::Context;
use batpak_runtime::{
    LogLevel, Plugin, PluginSettings, Reactor, ReactorStatus, RunState, RunnerHandle,
    RunnerSettings, Runtime, RuntimeConfig,
};
use batpak_service::{
    Client, OpError, Operator, ReactorRunState, ReactorState, ResetOutcome, ResetTo, Service,
    ServiceOptions,
};
use batpak_store::{CanalHandle, EventId, ReactorCanal, Region, Store};
use clap::Args;
use parking_lot::Mutex;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The cursor id the runtime gives reactor `name` (batpak_runtime's
/// `cursor_id`, which the runtime does not re-export).
fn cursor_id(name: &str) -> String {
    format!("reactor.{name}")
}

/// `run`'s service flags.
#[derive(Args, Debug, Clone, Default)]
pub struct ServiceArgs {
    /// Serve the HTTP API on this address (e.g. 127.0.0.1:8080; off by
    /// default). Every event endpoint needs the bearer token.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Read the HTTP bearer token from this file instead of generating one
    /// into <data>/run/http.token (owner-only).
    #[arg(long, value_name = "FILE", requires = "listen")]
    pub token_file: Option<PathBuf>,
}

/// How to start one reactor again (after a pause): the same file, settings
/// and runner settings it was first started with.
pub(crate) struct Recipe {
    pub runtime: Runtime,
    pub path: PathBuf,
    pub plugin: PluginSettings,
    pub runner: RunnerSettings,
}

struct Slot {
    name: String,
    digest: String,
    region: Region,
    lossy: bool,
    recipe: Recipe,
    handle: Option<RunnerHandle>,
    status: Arc<ReactorStatus>,
    paused: bool,
}

/// The running reactors of one host, shared by its status loop and the
/// service threads.
pub(crate) struct Reactors {
    store: Store,
    slots: Mutex<Vec<Slot>>,
}

impl Reactors {
    pub(crate) fn new(store: &Store) -> Arc<Reactors> {
        Arc::new(Reactors {
            store: store.clone(),
            slots: Mutex::new(Vec::new()),
        })
    }

    /// Adds a started reactor.
    pub(crate) fn add(
        &self,
        plugin_digest: &str,
        d: &batpak_runtime::Descriptor,
        recipe: Recipe,
        handle: RunnerHandle,
    ) {
        self.slots.lock().push(Slot {
            name: d.name.clone(),
            digest: plugin_digest.to_string(),
            region: d.region.clone(),
            lossy: d.canal == ReactorCanal::LossySubscription,
            recipe,
            status: handle.status().clone(),
            handle: Some(handle),
            paused: false,
        });
    }

    /// Each reactor's live counters and whether an operator paused it.
    pub(crate) fn statuses(&self) -> Vec<(Arc<ReactorStatus>, bool)> {
        self.slots
            .lock()
            .iter()
            .map(|s| (s.status.clone(), s.paused))
            .collect()
    }

    /// Takes every runner handle (at shutdown).
    pub(crate) fn take_handles(&self) -> Vec<RunnerHandle> {
        self.slots
            .lock()
            .iter_mut()
            .filter_map(|s| s.handle.take())
            .collect()
    }

    fn state_of(&self, s: &Slot) -> ReactorState {
        let snap = s.status.snapshot(self.store.watermarks().durable);
        let (lag, lag_capped) = if s.lossy {
            (0, false)
        } else {
            batpak_service::region_lag(&self.store, &s.region, snap.position)
        };
        ReactorState {
            name: s.name.clone(),
            version: snap.version,
            digest: s.digest.clone(),
            state: if s.paused {
                ReactorRunState::Paused
            } else {
                match snap.state {
                    RunState::Starting => ReactorRunState::Starting,
                    RunState::Running => ReactorRunState::Running,
                    RunState::Stopped => ReactorRunState::Stopped,
                    RunState::Failed => ReactorRunState::Failed,
                }
            },
            position: snap.position,
            lag,
            lag_capped,
            events_in: snap.events_in,
            reactions_out: snap.reactions_out,
            parked: snap.parked,
            error: snap.error,
        }
    }

    fn find(slots: &[Slot], name: &str) -> Result<usize, OpError> {
        slots
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| OpError::NoSuchReactor(name.to_string()))
    }

    fn state_named(&self, name: &str) -> Result<ReactorState, OpError> {
        let slots = self.slots.lock();
        let i = Self::find(&slots, name)?;
        Ok(self.state_of(&slots[i]))
    }
}

fn respawn(store: &Store, r: &Recipe, name: &str) -> anyhow::Result<RunnerHandle> {
    let plugin: Plugin = r.runtime.load_plugin(&r.path, r.plugin.clone())?;
    if plugin.descriptor().name != name {
        anyhow::bail!(
            "{} now holds reactor {:?}, not {name:?}; put the original file back (or use `swap` once hot swap lands)",
            r.path.display(),
            plugin.descriptor().name
        );
    }
    let boxed: Box<dyn Reactor> = Box::new(plugin);
    batpak_runtime::spawn(store, boxed, r.runner.clone())
}

impl Operator for Reactors {
    fn status(&self) -> Vec<ReactorState> {
        let slots = self.slots.lock();
        slots.iter().map(|s| self.state_of(s)).collect()
    }

    fn pause(&self, name: &str) -> Result<ReactorState, OpError> {
        // Take the handle under the lock, stop it outside: the batch in
        // flight finishes and commits its checkpoint, which keeps the
        // position.
        let handle = {
            let mut slots = self.slots.lock();
            let i = Self::find(&slots, name)?;
            slots[i].paused = true;
            slots[i].handle.take()
        };
        if let Some(h) = handle {
            Box::new(h).stop_and_join().map_err(|e| {
                OpError::Failed(format!("reactor {name} failed while pausing: {e}"))
            })?;
        }
        self.state_named(name)
    }

    fn resume(&self, name: &str) -> Result<ReactorState, OpError> {
        let mut slots = self.slots.lock();
        let i = Self::find(&slots, name)?;
        let s = &mut slots[i];
        if !s.paused {
            return Err(OpError::Refused(format!(
                "reactor {name} is not paused (it is {:?}); nothing to resume",
                s.status.state()
            )));
        }
        let h = respawn(&self.store, &s.recipe, name)
            .map_err(|e| OpError::Failed(format!("reactor {name} cannot start again: {e:#}")))?;
        s.status = h.status().clone();
        s.handle = Some(h);
        s.paused = false;
        let state = self.state_of(&slots[i]);
        Ok(state)
    }

    fn reset(&self, name: &str, to: ResetTo) -> Result<ResetOutcome, OpError> {
        let slots = self.slots.lock();
        let i = Self::find(&slots, name)?;
        let s = &slots[i];
        if s.lossy {
            return Err(OpError::Refused(format!(
                "reactor {name} reads a lossy subscription, which has no checkpoint to reset"
            )));
        }
        if !s.paused && s.handle.as_ref().is_some_and(|h| !h.is_finished()) {
            return Err(OpError::Refused(format!(
                "reactor {name} is running; `batpak-host pause {name}` first, then reset, then `resume {name}`"
            )));
        }
        batpak_service::reset_checkpoint(
            &self.store,
            name,
            &cursor_id(name),
            s.region.fingerprint(),
            to,
        )
    }

    fn parked(&self, plugin: Option<&str>) -> Result<Vec<Value>, OpError> {
        let list = batpak_runtime::parked_events(&self.store, plugin)
            .map_err(|e| OpError::Failed(e.to_string()))?;
        Ok(list.iter().map(crate::run::parked_json).collect())
    }

    fn parked_replay(
        &self,
        plugin: Option<&str>,
        event: Option<EventId>,
    ) -> Result<Vec<Value>, OpError> {
        let made = batpak_runtime::request_replay(&self.store, plugin, event)
            .map_err(|e| OpError::Failed(e.to_string()))?;
        // A runner re-delivers requested replays when it starts: restart the
        // running reactors concerned at a batch boundary so they do it now.
        let mut names: Vec<String> = made.iter().map(|(_, p)| p.record.reactor.clone()).collect();
        names.sort();
        names.dedup();
        for n in names {
            let running = {
                let slots = self.slots.lock();
                Self::find(&slots, &n).is_ok_and(|i| !slots[i].paused && slots[i].handle.is_some())
            };
            if running {
                self.pause(&n)?;
                self.resume(&n)?;
            }
        }
        Ok(made
            .iter()
            .map(|(id, p)| {
                serde_json::json!({
                    "replay_requested": id.to_string(),
                    "parked": p.parked.to_string(),
                    "reactor": p.record.reactor,
                    "event": p.record.event,
                })
            })
            .collect())
    }
}

/// Starts the service for a running host and says where it listens.
pub(crate) fn serve(
    store: &Store,
    reactors: Arc<Reactors>,
    args: &ServiceArgs,
    log_level: LogLevel,
) -> anyhow::Result<Service> {
    let service = Service::start(
        store,
        reactors,
        ServiceOptions {
            listen: args.listen,
            token_file: args.token_file.clone(),
        },
    )?;
    batpak_runtime::log(
        log_level,
        LogLevel::Info,
        "run",
        &format!(
            "serving the store: other batpak-host commands with --data {} go through this host",
            store.dir().display()
        ),
    );
    if let (Some(addr), Some(token)) = (service.http_addr(), service.token_path()) {
        // Printed whatever the log level: the operator needs both to use it.
        eprintln!(
            "http: listening on http://{addr} (bearer token in {})",
            token.display()
        );
    }
    Ok(service)
}

/// The connection to the host running on `data`, or an error saying none
/// runs (these commands operate a running host).
fn host(data: &Path, what: &str) -> anyhow::Result<Client> {
    Client::connect(data)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no batpak-host is running on {} ({what} operates a running host); start `batpak-host run --data {} PLUGINS…` first",
            data.display(),
            data.display()
        )
    })
}

/// Arguments of `batpak-host status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// One JSON array of reactor states instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn status(data: &Path, a: StatusArgs) -> anyhow::Result<ExitCode> {
    let list = host(data, "status")?.status()?;
    if a.json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<16} {:<9} {:<12} {:<8} {:>10} {:>8} {:>6}",
        "REACTOR", "VERSION", "DIGEST", "STATE", "POSITION", "LAG", "PARKED"
    );
    for r in &list {
        let state = serde_json::to_value(r.state)?;
        println!(
            "{:<16} {:<9} {:<12} {:<8} {:>10} {:>8} {:>6}",
            r.name,
            r.version,
            &r.digest[..r.digest.len().min(12)],
            state.as_str().unwrap_or("?"),
            r.position,
            if r.lag_capped {
                format!("{}+", r.lag)
            } else {
                r.lag.to_string()
            },
            r.parked
        );
        if let Some(e) = &r.error {
            println!("  error: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `pause` and `resume`.
#[derive(Args, Debug)]
pub struct NameArgs {
    /// Reactor name (as `status` lists it).
    pub name: String,
}

pub(crate) fn pause(data: &Path, a: NameArgs) -> anyhow::Result<ExitCode> {
    let s = host(data, "pause")?.pause(&a.name)?;
    println!("{}", serde_json::to_string(&s)?);
    eprintln!("paused {} at position {}", s.name, s.position);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn resume(data: &Path, a: NameArgs) -> anyhow::Result<ExitCode> {
    let s = host(data, "resume")?.resume(&a.name)?;
    println!("{}", serde_json::to_string(&s)?);
    eprintln!("resumed {} from position {}", s.name, s.position);
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `batpak-host reset`.
#[derive(Args, Debug)]
pub struct ResetArgs {
    /// Reactor name.
    pub name: String,
    /// New position: `start` (re-deliver everything), `end` (skip the
    /// backlog), `current` (keep it; with --plugin, re-key for a new
    /// region), or a global sequence.
    #[arg(long, value_name = "start|end|current|SEQ")]
    pub to: ResetTo,
    /// Key the checkpoint for this plugin's region (a new version whose
    /// `consumes` changed). Only with no host running on the store.
    #[arg(long, value_name = "PLUGIN")]
    pub plugin: Option<PathBuf>,
}

pub(crate) fn reset(data: &Path, a: ResetArgs) -> anyhow::Result<ExitCode> {
    batpak_runtime::validate_reactor_name(&a.name).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(mut c) = Client::connect(data)? {
        if a.plugin.is_some() {
            anyhow::bail!(
                "a host is running on {}: a region change (--plugin) needs the reactor's old version stopped. Stop `run`, run this reset again, then start `run` with the new version",
                data.display()
            );
        }
        let out = c.reset(&a.name, a.to)?;
        return print_reset(&out);
    }
    if !data.join("segments").is_dir() {
        anyhow::bail!(
            "no store in {} (no segments directory); check --data",
            data.display()
        );
    }
    let store =
        Store::open(data).with_context(|| format!("opening the store in {}", data.display()))?;
    let region = match &a.plugin {
        Some(path) => {
            let rt = Runtime::new(RuntimeConfig::with_cache(data.join("cache")))?;
            let p = rt.load_plugin(path, PluginSettings::default())?;
            let d = p.descriptor();
            if d.name != a.name {
                anyhow::bail!(
                    "{} is reactor {:?}, not {:?}; the name keys the checkpoint",
                    path.display(),
                    d.name,
                    a.name
                );
            }
            if d.canal == ReactorCanal::LossySubscription {
                anyhow::bail!("reactor {} reads a lossy subscription, which has no checkpoint", a.name);
            }
            d.region.fingerprint()
        }
        None => match store.checkpoint(&cursor_id(&a.name)) {
            Some(cp) => cp.region,
            None => anyhow::bail!(
                "reactor {} has no checkpoint in this store yet; pass --plugin FILE so the new one is keyed for its region",
                a.name
            ),
        },
    };
    let out = batpak_service::reset_checkpoint(&store, &a.name, &cursor_id(&a.name), region, a.to)?;
    store.close()?;
    print_reset(&out)
}

fn print_reset(out: &ResetOutcome) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string(out)?);
    eprintln!(
        "reset {}: position {} -> {} (recorded as event {} at sequence {})",
        out.reactor, out.from, out.to, out.event, out.seq
    );
    Ok(ExitCode::SUCCESS)
}
