//! The fenced relay: forwards the outbox messages addressed to one target
//! partition `q` from every other partition `p`, in `p`'s order, into `q`,
//! exactly once (see the crate docs, "Reactions to other partitions").
//!
//! Each forward is one fenced commit in `q` ([`NatsLog::commit`]): the
//! forwarded events (same ids; entity chains computed in `q` as for any
//! append) plus the relay's checkpoint for source `p` (cursor
//! [`relay_cursor`]`(p)`, its payload the sequence in `p` of the last
//! message forwarded, as decimal text), fenced on that checkpoint's
//! sequence. Two relay instances for `q` (a zombie and its successor)
//! reading the same checkpoint send batches fenced on the same sequence:
//! one lands, the other is refused whole. An unknown outcome is resolved
//! with [`NatsLog::resolve_commit`] (final: it seals the fence). No
//! `Nats-Msg-Id` is involved, so a relay down for longer than the
//! de-duplication window forwards each message exactly once as well.
//!
//! One relay should run per target partition (the lead runs it under a
//! lease); a second one is safe, only wasteful: its batches are fenced.

use crate::error::LogError;
use crate::log::{Commit, NatsLog, Resolution, MAX_REACTIONS};
use crate::partition::relay_cursor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a relay runs.
#[derive(Clone, Debug)]
pub struct RelaySettings {
    /// The most messages one forward carries (1 to [`MAX_REACTIONS`]).
    pub max_batch: usize,
    /// How long a spawned relay waits for new outbox messages before it
    /// looks again (also the longest [`RelayHandle::stop`] waits for the
    /// thread to notice, plus one operation's timeout).
    pub idle_wait: Duration,
    /// The first pause after a failed step; doubled up to `max_backoff`.
    pub backoff: Duration,
    /// The longest pause after failed steps.
    pub max_backoff: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            max_batch: 256,
            idle_wait: Duration::from_millis(500),
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        }
    }
}

/// Why a relay stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A failure retrying cannot cure: a damaged outbox message (reported,
    /// never skipped), a message that is not valid in its target, the
    /// client thread gone, a partition that does not exist.
    #[error("the relay for partition {target} stopped: {source}")]
    Log {
        /// The target partition.
        target: u32,
        /// What failed.
        #[source]
        source: LogError,
    },
    /// The relay's thread panicked.
    #[error("the relay thread for partition {target} panicked")]
    Panicked {
        /// The target partition.
        target: u32,
    },
}

/// One source partition as a relay sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// The source partition `p`.
    pub partition: u32,
    /// The sequence in `p` of the last outbox message for the target that
    /// is forwarded (per the relay's checkpoint last read or written).
    pub position: u64,
    /// The sequence in `p` of the last outbox message for the target this
    /// relay has seen (at least `position`).
    pub head: u64,
    /// Messages this relay instance forwarded from `p`.
    pub forwarded: u64,
}

impl SourceStatus {
    /// How far forwarding trails the source, in `p`'s sequence numbers
    /// (`head - position`; 0: caught up as of the relay's last look). An
    /// upper bound of the messages waiting: `p` holds other messages too.
    pub fn lag(&self) -> u64 {
        self.head.saturating_sub(self.position)
    }
}

/// What one [`Relay::step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Messages forwarded (landed in the target).
    pub forwarded: usize,
    /// Forwards refused whole because another relay instance moved the
    /// checkpoint first (this one re-reads it next step).
    pub fenced: usize,
    /// Forwards whose outcome was unknown, then resolved.
    pub resolved: usize,
}

/// What a relay's thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayState {
    /// Forwarding or waiting for messages.
    Running,
    /// Stopped (asked to, or by a failure: see [`RelayStatus::error`]).
    Stopped,
}

/// A relay's status (see [`RelayHandle::status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayStatus {
    /// The target partition.
    pub target: u32,
    /// Running or stopped.
    pub state: RelayState,
    /// Every source partition, in order.
    pub sources: Vec<SourceStatus>,
    /// Forwards refused by the fence (another instance forwarded first).
    pub fenced: u64,
    /// Forwards whose unknown outcome was resolved.
    pub resolved: u64,
    /// Steps that failed and were retried.
    pub retries: u64,
    /// The last failure (retried, or the one that stopped the relay).
    pub error: Option<String>,
}

struct Source {
    status: SourceStatus,
    /// `(checkpoint sequence, position)` as last read or written; `None`:
    /// read it before the next forward.
    state: Option<(u64, u64)>,
}

/// The relay for one target partition, driven one [`step`](Relay::step)
/// at a time (tests), or on its own thread ([`Relay::spawn`]).
pub struct Relay {
    log: Arc<NatsLog>,
    target: u32,
    settings: RelaySettings,
    sources: Vec<Source>,
    fenced: u64,
    resolved: u64,
}

