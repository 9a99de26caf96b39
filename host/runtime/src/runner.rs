//! The runner: one thread per reactor. It pulls batches from the reactor's
//! canal, calls `react`, sends every proposal through the gates and appends
//! the admitted reactions, the denial records and the new checkpoint in
//! **one atomic append**. A batch that keeps failing is retried with
//! backoff, bisected down to the failing event, and that event is parked.
//!
//! Effectively-once: a reaction's id is derived from (reactor, source event,
//! index among that source's reactions), and it is committed in the same
//! frame as the checkpoint past its source. After a crash the batch comes
//! back only if that frame never made it, and even a redelivered reaction
//! cannot be appended twice (the store deduplicates explicit ids).

use super::admission::{Admission, CapabilityGate, Judged, ReactionContext, ReactorInfo};
use super::log::{log, LogLevel};
use super::parking::{park_proposal, parked_events, unparked_proposal, FailurePolicy, ParkedEvent};
use super::reactor::{FailureKind, HostServices, ReactFailure, ReactionVerdict, Reactor};
use super::status::{ReactorStatus, RunState};
// Hot swap (issue 11): the pending request, its reply and the records.
use super::swap::{self as hot, PendingSwap, SwapOutcome, SwapRefusal};
use anyhow::Context;
use batpak_store::GateSet;
use batpak_store::{AppendOptions, CheckpointUpdate, Store};
use batpak_store::{
    Canal, CanalBatch, CanalHandle, CloseReason, Cursor, ReactorCanal, Subscription,
};
use batpak_store::{Event, EventId, Proposal};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most proposals one `react` call may return.
pub const MAX_PROPOSALS_PER_CALL: usize = 10_000;
/// Most payload bytes one `react` call may return in total.
pub const MAX_OUTPUT_BYTES: usize = 64 << 20;
/// Default largest batch.
pub const DEFAULT_MAX_BATCH: usize = 256;

/// How a runner behaves. The defaults suit production; tests shorten the
/// waits.
#[derive(Clone)]
pub struct RunnerSettings {
    /// Largest batch pulled (a reactor's own non-zero `max_batch` lowers it).
    pub max_batch: usize,
    /// How long one pull waits for events before coming back empty.
    pub pull_wait: Duration,
    /// The operator's grant: kinds this reactor may emit (`None` grants
    /// every kind it declares).
    pub grant_emits: Option<Vec<String>>,
    /// Caller-defined gates, evaluated after the capability gate.
    pub gates: Arc<GateSet<ReactionContext>>,
    /// Retry, backoff and parking policy.
    pub policy: FailurePolicy,
    /// Queue bound of a lossy subscription.
    pub subscription_capacity: usize,
    /// A batch with no output does not write a checkpoint at once; one is
    /// written after this long, after `checkpoint_batches` such batches,
    /// when idle, and at shutdown. Redelivering such a batch is harmless.
    pub checkpoint_interval: Duration,
    /// See `checkpoint_interval`.
    pub checkpoint_batches: u32,
    /// Re-deliver parked events whose replay was requested, before the
    /// first pull.
    pub replay_parked: bool,
    /// Lowest level of the runner's own log lines.
    pub log_level: LogLevel,
    /// Hot swap: a new version that fails (a call errs, traps or times out)
    /// within its first `swap_rollback` batches is replaced by the version
    /// it replaced, which handles the failing batch again. 0: never.
    pub swap_rollback: u32,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        RunnerSettings {
            max_batch: DEFAULT_MAX_BATCH,
            pull_wait: Duration::from_millis(100),
            grant_emits: None,
            gates: Arc::new(GateSet::new()),
            policy: FailurePolicy::default(),
            subscription_capacity: 4096,
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_batches: 64,
            replay_parked: true,
            log_level: LogLevel::Info,
            swap_rollback: 0,
        }
    }
}

impl std::fmt::Debug for RunnerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerSettings")
            .field("max_batch", &self.max_batch)
            .field("grant_emits", &self.grant_emits)
            .field("gates", &self.gates.len())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The cursor id of reactor `name`: `reactor.<name>`.
