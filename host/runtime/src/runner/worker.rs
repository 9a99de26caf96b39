//! The worker: the runner thread's state and its pull loop — pull a batch,
//! process it (see `retry`), write lazy checkpoints — and the hand-over of
//! a replacement reactor between two batches (see `swap`).

use super::error::RunnerError;
use super::feed::Feed;
use super::settings::RunnerSettings;
use super::swap::pending::{LastRollback, LastSwap, PendingSwap, Probation};
use crate::admission::Admission;
use crate::capability_gate::{CapabilityGate, ReactorInfo};
use crate::descriptor::Descriptor;
use crate::log::{log, LogLevel};
use crate::reactor::Reactor;
use crate::status::{ReactorStatus, RunState};
use batpak_log::{Commit, Durability, Fence, LogError, SharedLog};
use batpak_store::{CanalBatch, CheckpointUpdate, CloseReason};
use batpak_store::{EventId, EventView};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) fn admission_for(reactor: &dyn Reactor, settings: &RunnerSettings) -> Admission {
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

pub(super) enum Flow {
    Continue,
    Stopped,
}

pub(super) struct Worker {
    /// The log, reached only through the seam.
    pub(super) log: SharedLog,
    /// The fence for the cursor's next commit (see `landing`).
    pub(super) fence: Option<Fence>,
    pub(super) reactor: Box<dyn Reactor>,
    pub(super) admission: Arc<Admission>,
    pub(super) feed: Feed,
    pub(super) max_batch: usize,
    pub(super) settings: RunnerSettings,
    pub(super) status: Arc<ReactorStatus>,
    pub(super) stop: Arc<AtomicBool>,
    /// Set with `stop` by an operator's pause: the checkpoint is left at the
    /// position (see `checkpoint_covered`).
    pub(super) checkpoint_on_stop: Arc<AtomicBool>,
    pub(super) swap: Arc<Mutex<Option<PendingSwap>>>,
    /// Hot swap: the running version's lineage and descriptor, shared with
    /// the handle (for `status` and the checks a swap request runs).
    pub(super) current: Arc<Mutex<Arc<ReactorInfo>>>,
    pub(super) current_descriptor: Arc<Mutex<Descriptor>>,
    pub(super) last_swap: Arc<Mutex<Option<LastSwap>>>,
    /// Hot swap: the last rollback of the last swap, for `status`.
    pub(super) last_rollback: Arc<Mutex<Option<LastRollback>>>,
    /// The reactor's position: every event of its region at or before this
    /// global sequence is handled (events outside the region are skipped,
    /// so it moves past them too). It is what `status` shows, where a swap
    /// lands, and where the checkpoint is left when the runner stops.
    pub(super) covered: u64,
    /// Hot swap: the version a new one replaced, kept while the new one is
    /// on probation (`swap_rollback`).
    pub(super) previous: Option<Probation>,
    /// Last event fully handled whose checkpoint is not written yet.
    pub(super) unsaved: Option<(u64, EventId)>,
    pub(super) unsaved_batches: u32,
    pub(super) last_commit: Instant,
    /// Commits appended but perhaps not yet durable, oldest first: for
    /// each, a sequence at or past the end of its frame (see
    /// `RunnerSettings::durable_window`).
    pub(super) in_flight: VecDeque<u64>,
    /// Pulls failed in a row because the log was unavailable, and since
    /// when.
    pub(super) read_failures: u32,
    pub(super) read_failing_since: Instant,
}

impl Worker {
    pub(super) fn name(&self) -> &str {
        &self.admission.info.name
    }

    pub(super) fn log(&self, level: LogLevel, msg: &str) {
        log(
            self.settings.log_level,
            level,
            &format!("runtime {}", self.name()),
            msg,
        );
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub(super) fn run(mut self) -> Result<(), RunnerError> {
        let result = self.run_inner();
        let saved = self.save_checkpoint();
        let result = result.and(saved).and_then(|()| {
            if self.checkpoint_on_stop.load(Ordering::SeqCst) {
                self.checkpoint_covered()
            } else {
                Ok(())
            }
        });
        match &result {
            Ok(()) => self.status.set_state(RunState::Stopped),
            Err(e) => {
                self.log(LogLevel::Error, &format!("stopped: {e:#}"));
                self.status.fail(format!("{e:#}"));
            }
        }
        result
    }

    pub(super) fn run_inner(&mut self) -> Result<(), RunnerError> {
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
            let observed = self.log.heads().durable;
            // With commits in flight, look without waiting: when nothing is
            // there, make them durable first rather than sit on them.
            let wait = if self.in_flight.is_empty() {
                self.settings.pull_wait
            } else {
                Duration::ZERO
            };
            let pulled = match &mut self.feed {
                Feed::Cursor(c) => match c.pull_batch(self.max_batch, wait) {
                    Ok(b) => Ok(b),
                    Err(e) if e.is_transient() => {
                        self.read_failed(e)?;
                        continue;
                    }
                    Err(LogError::Closed) => return Err(RunnerError::StoreClosed),
                    Err(e) => return Err(RunnerError::CanalFailed(e.to_string())),
                },
                // A live feed delivers owned events: views over them.
                Feed::Lossy(s) => s.pull_batch(self.max_batch, wait).map(|b| {
                    CanalBatch::from_vec(b.into_vec().into_iter().map(EventView::from).collect())
                }),
            };
            if self.read_failures > 0 && pulled.is_ok() {
                self.read_failures = 0;
            }
            match pulled {
                Ok(CanalBatch::Empty) => {
                    // Nothing of the region up to the cursor: all covered.
                    self.cover();
                    if self.unsaved.is_some() || !self.in_flight.is_empty() {
                        // Idle: write the lazy checkpoint and wait for the
                        // commits in flight now, then look again (both
                        // moved the watermark).
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
                    self.cover();
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
                        let capacity = self.settings.subscription_capacity.max(1);
                        self.feed = Feed::Lossy(self.read_retrying(
                            || "resubscribing".to_string(),
                            |log| log.subscribe(&region, capacity),
                        )?);
                    }
                    CloseReason::Stopped => return Ok(()),
                    CloseReason::StoreClosed => return Err(RunnerError::StoreClosed),
                    CloseReason::Failed(m) => return Err(RunnerError::CanalFailed(m)),
                },
            }
        }
    }

    /// A pull that failed while the log is unavailable: waits the backoff
    /// and lets the loop pull again, up to `RunnerSettings::log_retry`
    /// since the first failure in a row.
    fn read_failed(&mut self, e: LogError) -> Result<(), RunnerError> {
        if self.read_failures == 0 {
            self.read_failing_since = Instant::now();
        }
        self.read_failures += 1;
        if self.read_failing_since.elapsed() >= self.settings.log_retry {
            return Err(RunnerError::log("reading its region")(e));
        }
        self.log(
            LogLevel::Warn,
            &format!(
                "reading its region: {e}; retrying (attempt {})",
                self.read_failures + 1
            ),
        );
        self.retry_wait(self.read_failures, self.read_failing_since);
        Ok(())
    }

    /// Everything the cursor delivered or skipped is handled now: the
    /// position moves to the cursor's.
    fn cover(&mut self) {
        if let Feed::Cursor(c) = &self.feed {
            self.covered = self.covered.max(c.position());
            self.status.set_position(self.covered);
        }
    }

    /// On a clean stop asked by an operator (a pause): leaves the
    /// checkpoint at the position (past the skipped events after the last
    /// handled one), so the reactor resumes from the position `status` and
    /// `pause` showed, not from an earlier one. (A shutdown does not: a
    /// checkpoint behind the position only makes the next start skip those
    /// events again.) A position behind the stored checkpoint (a batch stopped half
    /// way whose first part was committed) shows the checkpoint instead.
    pub(super) fn checkpoint_covered(&mut self) -> Result<(), RunnerError> {
        let Feed::Cursor(c) = &self.feed else {
            return Ok(());
        };
        let cursor = c.id().to_string();
        let stored = self
            .read_retrying(
                || "reading the checkpoint".into(),
                |log| log.checkpoint(&cursor),
            )?
            .map_or(0, |cp| cp.sequence);
        if self.covered > stored {
            let covered = self.covered;
            let at = self.read_retrying(
                || "reading the event at the position".into(),
                |log| log.get_by_sequence(covered),
            )?;
            if let Some(e) = at {
                if let Some(cp) = self.checkpoint_at(self.covered, e.header.id) {
                    self.land(Commit::default().with_checkpoint(cp), || {
                        "writing the checkpoint".into()
                    })?;
                }
            }
        } else {
            self.covered = stored;
        }
        self.status.set_position(self.covered);
        Ok(())
    }

    pub(super) fn checkpoint_at(&self, sequence: u64, id: EventId) -> Option<CheckpointUpdate> {
        match &self.feed {
            Feed::Cursor(c) => Some(c.checkpoint_for(sequence, id)),
            Feed::Lossy(_) => None,
        }
    }

    pub(super) fn maybe_save_checkpoint(&mut self) -> Result<(), RunnerError> {
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

    /// Writes the checkpoint past the last handled event, if not written,
    /// and waits until every commit in flight is durable: afterwards all
    /// that was handled survives a crash.
    pub(super) fn save_checkpoint(&mut self) -> Result<(), RunnerError> {
        if let Some((seq, id)) = self.unsaved {
            if let Some(cp) = self.checkpoint_at(seq, id) {
                self.land(Commit::default().with_checkpoint(cp), || {
                    "writing the checkpoint".into()
                })?;
                // Written after them: the commits in flight are durable too.
                self.in_flight.clear();
            }
            self.unsaved = None;
            self.unsaved_batches = 0;
            self.last_commit = Instant::now();
        }
        self.wait_in_flight(0)
    }

    /// Waits until at most `keep` commits are in flight (not known durable).
    pub(super) fn wait_in_flight(&mut self, keep: usize) -> Result<(), RunnerError> {
        while self.in_flight.len() > keep {
            let seq = self.in_flight.pop_front().expect("non-empty");
            // Commits are durable in log order: the newest one to wait for
            // covers the older ones.
            if self.in_flight.len() > keep {
                continue;
            }
            self.wait_durable(seq)?;
        }
        Ok(())
    }

    /// Waits until `sequence` is durable.
    fn wait_durable(&self, sequence: u64) -> Result<(), RunnerError> {
        const STEP: Duration = Duration::from_secs(1);
        loop {
            let durable = self.read_retrying(
                || "making the reactions durable".into(),
                |log| log.wait_durable(sequence, STEP),
            )?;
            if durable {
                return Ok(());
            }
        }
    }

    /// Records a commit appended without waiting for its fsync (`upto`:
    /// at or past the end of it), and waits for older commits beyond the
    /// window. The fsync that makes them durable is the one this runner
    /// leads when the window is full (one fsync then covers every batch in
    /// it), an earlier one led by another durable appender, or the store's
    /// interval sync, whichever comes first.
    pub(super) fn track_in_flight(&mut self, upto: u64) -> Result<(), RunnerError> {
        self.in_flight.push_back(upto);
        self.wait_in_flight(self.settings.durable_window as usize)
    }
}

/// Whether a commit waits for durability: within the durable window it
/// returns once accepted (ordered, atomic with its checkpoint) and its
/// fsync overlaps the next batches; see `RunnerSettings::durable_window`.
pub(super) fn durability(settings: &RunnerSettings) -> Durability {
    if settings.durable_window > 0 {
        Durability::Accepted
    } else {
        Durability::Durable
    }
}

pub(super) fn describe_span(events: &[EventView]) -> String {
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
