//! Hot-swap state shared by the handle and the worker: a swap request on its
//! way to the runner, the replaced version kept on probation, and the last
//! completed swap.

use crate::admission::Admission;
use crate::reactor::Reactor;
use crate::swap::{RolledBackRecord, SwapOutcome, SwapRefusal};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::SystemTime;

/// The last completed swap of a runner and when it happened.
pub(super) type LastSwap = (SwapOutcome, SystemTime);

/// The last automatic rollback of a runner and when it happened (cleared
/// by the next completed swap, so it always belongs to the last swap).
pub(super) type LastRollback = (RolledBackRecord, SystemTime);

/// A swap request on its way to the runner.
pub(super) struct PendingSwap {
    pub(super) reactor: Box<dyn Reactor>,
    pub(super) grant_emits: Option<Vec<String>>,
    pub(super) reply: Sender<Result<SwapOutcome, SwapRefusal>>,
}

/// The replaced version, kept while the new one is on probation.
pub(super) struct Probation {
    pub(super) reactor: Box<dyn Reactor>,
    pub(super) admission: Arc<Admission>,
    pub(super) grant_emits: Option<Vec<String>>,
    pub(super) max_batch: usize,
    /// Batches the new version completed.
    pub(super) done: u32,
}