pub fn cursor_id(name: &str) -> String {
    format!("reactor.{name}")
}

enum Feed {
    Cursor(Cursor),
    Lossy(Subscription),
}

/// Handle to a running reactor. Implements [`CanalHandle`]: `stop` lets the
/// batch in flight finish and commits the checkpoint; `join` waits.
pub struct RunnerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    status: Arc<ReactorStatus>,
    swap: Arc<Mutex<Option<PendingSwap>>>,
    name: String,
    // Hot swap: the running version's lineage, and the store to record
    // refusals that never reach the runner (a file that does not load).
    current: Arc<Mutex<Arc<ReactorInfo>>>,
    current_descriptor: Arc<Mutex<super::reactor::Descriptor>>,
    last_swap: Arc<Mutex<Option<(SwapOutcome, std::time::SystemTime)>>>,
    store: Store,
    log_level: LogLevel,
}

impl std::fmt::Debug for RunnerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl RunnerHandle {
    /// The runner's live counters.
    pub fn status(&self) -> &Arc<ReactorStatus> {
        &self.status
    }

    /// The reactor's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True once the thread has exited.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Replaces the running version by `reactor` at the next batch boundary
    /// and waits for the outcome. The new version continues from the old
    /// one's checkpoint; `grant_emits` is the operator's grant for it
    /// (re-read by the caller). See [`super::swap`].
    ///
    /// # Errors
    /// A [`SwapRefusal`]: another name, region or canal, a runner that is
    /// not running, or a later request that superseded this one. The
    /// refusal is recorded as `batpak.plugin.swap-refused` and logged; the
    /// running version keeps serving.
    pub fn swap(
        &self,
        reactor: Box<dyn Reactor>,
        grant_emits: Option<Vec<String>>,
    ) -> Result<SwapOutcome, SwapRefusal> {
        if let Err(r) = hot::check_swap(&self.descriptor_now(), reactor.descriptor()) {
            self.record_refusal(&r);
            return Err(r);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let superseded = self.swap.lock().replace(PendingSwap {
            reactor,
            grant_emits,
            reply: tx,
        });
        if let Some(old) = superseded {
            let r = SwapRefusal::Superseded {
                name: self.name.clone(),
            };
            self.record_refusal(&r);
            let _ = old.reply.send(Err(r));
        }
        // Ends when the runner answers, or drops the request by exiting.
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(r) => return r,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if self.is_finished() {
                        // The thread may have ended between two checks.
                        if let Ok(r) = rx.try_recv() {
                            return r;
                        }
                        break;
                    }
                }
            }
        }
        self.swap.lock().take();
        Err(SwapRefusal::NotRunning {
            name: self.name.clone(),
        })
    }

    /// The running version's name, version and component digest.
    pub fn running(&self) -> ReactorInfo {
        (**self.current.lock()).clone()
    }

    /// The last completed swap of this runner and when it happened (for
    /// `status`); `None` before the first.
    pub fn last_swap(&self) -> Option<(SwapOutcome, std::time::SystemTime)> {
        self.last_swap.lock().clone()
    }

    fn descriptor_now(&self) -> super::reactor::Descriptor {
        self.current_descriptor.lock().clone()
    }

    /// Records (as `batpak.plugin.swap-refused`) and logs a refusal decided
    /// outside the runner, e.g. a file that does not load.
    pub fn record_refusal(&self, refusal: &SwapRefusal) {
        let info = self.current.lock().clone();
        log(
            self.log_level,
            LogLevel::Warn,
            &format!("runtime {}", self.name),
            &format!("swap refused: {refusal}"),
        );
        if let Err(e) = self.store.append_system(
            vec![hot::refused_proposal(&info, refusal)],
            AppendOptions::durable(),
        ) {
            log(
                self.log_level,
                LogLevel::Error,
                &format!("runtime {}", self.name),
                &format!("could not record the swap refusal: {e}"),
            );
        }
    }

    fn join_inner(&mut self) -> anyhow::Result<()> {
        match self.thread.take() {
            None => Ok(()),
            Some(t) => match t.join() {
                Ok(r) => r,
                Err(p) => {
                    let msg = batpak_store::panic_message(p.as_ref());
                    anyhow::bail!("runner of reactor {} panicked: {msg}", self.name)
                }
            },
        }
    }
}

