//! A running host as a service: the [`Supervisor`](crate::host::supervisor)'s
//! reactors behind the service's [`Operator`] trait (through its
//! [`Control`]), the `--listen`/`--token-file` flags of `run`, and the
//! `status`, `pause`, `resume` and `reset` commands.

use crate::host::supervisor::{Control, ControlError};
use crate::plugins::compile_cache::CacheOptions;
use crate::views::{ParkedLine, ReactorView, ReplayRequestedLine};
use anyhow::Context;
use batpak_runtime::SwapRefusal;
use batpak_runtime::{cursor_id, LogLevel, Plugin, PluginSettings, Reactor, Runtime};
use batpak_service::{
    Client, OpError, Operator, ReactorRunState, ReactorState, ResetOutcome, ResetTo, Service,
    ServiceOptions,
};
use batpak_store::{EventId, ReactorCanal, Store};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// Largest `--token-file` accepted (a token is one line).
const MAX_TOKEN_FILE_BYTES: u64 = 64 << 10;

/// The service's view of the supervisor: every call goes through
/// [`Control`], so reactor changes happen on the supervisor's thread, in
/// order, between status ticks.
struct HostOperator {
    control: Control,
}

fn op_error(e: ControlError) -> OpError {
    match e {
        ControlError::UnknownReactor(n) => OpError::NoSuchReactor(n),
        ControlError::AlreadyRunning(_)
        | ControlError::Instances { .. }
        | ControlError::NotRunning(_)
        | ControlError::Busy { .. } => OpError::Refused(e.to_string()),
        ControlError::TimedOut { .. } => OpError::TimedOut(e.to_string()),
        // The file offered (to swap in, or to start from) is not a usable
        // plugin: the request's input is bad, the host is fine.
        ControlError::Load(m) => OpError::Invalid(m),
        ControlError::Swap(SwapRefusal::Unloadable { .. } | SwapRefusal::UnsupportedWit { .. }) => {
            OpError::Invalid(e.to_string())
        }
        ControlError::WrongReactor { .. }
        | ControlError::Swap(_)
        | ControlError::NameTaken { .. }
        | ControlError::NoCheckpoint(_)
        | ControlError::MustPause(_) => OpError::Refused(e.to_string()),
        ControlError::Reset(e) => e,
        other => OpError::Failed(other.to_string()),
    }
}

impl HostOperator {
    fn store(&self) -> &Store {
        self.control.store()
    }

    fn state_of(&self, v: &ReactorView) -> ReactorState {
        // Lag counts only the reactor's own region (a lossy subscription
        // has no position to count from).
        let (lag, lag_capped) = if v.lossy {
            (0, false)
        } else {
            batpak_service::region_lag(self.store(), &v.region, v.position)
        };
        ReactorState {
            name: v.name.clone(),
            version: v.version.clone(),
            digest: v.digest.clone(),
            state: match v.state {
                ReactorRunState::Stopping => ReactorRunState::Stopping,
                _ if v.paused => ReactorRunState::Paused,
                s => s,
            },
            position: v.position,
            lag,
            lag_capped,
            events_in: v.events_in,
            reactions_out: v.reactions_out,
            parked: v.parked,
            error: v.error.clone(),
            last_swap: v
                .last_swap
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok()),
            file: Some(v.path.clone()),
            watched: v.watched.clone(),
            instance: v.instance.map(|i| batpak_service::InstanceState {
                index: i.index,
                count: i.count,
            }),
            pending: v
                .pending
                .as_ref()
                .and_then(|p| serde_json::to_value(p).ok()),
        }
    }

    fn view(&self, name: &str) -> Result<ReactorView, OpError> {
        self.control
            .reactors()
            .map_err(op_error)?
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| OpError::NoSuchReactor(name.to_string()))
    }
}

impl Operator for HostOperator {
    fn status(&self) -> Vec<ReactorState> {
        self.try_status().unwrap_or_default()
    }

    fn try_status(&self) -> Result<Vec<ReactorState>, OpError> {
        Ok(self
            .control
            .reactors()
            .map_err(op_error)?
            .iter()
            .map(|v| self.state_of(v))
            .collect())
    }

