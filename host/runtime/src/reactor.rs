//! The [`Reactor`] trait: what the runner needs from a reactor, whether it is
//! a sandboxed wasm component ([`super::Plugin`]) or native Rust code.
//!
//! Both kinds go through the same runner, gates and atomic append, which is
//! what lets the benchmark compare them and lets tests use native reactors.

use super::admission::Admission;
use batpak_store::Denial;
use batpak_store::Store;
use batpak_store::{is_system_kind, validate_kind, Coordinate, Event, EventId};
use batpak_store::{ReactorCanal, Region};
use std::fmt;
use std::sync::Arc;

/// Longest reactor name.
pub const MAX_REACTOR_NAME_LEN: usize = 64;

/// What a reactor says about itself (the WIT `descriptor`, validated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Unique name, 1 to 64 of `a-z 0-9 - _`; keys the reactor's checkpoint.
    pub name: String,
    /// Free-text version (recorded in lineage and denials).
    pub version: String,
    /// Which events it consumes.
    pub region: Region,
    /// How they are delivered.
    pub canal: ReactorCanal,
    /// Every kind it may propose.
    pub emits: Vec<String>,
    /// Largest batch it wants; 0 lets the host choose.
    pub max_batch: u32,
}

impl Descriptor {
    /// A descriptor consuming every non-system kind through a cursor,
    /// emitting nothing; refine it with the public fields.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Descriptor {
            name: name.into(),
            version: version.into(),
            region: Region::all(),
            canal: ReactorCanal::CursorGuaranteed,
            emits: Vec::new(),
            max_batch: 0,
        }
    }

    /// Checks the name, the region and the emitted kinds.
    ///
    /// # Errors
    /// A message naming the first broken rule and how to fix it.
    pub fn validate(&self) -> Result<(), String> {
        validate_reactor_name(&self.name)?;
        if self.version.is_empty()
            || self.version.len() > 128
            || self.version.chars().any(char::is_control)
        {
            return Err(format!(
                "reactor {:?} has an invalid version {:?}: it must be 1 to 128 characters without control characters",
                self.name, self.version
            ));
        }
        for k in &self.region.kinds {
            validate_kind(k).map_err(|e| format!("region of reactor {:?}: {e}", self.name))?;
            if is_system_kind(k) {
                return Err(format!(
                    "region of reactor {:?} lists the reserved kind {k:?}: kinds starting with \"batpak.\" are host records, not reactor input",
                    self.name
                ));
            }
        }
        if let Some(p) = &self.region.entity_prefix {
            if p.is_empty()
                || p.len() > batpak_store::MAX_NAME_LEN
                || p.chars().any(char::is_control)
            {
                return Err(format!(
                    "region of reactor {:?} has an invalid entity prefix {p:?}: 1 to {} bytes, no control characters (leave it unset to match every entity)",
                    self.name,
                    batpak_store::MAX_NAME_LEN
                ));
            }
        }
        if let Some(s) = &self.region.scope {
            batpak_store::validate_name("scope", s, batpak_store::MAX_NAME_LEN)
                .map_err(|e| format!("region of reactor {:?}: {e}", self.name))?;
        }
        for k in &self.emits {
            validate_kind(k).map_err(|e| format!("emits of reactor {:?}: {e}", self.name))?;
            if is_system_kind(k) {
                return Err(format!(
                    "reactor {:?} declares that it emits {k:?}, but kinds starting with \"batpak.\" are written only by the host; remove it from emits",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// Checks a reactor name: 1 to 64 of `a-z 0-9 - _`.
///
/// # Errors
/// A message saying what is wrong.
pub fn validate_reactor_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_REACTOR_NAME_LEN {
        return Err(format!(
            "invalid reactor name {:?}: it must be 1 to {MAX_REACTOR_NAME_LEN} characters of a-z, 0-9, '-' and '_'",
            name.chars().take(80).collect::<String>()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "invalid reactor name {name:?}: {c:?} is not allowed; use only a-z, 0-9, '-' and '_'"
        ));
    }
    Ok(())
}

/// Which event a reaction names as its cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReactionCause {
    /// The source event (the usual choice).
    Source,
    /// Another, existing event.
    Event(EventId),
    /// None: the reaction starts a new causal chain (and correlation).
    None,
}

/// An event a reactor proposes (the WIT `proposal`). Nothing is validated
/// yet: the runner checks the source index and the gates judge the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaction {
    /// Index, in the batch handed to `react`, of the event this reacts to.
    pub source: u32,
    /// Where the new event goes (not validated yet).
    pub coordinate: Coordinate,
    /// Its kind.
    pub kind: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its cause.
    pub causation: ReactionCause,
}

impl Reaction {
    /// A reaction to batch event `source`, caused by it.
    pub fn new(
        source: u32,
        entity: &str,
        scope: &str,
        kind: &str,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        Reaction {
            source,
            coordinate: Coordinate {
                entity: entity.to_string(),
                scope: scope.to_string(),
            },
            kind: kind.to_string(),
            payload: payload.into(),
            causation: ReactionCause::Source,
        }
    }
}

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

/// The gates' answer about one reaction of the previous `react` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactionVerdict {
    /// Index of the reaction in the list `react` returned.
    pub reaction: u32,
    /// `None` when admitted, the denial otherwise.
    pub denial: Option<Denial>,
    /// Id of the appended event when admitted.
    pub appended: Option<EventId>,
}

/// What the runner lends a reactor: read access to the store and a dry run
/// of the same gates its output goes through.
#[derive(Clone)]
pub struct HostServices {
    /// The store (reads only; reactors append through the runner).
    pub store: Store,
    pub(crate) admission: Arc<Admission>,
}

impl HostServices {
    /// Asks the gates about `reaction` without appending anything.
    /// `source` is the batch event it reacts to, if known.
    pub fn check(&self, reaction: &Reaction, source: Option<&Event>) -> Option<Denial> {
        self.admission.dry_run(&self.store, reaction, source)
    }
}

impl fmt::Debug for HostServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostServices")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

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

    /// Reacts to a non-empty batch of events, ordered by sequence.
    ///
    /// # Errors
    /// Any failure; the runner retries, bisects and parks.
    fn react(&mut self, batch: &[Event]) -> Result<Vec<Reaction>, ReactFailure>;

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
    fn react(&mut self, batch: &[Event]) -> Result<Vec<Reaction>, ReactFailure> {
        (**self).react(batch)
    }
    fn verdicts(&mut self, verdicts: Vec<ReactionVerdict>) {
        (**self).verdicts(verdicts)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_descriptors_are_checked() {
        assert!(validate_reactor_name("low-stock_2").is_ok());
        assert!(validate_reactor_name("").is_err());
        assert!(validate_reactor_name("Low").is_err());
        assert!(validate_reactor_name("a.b").is_err());
        assert!(validate_reactor_name(&"a".repeat(65)).is_err());
        let mut d = Descriptor::new("inv", "1");
        d.emits = vec!["x.y".into()];
        assert!(d.validate().is_ok());
        d.emits.push("batpak.fake".into());
        assert!(d.validate().unwrap_err().contains("batpak."));
        d.emits.pop();
        d.region.kinds = vec!["has space".into()];
        assert!(d.validate().is_err());
    }
}
