//! Landing commits through the log seam: every commit of the runner —
//! reactions with their checkpoint, a lazy checkpoint, parking, swap and
//! rollback records — goes through [`Worker::land`], which
//! - carries the cursor's fence, so a commit of a stale instance is refused
//!   whole ([`CommitError::Fenced`]);
//! - retries a commit the log could not take (`Unavailable`: nothing
//!   landed) after a backoff;
//! - resolves a commit of **unknown** outcome before anything else is
//!   committed: it reads the cursor's checkpoint with its fence (one
//!   consistent read, `EventLog::fenced_checkpoint`) or looks up a record
//!   by its derived id; landed, it goes on with that fence; not landed, it
//!   retries the same commit (same ids, so nothing can land twice); moved
//!   past it by another instance, it stops as fenced;
//! - stops with the error when the log refused it, fenced it, closed or
//!   failed, or stayed unavailable past `RunnerSettings::log_retry`.
//!
//! Reads and waits retry transient failures the same way
//! ([`Worker::read_retrying`]).

use super::error::RunnerError;
use super::log_retry::backoff;
use super::worker::Worker;
use crate::log::LogLevel;
use batpak_log::{Commit, CommitError, Committed, EventLog, Fence, LogError};
use batpak_store::EventId;
use std::time::Instant;

impl Worker {
    /// Lands `c` (see the module docs). `context` says what is committed,
    /// for the error and the log lines.
    pub(super) fn land(
        &mut self,
        mut c: Commit,
        context: impl Fn() -> String,
    ) -> Result<Committed, RunnerError> {
        if c.checkpoint.is_some() {
            c.fence = self.fence;
        }
        // Every record carries an id before the first attempt (reactions,
        // denials and parking records have derived ones), so an unknown
        // outcome can be looked up and a retry is deduplicated.
        for p in c.records.iter_mut().filter(|p| p.id.is_none()) {
            p.id = Some(EventId::generate());
        }
        let started = Instant::now();
        let mut failures = 0u32;
        loop {
            let err = match self.log.commit(&mut c) {
                Ok(done) => {
                    if done.fence.is_some() {
                        self.fence = done.fence;
                    }
                    return Ok(done);
                }
                Err(e) => e,
            };
            match &err {
                CommitError::Unavailable(_) => {}
                CommitError::Unknown(_) => match self.landed(&c, &context)? {
                    Landed::No => {}
                    Landed::Yes(fence) => {
                        self.log(
                            LogLevel::Warn,
                            &format!(
                                "{}: the outcome was unknown ({err}); it had landed",
                                context()
                            ),
                        );
                        if fence.is_some() {
                            self.fence = fence;
                        }
                        return Ok(Committed {
                            upto: self.log.heads().accepted,
                            fence,
                        });
                    }
                    Landed::Past { expected, found } => {
                        let cursor = c.checkpoint.as_ref().map(|cp| cp.cursor.clone());
                        return Err(RunnerError::commit(context())(CommitError::Fenced {
                            cursor: cursor.unwrap_or_default(),
                            expected,
                            found,
                        }));
                    }
                },
                _ => return Err(RunnerError::commit(context())(err)),
            }
            failures += 1;
            if started.elapsed() >= self.settings.log_retry {
                return Err(RunnerError::commit(context())(err));
            }
            self.log(
                LogLevel::Warn,
                &format!("{}: {err}; retrying (attempt {})", context(), failures + 1),
            );
            self.retry_wait(failures, started);
        }
    }

    /// Whether commit `c`, whose outcome was unknown, landed: by the
    /// cursor's checkpoint when it moves one (read with its fence, in one
    /// consistent read), else by its first record's id.
    ///
    /// A checkpoint already *past* the commit's was moved by another
    /// instance (this one commits nothing while one is unresolved): going on
    /// from this instance's position with that instance's fence would
    /// handle the events in between twice, so that is reported as fenced.
    fn landed(&self, c: &Commit, context: &impl Fn() -> String) -> Result<Landed, RunnerError> {
        let what = || format!("{}: resolving an unknown outcome", context());
        if let Some(cp) = &c.checkpoint {
            let (now, fence) = self.read_retrying(what, |log| log.fenced_checkpoint(&cp.cursor))?;
            return Ok(match now {
                Some(n) if n.sequence == cp.sequence && n.event_id == cp.event_id => {
                    Landed::Yes(Some(fence))
                }
                Some(n) if n.sequence > cp.sequence => Landed::Past {
                    expected: self.fence.map_or(0, |f| f.0),
                    found: fence.0,
                },
                _ => Landed::No,
            });
        }
        match c.records.iter().find_map(|p| p.id) {
            Some(id) => Ok(if self.read_retrying(what, |log| log.get(id))?.is_some() {
                Landed::Yes(None)
            } else {
                Landed::No
            }),
            // No records and no checkpoint: nothing landed that matters.
            None => Ok(Landed::No),
        }
    }

    /// Runs the read `f`, retrying while the log is unavailable, up to
    /// `RunnerSettings::log_retry`.
    pub(super) fn read_retrying<T>(
        &self,
        context: impl Fn() -> String,
        f: impl Fn(&dyn EventLog) -> Result<T, LogError>,
    ) -> Result<T, RunnerError> {
        let started = Instant::now();
        let mut failures = 0u32;
        loop {
            match f(&*self.log) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && started.elapsed() < self.settings.log_retry => {
                    failures += 1;
                    self.log(
                        LogLevel::Warn,
                        &format!("{}: {e}; retrying (attempt {})", context(), failures + 1),
                    );
                    self.retry_wait(failures, started);
                }
                Err(e) => return Err(RunnerError::log(context())(e)),
            }
        }
    }

    /// Sleeps the policy's backoff after `failures` failed tries, no longer
    /// than a second nor past the retry budget (see `log_retry`).
    pub(super) fn retry_wait(&self, failures: u32, started: Instant) {
        std::thread::sleep(backoff(&self.settings, failures, started));
    }
}

/// What resolving a commit of unknown outcome found.
enum Landed {
    /// It is stored; the fence to carry on with (for a checkpointed one).
    Yes(Option<Fence>),
    /// It is not stored: retry the same commit.
    No,
    /// Another instance moved the cursor past it: this instance stops.
    Past {
        /// The fence this instance carried.
        expected: u64,
        /// The cursor's fence now.
        found: u64,
    },
}
