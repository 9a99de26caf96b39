//! The supervisor's core: the reactors' slots, the runner lifecycle (add,
//! stop, start, restart), the loop that serves control requests between
//! status ticks, and shutdown. Hot swap (`swap_orchestration.rs`) and the
//! watched plugin files (`watched.rs`) are its other two parts.

use super::control::{Control, Request};
use super::observer::{HostObserver, ReactorSummary, ShutdownReport};
use crate::control_error::ControlError;
use crate::host::log_filter::LogFilter;
use crate::hot_swap::pending_op::{
    answer, compile_off_thread, file_size, Compiled, HandedSwap, LifeOp, Origin, Reply, SwapOp,
};
use crate::hot_swap::watch::PluginWatcher;
use crate::plugins::loader::{Loaded, Loader};
use crate::views::{PendingView, ReactorView, RollbackView, SwapView};
use batpak_runtime::{
    FailurePolicy, Instance, LogLevel, Reactor, ReactorStatus, RolledBackRecord, RunnerHandle,
    RunnerSettings, SwapOutcome,
};
use batpak_store::{CanalHandle, ReactorRunState, Region, Store};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often the supervisor checks for idleness, exits and signals (and
/// serves control requests at the latest).
const TICK: Duration = Duration::from_millis(25);
/// How often the status display is refreshed.
const DISPLAY_EVERY: Duration = Duration::from_millis(250);

/// What every runner shares: the retry policy.
#[derive(Clone, Debug)]
pub struct RunPolicy {
    /// Calls of a failing batch before it is bisected and parked.
    pub attempts: u32,
    /// Wait before the first retry.
    pub backoff: Duration,
    /// Hot swap: batches a new version is on probation (`--swap-rollback`).
    pub swap_rollback: u32,
}

pub(super) struct Slot {
    pub(super) name: String,
    /// Which of the reactor's parallel instances this slot runs (0 of 1:
    /// the reactor alone).
    pub(super) instance: Instance,
    /// The file its running version was loaded from.
    pub(super) path: PathBuf,
    /// `run --watch`: the watched file that is this reactor's source (a
    /// change there swaps it in, whatever file a `swap` command loaded
    /// since; removing it stops the reactor).
    pub(super) watched: Option<PathBuf>,
    pub(super) digest: String,
    /// The region its cursor reads (a swap keeps it: the runtime refuses
    /// a new version that changes it).
    pub(super) region: Region,
    pub(super) handle: Option<RunnerHandle>,
    pub(super) status: Arc<ReactorStatus>,
    /// Stopped through [`Control::stop`] (or its file removed under
    /// `--watch`): may be started again, and does not end the run.
    pub(super) stopped_by_operator: bool,
    /// Its file was removed under `--watch`: putting it back starts it.
    pub(super) removed: bool,
    /// The last swap, kept when the runner stops.
    pub(super) last_swap: Option<(SwapOutcome, SystemTime)>,
    /// The rollback of that swap, kept when the runner stops.
    pub(super) last_rollback: Option<(RolledBackRecord, SystemTime)>,
    /// A swap being compiled (or compiled, waiting for the reactor to run).
    pub(super) swap: Option<SwapOp>,
    /// Swaps handed to the runner, oldest first, waiting for a boundary.
    pub(super) handed: Vec<HandedSwap>,
    /// A stop or start in progress.
    pub(super) life: Option<LifeOp>,
    /// A runner's terminal error, collected when it was stopped.
    pub(super) error: Option<String>,
}

impl Slot {
    /// How control commands and `status` name this slot: the reactor's
    /// name, or `name#index/count` for one of several instances.
    pub(super) fn label(&self) -> String {
        self.instance.label(&self.name)
    }

    pub(super) fn running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// The running version's digest (a swap or rollback changes it).
    pub(super) fn digest(&self) -> String {
        match &self.handle {
            Some(h) => h.running().digest,
            None => self.digest.clone(),
        }
    }

    pub(super) fn last_swap(&self) -> Option<(SwapOutcome, SystemTime)> {
        self.handle
            .as_ref()
            .and_then(RunnerHandle::last_swap)
            .or_else(|| self.last_swap.clone())
    }

    /// The rollback of [`last_swap`](Self::last_swap), if it was rolled
    /// back.
    pub(super) fn last_rollback(&self) -> Option<(RolledBackRecord, SystemTime)> {
        match &self.handle {
            Some(h) if h.last_swap().is_some() => h.last_rollback(),
            _ => self.last_rollback.clone(),
        }
    }

    /// What its pending work waits for (the stop or start first, then the
    /// swap), if any.
    pub(super) fn pending(&self) -> Option<PendingView> {
        if let Some(l) = &self.life {
            return Some(PendingView::of_life(l));
        }
        if let Some(op) = &self.swap {
            return Some(PendingView::of_swap(op));
        }
        self.handed.last().map(PendingView::of_handed)
    }

    pub(super) fn has_pending(&self) -> bool {
        self.life.is_some() || self.swap.is_some() || !self.handed.is_empty()
    }

    /// Takes the handle, keeping what the listing needs from it.
    pub(super) fn take_handle(&mut self) -> Option<RunnerHandle> {
        let h = self.handle.take()?;
        self.digest = h.running().digest;
        if let Some(s) = h.last_swap() {
            self.last_swap = Some(s);
            self.last_rollback = h.last_rollback();
        }
        Some(h)
    }
}

/// Owns the store and the reactors of one `run`.
pub struct Supervisor {
    pub(super) store: Store,
    pub(super) loader: Loader,
    pub(super) policy: RunPolicy,
    pub(super) slots: Vec<Slot>,
    pub(super) display: Box<dyn HostObserver>,
    pub(super) log: Arc<LogFilter>,
    pub(super) requests: Receiver<Request>,
    pub(super) control: Sender<Request>,
    pub(super) shutdown_requested: bool,
    /// `run --watch`: the plugin watcher.
    pub(super) watcher: Option<PluginWatcher>,
    /// Plugin files compiled on worker threads come back here.
    pub(super) compiled_tx: Sender<Compiled>,
    pub(super) compiled: Receiver<Compiled>,
    /// The id of the next compile job.
    pub(super) next_job: u64,
    /// `run --watch`: new files being compiled (no reactor yet), by job.
    /// New plugin files being compiled (no reactor yet), by job: from
    /// `run --watch` (no reply) or [`Control::add`].
    pub(super) new_files: Vec<(u64, PathBuf, Option<Reply<ReactorView>>)>,
}

impl Supervisor {
    /// A supervisor over `store`, with no reactor yet.
    pub fn new(
        store: Store,
        loader: Loader,
        policy: RunPolicy,
        display: Box<dyn HostObserver>,
        log: Arc<LogFilter>,
    ) -> Supervisor {
        let (control, requests) = mpsc::channel();
        let (compiled_tx, compiled) = mpsc::channel();
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
            compiled_tx,
            compiled,
            next_job: 0,
            new_files: Vec::new(),
        }
    }

    /// The store the reactors run against (for a service that appends and
    /// reads while they run).
    #[allow(dead_code)] // Used by the control channel.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A handle for other threads.
    #[allow(dead_code)] // Used by the control channel.
    pub fn control(&self) -> Control {
        Control {
            tx: self.control.clone(),
            store: self.store.clone(),
        }
    }

    pub(super) fn runner_settings(
        &self,
        s: &crate::plugins::plugin_config::Resolved,
    ) -> RunnerSettings {
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

    /// Starts a runner for `loaded` under a new slot — one per instance
    /// when its settings ask for several (each with its own plugin
    /// instance, shard of the region and checkpoint).
    ///
    /// # Errors
    /// The store's checkpoints record another number of instances (see
    /// [`check_instances`](crate::host::instances::check_instances)), a
    /// further plugin instance did not start, or a runner could not start
    /// (its cursor does not open, for instance); nothing was added.
    pub fn add(&mut self, loaded: Loaded) -> anyhow::Result<()> {
        let name = loaded.name().to_string();
        let digest = loaded.plugin.component_digest().to_string();
        let region = loaded.plugin.descriptor().region.clone();
        let count = loaded.settings.instances;
        crate::host::instances::check_instances(&self.store, &name, count)?;
        let mut plugins = Vec::new();
        for _ in 1..count {
            plugins.push(loaded.plugin.fresh().map_err(|e| {
                anyhow::anyhow!("reactor {name}: starting a further instance: {e}")
            })?);
        }
        plugins.insert(0, loaded.plugin);
        let mut handles = Vec::new();
        for (instance, plugin) in Instance::all(count).zip(plugins) {
            let mut settings = self.runner_settings(&loaded.settings);
            settings.instance = instance;
            match batpak_runtime::spawn(&self.store, Box::new(plugin), settings) {
                Ok(h) => handles.push((instance, h)),
                Err(e) => {
                    for (_, h) in handles {
                        let _ = Box::new(h).stop_and_join();
                    }
                    return Err(e.into());
                }
            }
        }
        for (instance, handle) in handles {
            self.push_slot(&name, &loaded.path, &digest, &region, instance, handle);
        }
        Ok(())
    }

    fn push_slot(
        &mut self,
        name: &str,
        path: &Path,
        digest: &str,
        region: &Region,
        instance: Instance,
        handle: RunnerHandle,
    ) {
        self.display.reactor_added();
        self.slots.push(Slot {
            name: name.to_string(),
            instance,
            path: path.to_path_buf(),
            watched: None,
            digest: digest.to_string(),
            region: instance.region(region),
            status: handle.status().clone(),
            handle: Some(handle),
            stopped_by_operator: false,
            removed: false,
            last_swap: None,
            last_rollback: None,
            swap: None,
            handed: Vec::new(),
            life: None,
            error: None,
        });
    }

    /// Every reactor as it is now.
    pub fn reactors(&self) -> Vec<ReactorView> {
        let head = self.store.watermarks().durable;
        self.slots
            .iter()
            .map(|s| {
                let snap = s.status.snapshot(head);
                let mut v = ReactorView::new(
                    &snap,
                    s.status.is_idle_at(head),
                    head,
                    &s.digest(),
                    s.path.clone(),
                    s.region.clone(),
                    s.stopped_by_operator,
                )
                .with_last_swap(s.last_swap().map(|(o, at)| {
                    SwapView::new(&o, at)
                        .with_rollback(s.last_rollback().map(|(r, at)| RollbackView::new(&r, at)))
                }));
                if matches!(s.life, Some(LifeOp::Stopping { .. }))
                    && v.state != ReactorRunState::Failed
                {
                    v.state = ReactorRunState::Stopping;
                    v.caught_up = false;
                }
                v.pending = s.pending();
                v.watched = s.watched.clone();
                v.instance = (s.instance.count > 1).then(|| s.instance.into());
                v
            })
            .collect()
    }

    /// The slot `name` names: a reactor's name, or `name#index/count` for
    /// one of several instances (a bare name of a reactor run as several
    /// is refused, naming its instances).
    pub(super) fn slot(&mut self, name: &str) -> Result<usize, ControlError> {
        if let Some(i) = self.slots.iter().position(|s| s.label() == name) {
            return Ok(i);
        }
        let labels: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.name == name)
            .map(Slot::label)
            .collect();
        if labels.is_empty() {
            Err(ControlError::UnknownReactor(name.to_string()))
        } else {
            Err(ControlError::Instances {
                name: name.to_string(),
                instances: labels,
            })
        }
    }

    pub(super) fn view(&self, i: usize) -> ReactorView {
        self.reactors().swap_remove(i)
    }

    pub(super) fn new_job(&mut self) -> u64 {
        self.next_job += 1;
        self.next_job
    }

    /// Compiles `path` on a worker thread; the result comes back through
    /// `compiled` tagged with the returned job id.
    pub(super) fn compile(&mut self, path: &Path) -> Result<u64, ControlError> {
        let job = self.new_job();
        compile_off_thread(&self.loader, job, path, self.compiled_tx.clone()).map_err(|e| {
            ControlError::Load(format!(
                "cannot start a thread to compile {}: {e}",
                path.display()
            ))
        })?;
        Ok(job)
    }

    /// Asks reactor `name` to stop after its batch in flight (again: a
    /// no-op); `reply` gets its view once it stopped.
    pub(super) fn request_stop(
        &mut self,
        name: &str,
        reply: Option<Reply<ReactorView>>,
        removed: bool,
    ) {
        let i = match self.slot(name) {
            Ok(i) => i,
            Err(e) => {
                answer(reply, Err(e));
                return;
            }
        };
        match &mut self.slots[i].life {
            Some(LifeOp::Stopping {
                replies,
                removed: r,
                ..
            }) => {
                *r |= removed;
                replies.extend(reply);
                return;
            }
            Some(op @ LifeOp::Starting { .. }) => {
                let pending = PendingView::of_life(op).text;
                answer(
                    reply,
                    Err(ControlError::Busy {
                        name: name.to_string(),
                        pending,
                    }),
                );
                return;
            }
            None => {}
        }
        let slot = &mut self.slots[i];
        if slot.stopped_by_operator && !slot.running() {
            slot.removed |= removed;
            // The view is built only when someone waits for it.
            if let Some(r) = reply {
                let _ = r.send(Ok(self.view(i)));
            }
            return;
        }
        let Some(h) = slot.handle.as_ref() else {
            answer(reply, Err(ControlError::NotRunning(name.to_string())));
            return;
        };
        h.stop_at_position();
        slot.life = Some(LifeOp::Stopping {
            since: Instant::now(),
            removed,
            replies: reply.into_iter().collect(),
        });
        // A runner that has already exited is collected at once.
        self.poll_life(i);
    }

    /// Starts stopped reactor `name` again from its plugin file, compiled
    /// off this thread; `reply` gets its view once it runs.
    pub(super) fn request_start(&mut self, name: &str, reply: Option<Reply<ReactorView>>) {
        let i = match self.slot(name) {
            Ok(i) => i,
            Err(e) => {
                answer(reply, Err(e));
                return;
            }
        };
        match &mut self.slots[i].life {
            Some(LifeOp::Starting { replies, .. }) => {
                replies.extend(reply);
                return;
            }
            Some(op @ LifeOp::Stopping { .. }) => {
                let pending = PendingView::of_life(op).text;
                return answer(
                    reply,
                    Err(ControlError::Busy {
                        name: name.to_string(),
                        pending,
                    }),
                );
            }
            None => {}
        }
        if self.slots[i].running() {
            return answer(reply, Err(ControlError::AlreadyRunning(name.to_string())));
        }
        let file = self.slots[i].path.clone();
        match self.compile(&file) {
            Ok(job) => {
                self.slots[i].life = Some(LifeOp::Starting {
                    job,
                    bytes: file_size(&file),
                    file,
                    since: Instant::now(),
                    replies: reply.into_iter().collect(),
                })
            }
            Err(e) => answer(reply, Err(e)),
        }
    }

    /// A stop in progress: once the runner has exited, collects it and
    /// answers.
    pub(super) fn poll_life(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(LifeOp::Stopping { .. }) = &slot.life else {
            return;
        };
        if slot.running() {
            return;
        }
        let Some(LifeOp::Stopping {
            removed, replies, ..
        }) = slot.life.take()
        else {
            unreachable!("checked above")
        };
        if let Some(h) = slot.take_handle() {
            // Exited: the join does not wait.
            if let Err(e) = Box::new(h).join() {
                slot.error = Some(format!("{e:#}"));
            }
        }
        slot.stopped_by_operator = true;
        slot.removed |= removed;
        let name = slot.label();
        let what = match (removed, &slot.watched) {
            (true, Some(w)) => format!(
                "{} removed: reactor {name} stopped, its checkpoint kept",
                w.display()
            ),
            _ => format!("stopped reactor {name}"),
        };
        self.loader.log(LogLevel::Info, &what);
        let view = self.view(i);
        for r in replies {
            let _ = r.send(Ok(view.clone()));
        }
    }

    /// Starts slot `i`'s reactor again with `loaded` (from its checkpoint).
    pub(super) fn restart_with(&mut self, i: usize, loaded: Loaded) -> Result<(), ControlError> {
        // A runner that ended on its own is joined (its error kept) first.
        if let Some(h) = self.slots[i].take_handle() {
            if let Err(e) = Box::new(h).join() {
                self.slots[i].error = Some(format!("{e:#}"));
            }
        }
        let mut settings = self.runner_settings(&loaded.settings);
        settings.instance = self.slots[i].instance;
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

    /// A plugin file compiled on a worker thread: goes on with whatever
    /// waited for it (a swap, a start, a new watched file).
    pub(super) fn on_compiled(&mut self, c: Compiled) {
        if let Some(k) = self.new_files.iter().position(|(job, ..)| *job == c.job) {
            let (_, _, reply) = self.new_files.swap_remove(k);
            match (c.result, reply) {
                (Ok(mut loaded), None) => {
                    loaded.path = c.path;
                    self.start_new_file(loaded);
                }
                (Ok(mut loaded), Some(reply)) => {
                    loaded.path = c.path;
                    let _ = reply.send(self.add_requested(loaded));
                }
                (Err(e), None) => self.loader.log(
                    LogLevel::Warn,
                    &format!("new plugin {} not started: {e:#}", c.path.display()),
                ),
                (Err(e), Some(reply)) => {
                    let _ = reply.send(Err(ControlError::Load(format!("{e:#}"))));
                }
            }
            return;
        }
        for i in 0..self.slots.len() {
            if matches!(&self.slots[i].life, Some(LifeOp::Starting { job, .. }) if *job == c.job) {
                self.on_start_compiled(i, c);
                return;
            }
            if self.slots[i]
                .swap
                .as_ref()
                .is_some_and(|op| op.job == c.job)
            {
                self.on_swap_compiled(i, c);
                return;
            }
        }
        // Superseded meanwhile: dropped.
    }

    pub(super) fn on_start_compiled(&mut self, i: usize, c: Compiled) {
        let Some(LifeOp::Starting { replies, .. }) = self.slots[i].life.take() else {
            unreachable!("checked by the caller")
        };
        let name = self.slots[i].name.clone();
        let result = match c.result {
            Err(e) => Err(ControlError::Load(format!("{e:#}"))),
            Ok(l) if l.name() != name => Err(ControlError::WrongReactor {
                path: c.path.clone(),
                expected: name.clone(),
                found: l.name().to_string(),
            }),
            Ok(mut l) => {
                l.path = c.path.clone();
                self.restart_with(i, l)
            }
        };
        match &result {
            Ok(()) => self.loader.log(
                LogLevel::Info,
                &format!("started reactor {name} from {}", c.path.display()),
            ),
            Err(e) => self
                .loader
                .log(LogLevel::Error, &format!("reactor {name} not started: {e}")),
        }
        let mut result = result.map(|()| self.view(i));
        for r in replies {
            // The first caller gets the typed error, later ones its text.
            let answer = match &result {
                Ok(v) => Ok(v.clone()),
                Err(e) => Err(ControlError::Load(e.to_string())),
            };
            let _ = r.send(std::mem::replace(&mut result, answer));
        }
    }

    /// Polls every slot's pending work.
    pub(super) fn poll_pending(&mut self) {
        while let Ok(c) = self.compiled.try_recv() {
            self.on_compiled(c);
        }
        for i in 0..self.slots.len() {
            self.poll_life(i);
            self.hand_over(i);
            self.poll_handed(i);
        }
    }

    /// [`Control::add`]: a new reactor from `loaded`, unless its name is
    /// taken.
    pub(super) fn add_requested(&mut self, loaded: Loaded) -> Result<ReactorView, ControlError> {
        let name = loaded.name().to_string();
        if let Some(s) = self.slots.iter().find(|s| s.name == name) {
            return Err(ControlError::NameTaken {
                name,
                path: s.path.clone(),
            });
        }
        let path = loaded.path.clone();
        self.add(loaded)
            .map_err(|e| ControlError::Spawn(format!("{e:#}")))?;
        self.loader.log(
            LogLevel::Info,
            &format!("started reactor {name} from {}", path.display()),
        );
        Ok(self.view(self.slots.len() - 1))
    }

    pub(super) fn serve(&mut self, r: Request) {
        match r {
            Request::Add(path, reply) => match self.compile(&path) {
                Ok(job) => self.new_files.push((job, path, Some(reply))),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Request::List(reply) => {
                let _ = reply.send(Ok(self.reactors()));
            }
            Request::Stop(name, reply) => self.request_stop(&name, Some(reply), false),
            Request::Start(name, reply) => self.request_start(&name, Some(reply)),
            Request::Swap(name, path, reply) => {
                self.request_swap(&name, &path, Origin::Command, Some(reply))
            }
            Request::Shutdown => self.shutdown_requested = true,
        }
    }

    /// True when nothing is left to wait for: every reactor ended on its
    /// own (an operator-stopped reactor may be started again).
    pub(super) fn all_ended(&self) -> bool {
        // Under --watch a new or restored file may start a reactor.
        if self.watcher.is_some() {
            return false;
        }
        self.slots
            .iter()
            .all(|s| !s.stopped_by_operator && !s.running() && !s.has_pending())
            || self.slots.is_empty()
    }

    /// Serves control requests and refreshes the status until a signal, a
    /// shutdown request, every reactor ending, or — with `until_idle` —
    /// every reactor having caught up with the durable log.
    pub fn run(&mut self, until_idle: bool, stop: &dyn Fn() -> bool) {
        let mut shown: Option<Instant> = None;
        loop {
            let request = match self.requests.recv_timeout(TICK) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    unreachable!("the supervisor holds a sender")
                }
            };
            // What finished meanwhile is applied before the request is
            // served, so a listing shows a swap the log already records.
            self.poll_pending();
            if let Some(r) = request {
                self.serve(r);
            }
            while let Some(change) = self
                .watcher
                .as_ref()
                .and_then(|w| w.changes.try_recv().ok())
            {
                self.apply(change);
            }
            if stop() || self.shutdown_requested {
                break;
            }
            let head = self.store.watermarks().durable;
            if until_idle
                && self
                    .slots
                    .iter()
                    .all(|s| s.status.is_idle_at(head) && !s.has_pending())
            {
                break;
            }
            if self.all_ended() {
                break;
            }
            let now = Instant::now();
            if shown.is_none_or(|at| now.duration_since(at) >= DISPLAY_EVERY) {
                let views = self.reactors();
                self.display.status(&views, head, now);
                self.log.flush(now, false);
                shown = Some(now);
            }
        }
    }

    /// Stops every runner (each finishes its batch and commits), closes
    /// the store and reports each reactor as it ended.
    ///
    /// # Errors
    /// Closing the store failed.
    pub fn shutdown(mut self) -> anyhow::Result<ShutdownReport> {
        // Requests that raced with the stop are refused, not left hanging.
        drop(std::mem::replace(&mut self.requests, mpsc::channel().1));
        // No change is applied after this.
        self.watcher = None;
        for s in &mut self.slots {
            // Pending work is dropped: its callers get `Gone`.
            s.swap = None;
            s.handed.clear();
            s.life = None;
            if let Some(h) = s.take_handle() {
                if s.instance.count > 1 {
                    // Every instance stops at its position (the head, once
                    // idle), so a hand-over finds them at one position.
                    h.stop_at_position();
                }
                if let Err(e) = Box::new(h).stop_and_join() {
                    s.error = Some(format!("{e:#}"));
                }
            }
        }
        self.display.finished();
        // What the rate limit held back is reported before the summary.
        self.log.flush(Instant::now(), true);
        let reactors = self
            .slots
            .iter()
            .zip(self.reactors())
            .map(|(s, view)| ReactorSummary {
                view,
                error: s.error.clone(),
            })
            .collect();
        self.store.close()?;
        Ok(ShutdownReport { reactors })
    }
}

