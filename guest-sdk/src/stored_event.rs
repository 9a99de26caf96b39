//! Events as a reactor reads them back from the store (`get-event`,
//! `read-entity`).

use crate::{wit, EventId};
use serde::de::DeserializeOwned;

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

/// Most events one [`read_entity`](crate::host::read_entity) call returns (the host's cap).
pub const READ_ENTITY_MAX: u32 = 1024;
