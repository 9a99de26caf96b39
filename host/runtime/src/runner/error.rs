//! [`RunnerError`]: why a runner could not start, or stopped for good.

use batpak_log::{CommitError, LogError};
use batpak_store::StoreError;

/// A runner's failure to start ([`spawn`](super::spawn)) or its terminal
/// failure (as reported by `CanalHandle::join`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The reactor's descriptor breaks a rule.
    #[error("invalid descriptor: {0}")]
    InvalidDescriptor(String),
    /// The reactor's cursor could not be opened (for example, its
    /// checkpoint no longer fits its region).
    #[error("reactor {reactor}: cannot open its cursor: {source}")]
    OpenCursor {
        /// The reactor.
        reactor: String,
        /// The store's reason.
        #[source]
        source: StoreError,
    },
    /// The reactor's checkpoint was written for another region than the
    /// one this version reads (a new version with another region was
    /// started without re-keying the checkpoint).
    #[error("reactor {reactor}: this version reads {region}, but its checkpoint was written for another region (an earlier version's), so it cannot continue from it. Stop `run`, then `batpak-host reset {reactor} --to current --plugin NEW.wasm` (continue from the current position) or `--to start` (re-deliver the new region's history), and start `run` again")]
    RegionChanged {
        /// The reactor.
        reactor: String,
        /// The region this version reads, readable.
        region: String,
    },
    /// The runner thread could not be started.
    #[error("starting a reactor thread: {0}")]
    Thread(#[source] std::io::Error),
    /// A read of the log failed for good, or stayed unavailable longer
    /// than `RunnerSettings::log_retry` (the runner stops: it cannot go on
    /// without it).
    #[error("{context}: {source}")]
    Log {
        /// What the runner was doing.
        context: String,
        /// The log's reason.
        #[source]
        source: LogError,
    },
    /// A commit did not land: refused, fenced (another instance owns the
    /// reactor's cursor), closed, failed, or unavailable (or of unknown
    /// outcome) longer than `RunnerSettings::log_retry`. Nothing after the
    /// last landed commit is lost: the next start continues from the
    /// checkpoint.
    #[error("{context}: {source}")]
    Commit {
        /// What the runner was committing.
        context: String,
        /// The log's reason.
        #[source]
        source: CommitError,
    },
    /// The store was closed under the runner.
    #[error("the store was closed")]
    StoreClosed,
    /// The reactor's canal failed.
    #[error("its canal failed: {0}")]
    CanalFailed(String),
    /// No working instance could be created, after the policy's attempts.
    #[error("giving up after {attempts} failed attempts to get a working instance: {message}")]
    NoWorkingInstance {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        message: String,
    },
    /// The runner (or a native reactor) panicked.
    #[error("the runner of reactor {reactor} panicked: {message}")]
    Panicked {
        /// The reactor.
        reactor: String,
        /// The panic message.
        message: String,
    },
}

impl RunnerError {
    pub(crate) fn log(context: impl Into<String>) -> impl FnOnce(LogError) -> RunnerError {
        let context = context.into();
        move |source| match source {
            LogError::Closed => RunnerError::StoreClosed,
            source => RunnerError::Log { context, source },
        }
    }

    pub(crate) fn commit(context: impl Into<String>) -> impl FnOnce(CommitError) -> RunnerError {
        let context = context.into();
        move |source| RunnerError::Commit { context, source }
    }
}