/// A runner's terminal failure, as reported by [`CanalHandle::join`].
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct RunnerError(anyhow::Error);

impl CanalHandle for RunnerHandle {
    type Error = RunnerError;

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn join(mut self: Box<Self>) -> Result<(), RunnerError> {
        self.join_inner().map_err(RunnerError)
    }

    fn stop_and_join(mut self: Box<Self>) -> Result<(), RunnerError> {
        self.stop.store(true, Ordering::SeqCst);
        self.join_inner().map_err(RunnerError)
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.join_inner();
    }
}

/// Starts a runner thread for `reactor` over `store`.
///
/// The canal is opened here, so a checkpoint that no longer fits the
/// reactor's region is reported at once.
///
/// # Errors
/// An invalid descriptor, a cursor that cannot be opened, or a thread that
/// cannot be started.
pub fn spawn(
    store: &Store,
    mut reactor: Box<dyn Reactor>,
    settings: RunnerSettings,
) -> anyhow::Result<RunnerHandle> {
    let d = reactor.descriptor().clone();
    d.validate().map_err(|e| anyhow::anyhow!(e))?;
    let feed = match d.canal {
        ReactorCanal::CursorGuaranteed => Feed::Cursor(
            Cursor::open(store, &cursor_id(&d.name), d.region.clone())
                .with_context(|| format!("reactor {}: cannot open its cursor", d.name))?,
        ),
        ReactorCanal::LossySubscription => Feed::Lossy(Subscription::new(
            store,
            d.region.clone(),
            settings.subscription_capacity.max(1),
        )),
    };
    let admission = Arc::new(admission_for(reactor.as_ref(), &settings));
    reactor.attach(HostServices {
        store: store.clone(),
        admission: admission.clone(),
    });
    let status = Arc::new(ReactorStatus::new(
        &d.name,
        &d.version,
        d.canal == ReactorCanal::LossySubscription,
    ));
    if let Feed::Cursor(c) = &feed {
        status.set_position(c.position());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let swap: Arc<Mutex<Option<PendingSwap>>> = Arc::new(Mutex::new(None));
    let current = Arc::new(Mutex::new(admission.info.clone()));
    let current_descriptor = Arc::new(Mutex::new(d.clone()));
    let last_swap = Arc::new(Mutex::new(None));
    let max_batch = batch_limit(&settings, &d);
    let log_level = settings.log_level;
    let worker = Worker {
        store: store.clone(),
        reactor,
        admission,
        feed,
        max_batch,
        settings,
        status: status.clone(),
        stop: stop.clone(),
        swap: swap.clone(),
        current: current.clone(),
        current_descriptor: current_descriptor.clone(),
        last_swap: last_swap.clone(),
        previous: None,
        unsaved: None,
        unsaved_batches: 0,
        last_commit: Instant::now(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("reactor-{}", d.name))
        .spawn({
            let status = status.clone();
            move || {
                // A panic in the runner (a bug, or a native reactor's) must
                // still mark it failed, or `--until-idle` would wait on it.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())) {
                    Ok(r) => r,
                    Err(p) => {
                        let msg = batpak_store::panic_message(p.as_ref());
                        status.fail(format!("panicked: {msg}"));
                        Err(anyhow::anyhow!("the runner panicked: {msg}"))
                    }
                }
            }
        })
        .context("starting a reactor thread")?;
    Ok(RunnerHandle {
        stop,
        thread: Some(thread),
        status,
        swap,
        name: d.name,
        current,
        current_descriptor,
        last_swap,
        store: store.clone(),
        log_level,
    })
}

/// The largest batch: the operator's limit, lowered by the reactor's own.
pub(crate) fn batch_limit(settings: &RunnerSettings, d: &super::reactor::Descriptor) -> usize {
    match d.max_batch {
        0 => settings.max_batch,
        n => settings.max_batch.min(n as usize),
    }
    .max(1)
}

pub(crate) fn admission_for(reactor: &dyn Reactor, settings: &RunnerSettings) -> Admission {
    let d = reactor.descriptor();
    Admission::new(
        ReactorInfo {
            name: d.name.clone(),
            version: d.version.clone(),
            digest: reactor.digest().to_string(),
        },
        CapabilityGate::new(&d.name, &d.emits, settings.grant_emits.as_deref()),
        settings.gates.clone(),
    )
}

/// What one successful `react` call turned into.
struct Outcome {
    proposals: Vec<Proposal>,
    verdicts: Vec<ReactionVerdict>,
    reactions: u64,
    denials: u64,
}

enum Flow {
    Continue,
    Stopped,
}

pub(crate) struct Worker {
    pub(crate) store: Store,
    pub(crate) reactor: Box<dyn Reactor>,
    pub(crate) admission: Arc<Admission>,
    feed: Feed,
    pub(crate) max_batch: usize,
    pub(crate) settings: RunnerSettings,
    pub(crate) status: Arc<ReactorStatus>,
    stop: Arc<AtomicBool>,
    swap: Arc<Mutex<Option<PendingSwap>>>,
    pub(crate) current: Arc<Mutex<Arc<ReactorInfo>>>,
    pub(crate) current_descriptor: Arc<Mutex<super::reactor::Descriptor>>,
    last_swap: Arc<Mutex<Option<(SwapOutcome, std::time::SystemTime)>>>,
    /// Hot swap: the version a new one replaced, kept while the new one is
    /// on probation (`swap_rollback`).
    pub(crate) previous: Option<hot::Probation>,
    /// Last event fully handled whose checkpoint is not written yet.
    unsaved: Option<(u64, EventId)>,
    unsaved_batches: u32,
    last_commit: Instant,
}

impl Worker {
    fn name(&self) -> &str {
        &self.admission.info.name
    }

    pub(crate) fn log(&self, level: LogLevel, msg: &str) {
        log(
            self.settings.log_level,
            level,
            &format!("runtime {}", self.name()),
            msg,
        );
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn run(mut self) -> anyhow::Result<()> {
        let result = self.run_inner();
        let saved = self.save_checkpoint();
        let result = result.and(saved);
        match &result {
            Ok(()) => self.status.set_state(RunState::Stopped),
            Err(e) => {
                self.log(LogLevel::Error, &format!("stopped: {e:#}"));
                self.status.fail(format!("{e:#}"));
            }
        }
        result
    }

    fn run_inner(&mut self) -> anyhow::Result<()> {
        if self.settings.replay_parked {
            if let Flow::Stopped = self.replay_parked()? {
                return Ok(());
            }
        }
        self.status.set_state(RunState::Running);
        loop {
            if self.stopping() {
                return Ok(());
            }
            self.take_swap()?;
            let observed = self.store.watermarks().durable;
            let pulled = match &mut self.feed {
                Feed::Cursor(c) => c.pull_batch(self.max_batch, self.settings.pull_wait),
                Feed::Lossy(s) => s.pull_batch(self.max_batch, self.settings.pull_wait),
            };
            if let Feed::Cursor(c) = &self.feed {
                self.status.set_position(c.position());
            }
            match pulled {
                Ok(CanalBatch::Empty) => {
                    if self.unsaved.is_some() {
                        // Idle: write the lazy checkpoint now, then look
                        // again (the checkpoint record moved the watermark).
                        self.save_checkpoint()?;
                    } else {
                        self.status.idle_at(observed);
                    }
                }
                Ok(batch) => {
                    self.status.busy();
                    let events = batch.into_vec();
                    self.status.add_in(events.len() as u64);
                    let flow = self.process(&events, 0)?;
                    if let Flow::Stopped = flow {
                        return Ok(());
                    }
                    self.probation_tick();
                    self.maybe_save_checkpoint()?;
                }
                Err(closed) => match closed.reason {
                    CloseReason::Lagged { missed } => {
                        self.status.add_missed(missed);
                        self.log(
                            LogLevel::Warn,
                            &format!("fell behind its lossy subscription and missed {missed} event(s); resubscribing"),
                        );
                        let region = self.reactor.descriptor().region.clone();
                        self.feed = Feed::Lossy(Subscription::new(
                            &self.store,
                            region,
                            self.settings.subscription_capacity.max(1),
                        ));
                    }
                    CloseReason::Stopped => return Ok(()),
                    CloseReason::StoreClosed => anyhow::bail!("the store was closed"),
                    CloseReason::Failed(m) => anyhow::bail!("its canal failed: {m}"),
                },
            }
        }
    }

    /// Picks up a replacement reactor handed over by [`RunnerHandle::swap`]
    /// (hot swap; the logic is in `super::swap`).
    fn take_swap(&mut self) -> anyhow::Result<()> {
        let Some(pending) = self.swap.lock().take() else {
            return Ok(());
        };
        // The old version's last output is committed, and its checkpoint
        // written, before the new version sees anything.
        self.save_checkpoint()?;
        let position = self.position();
        let result = self.apply_swap(pending.reactor, pending.grant_emits, position);
        if let Ok(o) = &result {
            *self.last_swap.lock() = Some((o.clone(), std::time::SystemTime::now()));
        }
        let _ = pending.reply.send(result);
        Ok(())
    }

    /// The last sequence this runner handled (its checkpoint).
    pub(crate) fn position(&self) -> u64 {
        match &self.feed {
            Feed::Cursor(c) => c.position(),
            Feed::Lossy(_) => self.store.watermarks().durable,
        }
    }

    /// Handles `events` with the full retry policy, then isolates the
    /// failure. `prior` counts failed calls that already included them.
    fn process(&mut self, events: &[Event], prior: u32) -> anyhow::Result<Flow> {
        let mut attempts = 0u32;
        let mut instantiate_failures = 0u32;
        let failure = loop {
            if attempts > 0 && self.stopping() {
                return Ok(Flow::Stopped);
            }
            match self.attempt(events) {
                Ok(outcome) => {
                    self.commit(events, outcome)?;
                    return Ok(Flow::Continue);
                }
                // Hot swap: a new version on probation that fails is rolled
                // back, and the restored version handles these events.
                Err(f) if self.roll_back_on(&f)? => return self.process(events, 0),
                Err(f) if f.kind == FailureKind::Instantiate => {
                    instantiate_failures += 1;
                    self.status.add_failure();
                    self.log(LogLevel::Warn, &f.message);
                    if instantiate_failures >= self.settings.policy.instantiate_attempts.max(1) {
                        anyhow::bail!(
                            "giving up after {instantiate_failures} failed attempts to get a working instance: {}",
                            f.message
                        );
                    }
                    if let Flow::Stopped = self.backoff(instantiate_failures) {
                        return Ok(Flow::Stopped);
                    }
                }
                Err(f) => {
                    attempts += 1;
                    self.status.add_failure();
                    self.log(
                        LogLevel::Warn,
                        &format!(
                            "react failed on {} (attempt {attempts} of {}): {f}",
                            describe_span(events),
                            self.settings.policy.attempts.max(1)
                        ),
                    );
                    if attempts >= self.settings.policy.attempts.max(1) {
                        break f;
                    }
                    if let Flow::Stopped = self.backoff(attempts) {
                        return Ok(Flow::Stopped);
                    }
                }
            }
        };
        self.isolate(events, failure, prior + attempts)
    }

    /// Splits a batch that keeps failing: straight to the event the reactor
    /// blamed, or in halves; parks a single failing event.
    fn isolate(
        &mut self,
        events: &[Event],
        failure: ReactFailure,
        attempts: u32,
    ) -> anyhow::Result<Flow> {
        if events.len() == 1 {
            self.park(&events[0], &failure, attempts)?;
            return Ok(Flow::Continue);
        }
        if self.stopping() {
            return Ok(Flow::Stopped);
        }
        match failure
            .event
            .map(|i| i as usize)
            .filter(|&i| i < events.len())
        {
            Some(i) => {
                if i > 0 {
                    if let Flow::Stopped = self.once(&events[..i], attempts)? {
                        return Ok(Flow::Stopped);
                    }
                }
                self.park(&events[i], &failure, attempts)?;
                if i + 1 < events.len() {
                    return self.once(&events[i + 1..], attempts);
                }
                Ok(Flow::Continue)
            }
            None => {
                let mid = events.len() / 2;
                if let Flow::Stopped = self.once(&events[..mid], attempts)? {
                    return Ok(Flow::Stopped);
                }
                self.once(&events[mid..], attempts)
            }
        }
    }

    /// One call for a part of a failing batch (no retries: the batch was
    /// retried already), isolating further when it fails.
    fn once(&mut self, events: &[Event], prior: u32) -> anyhow::Result<Flow> {
        if self.stopping() {
            return Ok(Flow::Stopped);
        }
        match self.attempt(events) {
            Ok(outcome) => {
                self.commit(events, outcome)?;
                Ok(Flow::Continue)
            }
            Err(f) if self.roll_back_on(&f)? => self.process(events, 0),
            Err(f) if f.kind == FailureKind::Instantiate => self.process(events, prior),
            Err(f) => {
                self.status.add_failure();
                self.log(
                    LogLevel::Debug,
                    &format!("bisecting: {} failed: {f}", describe_span(events)),
                );
                self.isolate(events, f, prior + 1)
            }
        }
    }

    /// Sleeps the backoff after failed attempt `n`, waking early to stop.
    fn backoff(&self, n: u32) -> Flow {
        let until = Instant::now() + self.settings.policy.delay(n);
        while Instant::now() < until {
            if self.stopping() {
                return Flow::Stopped;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
        Flow::Continue
    }

    /// Calls `react` and judges its output. Any failure resets the reactor.
    fn attempt(&mut self, events: &[Event]) -> Result<Outcome, ReactFailure> {
        // A native reactor that panics is contained like a wasm trap.
        let called =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.reactor.react(events)));
        let reactions = match called {
            Ok(Ok(r)) => r,
            Ok(Err(f)) => {
                self.reactor.reset();
                return Err(f);
            }
            Err(p) => {
                self.reactor.reset();
                let msg = batpak_store::panic_message(p.as_ref());
                return Err(ReactFailure::new(
                    FailureKind::Trap,
                    format!("the reactor panicked: {msg}"),
                ));
            }
        };
        if let Err(f) = check_shape(&reactions, events.len()) {
            self.reactor.reset();
            return Err(f);
        }
        let mut ordinals = vec![0u32; events.len()];
        let mut out = Outcome {
            proposals: Vec::with_capacity(reactions.len()),
            verdicts: Vec::with_capacity(reactions.len()),
            reactions: 0,
            denials: 0,
        };
        for (i, r) in reactions.into_iter().enumerate() {
            let s = r.source as usize;
            let ordinal = ordinals[s];
            ordinals[s] += 1;
            match self.admission.judge(&self.store, r, &events[s], ordinal) {
                Judged::Admitted(p) => {
                    out.verdicts.push(ReactionVerdict {
                        reaction: i as u32,
                        denial: None,
                        appended: p.id,
                    });
                    out.proposals.push(p);
                    out.reactions += 1;
                }
                Judged::Denied { denial, record } => {
                    self.log(
                        LogLevel::Info,
                        &format!(
                            "proposal {i} (reacting to event {}) denied: {denial}",
                            events[s].id()
                        ),
                    );
                    out.verdicts.push(ReactionVerdict {
                        reaction: i as u32,
                        denial: Some(denial),
                        appended: None,
                    });
                    out.proposals.push(record);
                    out.denials += 1;
                }
            }
        }
        Ok(out)
    }

    fn checkpoint_at(&self, sequence: u64, id: EventId) -> Option<CheckpointUpdate> {
        match &self.feed {
            Feed::Cursor(c) => c.checkpoint_for(sequence, id),
            Feed::Lossy(_) => None,
        }
    }

    /// Appends a handled part of a batch: its reactions and denial records
    /// with the checkpoint past its last event, in one atomic write.
    fn commit(&mut self, events: &[Event], o: Outcome) -> anyhow::Result<()> {
        let last = events.last().expect("non-empty batch");
        let cp = self.checkpoint_at(last.sequence(), last.id());
        if o.proposals.is_empty() {
            if cp.is_some() {
                self.unsaved = Some((last.sequence(), last.id()));
            }
        } else {
            let mut opts = AppendOptions::durable();
            if let Some(cp) = cp {
                opts = opts.with_checkpoint(cp);
            }
            self.store
                .append_system(o.proposals, opts)
                .with_context(|| format!("appending the reactions to {}", describe_span(events)))?;
            self.unsaved = None;
            self.unsaved_batches = 0;
            self.last_commit = Instant::now();
        }
        self.status.add_out(o.reactions);
        self.status.add_denials(o.denials);
        self.reactor.verdicts(o.verdicts);
        Ok(())
    }

    fn park(&mut self, event: &Event, failure: &ReactFailure, attempts: u32) -> anyhow::Result<()> {
        self.park_with(event, failure, attempts, None)
    }

    fn park_with(
        &mut self,
        event: &Event,
        failure: &ReactFailure,
        attempts: u32,
        replaces: Option<&ParkedEvent>,
    ) -> anyhow::Result<()> {
        let record = park_proposal(
            &self.admission.info,
            event,
            failure,
            attempts,
            replaces.map(|p| p.parked),
        );
        let mut opts = AppendOptions::durable();
        // A replayed event sits behind the cursor: parking it again must not
        // move the checkpoint.
        if replaces.is_none() {
            if let Some(cp) = self.checkpoint_at(event.sequence(), event.id()) {
                opts = opts.with_checkpoint(cp);
            }
        }
        self.store
            .append_system(vec![record], opts)
            .with_context(|| format!("parking event {}", event.id()))?;
        if replaces.is_none() {
            self.unsaved = None;
            self.unsaved_batches = 0;
            self.last_commit = Instant::now();
        }
        self.status.add_parked();
        self.log(
            LogLevel::Warn,
            &format!(
                "parked event {} (sequence {}, kind {}) after {attempts} failed call(s): {failure}; list with `batpak-host parked`, retry with `batpak-host parked replay`",
                event.id(),
                event.sequence(),
                event.kind()
            ),
        );
        Ok(())
    }

    /// Re-delivers parked events whose replay was requested, one by one.
    fn replay_parked(&mut self) -> anyhow::Result<Flow> {
        let name = self.name().to_string();
        let pending: Vec<ParkedEvent> = parked_events(&self.store, Some(&name))?
            .into_iter()
            .filter(|p| p.replay_requested)
            .collect();
        for p in pending {
            if self.stopping() {
                return Ok(Flow::Stopped);
            }
            let Some(event) = p
                .event_id()
                .and_then(|id| self.store.get(id).ok().flatten())
            else {
                self.log(
                    LogLevel::Warn,
                    &format!(
                        "cannot replay parked event {}: it is not in the log",
                        p.record.event
                    ),
                );
                continue;
            };
            self.status.add_in(1);
            let events = std::slice::from_ref(&event);
            let mut attempts = 0u32;
            let mut instantiate_failures = 0u32;
            loop {
                match self.attempt(events) {
                    Ok(mut o) => {
                        o.proposals.push(unparked_proposal(
                            &self.admission.info,
                            &p,
                            o.reactions,
                            o.denials,
                        ));
                        self.store
                            .append_system(
                                std::mem::take(&mut o.proposals),
                                AppendOptions::durable(),
                            )
                            .with_context(|| {
                                format!("appending the replay of event {}", event.id())
                            })?;
                        self.status.add_out(o.reactions);
                        self.status.add_denials(o.denials);
                        self.status.add_unparked();
                        self.reactor.verdicts(o.verdicts);
                        self.log(
                            LogLevel::Info,
                            &format!("replayed parked event {}", event.id()),
                        );
                        break;
                    }
                    Err(f) if f.kind == FailureKind::Instantiate => {
                        instantiate_failures += 1;
                        if instantiate_failures >= self.settings.policy.instantiate_attempts.max(1)
                        {
                            anyhow::bail!("giving up: no working instance: {}", f.message);
                        }
                        if let Flow::Stopped = self.backoff(instantiate_failures) {
                            return Ok(Flow::Stopped);
                        }
                    }
                    Err(f) => {
                        attempts += 1;
                        self.status.add_failure();
                        if attempts >= self.settings.policy.attempts.max(1) {
                            self.park_with(&event, &f, attempts, Some(&p))?;
                            break;
                        }
                        if let Flow::Stopped = self.backoff(attempts) {
                            return Ok(Flow::Stopped);
                        }
                    }
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn maybe_save_checkpoint(&mut self) -> anyhow::Result<()> {
        if self.unsaved.is_some() {
            self.unsaved_batches += 1;
            if self.unsaved_batches >= self.settings.checkpoint_batches
                || self.last_commit.elapsed() >= self.settings.checkpoint_interval
            {
                self.save_checkpoint()?;
            }
        }
        Ok(())
    }

    /// Writes the checkpoint past the last handled event, if not written.
    pub(crate) fn save_checkpoint(&mut self) -> anyhow::Result<()> {
        if let Some((seq, id)) = self.unsaved {
            if let Some(cp) = self.checkpoint_at(seq, id) {
                self.store
                    .append_system(Vec::new(), AppendOptions::durable().with_checkpoint(cp))
                    .context("writing the checkpoint")?;
            }
            self.unsaved = None;
            self.unsaved_batches = 0;
            self.last_commit = Instant::now();
        }
        Ok(())
    }
}

/// Refuses output that breaks the contract as a whole.
fn check_shape(
    reactions: &[super::reactor::Reaction],
    batch_len: usize,
) -> Result<(), ReactFailure> {
    if reactions.len() > MAX_PROPOSALS_PER_CALL {
        return Err(ReactFailure::new(
            FailureKind::Malformed,
            format!(
                "returned {} proposals; the limit is {MAX_PROPOSALS_PER_CALL} per call",
                reactions.len()
            ),
        ));
    }
    let bytes: usize = reactions.iter().map(|r| r.payload.len()).sum();
    if bytes > MAX_OUTPUT_BYTES {
        return Err(ReactFailure::new(
            FailureKind::Malformed,
            format!("returned {bytes} payload bytes; the limit is {MAX_OUTPUT_BYTES} per call"),
        ));
    }
    if let Some((i, r)) = reactions
        .iter()
        .enumerate()
        .find(|(_, r)| r.source as usize >= batch_len)
    {
        return Err(ReactFailure::new(
            FailureKind::Malformed,
            format!(
                "proposal {i} names source event {} but the batch has {batch_len} event(s) (source is a 0-based index into the batch)",
                r.source
            ),
        ));
    }
    Ok(())
}

fn describe_span(events: &[Event]) -> String {
    match events {
        [] => "no events".into(),
        [e] => format!("event {} (sequence {})", e.id(), e.sequence()),
        [a, .., b] => format!(
            "{} events (sequences {}..={})",
            events.len(),
            a.sequence(),
            b.sequence()
        ),
    }
}