    fn pause(&self, name: &str) -> Result<ReactorState, OpError> {
        // The runner finishes the batch in flight and commits its
        // checkpoint, which keeps the position.
        let v = self.control.stop(name).map_err(op_error)?;
        Ok(self.state_of(&v))
    }

    fn resume(&self, name: &str) -> Result<ReactorState, OpError> {
        let v = self.view(name)?;
        if !v.paused {
            return Err(OpError::Refused(format!(
                "reactor {name} is not paused (it is {}); nothing to resume",
                v.state
            )));
        }
        let v = self.control.start(name).map_err(op_error)?;
        Ok(self.state_of(&v))
    }

    fn reset(&self, name: &str, to: ResetTo) -> Result<ResetOutcome, OpError> {
        self.control.reset(name, to).map_err(op_error)
    }

    fn parked(&self, plugin: Option<&str>) -> Result<Vec<Value>, OpError> {
        let list = batpak_runtime::parked_events(self.store(), plugin)
            .map_err(|e| OpError::Failed(e.to_string()))?;
        Ok(list
            .iter()
            .map(|p| serde_json::to_value(ParkedLine::from(p)).unwrap_or(Value::Null))
            .collect())
    }

    fn parked_replay(
        &self,
        plugin: Option<&str>,
        event: Option<EventId>,
    ) -> Result<Vec<Value>, OpError> {
        let made = batpak_runtime::request_replay(self.store(), plugin, event)
            .map_err(|e| OpError::Failed(e.to_string()))?;
        // A runner re-delivers requested replays when it starts: restart the
        // running reactors concerned at a batch boundary so they do it now.
        let mut names: Vec<String> = made.iter().map(|(_, p)| p.record.reactor.clone()).collect();
        names.sort();
        names.dedup();
        for n in names {
            if self
                .view(&n)
                .is_ok_and(|v| !v.paused && v.state != ReactorRunState::Stopped)
            {
                self.control.stop(&n).map_err(op_error)?;
                self.control.start(&n).map_err(op_error)?;
            }
        }
        Ok(made
            .iter()
            .map(|(id, p)| {
                serde_json::to_value(ReplayRequestedLine::new(*id, p)).unwrap_or(Value::Null)
            })
            .collect())
    }

    fn swap(&self, name: &str, file: &Path) -> Result<Value, OpError> {
        let v = self.control.swap(name, file).map_err(op_error)?;
        serde_json::to_value(&v).map_err(|e| OpError::Failed(e.to_string()))
    }
}

/// Starts the service for a running host (its control socket, and HTTP
/// when `--listen` is given) and says where it listens.
pub(crate) fn serve(
    control: Control,
    args: &ServiceOptions,
    log_level: LogLevel,
    console: &crate::host::log_filter::Console,
) -> anyhow::Result<Service> {
    let store = control.store().clone();
    if let Some(p) = &args.token_file {
        // The service reads the file by its path: refuse first what cannot
        // be a token file (a FIFO would block this start for ever,
        // /dev/zero would be read until memory runs out).
        batpak_runtime::open_regular(p, MAX_TOKEN_FILE_BYTES)
            .map_err(|e| anyhow::anyhow!("--token-file {e}"))?;
    }
    let service = Service::start(&store, Arc::new(HostOperator { control }), args.clone())?;
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
        console.println(&format!(
            "http: listening on http://{addr} (bearer token in {})",
            token.display()
        ));
    }
    Ok(service)
}

/// The connection to the host running on `data`, or an error saying none
/// runs (`what` operates a running host).
///
/// # Errors
/// No host runs on `data`, or its socket cannot be used.
pub fn connect_running(data: &Path, what: &str) -> anyhow::Result<Client> {
    Client::connect(data)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no batpak-host is running on {} ({what} operates a running host); start `batpak-host run --data {} PLUGINS…` first",
            data.display(),
            data.display()
        )
    })
}