#[cfg(test)]
mod tests {
    use super::super::observer::NoObserver;
    use super::*;
    use crate::plugins::plugin_config::{Flags, PluginConfigFile};
    use batpak_runtime::{Runtime, RuntimeConfig, SwapRefusal};
    use batpak_store::{AppendOptions, Coordinate, Proposal};

    /// A reactor in component text (no build needed): `null`, consumes
    /// `bench.in`, proposes nothing.
    const NULL_WAT: &str = include_str!("../../../../../plugins/null-wat/reactor.wat");
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

    /// A supervisor that does not answer makes a control call fail with an
    /// error naming what timed out, not hang.
    #[test]
    fn a_control_call_has_a_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("data")).unwrap();
        let (tx, _unserved) = mpsc::channel();
        let control = Control {
            tx,
            store: store.clone(),
        };
        let t = Instant::now();
        match control.call(
            || "listing the reactors".into(),
            Duration::from_millis(100),
            Request::List,
        ) {
            Err(e @ ControlError::TimedOut { .. }) => {
                assert!(
                    e.to_string()
                        .starts_with("listing the reactors did not finish within"),
                    "{e}"
                )
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        store.close().unwrap();
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
        let log = LogFilter::new(crate::host::log_filter::Console::stderr(), 0);
        let policy = RunPolicy {
            attempts: 1,
            backoff: Duration::from_millis(1),
            swap_rollback: 0,
        };
        let first = loader.load(&wat).unwrap();
        let mut sup = Supervisor::new(store.clone(), loader, policy, Box::new(NoObserver), log);
        sup.add(first).unwrap();
        let control = sup.control();
        let late = sup.control();

        let driver = std::thread::spawn(move || {
            let v = wait_for(&control, "idle after 5 events", |v| v.caught_up);
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
            assert_eq!(v.state, ReactorRunState::Stopped);
            assert_eq!(
                control.stop("null").unwrap().state,
                ReactorRunState::Stopped,
                "idempotent"
            );
            // Stopped, the run goes on: events wait for the restart.
            append(&store, 3);
            let v = control.start("null").unwrap();
            assert_ne!(v.state, ReactorRunState::Stopped);
            let v = wait_for(&control, "idle after the restart", |v| {
                v.caught_up && v.events_in == 3
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

            // Reset: refused while it runs, done once paused.
            assert!(matches!(
                control.reset("null", batpak_service::ResetTo::Start),
                Err(ControlError::MustPause(_))
            ));
            assert_eq!(
                control.pause("null").unwrap().state,
                ReactorRunState::Stopped
            );
            let r = control
                .reset("null", batpak_service::ResetTo::Start)
                .unwrap();
            assert_eq!(r.to, 0);
            assert_ne!(
                control.resume("null").unwrap().state,
                ReactorRunState::Stopped
            );

            // Add: a new reactor from a file; its name is then taken.
            let added = control.add(&other).unwrap();
            assert_eq!(added.name, "nul2");
            assert_eq!(control.status().unwrap().len(), 2);
            assert!(matches!(
                control.add(&other),
                Err(ControlError::NameTaken { .. })
            ));
            assert!(matches!(control.add(&broken), Err(ControlError::Load(_))));
            control.shutdown();
        });
        sup.run(false, &|| false);
        driver.join().expect("the control thread's assertions");
        assert!(sup.shutdown().unwrap().ok(), "no reactor failed");
        // A request after shutdown gets an error, not a hang.
        assert!(matches!(late.reactors(), Err(ControlError::Gone)));
    }
}
