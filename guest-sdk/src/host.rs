//! The read-only functions the host offers every reactor.
//!
//! In a WebAssembly build they are imports of the component. In a native
//! build (unit tests) they talk to the mock host of the `testing` module.

#[cfg(target_arch = "wasm32")]
use crate::bindings::batpak::reactor::host as imports;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::imports;
use crate::{wit, EventId, Proposal};
use serde::de::DeserializeOwned;

/// A gate's answer about one proposal: `Allowed` or `Denied(Denial)`.
pub use crate::wit::Verdict;

/// Why a gate refused a proposal: the gate's name, a stable machine-readable
/// code (e.g. `kind-not-granted`) and a human-readable message.
pub use crate::wit::Denial;

impl Verdict {
    /// Whether the gates admit the proposal.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Verdict::Allowed)
    }

    /// The denial, when a gate refused.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Verdict::Allowed => None,
            Verdict::Denied(denial) => Some(denial),
        }
    }
}

impl std::fmt::Display for Denial {
    /// `gate/code: message`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}: {}", self.gate, self.code, self.message)
    }
}

/// A complete event read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Unique id.
    pub id: EventId,
    /// Store-wide commit order.
    pub sequence: u64,
    /// Position in its entity's stream (1, 2, 3, ...).
    pub entity_sequence: u64,
    /// Entity name.
    pub entity: String,
    /// Scope name.
    pub scope: String,
    /// Event kind.
    pub kind: String,
    /// The event that caused this one, if any.
    pub causation: Option<EventId>,
    /// The first event of this event's causal chain.
    pub correlation: EventId,
    /// Commit time in microseconds since the Unix epoch (UTC).
    pub timestamp_us: u64,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

impl StoredEvent {
    /// Deserializes the JSON payload into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

impl From<wit::StoredEvent> for StoredEvent {
    fn from(e: wit::StoredEvent) -> Self {
        StoredEvent {
            id: e.id.into(),
            sequence: e.sequence,
            entity_sequence: e.entity_sequence,
            entity: e.coordinate.entity,
            scope: e.coordinate.scope,
            kind: e.kind,
            causation: e.causation.map(EventId::from),
            correlation: e.correlation.into(),
            timestamp_us: e.timestamp_us,
            payload: e.payload,
        }
    }
}

impl From<StoredEvent> for wit::StoredEvent {
    fn from(e: StoredEvent) -> Self {
        wit::StoredEvent {
            id: e.id.into(),
            sequence: e.sequence,
            entity_sequence: e.entity_sequence,
            coordinate: wit::Coordinate {
                entity: e.entity,
                scope: e.scope,
            },
            kind: e.kind,
            causation: e.causation.map(Into::into),
            correlation: e.correlation.into(),
            timestamp_us: e.timestamp_us,
            payload: e.payload,
        }
    }
}

/// The verdict on one proposal of this reactor's previous `react` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalVerdict {
    /// Index of the proposal in the output of that call.
    pub proposal: u32,
    /// What the gates decided.
    pub verdict: Verdict,
    /// Id of the appended event, when allowed.
    pub appended: Option<EventId>,
}

impl From<wit::ProposalVerdict> for ProposalVerdict {
    fn from(v: wit::ProposalVerdict) -> Self {
        ProposalVerdict {
            proposal: v.proposal,
            verdict: v.verdict,
            appended: v.appended.map(EventId::from),
        }
    }
}

/// Most events one [`read_entity`] call returns (the host's cap).
pub const READ_ENTITY_MAX: u32 = 1024;

/// Reads one event by id; `None` when no such event is visible.
pub fn get_event(id: EventId) -> Option<StoredEvent> {
    imports::get_event(id.into()).map(StoredEvent::from)
}

/// Reads the events of `entity` whose entity-sequence is greater than
/// `after`, oldest first, at most `max` of them (capped by the host at
/// [`READ_ENTITY_MAX`]). Only committed events are visible: not the
/// proposals of the `react` call in progress.
pub fn read_entity(entity: &str, after: u64, max: u32) -> Vec<StoredEvent> {
    imports::read_entity(entity, after, max)
        .into_iter()
        .map(StoredEvent::from)
        .collect()
}

/// Iterates over every event of `entity` after entity-sequence `after`,
/// oldest first, reading pages of [`READ_ENTITY_MAX`] events as needed.
pub fn entity_events(entity: &str, after: u64) -> EntityEvents {
    EntityEvents {
        entity: entity.to_owned(),
        after,
        page: Vec::new().into_iter(),
        done: false,
    }
}

/// Iterator returned by [`entity_events`].
#[derive(Debug)]
pub struct EntityEvents {
    entity: String,
    after: u64,
    page: std::vec::IntoIter<StoredEvent>,
    done: bool,
}

impl Iterator for EntityEvents {
    type Item = StoredEvent;

    fn next(&mut self) -> Option<StoredEvent> {
        loop {
            if let Some(event) = self.page.next() {
                self.after = event.entity_sequence;
                return Some(event);
            }
            if self.done {
                return None;
            }
            let page = read_entity(&self.entity, self.after, READ_ENTITY_MAX);
            // The host may cap pages below READ_ENTITY_MAX, so only an
            // empty page marks the end.
            if page.is_empty() {
                self.done = true;
                return None;
            }
            self.page = page.into_iter();
        }
    }
}

/// Asks the gates about `proposal` without appending anything (a dry run).
/// `proposal.source` refers to the batch of the `react` call in progress.
pub fn check(proposal: &Proposal) -> Verdict {
    imports::check(proposal)
}

/// The verdicts on the proposals returned by this reactor's previous `react`
/// call, in proposal order (empty before the first call).
pub fn last_verdicts() -> Vec<ProposalVerdict> {
    imports::last_verdicts()
        .into_iter()
        .map(ProposalVerdict::from)
        .collect()
}

/// Only the denials among [`last_verdicts`], as (proposal index, denial).
pub fn last_denials() -> Vec<(u32, Denial)> {
    imports::last_verdicts()
        .into_iter()
        .filter_map(|v| match v.verdict {
            Verdict::Denied(denial) => Some((v.proposal, denial)),
            Verdict::Allowed => None,
        })
        .collect()
}
