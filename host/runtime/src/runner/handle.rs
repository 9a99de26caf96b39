//! [`spawn`] and the [`RunnerHandle`]: starting a runner thread, stopping
//! it, handing it a replacement reactor, and collecting its result.

use super::error::RunnerError;
use super::feed::{Feed, ReactorCursor};
use super::log_retry::retry_transient;
use super::settings::{batch_limit, RunnerSettings};
use super::swap::pending::{LastRollback, LastSwap, PendingSwap};
use super::swap::{check_swap, refused_proposal, RolledBackRecord, SwapOutcome, SwapRefusal};
use super::worker::{admission_for, Worker};
use crate::capability_gate::ReactorInfo;
use crate::descriptor::Descriptor;
use crate::log::{log, LogLevel};
use crate::reactor::Reactor;
use crate::services::HostServices;
use crate::status::ReactorStatus;
use batpak_log::{IntoLog, SharedLog};
use batpak_store::{CanalHandle, ReactorCanal};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// Handle to a running reactor. Implements [`CanalHandle`]: `stop` lets the
/// batch in flight finish and commits the checkpoint; `join` waits.
pub struct RunnerHandle {
    stop: Arc<AtomicBool>,
    checkpoint_on_stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), RunnerError>>>,
    status: Arc<ReactorStatus>,
    swap: Arc<Mutex<Option<PendingSwap>>>,
    name: String,
    // Hot swap: the running version's lineage, and the log to record
    // refusals that never reach the runner (a file that does not load).
    current: Arc<Mutex<Arc<ReactorInfo>>>,
    current_descriptor: Arc<Mutex<Descriptor>>,
    last_swap: Arc<Mutex<Option<LastSwap>>>,
    last_rollback: Arc<Mutex<Option<LastRollback>>>,
    log: SharedLog,
    log_level: LogLevel,
}

/// A swap handed to a runner and not answered yet: the runner takes it at
/// its next batch boundary. Poll it with [`RunnerHandle::poll_swap`], so
/// whoever asked never blocks on a batch.
#[derive(Debug)]
pub struct SwapTicket {
    rx: mpsc::Receiver<Result<SwapOutcome, SwapRefusal>>,
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

    /// Stops like [`CanalHandle::stop`] (without waiting), and leaves the
    /// checkpoint at the reactor's position — past the events of other
    /// regions after its last handled one — so a restart resumes exactly
    /// at the position `status` showed (an operator's pause).
    pub fn stop_at_position(&self) {
        self.checkpoint_on_stop.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
    }

