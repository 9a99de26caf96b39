//! Retrying a log that is unavailable: the backoff between tries, and
//! [`retry_transient`] for the reads made before the runner thread exists
//! (the thread's own reads and commits retry in `landing`).

use super::settings::RunnerSettings;
use batpak_log::LogError;
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
pub(super) fn backoff(settings: &RunnerSettings, failures: u32, started: Instant) -> Duration {
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
