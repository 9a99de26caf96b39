//! How a `react` call (or the instance behind it) failed: [`FailureKind`]
//! and [`ReactFailure`]. A leaf module shared by plugins, the runner and
//! parking.

use std::fmt;

/// What kind of failure a `react` call (or the instance behind it) had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// The reactor returned an error.
    Error,
    /// The guest trapped (panic, unreachable, out-of-bounds access...).
    Trap,
    /// The call ran past its time limit.
    Timeout,
    /// The guest tried to grow its memory past the limit.
    OutOfMemory,
    /// The output broke the contract (bad source index, too many proposals,
    /// too many bytes).
    Malformed,
    /// A fresh instance could not be created or initialised. Not the event's
    /// fault: never a reason to park it.
    Instantiate,
}

impl FailureKind {
    /// Stable lowercase name (used in parked records and status).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Error => "error",
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfMemory => "out-of-memory",
            FailureKind::Malformed => "malformed-output",
            FailureKind::Instantiate => "instantiate",
        }
    }
}

/// A failed `react` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactFailure {
    /// What happened.
    pub kind: FailureKind,
    /// Human-readable cause, the guest's own words first when it gave any
    /// (a react-error's message, the last line of an exception it printed):
    /// what a log line shows.
    pub message: String,
    /// Everything else known about it (the host's trap description, the
    /// wasm backtrace, what the guest wrote to stderr): kept in the parked
    /// record, not repeated in log lines.
    pub detail: Option<String>,
    /// The batch index of the event that failed, when the reactor knows it.
    pub event: Option<u32>,
}

impl ReactFailure {
    /// A failure of `kind` with a message.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        ReactFailure {
            kind,
            message: message.into(),
            detail: None,
            event: None,
        }
    }

    /// A reactor error blaming batch event `index`.
    pub fn at(index: u32, message: impl Into<String>) -> Self {
        ReactFailure {
            kind: FailureKind::Error,
            message: message.into(),
            detail: None,
            event: Some(index),
        }
    }

    /// The same failure with `detail` (none when empty).
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        let d = detail.into();
        self.detail = (!d.trim().is_empty()).then_some(d);
        self
    }

    /// The message and then the detail: the whole report, as a parked
    /// record keeps it.
    pub fn full(&self) -> String {
        match &self.detail {
            Some(d) => format!("{}; {d}", self.message),
            None => self.message.clone(),
        }
    }
}

/// `kind: message; detail`: the whole report (a log line that must stay
/// short uses [`ReactFailure::message`] alone).
impl fmt::Display for ReactFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.full())
    }
}

impl std::error::Error for ReactFailure {}