/// Moves reactor `name`'s checkpoint to `to`, through the host running on
/// `data` when there is one, else in the store itself. `plugin` keys the
/// checkpoint for that plugin's region (a new version whose `consumes`
/// changed; only without a running host), compiled through `cache`.
///
/// # Errors
/// A bad name, no store, a host running when `plugin` is given, a plugin
/// of another reactor or with a lossy canal, no checkpoint to move.
pub fn reset_checkpoint(
    data: &Path,
    name: &str,
    to: ResetTo,
    plugin: Option<&Path>,
    cache: &CacheOptions,
) -> anyhow::Result<ResetOutcome> {
    batpak_runtime::validate_reactor_name(name).map_err(|e| anyhow::anyhow!(e))?;
    if let Some(mut c) = Client::connect(data)? {
        if plugin.is_some() {
            anyhow::bail!(
                "a host is running on {}: a region change (--plugin) needs the reactor's old version stopped. Stop `run`, run this reset again, then start `run` with the new version",
                data.display()
            );
        }
        return Ok(c.reset(name, to)?);
    }
    if !data.join("segments").is_dir() {
        anyhow::bail!(
            "no store in {} (no segments directory); check --data",
            data.display()
        );
    }
    let store =
        Store::open(data).with_context(|| format!("opening the store in {}", data.display()))?;
    let region = match plugin {
        Some(path) => {
            let rt = Runtime::new(cache.runtime_config()?)?;
            let p = Plugin::load(&rt, path, PluginSettings::default())?;
            let d = p.descriptor();
            if d.name != name {
                anyhow::bail!(
                    "{} is reactor {:?}, not {:?}; the name keys the checkpoint",
                    path.display(),
                    d.name,
                    name
                );
            }
            if d.canal == ReactorCanal::LossySubscription {
                anyhow::bail!("reactor {name} reads a lossy subscription, which has no checkpoint");
            }
            d.region.fingerprint()
        }
        None => match store.checkpoint(&cursor_id(name)) {
            Some(cp) => cp.region,
            None => anyhow::bail!(
                "reactor {name} has no checkpoint in this store yet; pass --plugin FILE so the new one is keyed for its region"
            ),
        },
    };
    let out = batpak_service::reset_checkpoint(&store, name, &cursor_id(name), region, to)?;
    store.close()?;
    Ok(out)
}

/// `reset NAME --instances M`: hands reactor `name` over to `count`
/// instances in the store in `data` (see
/// [`hand_over`](crate::host::instances::hand_over)); `plugin` is the
/// reactor's plugin, whose region keys the new instances' checkpoints.
/// Refused while a host runs on the store.
///
/// # Errors
/// A bad name or count, a host running, no store, a plugin of another
/// reactor or with a lossy canal, or an [`InstancesError`](crate::host::instances::InstancesError).
pub fn hand_over_instances(
    data: &Path,
    name: &str,
    count: u32,
    plugin: &Path,
    cache: &CacheOptions,
) -> anyhow::Result<crate::host::instances::HandOver> {
    batpak_runtime::validate_reactor_name(name).map_err(|e| anyhow::anyhow!(e))?;
    crate::plugins::plugin_config::check_instances(count)
        .map_err(|m| anyhow::anyhow!("--instances {m}"))?;
    if Client::connect(data)?.is_some() {
        anyhow::bail!(
            "a host is running on {}: changing the number of instances needs every instance stopped. Stop `run`, run this reset again, then start `run` with --instances {name}={count}",
            data.display()
        );
    }
    if !data.join("segments").is_dir() {
        anyhow::bail!(
            "no store in {} (no segments directory); check --data",
            data.display()
        );
    }
    let rt = Runtime::new(cache.runtime_config()?)?;
    let p = Plugin::load(&rt, plugin, PluginSettings::default())?;
    let d = p.descriptor();
    if d.name != name {
        anyhow::bail!(
            "{} is reactor {:?}, not {:?}; the name keys the checkpoints",
            plugin.display(),
            d.name,
            name
        );
    }
    if d.canal == ReactorCanal::LossySubscription {
        anyhow::bail!("reactor {name} reads a lossy subscription, which runs as one instance");
    }
    let store =
        Store::open(data).with_context(|| format!("opening the store in {}", data.display()))?;
    let out = crate::host::instances::hand_over(&store, name, &d.region, count);
    store.close()?;
    Ok(out?)
}
