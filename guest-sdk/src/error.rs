//! `ReactError` helpers.

use crate::EventRef;

/// Why a [`Reactor::react`](crate::Reactor::react) call failed: the WIT
/// `react-error` record.
///
/// When `event` names the batch index of the failing event, the host parks
/// that event straight away; without it the host retries and bisects the
/// batch to find the culprit.
pub use crate::wit::ReactError;

impl ReactError {
    /// An error not tied to one event (the host bisects to find the culprit).
    pub fn new(message: impl std::fmt::Display) -> Self {
        ReactError {
            message: message.to_string(),
            event: None,
        }
    }

    /// An error caused by `event`: the host parks exactly that event.
    pub fn at(event: &EventRef<'_>, message: impl std::fmt::Display) -> Self {
        Self::at_index(event.index(), message)
    }

    /// An error caused by the event at batch index `index`.
    pub fn at_index(index: u32, message: impl std::fmt::Display) -> Self {
        ReactError {
            message: message.to_string(),
            event: Some(index),
        }
    }
}

impl From<String> for ReactError {
    fn from(message: String) -> Self {
        ReactError {
            message,
            event: None,
        }
    }
}

impl From<&str> for ReactError {
    fn from(message: &str) -> Self {
        ReactError::new(message)
    }
}

impl From<serde_json::Error> for ReactError {
    fn from(err: serde_json::Error) -> Self {
        ReactError::new(err)
    }
}