impl Relay {
    /// The relay for partition `target` of `log`.
    ///
    /// # Errors
    /// [`LogError::NotInitialised`] when the layout has no such partition.
    pub fn new(log: Arc<NatsLog>, target: u32, settings: RelaySettings) -> Result<Relay, LogError> {
        let k = log.layout().partitions;
        if target >= k {
            return Err(LogError::NotInitialised {
                stream: crate::partition::stream_name(target),
            });
        }
        let sources = (0..k)
            .filter(|p| *p != target)
            .map(|p| Source {
                status: SourceStatus {
                    partition: p,
                    ..SourceStatus::default()
                },
                state: None,
            })
            .collect();
        Ok(Relay {
            log,
            target,
            settings: RelaySettings {
                max_batch: settings.max_batch.clamp(1, MAX_REACTIONS),
                ..settings
            },
            sources,
            fenced: 0,
            resolved: 0,
        })
    }

    /// The target partition.
    pub fn target(&self) -> u32 {
        self.target
    }

    /// Forwards at most one batch from every source partition.
    ///
    /// # Errors
    /// The first source's failure (the sources before it were forwarded;
    /// the step can be repeated: a forward is fenced, never doubled).
    pub fn step(&mut self) -> Result<StepReport, LogError> {
        let mut report = StepReport::default();
        for i in 0..self.sources.len() {
            self.step_source(i, &mut report)?;
        }
        self.fenced += report.fenced as u64;
        self.resolved += report.resolved as u64;
        Ok(report)
    }

    /// Every source's status.
    pub fn sources(&self) -> Vec<SourceStatus> {
        self.sources.iter().map(|s| s.status.clone()).collect()
    }

    /// `(source partition, position)` of every source, for a wait.
    fn positions(&self) -> Vec<(u32, u64)> {
        self.sources
            .iter()
            .map(|s| (s.status.partition, s.status.position))
            .collect()
    }

    /// The relay checkpoint for source `p`: `(its sequence, position)`.
    fn read_state(&self, p: u32) -> Result<(u64, u64), LogError> {
        let Some(c) = self.log.checkpoint(self.target, &relay_cursor(p))? else {
            return Ok((0, 0));
        };
        Ok((c.sequence, self.position_of(c.sequence, &c.payload)?))
    }

    fn position_of(&self, sequence: u64, payload: &[u8]) -> Result<u64, LogError> {
        // A seal of a cursor that had no checkpoint is empty: nothing
        // forwarded yet.
        if payload.is_empty() {
            return Ok(0);
        }
        std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| LogError::Damaged {
                partition: self.target,
                sequence,
                reason: "a relay checkpoint that is not a sequence number".into(),
            })
    }

    fn step_source(&mut self, i: usize, report: &mut StepReport) -> Result<(), LogError> {
        let p = self.sources[i].status.partition;
        let q = self.target;
        let (fence, position) = match self.sources[i].state {
            Some(s) => s,
            None => {
                let s = self.read_state(p)?;
                self.sources[i].state = Some(s);
                s
            }
        };
        self.sources[i].status.position = position;
        let max = self.settings.max_batch;
        let messages = self.log.read_outbox(p, q, position, max)?;
        let Some(&(last, _)) = messages.last() else {
            let head = &mut self.sources[i].status.head;
            *head = (*head).max(position);
            return Ok(());
        };
        let head = if messages.len() == max {
            self.log.outbox_head(p, q)?
        } else {
            last
        };
        let status = &mut self.sources[i].status;
        status.head = status.head.max(head);
        let n = messages.len();
        let mut records = Vec::with_capacity(n);
        for (sequence, proposal) in messages {
            let owner = self.log.partition_of(&proposal.coordinate.entity);
            if owner != q {
                return Err(LogError::Damaged {
                    partition: p,
                    sequence,
                    reason: format!(
                        "an outbox message for partition {q} names entity {:?} of partition \
                         {owner}",
                        proposal.coordinate.entity
                    ),
                });
            }
            records.push(proposal);
        }
        let commit = Commit::new(
            q,
            relay_cursor(p),
            records,
            last.to_string().into_bytes(),
            fence,
        );
        let landed = match self.log.commit(&commit) {
            Ok(done) => Some(done.checkpoint),
            Err(LogError::Fenced { .. }) => None,
            Err(e @ (LogError::Unknown { .. } | LogError::Unavailable { .. })) => {
                // Whatever happens next, the cached state is re-read unless
                // resolving settles it: a re-read forward is fenced on what
                // is there, so a copy still in flight and a new one can
                // never both land.
                self.sources[i].state = None;
                let resolution = self.log.resolve_commit(&commit).map_err(|r| match r {
                    LogError::Unavailable { .. } | LogError::Contended { .. } => e,
                    r => r,
                })?;
                report.resolved += 1;
                match resolution {
                    Resolution::Landed(sequence) => Some(sequence),
                    Resolution::NotLanded {
                        checkpoint,
                        sealed: true,
                    } => {
                        // Not forwarded; the seal is the new fence, the
                        // position did not move.
                        let seal = checkpoint.map_or(0, |c| c.sequence);
                        self.sources[i].state = Some((seal, position));
                        return Ok(());
                    }
                    Resolution::NotLanded { sealed: false, .. } => None,
                }
            }
            Err(e) => return Err(e),
        };
        match landed {
            Some(sequence) => {
                let s = &mut self.sources[i];
                s.state = Some((sequence, last));
                s.status.position = last;
                s.status.forwarded += n as u64;
                report.forwarded += n;
            }
            None => {
                // Another instance forwarded from this position first.
                self.sources[i].state = None;
                report.fenced += 1;
            }
        }
        Ok(())
    }

    /// Runs the relay for partition `target` on its own thread until
    /// stopped or a failure retrying cannot cure (damage, an invalid
    /// message, the client thread gone: [`RelayHandle::join`] returns it);
    /// other failures (no leader, unknown outcomes, contention, a server's
    /// refusal, a lost connection) are retried with backoff and shown in
    /// [`RelayStatus::error`].
    /// Idle, it waits on [`NatsLog::wait_outbox`] (no polling loop).
    ///
    /// # Errors
    /// As [`Relay::new`]; starting the thread.
    pub fn spawn(
        log: Arc<NatsLog>,
        target: u32,
        settings: RelaySettings,
    ) -> Result<RelayHandle, LogError> {
        let relay = Relay::new(log, target, settings)?;
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(RelayStatus {
            target,
            state: RelayState::Running,
            sources: relay.sources(),
            fenced: 0,
            resolved: 0,
            retries: 0,
            error: None,
        }));
        let (s, st) = (stop.clone(), status.clone());
        let thread = std::thread::Builder::new()
            .name(format!("batpak-relay-p{target}"))
            .spawn(move || run(relay, &s, &st))
            .map_err(|e| LogError::Unavailable {
                partition: target,
                reason: format!("starting the relay thread: {e}"),
            })?;
        Ok(RelayHandle {
            target,
            stop,
            status,
            thread: Some(thread),
        })
    }
}

