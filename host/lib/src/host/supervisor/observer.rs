//! What the supervisor reports out: the observer a display loop implements,
//! and the summary of each reactor when the run ends.

use crate::views::ReactorView;
use std::time::Instant;

/// What an embedder's display loop shows while the host runs (the CLI's
/// live status implements it). Called on the supervisor's thread.
pub trait HostObserver: Send {
    /// One more reactor; reactors keep the order they were added in.
    fn reactor_added(&mut self) {}
    /// Every reactor as it is now, about four times a second; `head` is the
    /// store's durable watermark.
    fn status(&mut self, _reactors: &[ReactorView], _head: u64, _at: Instant) {}
    /// The run is ending: no more status follows.
    fn finished(&mut self) {}
}

/// An observer that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl HostObserver for NoObserver {}

/// Each reactor as the run ended, in the order they were added.
#[derive(Debug, Clone)]
pub struct ShutdownReport {
    /// One per reactor.
    pub reactors: Vec<ReactorSummary>,
}

impl ShutdownReport {
    /// True when no reactor failed.
    pub fn ok(&self) -> bool {
        self.reactors.iter().all(|r| r.error.is_none())
    }
}

/// One reactor at the end of a run.
#[derive(Debug, Clone)]
pub struct ReactorSummary {
    /// Its last view (counters, position, state).
    pub view: ReactorView,
    /// Its runner's terminal error, if it failed.
    pub error: Option<String>,
}
