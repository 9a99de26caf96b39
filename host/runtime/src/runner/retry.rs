//! Retry and isolation: a failing batch is retried with backoff, then
//! bisected (or split at the event the reactor blamed) down to the one
//! event that fails, which is parked.

use super::error::RunnerError;
use super::worker::{describe_span, Flow, Worker};
use crate::failure::{FailureKind, ReactFailure};
use crate::log::LogLevel;
use batpak_store::EventView;
use std::time::{Duration, Instant};

/// Longest guest message quoted in a log line (the parked record keeps
/// all of it).
const MESSAGE_IN_LINE: usize = 300;

/// `message` as one log line's worth: its first line, at most
/// [`MESSAGE_IN_LINE`] characters, marked when cut.
pub(super) fn one_line(message: &str) -> String {
    let first = message.lines().next().unwrap_or("").trim();
    let mut out: String = first.chars().take(MESSAGE_IN_LINE).collect();
    if out.len() < message.trim().len() {
        out.push('…');
    }
    out
}

/// A `react-error` that names one event of the batch is the reactor's own
/// verdict on that event, not a transient fault: the WIT promises it parks
/// that event at once, so the batch is not retried (which would also repeat
/// the reactor's log lines); the events before and after it are handled.
fn blames_one(f: &ReactFailure, events: &[EventView]) -> bool {
    f.kind == FailureKind::Error && f.event.is_some_and(|i| (i as usize) < events.len())
}

impl Worker {
    /// Handles `events` with the full retry policy, then isolates the
    /// failure. `prior` counts failed calls that already included them.
    pub(super) fn process(
        &mut self,
        events: &[EventView],
        prior: u32,
    ) -> Result<Flow, RunnerError> {
        let mut attempts = 0u32;
        let mut instantiate_failures = 0u32;
        // Failed calls are logged at debug level: an event that keeps
        // failing gets one line when it is parked, one that recovers gets
        // one line here.
        let mut last_failure: Option<ReactFailure> = None;
        let failure = loop {
            if attempts > 0 && self.stopping() {
                return Ok(Flow::Stopped);
            }
            match self.attempt(events) {
                Ok(outcome) => {
                    self.commit(events, outcome)?;
                    if let Some(f) = last_failure {
                        self.log(
                            LogLevel::Warn,
                            &format!(
                                "{} handled on attempt {} after {attempts} failed call(s): {}: {}",
                                describe_span(events),
                                attempts + 1,
                                f.kind.as_str(),
                                one_line(&f.message)
                            ),
                        );
                    }
                    return Ok(Flow::Continue);
                }
                // Hot swap: a new version on probation that fails is rolled
                // back, and the restored version handles these events.
                Err(f) if self.roll_back_on(&f)? => return self.process(events, 0),
                Err(f) if f.kind == FailureKind::Instantiate => {
                    instantiate_failures += 1;
                    self.status.add_failure();
                    self.log(LogLevel::Warn, &f.message);
                    if let Flow::Stopped = self.instance_failed(instantiate_failures, f)? {
                        return Ok(Flow::Stopped);
                    }
                }
                Err(f) => {
                    attempts += 1;
                    self.status.add_failure();
                    self.log(
                        LogLevel::Debug,
                        &format!(
                            "react failed on {} (attempt {attempts} of {}): {f}",
                            describe_span(events),
                            self.settings.policy.attempts.max(1)
                        ),
                    );
                    if attempts >= self.settings.policy.attempts.max(1) || blames_one(&f, events) {
                        break f;
                    }
                    last_failure = Some(f);
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
    pub(super) fn isolate(
        &mut self,
        events: &[EventView],
        failure: ReactFailure,
        attempts: u32,
    ) -> Result<Flow, RunnerError> {
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
    pub(super) fn once(&mut self, events: &[EventView], prior: u32) -> Result<Flow, RunnerError> {
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

    /// After the `failures`-th failure `f` to get a working instance: gives
    /// up once the policy's instantiate attempts are spent, else sleeps the
    /// backoff.
    ///
    /// # Errors
    /// [`RunnerError::NoWorkingInstance`] when the attempts are spent.
    pub(super) fn instance_failed(
        &self,
        failures: u32,
        f: ReactFailure,
    ) -> Result<Flow, RunnerError> {
        if failures >= self.settings.policy.instantiate_attempts.max(1) {
            return Err(RunnerError::NoWorkingInstance {
                attempts: failures,
                message: f.full(),
            });
        }
        Ok(self.backoff(failures))
    }

    /// Sleeps the backoff after failed attempt `n`, waking early to stop.
    pub(super) fn backoff(&self, n: u32) -> Flow {
        let until = Instant::now() + self.settings.policy.delay(n);
        while Instant::now() < until {
            if self.stopping() {
                return Flow::Stopped;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
        Flow::Continue
    }
}
