//! The supervisor of `run`: owns the store, the runners (one per reactor),
//! the status display and shutdown. Other threads reach it through a
//! [`Control`] handle — list reactors, stop or start one, swap one's plugin,
//! shut down — whose requests it serves between two status ticks, so every
//! change happens on one thread, in order. With `run --watch` it also acts
//! on what the plugin watcher settled: a replaced file is swapped in, a new
//! file starts its reactor, a removed file stops it (checkpoint kept).

use crate::loader::{Loaded, Loader};
use crate::log_filter::LogFilter;
use crate::output::{ReactorView, SwapView};
use crate::signals;
use crate::status_display::{summary_body, StatusDisplay};
use crate::watch::{absolute, Change, PluginWatcher};
use batpak_runtime::{
    FailurePolicy, LoadError, LogLevel, Reactor, ReactorStatus, RunnerHandle, RunnerSettings,
    SwapOutcome, SwapRefusal,
};
use batpak_store::{CanalHandle, Region, Store};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the supervisor checks for idleness, exits and signals (and
/// serves control requests at the latest).
const TICK: Duration = Duration::from_millis(25);
/// How often the status display is refreshed.
const DISPLAY_EVERY: Duration = Duration::from_millis(250);

/// Why a control request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    /// No reactor has this name.
    #[error("no reactor named {0:?} runs here")]
    UnknownReactor(String),
    /// `start` on a reactor that runs.
    #[error("reactor {0} is already running")]
    AlreadyRunning(String),
    /// `stop` on a reactor that does not run.
    #[error("reactor {0} is not running")]
    NotRunning(String),
    /// The new plugin names another reactor.
    #[error("plugin {path} is reactor {found}, not {expected}; the name keys the checkpoint")]
    WrongReactor {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// Loading, checking or initialising the plugin failed.
    #[error("{0}")]
    Load(String),
    /// The runner could not be started (its cursor does not open, …).
    #[error("{0}")]
    Spawn(String),
    /// The swap was refused (recorded as `batpak.plugin.swap-refused` when
    /// the reactor runs); the running version keeps serving.
    #[error(transparent)]
    Swap(#[from] SwapRefusal),
    /// The supervisor has shut down.
    #[error("the supervisor has shut down")]
    Gone,
}

type Reply<T> = Sender<Result<T, ControlError>>;

enum Request {
    List(Reply<Vec<ReactorView>>),
    Stop(String, Reply<ReactorView>),
    Start(String, Reply<ReactorView>),
    Swap(String, PathBuf, Reply<SwapOutcome>),
    Shutdown,
}

/// A handle other threads use to operate the running reactors. Cheap to
/// clone; every call blocks until the supervisor has served it.
#[derive(Clone)]
pub(crate) struct Control {
    tx: Sender<Request>,
    store: Store,
}

#[allow(dead_code)] // The control channel (local socket, HTTP) calls these.
impl Control {
    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, ControlError> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(make(tx)).map_err(|_| ControlError::Gone)?;
        rx.recv().map_err(|_| ControlError::Gone)?
    }

    /// The store the reactors run against (appends, reads and parked-event
    /// queries need no round trip through the supervisor).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Every reactor, in the order they were started.
    pub(crate) fn reactors(&self) -> Result<Vec<ReactorView>, ControlError> {
        self.call(Request::List)
    }

    /// Stops reactor `name` after its batch in flight (checkpoint committed).
    /// Stopping a reactor an operator stopped already is not an error.
    pub(crate) fn stop(&self, name: &str) -> Result<ReactorView, ControlError> {
        self.call(|r| Request::Stop(name.to_string(), r))
    }

    /// Starts stopped reactor `name` again, reloading its plugin file.
    pub(crate) fn start(&self, name: &str) -> Result<ReactorView, ControlError> {
        self.call(|r| Request::Start(name.to_string(), r))
    }

    /// Hot swap: loads `path` beside running reactor `name` and swaps it in
    /// at the next batch boundary, with the operator's config re-read.
    /// Returns where it was swapped (the log position) and the old and new
    /// version and digest; the listing then shows the swap.
    ///
    /// # Errors
    /// [`ControlError::Swap`] with the typed refusal (a file that does not
    /// load, another name, region or canal, a reactor that does not run);
    /// [`ControlError::UnknownReactor`].
    pub(crate) fn swap(&self, name: &str, path: &Path) -> Result<SwapOutcome, ControlError> {
        self.call(|r| Request::Swap(name.to_string(), path.to_path_buf(), r))
    }

    /// Asks for the same clean shutdown as Ctrl-C (returns at once).
    pub(crate) fn shutdown(&self) {
        let _ = self.tx.send(Request::Shutdown);
    }
}

/// What every runner shares: the retry policy.
#[derive(Clone, Debug)]
pub(crate) struct RunPolicy {
    pub attempts: u32,
    pub backoff: Duration,
    /// Hot swap: batches a new version is on probation (`--swap-rollback`).
    pub swap_rollback: u32,
}

struct Slot {
    name: String,
    path: PathBuf,
    digest: String,
    /// The region its cursor reads (a swap keeps it: the runtime refuses
    /// a new version that changes it).
    region: Region,
    handle: Option<RunnerHandle>,
    status: Arc<ReactorStatus>,
    /// Stopped through [`Control::stop`] (or its file removed under
    /// `--watch`): may be started again, and does not end the run.
    stopped_by_operator: bool,
    /// Its file was removed under `--watch`: putting it back starts it.
    removed: bool,
    /// The last swap, kept when the runner stops.
    last_swap: Option<(SwapOutcome, SystemTime)>,
    /// A runner's terminal error, collected when it was stopped.
    error: Option<String>,
}

impl Slot {
    fn running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// The running version's digest (a swap or rollback changes it).
    fn digest(&self) -> String {
        match &self.handle {
            Some(h) => h.running().digest,
            None => self.digest.clone(),
        }
    }

    fn last_swap(&self) -> Option<(SwapOutcome, SystemTime)> {
        self.handle
            .as_ref()
            .and_then(RunnerHandle::last_swap)
            .or_else(|| self.last_swap.clone())
    }

    /// Takes the handle, keeping what the listing needs from it.
    fn take_handle(&mut self) -> Option<RunnerHandle> {
        let h = self.handle.take()?;
        self.digest = h.running().digest;
        self.last_swap = h.last_swap().or(self.last_swap.take());
        Some(h)
    }
}

/// Owns the store and the reactors of one `run`.
pub(crate) struct Supervisor {
    store: Store,
    loader: Loader,
    policy: RunPolicy,
    slots: Vec<Slot>,
    display: StatusDisplay,
    log: Arc<LogFilter>,
    requests: Receiver<Request>,
    control: Sender<Request>,
    shutdown_requested: bool,
    /// `run --watch`: the plugin watcher.
    watcher: Option<PluginWatcher>,
}

impl Supervisor {
    /// A supervisor over `store`, with no reactor yet.
    pub(crate) fn new(
        store: Store,
        loader: Loader,
        policy: RunPolicy,
        display: StatusDisplay,
        log: Arc<LogFilter>,
    ) -> Supervisor {
        let (control, requests) = mpsc::channel();
        Supervisor {
            store,
            loader,
            policy,
            slots: Vec::new(),
            display,
            log,
            requests,
            control,
            shutdown_requested: false,
            watcher: None,
        }
    }

    /// The store the reactors run against (for a service that appends and
    /// reads while they run).
    #[allow(dead_code)] // Used by the control channel.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// A handle for other threads.
    #[allow(dead_code)] // Used by the control channel.
    pub(crate) fn control(&self) -> Control {
        Control {
            tx: self.control.clone(),
            store: self.store.clone(),
        }
    }

    fn runner_settings(&self, s: &crate::plugin_config::Resolved) -> RunnerSettings {
        RunnerSettings {
            max_batch: s.max_batch,
            grant_emits: s.grant_emits.clone(),
            policy: FailurePolicy {
                attempts: self.policy.attempts,
                backoff: self.policy.backoff,
                ..FailurePolicy::default()
            },
            log_level: s.log_level,
            swap_rollback: self.policy.swap_rollback,
            ..RunnerSettings::default()
        }
    }

    /// Starts a runner for `loaded` under a new slot.
    ///
    /// # Errors
    /// The runner could not start (its cursor does not open, for instance);
    /// nothing was added.
    pub(crate) fn add(&mut self, loaded: Loaded) -> anyhow::Result<()> {
        let name = loaded.name().to_string();
        let digest = loaded.plugin.component_digest().to_string();
        let region = loaded.plugin.descriptor().region.clone();
        let settings = self.runner_settings(&loaded.settings);
        let handle = batpak_runtime::spawn(&self.store, Box::new(loaded.plugin), settings)?;
        self.display.add_reactor();
        self.slots.push(Slot {
            name,
            path: loaded.path,
            digest,
            region,
            status: handle.status().clone(),
            handle: Some(handle),
            stopped_by_operator: false,
            removed: false,
            last_swap: None,
            error: None,
        });
        Ok(())
    }

    /// Every reactor as it is now.
    pub(crate) fn reactors(&self) -> Vec<ReactorView> {
        let head = self.store.watermarks().durable;
        self.slots
            .iter()
            .map(|s| {
                let snap = s.status.snapshot(head);
                ReactorView::new(
                    &snap,
                    s.status.is_idle_at(head),
                    head,
                    &s.digest(),
                    s.path.clone(),
                    s.region.clone(),
                    s.stopped_by_operator,
                )
                .with_last_swap(s.last_swap().map(|(o, at)| SwapView::new(&o, at)))
            })
            .collect()
    }

    fn slot(&mut self, name: &str) -> Result<usize, ControlError> {
        self.slots
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| ControlError::UnknownReactor(name.to_string()))
    }

    fn view(&self, i: usize) -> ReactorView {
        self.reactors().swap_remove(i)
    }

    /// Stops reactor `name` after its batch in flight (again: a no-op).
    pub(crate) fn stop(&mut self, name: &str) -> Result<ReactorView, ControlError> {
        let i = self.slot(name)?;
        if self.slots[i].stopped_by_operator {
            return Ok(self.view(i));
        }
        let slot = &mut self.slots[i];
        let Some(h) = slot.take_handle() else {
            return Err(ControlError::NotRunning(name.to_string()));
        };
        if let Err(e) = Box::new(h).stop_and_join() {
            slot.error = Some(format!("{e:#}"));
        }
        slot.stopped_by_operator = true;
        self.loader
            .log(LogLevel::Info, &format!("stopped reactor {name}"));
        Ok(self.view(i))
    }

    /// Starts stopped reactor `name` again from its plugin file.
    pub(crate) fn start(&mut self, name: &str) -> Result<ReactorView, ControlError> {
        let i = self.slot(name)?;
        if self.slots[i].running() {
            return Err(ControlError::AlreadyRunning(name.to_string()));
        }
        let path = self.slots[i].path.clone();
        let loaded = self.load_as(name, &path)?;
        self.restart_with(i, loaded)?;
        self.loader
            .log(LogLevel::Info, &format!("started reactor {name}"));
        Ok(self.view(i))
    }

    /// Starts slot `i`'s reactor again with `loaded` (from its checkpoint).
    fn restart_with(&mut self, i: usize, loaded: Loaded) -> Result<(), ControlError> {
        // A runner that ended on its own is joined (its error kept) first.
        if let Some(h) = self.slots[i].take_handle() {
            if let Err(e) = Box::new(h).join() {
                self.slots[i].error = Some(format!("{e:#}"));
            }
        }
        let settings = self.runner_settings(&loaded.settings);
        let digest = loaded.plugin.component_digest().to_string();
        let handle = batpak_runtime::spawn(&self.store, Box::new(loaded.plugin), settings)
            .map_err(|e| ControlError::Spawn(format!("{e:#}")))?;
        let slot = &mut self.slots[i];
        slot.status = handle.status().clone();
        slot.handle = Some(handle);
        slot.digest = digest;
        slot.path = loaded.path;
        slot.stopped_by_operator = false;
        slot.removed = false;
        Ok(())
    }

    /// Hot swap: loads `path` (config re-read) beside running reactor
    /// `name` and swaps it in at the next batch boundary; see
    /// [`Control::swap`].
    pub(crate) fn swap(&mut self, name: &str, path: &Path) -> Result<SwapOutcome, ControlError> {
        let i = self.slot(name)?;
        let Some(h) = self.slots[i].handle.as_ref().filter(|h| !h.is_finished()) else {
            return Err(SwapRefusal::NotRunning {
                name: name.to_string(),
            }
            .into());
        };
        let loaded = match self.loader.load_fresh(path) {
            Ok(l) => l,
            Err(e) => {
                let r = load_refusal(path, &e);
                h.record_refusal(&r);
                return Err(r.into());
            }
        };
        self.swap_in(i, loaded, None)
    }

    /// Hands `loaded` to slot `i`'s running runner and waits for the outcome.
    fn swap_in(
        &mut self,
        i: usize,
        loaded: Loaded,
        took: Option<Duration>,
    ) -> Result<SwapOutcome, ControlError> {
        let slot = &mut self.slots[i];
        let Some(h) = slot.handle.as_ref() else {
            return Err(SwapRefusal::NotRunning {
                name: slot.name.clone(),
            }
            .into());
        };
        let grant = loaded.settings.grant_emits.clone();
        let outcome = h.swap(Box::new(loaded.plugin), grant)?;
        slot.path = loaded.path;
        slot.digest = outcome.new_digest.clone();
        self.loader.log(
            LogLevel::Info,
            &format!(
                "swapped reactor {} {} -> {} at sequence {}{}",
                outcome.reactor,
                outcome.old_version,
                outcome.new_version,
                outcome.position,
                took.map(|t| format!(" (loaded in {:.1} ms)", t.as_secs_f64() * 1e3))
                    .unwrap_or_default()
            ),
        );
        Ok(outcome)
    }

    /// `run --watch`: watches `files` and the plugin files in `dirs`; what
    /// settles is applied between two ticks of [`run`](Self::run), and the
    /// run no longer ends when every reactor has.
    ///
    /// # Errors
    /// A directory cannot be watched.
    pub(crate) fn watch(&mut self, files: &[PathBuf], dirs: &[PathBuf]) -> anyhow::Result<()> {
        self.watcher = Some(PluginWatcher::start(files, dirs, self.loader.clone())?);
        Ok(())
    }

    /// Acts on one settled change of a watched file: swap, start or stop.
    fn apply(&mut self, change: Change) {
        let by_path = |s: &Slot, p: &Path| absolute(&s.path) == p;
        match change {
            Change::Unloadable { path, error } => {
                match self.slots.iter().position(|s| by_path(s, &path)) {
                    Some(i) => {
                        let r = load_refusal(&path, &error);
                        match self.slots[i].handle.as_ref() {
                            Some(h) => h.record_refusal(&r),
                            None => self.loader.log(LogLevel::Warn, &r.to_string()),
                        }
                    }
                    None => self.loader.log(
                        LogLevel::Warn,
                        &format!("new plugin {} not started: {error:#}", path.display()),
                    ),
                }
            }
            Change::Removed { path } => {
                let Some(i) = self.slots.iter().position(|s| by_path(s, &path)) else {
                    return;
                };
                let slot = &mut self.slots[i];
                let Some(h) = slot.take_handle() else {
                    return;
                };
                // Stops at a batch boundary and writes the checkpoint, so
                // putting the file back resumes where it was.
                if let Err(e) = Box::new(h).stop_and_join() {
                    slot.error = Some(format!("{e:#}"));
                }
                slot.stopped_by_operator = true;
                slot.removed = true;
                let name = slot.name.clone();
                self.loader.log(
                    LogLevel::Info,
                    &format!(
                        "{} removed: reactor {name} stopped, its checkpoint kept",
                        path.display()
                    ),
                );
            }
            Change::Loaded { loaded, took } => self.apply_loaded(*loaded, took),
        }
    }

    fn apply_loaded(&mut self, loaded: Loaded, took: Duration) {
        let path = loaded.path.clone();
        let name = loaded.name().to_string();
        if let Some(i) = self.slots.iter().position(|s| absolute(&s.path) == path) {
            let slot = &self.slots[i];
            if slot.running() {
                if slot.digest() == loaded.plugin.component_digest() {
                    return; // Touched, not changed.
                }
                // A refusal is recorded and logged by the runner.
                let _ = self.swap_in(i, loaded, Some(took));
                return;
            }
            if slot.stopped_by_operator && !slot.removed {
                self.loader.log(
                    LogLevel::Info,
                    &format!("{} changed; reactor {name} was stopped by the operator and runs it when started", path.display()),
                );
                return;
            }
            if slot.name != name {
                self.loader.log(
                    LogLevel::Warn,
                    &format!(
                        "{} is now reactor {name}, not {}; not started (the name keys the checkpoint)",
                        path.display(),
                        slot.name
                    ),
                );
                return;
            }
            match self.restart_with(i, loaded) {
                Ok(()) => self.loader.log(
                    LogLevel::Info,
                    &format!("started reactor {name} again from {}", path.display()),
                ),
                Err(e) => self
                    .loader
                    .log(LogLevel::Error, &format!("reactor {name} not started: {e}")),
            }
            return;
        }
        if let Some(j) = self.slots.iter().position(|s| s.name == name) {
            let r = SwapRefusal::Unloadable {
                path: path.clone(),
                reason: format!(
                    "reactor {name} already runs from {}; each reactor needs its own name",
                    self.slots[j].path.display()
                ),
            };
            match self.slots[j].handle.as_ref() {
                Some(h) => h.record_refusal(&r),
                None => self.loader.log(LogLevel::Warn, &r.to_string()),
            }
            return;
        }
        match self.add(loaded) {
            Ok(()) => self.loader.log(
                LogLevel::Info,
                &format!("started reactor {name} from new file {}", path.display()),
            ),
            Err(e) => self.loader.log(
                LogLevel::Error,
                &format!("new plugin {} not started: {e:#}", path.display()),
            ),
        }
    }

    fn load_as(&self, name: &str, path: &Path) -> Result<Loaded, ControlError> {
        let loaded = self
            .loader
            .load(path)
            .map_err(|e| ControlError::Load(format!("{e:#}")))?;
        if loaded.name() != name {
            return Err(ControlError::WrongReactor {
                path: path.to_path_buf(),
                expected: name.to_string(),
                found: loaded.name().to_string(),
            });
        }
        Ok(loaded)
    }

    fn serve(&mut self, r: Request) {
        match r {
            Request::List(reply) => {
                let _ = reply.send(Ok(self.reactors()));
            }
            Request::Stop(name, reply) => {
                let _ = reply.send(self.stop(&name));
            }
            Request::Start(name, reply) => {
                let _ = reply.send(self.start(&name));
            }
            Request::Swap(name, path, reply) => {
                let _ = reply.send(self.swap(&name, &path));
            }
            Request::Shutdown => self.shutdown_requested = true,
        }
    }

    /// True when nothing is left to wait for: every reactor ended on its
    /// own (an operator-stopped reactor may be started again).
    fn all_ended(&self) -> bool {
        // Under --watch a new or restored file may start a reactor.
        if self.watcher.is_some() {
            return false;
        }
        self.slots
            .iter()
            .all(|s| !s.stopped_by_operator && !s.running())
            || self.slots.is_empty()
    }

    /// Serves control requests and refreshes the status until a signal, a
    /// shutdown request, every reactor ending, or — with `until_idle` —
    /// every reactor having caught up with the durable log.
    pub(crate) fn run(&mut self, until_idle: bool) {
        let mut shown: Option<Instant> = None;
        loop {
            match self.requests.recv_timeout(TICK) {
                Ok(r) => self.serve(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    unreachable!("the supervisor holds a sender")
                }
            }
            while let Some(change) = self
                .watcher
                .as_ref()
                .and_then(|w| w.changes.try_recv().ok())
            {
                self.apply(change);
            }
            if signals::stop_requested() || self.shutdown_requested {
                break;
            }
            let head = self.store.watermarks().durable;
            if until_idle && self.slots.iter().all(|s| s.status.is_idle_at(head)) {
                break;
            }
            if self.all_ended() {
                break;
            }
            let now = Instant::now();
            if shown.is_none_or(|at| now.duration_since(at) >= DISPLAY_EVERY) {
                let views = self.reactors();
                self.display.update(&views, head, now);
                self.log.flush(now, false);
                shown = Some(now);
            }
        }
    }

    /// Stops every runner (each finishes its batch and commits), prints one
    /// summary line per reactor and closes the store.
    ///
    /// # Errors
    /// Closing the store failed. A reactor that failed is reported on stderr
    /// and makes the result `Ok(false)`.
    pub(crate) fn shutdown(mut self) -> anyhow::Result<bool> {
        // Requests that raced with the stop are refused, not left hanging.
        drop(std::mem::replace(&mut self.requests, mpsc::channel().1));
        let mut ok = true;
        // No change is applied after this.
        self.watcher = None;
        for s in &mut self.slots {
            if let Some(h) = s.take_handle() {
                if let Err(e) = Box::new(h).stop_and_join() {
                    s.error = Some(format!("{e:#}"));
                }
            }
        }
        self.display.finish();
        // What the rate limit held back is reported before the summary.
        self.log.flush(Instant::now(), true);
        for (s, v) in self.slots.iter().zip(self.reactors()) {
            if let Some(e) = &s.error {
                ok = false;
                eprintln!("error: reactor {}: {e}", s.name);
            }
            eprintln!("summary | {} (version {})", summary_body(&v), v.version);
        }
        self.store.close()?;
        Ok(ok)
    }
}