    /// True once the thread has exited.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Replaces the running version by `reactor` at the next batch boundary
    /// and waits for the outcome. The new version continues from the old
    /// one's checkpoint; `grant_emits` is the operator's grant for it
    /// (re-read by the caller). The swap is recorded as
    /// `batpak.plugin.swapped` before the new version handles anything.
    /// [`request_swap`](Self::request_swap) does the same without waiting.
    ///
    /// # Errors
    /// A [`SwapRefusal`]: another name, region or canal, a runner that is
    /// not running, a later request that superseded this one, or a record
    /// that could not be appended. The refusal is recorded as
    /// `batpak.plugin.swap-refused` and logged; the running version keeps
    /// serving.
    pub fn swap(
        &self,
        reactor: Box<dyn Reactor>,
        grant_emits: Option<Vec<String>>,
    ) -> Result<SwapOutcome, SwapRefusal> {
        let ticket = self.request_swap(reactor, grant_emits)?;
        loop {
            match ticket.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(r) => return r,
                Err(RecvTimeoutError::Disconnected) => return Err(self.not_running()),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(r) = self.poll_swap(&ticket) {
                        return r;
                    }
                }
            }
        }
    }

    /// Hands `reactor` to the runner for its next batch boundary and
    /// returns at once; [`poll_swap`](Self::poll_swap) tells the outcome.
    /// A request not yet taken is superseded (answered
    /// [`SwapRefusal::Superseded`]).
    ///
    /// # Errors
    /// The checks that need no batch boundary: another name, region or
    /// canal, or a runner that has exited (recorded and logged).
    pub fn request_swap(
        &self,
        reactor: Box<dyn Reactor>,
        grant_emits: Option<Vec<String>>,
    ) -> Result<SwapTicket, SwapRefusal> {
        let running = self.current_descriptor.lock().clone();
        if let Err(r) = check_swap(&running, reactor.descriptor()) {
            self.record_refusal(&r);
            return Err(r);
        }
        if self.is_finished() {
            let r = self.not_running();
            self.record_refusal(&r);
            return Err(r);
        }
        let (tx, rx) = mpsc::channel();
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
        Ok(SwapTicket { rx })
    }

    /// The outcome of `ticket` once the runner has answered it; `None`
    /// while it waits for a batch boundary. A runner that exited without
    /// taking it answers [`SwapRefusal::NotRunning`].
    pub fn poll_swap(&self, ticket: &SwapTicket) -> Option<Result<SwapOutcome, SwapRefusal>> {
        match ticket.rx.try_recv() {
            Ok(r) => return Some(r),
            Err(mpsc::TryRecvError::Disconnected) => return Some(Err(self.not_running())),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        if !self.is_finished() {
            return None;
        }
        // The thread may have answered just before ending.
        if let Ok(r) = ticket.rx.try_recv() {
            return Some(r);
        }
        self.swap.lock().take();
        Some(Err(self.not_running()))
    }

    fn not_running(&self) -> SwapRefusal {
        SwapRefusal::NotRunning {
            name: self.name.clone(),
        }
    }

    /// The last automatic rollback (`swap_rollback`) of the last completed
    /// swap and when it happened; `None` when that swap was kept.
    pub fn last_rollback(&self) -> Option<(RolledBackRecord, SystemTime)> {
        self.last_rollback.lock().clone()
    }

    /// The running version's name, version and component digest (it
    /// changes with every swap and rollback).
    pub fn running(&self) -> ReactorInfo {
        (**self.current.lock()).clone()
    }

    /// The last completed swap of this runner and when it happened (for
    /// `status`); `None` before the first.
    pub fn last_swap(&self) -> Option<(SwapOutcome, SystemTime)> {
        self.last_swap.lock().clone()
    }

    /// Records (as `batpak.plugin.swap-refused`) and logs a refusal decided
    /// outside the runner, e.g. a file that does not load. A failure to
    /// record is logged, not returned: the running version is unaffected.
    pub fn record_refusal(&self, refusal: &SwapRefusal) {
        let info = self.current.lock().clone();
        let source = format!("runtime {}", self.name);
        log(
            self.log_level,
            LogLevel::Warn,
            &source,
            &format!("swap refused: {refusal}"),
        );
        if let Err(e) = self
            .log
            .append_system(vec![refused_proposal(&info, refusal)])
        {
            log(
                self.log_level,
                LogLevel::Error,
                &source,
                &format!("could not record the swap refusal: {e}"),
            );
        }
    }

    fn join_inner(&mut self) -> Result<(), RunnerError> {
        match self.thread.take() {
            None => Ok(()),
            Some(t) => match t.join() {
                Ok(r) => r,
                Err(p) => {
                    let msg = batpak_store::panic_message(p.as_ref());
                    Err(RunnerError::Panicked {
                        reactor: self.name.clone(),
                        message: msg.to_string(),
                    })
                }
            },
        }
    }
}

impl CanalHandle for RunnerHandle {
    type Error = RunnerError;

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn join(mut self: Box<Self>) -> Result<(), RunnerError> {
        self.join_inner()
    }

    fn stop_and_join(mut self: Box<Self>) -> Result<(), RunnerError> {
        self.stop.store(true, Ordering::SeqCst);
        self.join_inner()
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.join_inner();
    }
}

