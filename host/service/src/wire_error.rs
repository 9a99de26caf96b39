//! Errors as they travel over the control channel and HTTP: a stable code
//! clients match on, and a message for people.

use serde::{Deserialize, Serialize};

/// Why a request failed; clients match on this, never on the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed, wrong types, unknown fields, invalid event.
    BadRequest,
    /// The frame or body is larger than allowed.
    TooLarge,
    /// Another protocol version.
    Version,
    /// Expected entity sequence did not match.
    Conflict,
    /// An idempotency key or explicit id already names an event with other
    /// content; the message names that event.
    IdempotencyConflict,
    /// No such reactor, event or causation.
    NotFound,
    /// Valid but not allowed now (e.g. reset while running).
    Refused,
    /// The host does not offer this (e.g. `swap` before issue 11).
    Unsupported,
    /// Too many connections; retry later.
    Busy,
    /// Missing or wrong bearer token (HTTP).
    Unauthorized,
    /// The store failed (I/O, poisoned, closed).
    Store,
}

/// An error reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct WireError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What went wrong and how to fix it.
    pub message: String,
}

impl WireError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        WireError {
            code,
            message: message.into(),
        }
    }
}
