//! [`ShadowError`]: why a shadow replay could not run.

use batpak_log::CommitError;
use batpak_store::StoreError;

/// Why [`shadow`](crate::shadow) could not run (differences are not errors:
/// they are in the report).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShadowError {
    /// The candidate names another reactor.
    #[error("the candidate is reactor {candidate:?}, not {expected:?}; shadow compares versions of one reactor")]
    OtherReactor {
        /// The candidate's name.
        candidate: String,
        /// The reactor asked for.
        expected: String,
    },
    /// Reading the real log or writing the scratch store failed.
    #[error("{context}: {source}")]
    Store {
        /// What shadow was doing.
        context: &'static str,
        /// The store's reason.
        #[source]
        source: StoreError,
    },
    /// Copying the log into the scratch store failed.
    #[error("{context}: {source}")]
    Commit {
        /// What shadow was doing.
        context: &'static str,
        /// The scratch log's reason.
        #[source]
        source: CommitError,
    },
}

impl ShadowError {
    pub(crate) fn commit(context: &'static str) -> impl FnOnce(CommitError) -> ShadowError {
        move |source| ShadowError::Commit { context, source }
    }

    pub(crate) fn store(context: &'static str) -> impl FnOnce(StoreError) -> ShadowError {
        move |source| ShadowError::Store { context, source }
    }
}
