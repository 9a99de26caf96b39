//! The text of a caught panic, for turning one into an error.

/// The message of a caught panic (`panic!` with a literal or a formatted
/// message), or `"panic"` for any other payload. Gates, the store's own
/// threads and reactor runners turn panics into errors with this.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}
