//! The [`Reactor`] trait: what the runner needs from a reactor, whether it is
//! a sandboxed wasm component ([`super::Plugin`]) or native Rust code.
//!
//! Both kinds go through the same runner, gates and atomic append, which is
//! what lets the benchmark compare them and lets tests use native reactors.

use super::descriptor::Descriptor;
use super::failure::ReactFailure;
use super::reaction::{Reaction, ReactionVerdict};
use super::services::HostServices;
use batpak_store::EventView;

/// A reactor the runner can drive. Implemented by wasm components
/// ([`super::Plugin`]) and by native Rust code; both get the same canal,
/// gates, effectively-once append and retry/bisect/park policy.
pub trait Reactor: Send {
    /// What it consumes and may emit. Must not change while it runs.
    fn descriptor(&self) -> &Descriptor;

    /// Lineage: a stable digest of the code that produced a reaction
    /// (blake3 hex of a component; any stable text for native code).
    fn digest(&self) -> &str;

    /// Connects the reactor to the host before its first batch.
    fn attach(&mut self, host: HostServices) {
        let _ = host;
    }

    /// Reacts to a non-empty batch of events, ordered by sequence. The
    /// events are views of the bytes the log read (nothing copied per
    /// event); [`EventView::to_event`] makes an owned one to keep.
    ///
    /// # Errors
    /// Any failure; the runner retries, bisects and parks.
    fn react(&mut self, batch: &[EventView]) -> Result<Vec<Reaction>, ReactFailure>;

    /// Tells the reactor what the gates decided about its last output.
    fn verdicts(&mut self, verdicts: Vec<ReactionVerdict>) {
        let _ = verdicts;
    }

    /// Called after any failure, before the next `react`: a wasm reactor
    /// drops its instance here (the next call gets a fresh one).
    fn reset(&mut self) {}
}

impl Reactor for Box<dyn Reactor> {
    fn descriptor(&self) -> &Descriptor {
        (**self).descriptor()
    }
    fn digest(&self) -> &str {
        (**self).digest()
    }
    fn attach(&mut self, host: HostServices) {
        (**self).attach(host)
    }
    fn react(&mut self, batch: &[EventView]) -> Result<Vec<Reaction>, ReactFailure> {
        (**self).react(batch)
    }
    fn verdicts(&mut self, verdicts: Vec<ReactionVerdict>) {
        (**self).verdicts(verdicts)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
}
