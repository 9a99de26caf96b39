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
    /// Human-readable cause.
    pub message: String,
    /// The batch index of the event that failed, when the reactor knows it.
    pub event: Option<u32>,
}

impl ReactFailure {
    /// A failure of `kind` with a message.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        ReactFailure {
            kind,
            message: message.into(),
            event: None,
        }
    }

    /// A reactor error blaming batch event `index`.
    pub fn at(index: u32, message: impl Into<String>) -> Self {
        ReactFailure {
            kind: FailureKind::Error,
            message: message.into(),
            event: Some(index),
        }
    }
}

impl fmt::Display for ReactFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for ReactFailure {}
