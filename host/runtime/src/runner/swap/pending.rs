//! Hot-swap state shared by the handle and the worker: a swap request on its
//! way to the runner, the replaced version kept on probation, and the last
//! completed swap.

use super::{RolledBackRecord, SwapOutcome, SwapRefusal};
use crate::admission::Admission;
use crate::reactor::Reactor;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::SystemTime;

/// The last completed swap of a runner and when it happened.
pub(in crate::runner) type LastSwap = (SwapOutcome, SystemTime);

/// The last automatic rollback of a runner and when it happened (cleared
/// by the next completed swap, so it always belongs to the last swap).
pub(in crate::runner) type LastRollback = (RolledBackRecord, SystemTime);

/// A swap request on its way to the runner.
pub(in crate::runner) struct PendingSwap {
    pub(in crate::runner) reactor: Box<dyn Reactor>,
    pub(in crate::runner) grant_emits: Option<Vec<String>>,
    pub(in crate::runner) reply: Sender<Result<SwapOutcome, SwapRefusal>>,
}

/// The replaced version, kept while the new one is on probation.
pub(in crate::runner) struct Probation {
    pub(in crate::runner) reactor: Box<dyn Reactor>,
    pub(in crate::runner) admission: Arc<Admission>,
    pub(in crate::runner) grant_emits: Option<Vec<String>>,
    pub(in crate::runner) max_batch: usize,
    /// Batches the new version completed.
    pub(in crate::runner) done: u32,
}
