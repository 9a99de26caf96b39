//! Bad usage: a request the caller can fix by asking differently (a bad
//! flag value, a name that cannot be a reactor's). The CLI exits 2 on it,
//! as clap does for the arguments it checks itself.

/// A request refused as bad usage; the message names the problem and the
/// fix. Callers match it with `anyhow::Error::downcast_ref::<Usage>()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);
