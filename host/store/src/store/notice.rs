//! What the store has to say that no call returns: a background failure
//! that changed nothing in the log, or a close nobody asked for. The store
//! prints nothing; it hands these to the [`Notices`] its owner chose in
//! [`StoreOptions`](super::StoreOptions), and the owner logs them.

use super::StoreError;
use std::fmt;
use std::sync::Arc;

/// Something the store reports outside any call's result. More kinds may
/// come: match with a wildcard arm.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreNotice {
    /// A periodic index snapshot (written when the store is idle) failed.
    /// The log is unaffected; the next open replays more of it, and the
    /// snapshot is tried again later (and on close, whose error
    /// [`Store::close`](super::Store::close) returns).
    SnapshotFailed(StoreError),
    /// The last handle was dropped without [`Store::close`](super::Store::close),
    /// so the error closing returned had nobody to go to.
    CloseFailed(StoreError),
}

impl fmt::Display for StoreNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreNotice::SnapshotFailed(e) => write!(
                f,
                "periodic index snapshot failed (the log is unaffected): {e}"
            ),
            StoreNotice::CloseFailed(e) => write!(f, "closing the store: {e}"),
        }
    }
}

/// Where a store sends its [`StoreNotice`]s: a function of its owner (a
/// host logs them), or nowhere (the default).
#[derive(Clone, Default)]
pub struct Notices(Option<Arc<NoticeFn>>);

/// The owner's function that takes notices.
type NoticeFn = dyn Fn(&StoreNotice) + Send + Sync;

impl Notices {
    /// Hands every notice to `f`, on the store's thread that has it (keep
    /// `f` short: a flusher or a dropping caller waits for it).
    pub fn to(f: impl Fn(&StoreNotice) + Send + Sync + 'static) -> Notices {
        Notices(Some(Arc::new(f)))
    }

    /// Drops every notice.
    pub fn ignore() -> Notices {
        Notices(None)
    }

    pub(crate) fn send(&self, n: StoreNotice) {
        if let Some(f) = &self.0 {
            f(&n);
        }
    }
}

impl fmt::Debug for Notices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Notices(to a function)"
        } else {
            "Notices(ignored)"
        })
    }
}
