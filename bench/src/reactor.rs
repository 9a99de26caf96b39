//! Placeholder: the runtime engineer's reactor benchmark replaces this file.
//! It must keep the signature `pub fn run(events: u64) -> anyhow::Result<()>`.

/// Runs the reactor benchmark over `events` events.
///
/// # Errors
/// Always, until the real benchmark lands.
pub fn run(events: u64) -> anyhow::Result<()> {
    let _ = events;
    anyhow::bail!("reactor benchmark not built yet")
}
