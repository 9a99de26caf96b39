//! Landing commits through the log seam: every commit of the runner —
//! reactions with their checkpoint, a lazy checkpoint, parking, swap and
//! rollback records — goes through [`Worker::land`], which
//! - carries the cursor's fence, so a commit of a stale instance is refused
//!   whole ([`CommitError::Fenced`]);
//! - retries a commit the log could not take (`Unavailable`: nothing
//!   landed) after a backoff;
//! - resolves a commit of **unknown** outcome before anything else is
//!   committed: it reads the cursor's checkpoint (or looks up a record by
//!   its derived id); landed, it goes on; not landed, it retries the same
//!   commit (same ids, so nothing can land twice);
//! - stops with the error when the log refused it, fenced it, closed or
//!   failed, or stayed unavailable past `RunnerSettings::log_retry`.
//!
//! Reads and waits retry transient failures the same way
//! ([`Worker::read_retrying`]).

use super::error::RunnerError;
use super::settings::RunnerSettings;
use super::worker::Worker;
use crate::log::LogLevel;
use batpak_log::{Commit, CommitError, Committed, EventLog, LogError};
use std::time::{Duration, Instant};

/// Runs the read `f`, retrying while the log is unavailable, up to
/// `settings.log_retry` (for reads before the runner thread exists).
pub(super) fn retry_transient<T>(
    settings: &RunnerSettings,
    mut f: impl FnMut() -> Result<T, LogError>,
) -> Result<T, LogError> {
    let started = Instant::now();
    let mut failures = 0u32;
    loop {
        match f() {
            Err(e) if e.is_transient() && started.elapsed() < settings.log_retry => {
                failures += 1;
                std::thread::sleep(backoff(settings, failures, started));
            }
            r => return r,
        }
    }
}

/// The policy's backoff after `failures` failed tries, no longer than
/// [`MAX_RETRY_WAIT`] nor past the retry budget.
fn backoff(settings: &RunnerSettings, failures: u32, started: Instant) -> Duration {
    let left = settings.log_retry.saturating_sub(started.elapsed());
    settings
        .policy
        .delay(failures)
        .min(MAX_RETRY_WAIT)
        .min(left)
}

/// Longest single wait between two retries: a runner asked to stop, or a
/// log that comes back, is noticed within this.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(1);

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
                CommitError::Unknown(_) => {
                    if self.landed(&c, &context)? {
                        self.log(
                            LogLevel::Warn,
                            &format!(
                                "{}: the outcome was unknown ({err}); it had landed",
                                context()
                            ),
                        );
                        let fence = match &c.checkpoint {
                            Some(cp) => {
                                let f = self.read_retrying(
                                    || format!("{}: reading the fence", context()),
                                    |log| log.fence(&cp.cursor),
                                )?;
                                self.fence = Some(f);
                                Some(f)
                            }
                            None => None,
                        };
                        return Ok(Committed {
                            upto: self.log.heads().accepted,
                            fence,
                        });
                    }
                }
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
    /// cursor's checkpoint when it moves one, else by its first record's
    /// id.
    fn landed(&self, c: &Commit, context: &impl Fn() -> String) -> Result<bool, RunnerError> {
        let what = || format!("{}: resolving an unknown outcome", context());
        if let Some(cp) = &c.checkpoint {
            let now = self.read_retrying(what, |log| log.checkpoint(&cp.cursor))?;
            return Ok(now.is_some_and(|n| {
                n.sequence > cp.sequence || (n.sequence == cp.sequence && n.event_id == cp.event_id)
            }));
        }
        match c.records.iter().find_map(|p| p.id) {
            Some(id) => Ok(self.read_retrying(what, |log| log.get(id))?.is_some()),
            // Nothing to look it up by: committing it again is the only way
            // to know (the runner's records all carry ids).
            None => Ok(false),
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
    /// than [`MAX_RETRY_WAIT`] nor past the retry budget.
    pub(super) fn retry_wait(&self, failures: u32, started: Instant) {
        std::thread::sleep(backoff(&self.settings, failures, started));
    }
}