/// Starts a runner thread for `reactor` over `log`: the embedded store
/// (`&Store`) or any other [`EventLog`](batpak_log::EventLog) as a
/// [`SharedLog`]. The runner reaches the log only through that seam.
///
/// The canal is opened here, so a checkpoint that no longer fits the
/// reactor's region is reported at once.
///
/// # Errors
/// An invalid descriptor, a cursor that cannot be opened, or a thread that
/// cannot be started.
pub fn spawn(
    log: impl IntoLog,
    mut reactor: Box<dyn Reactor>,
    settings: RunnerSettings,
) -> Result<RunnerHandle, RunnerError> {
    let log = log.into_log();
    let d = reactor.descriptor().clone();
    d.validate().map_err(RunnerError::InvalidDescriptor)?;
    let inst = settings.instance;
    if inst.count == 0 || inst.index >= inst.count || inst.count > super::instance::MAX_INSTANCES {
        return Err(RunnerError::InvalidDescriptor(format!(
            "reactor {}: instance {} of {} does not exist; a reactor runs as 1 to {} instances",
            d.name,
            inst.index,
            inst.count,
            super::instance::MAX_INSTANCES
        )));
    }
    if inst.count > 1 && d.canal == ReactorCanal::LossySubscription {
        return Err(RunnerError::InvalidDescriptor(format!(
            "reactor {} reads a lossy subscription, which has no checkpoint to split; run it as one instance",
            d.name
        )));
    }
    let (feed, fence) = match d.canal {
        ReactorCanal::CursorGuaranteed => {
            let (cursor, fence) = ReactorCursor::open(&log, &d, &settings)?;
            (Feed::Cursor(cursor), Some(fence))
        }
        ReactorCanal::LossySubscription => (
            Feed::Lossy(
                retry_transient(&settings, || {
                    log.subscribe(&d.region, settings.subscription_capacity.max(1))
                })
                .map_err(RunnerError::log(format!("reactor {}: subscribing", d.name)))?,
            ),
            None,
        ),
    };
    let admission = Arc::new(admission_for(reactor.as_ref(), &settings));
    reactor.attach(HostServices {
        log: log.clone(),
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
    let checkpoint_on_stop = Arc::new(AtomicBool::new(false));
    let swap: Arc<Mutex<Option<PendingSwap>>> = Arc::new(Mutex::new(None));
    let current = Arc::new(Mutex::new(admission.info.clone()));
    let current_descriptor = Arc::new(Mutex::new(d.clone()));
    let last_swap = Arc::new(Mutex::new(None));
    let last_rollback = Arc::new(Mutex::new(None));
    let covered = match &feed {
        Feed::Cursor(c) => c.position(),
        Feed::Lossy(_) => 0,
    };
    let max_batch = batch_limit(&settings, &d);
    let log_level = settings.log_level;
    let worker = Worker {
        log: log.clone(),
        fence,
        reactor,
        admission,
        feed,
        max_batch,
        settings,
        status: status.clone(),
        stop: stop.clone(),
        checkpoint_on_stop: checkpoint_on_stop.clone(),
        swap: swap.clone(),
        current: current.clone(),
        current_descriptor: current_descriptor.clone(),
        last_swap: last_swap.clone(),
        last_rollback: last_rollback.clone(),
        covered,
        previous: None,
        unsaved: None,
        unsaved_batches: 0,
        last_commit: Instant::now(),
        in_flight: std::collections::VecDeque::new(),
        read_failures: 0,
        read_failing_since: Instant::now(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("reactor-{}", inst.label(&d.name)))
        .spawn({
            let status = status.clone();
            let name = d.name.clone();
            move || {
                // A panic in the runner (a bug, or a native reactor's) must
                // still mark it failed, or `--until-idle` would wait on it.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())) {
                    Ok(r) => r,
                    Err(p) => {
                        let msg = batpak_store::panic_message(p.as_ref());
                        status.fail(format!("panicked: {msg}"));
                        Err(RunnerError::Panicked {
                            reactor: name,
                            message: msg.to_string(),
                        })
                    }
                }
            }
        })
        .map_err(RunnerError::Thread)?;
    Ok(RunnerHandle {
        stop,
        checkpoint_on_stop,
        thread: Some(thread),
        status,
        swap,
        name: d.name,
        current,
        current_descriptor,
        last_swap,
        last_rollback,
        log,
        log_level,
    })
}