/// The refusal for a plugin file that did not load: typed from the
/// runtime's [`LoadError`] when there is one (another WIT version is
/// [`SwapRefusal::UnsupportedWit`]).
fn load_refusal(path: &Path, e: &anyhow::Error) -> SwapRefusal {
    match e.downcast_ref::<LoadError>() {
        Some(le) => batpak_runtime::refusal_for(path, le),
        None => SwapRefusal::Unloadable {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin_config::{Flags, PluginConfigFile};
    use crate::status_display::{Mode, StatusDisplay};
    use batpak_runtime::{Runtime, RuntimeConfig};
    use batpak_store::{AppendOptions, Coordinate, Proposal};

    /// A reactor in component text (no build needed): `null`, consumes
    /// `bench.in`, proposes nothing.
    const NULL_WAT: &str = include_str!("../../../plugins/null-wat/reactor.wat");
    const WAIT: Duration = Duration::from_secs(120);

    fn variant(dir: &Path, file: &str, from: &str, to: &str) -> PathBuf {
        let text = NULL_WAT.replace(from, to);
        assert_ne!(text, NULL_WAT, "{from} not found in the null reactor");
        let p = dir.join(file);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn wait_for(control: &Control, what: &str, pred: impl Fn(&ReactorView) -> bool) -> ReactorView {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = control.reactors().unwrap().remove(0);
            if pred(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "never {what}: {v:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn control_lists_stops_starts_and_swaps_a_reactor() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let wat = dir.path().join("null.wat");
        std::fs::write(&wat, NULL_WAT).unwrap();
        let v2 = variant(dir.path(), "null2.wat", r#""0.2.0""#, r#""0.2.1""#);
        let other = variant(
            dir.path(),
            "other.wat",
            r#"(i32.const 1024) "null""#,
            r#"(i32.const 1024) "nul2""#,
        );

        let broken = dir.path().join("broken.wat");
        std::fs::write(&broken, "(component").unwrap();

        let store = Store::open(&data).unwrap();
        let append = |store: &Store, n: u64| {
            for i in 0..n {
                let c = Coordinate::new(format!("b:{i}"), "s").unwrap();
                store
                    .append(
                        Proposal::new(c, "bench.in", b"{}".to_vec()),
                        AppendOptions::durable(),
                    )
                    .unwrap();
            }
        };
        append(&store, 5);
        let loader = Loader::new(
            Runtime::new(RuntimeConfig::default()).unwrap(),
            PluginConfigFile::default(),
            Flags::default(),
        );
        let display = StatusDisplay::new(Mode::Quiet);
        let log = LogFilter::new(display.console(), 0);
        let policy = RunPolicy {
            attempts: 1,
            backoff: Duration::from_millis(1),
            swap_rollback: 0,
        };
        let first = loader.load(&wat).unwrap();
        let mut sup = Supervisor::new(store.clone(), loader, policy, display, log);
        sup.add(first).unwrap();
        let control = sup.control();
        let late = sup.control();

        let driver = std::thread::spawn(move || {
            let v = wait_for(&control, "idle after 5 events", |v| v.state == "idle");
            assert_eq!((v.name.as_str(), v.events_in), ("null", 5));
            let digest = v.digest.clone();

            assert!(matches!(
                control.stop("nope"),
                Err(ControlError::UnknownReactor(_))
            ));
            assert!(matches!(
                control.start("null"),
                Err(ControlError::AlreadyRunning(_))
            ));
            let v = control.stop("null").unwrap();
            assert_eq!(v.state, "stopped");
            assert_eq!(control.stop("null").unwrap().state, "stopped", "idempotent");
            // Stopped, the run goes on: events wait for the restart.
            append(&store, 3);
            let v = control.start("null").unwrap();
            assert_ne!(v.state, "stopped");
            let v = wait_for(&control, "idle after the restart", |v| {
                v.state == "idle" && v.events_in == 3
            });
            assert!(v.position >= 8, "past all 8 inputs: {v:?}");

            match control.swap("null", &other) {
                Err(ControlError::Swap(SwapRefusal::NameMismatch { offered, .. })) => {
                    assert_eq!(offered, "nul2")
                }
                r => panic!("swapping in another reactor: {r:?}"),
            }
            match control.swap("null", &broken) {
                Err(ControlError::Swap(SwapRefusal::Unloadable { path, .. })) => {
                    assert_eq!(path, broken)
                }
                r => panic!("swapping in a broken file: {r:?}"),
            }
            let o = control.swap("null", &v2).unwrap();
            assert_eq!(
                (o.old_digest.as_str(), o.new_version.as_str()),
                (digest.as_str(), "0.2.1")
            );
            assert!(o.position >= 8, "swapped after the handled events: {o:?}");
            let v = control.reactors().unwrap().remove(0);
            assert_eq!(v.digest, o.new_digest, "the slot runs the new component");
            assert_ne!(v.digest, digest);
            assert_eq!(v.path, v2);
            assert_eq!(v.version, "0.2.1");
            let s = v.last_swap.expect("the listing shows the swap");
            assert_eq!(
                (s.position, s.record.as_str()),
                (o.position, o.record.as_str())
            );
            // The swap and both refusals are on the reactor's stream.
            let kinds: Vec<String> = store
                .scan(&batpak_store::Region::all(), 0, usize::MAX, true)
                .unwrap()
                .iter()
                .filter(|e| e.header.coordinate.entity == "reactor:null")
                .map(|e| e.kind().to_string())
                .collect();
            assert_eq!(
                kinds
                    .iter()
                    .filter(|k| *k == batpak_runtime::SWAP_REFUSED_KIND)
                    .count(),
                2,
                "{kinds:?}"
            );
            assert_eq!(
                kinds
                    .iter()
                    .filter(|k| *k == batpak_runtime::SWAPPED_KIND)
                    .count(),
                1,
                "{kinds:?}"
            );
            control.shutdown();
        });
        sup.run(false);
        driver.join().expect("the control thread's assertions");
        assert!(sup.shutdown().unwrap(), "no reactor failed");
        // A request after shutdown gets an error, not a hang.
        assert!(matches!(late.reactors(), Err(ControlError::Gone)));
    }
}