/// True for a failure a later step may not meet again.
fn transient(e: &LogError) -> bool {
    matches!(
        e,
        LogError::Unknown { .. }
            | LogError::Unavailable { .. }
            | LogError::Contended { .. }
            | LogError::Fenced { .. }
            | LogError::Refused { .. }
            | LogError::Connect { .. }
    )
}

fn run(mut relay: Relay, stop: &AtomicBool, status: &Mutex<RelayStatus>) -> Result<(), LogError> {
    let publish = |relay: &Relay, retried: bool, error: Option<String>| {
        let mut s = status.lock().unwrap_or_else(|e| e.into_inner());
        s.sources = relay.sources();
        s.fenced = relay.fenced;
        s.resolved = relay.resolved;
        s.retries += u64::from(retried);
        if error.is_some() {
            s.error = error;
        }
    };
    let mut pause = relay.settings.backoff;
    let outcome = loop {
        if stop.load(Ordering::Acquire) {
            break Ok(());
        }
        match relay.step() {
            Ok(report) => {
                pause = relay.settings.backoff;
                publish(&relay, false, None);
                if report.forwarded == 0 && report.fenced == 0 && report.resolved == 0 {
                    // Idle: sleep until a source's outbox for the target
                    // grows (a failed wait is a short pause, then a step).
                    let positions = relay.positions();
                    if relay
                        .log
                        .wait_outbox(relay.target, &positions, relay.settings.idle_wait)
                        .is_err()
                    {
                        std::thread::sleep(pause);
                    }
                }
            }
            Err(e) if transient(&e) => {
                publish(&relay, true, Some(e.to_string()));
                std::thread::sleep(pause);
                pause = (pause * 2).min(relay.settings.max_backoff);
            }
            Err(e) => {
                publish(&relay, false, Some(e.to_string()));
                break Err(e);
            }
        }
    };
    status.lock().unwrap_or_else(|e| e.into_inner()).state = RelayState::Stopped;
    outcome
}

/// A running relay (see [`Relay::spawn`]). Dropping it stops the thread
/// without waiting.
pub struct RelayHandle {
    target: u32,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<RelayStatus>>,
    thread: Option<JoinHandle<Result<(), LogError>>>,
}

impl RelayHandle {
    /// Asks the relay to stop without waiting: it finishes the forward in
    /// flight (a forward lands whole or not at all either way).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Waits for the relay's thread to end.
    ///
    /// # Errors
    /// The failure that stopped it, or its panic.
    pub fn join(mut self) -> Result<(), RelayError> {
        let target = self.target;
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(source))) => Err(RelayError::Log { target, source }),
            Some(Err(_)) => Err(RelayError::Panicked { target }),
        }
    }

    /// True once the relay's thread has ended: stopped, or stopped by a
    /// failure retrying cannot cure ([`join`](Self::join) returns it).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// [`stop`](Self::stop), then [`join`](Self::join).
    ///
    /// # Errors
    /// As [`join`](Self::join).
    pub fn stop_and_join(self) -> Result<(), RelayError> {
        self.stop();
        self.join()
    }

    /// Per source partition: forwarded position, head seen, lag; fenced
    /// forwards, retries, the last failure.
    pub fn status(&self) -> RelayStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
