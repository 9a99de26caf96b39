//! A friendly, zero-copy view over the WIT batch shape.

use crate::{wit, EventId};
use serde::de::DeserializeOwned;
use std::fmt;
use std::iter::FusedIterator;

/// The events handed to one [`Reactor::react`](crate::Reactor::react) call.
///
/// Wraps the WIT `batch` record (a strings table, one payload buffer and the
/// events pointing into both) without copying anything: every accessor
/// borrows from the batch.
pub struct Batch {
    raw: wit::Batch,
}

impl Batch {
    /// Wraps a raw WIT batch.
    pub fn from_wit(raw: wit::Batch) -> Self {
        Batch { raw }
    }

    /// The raw WIT batch, for anyone who wants the wire shape.
    pub fn as_wit(&self) -> &wit::Batch {
        &self.raw
    }

    /// Unwraps the raw WIT batch.
    pub fn into_wit(self) -> wit::Batch {
        self.raw
    }

    fn raw_events(&self) -> &[wit::Event] {
        match &self.raw.events {
            wit::CanalBatch::Empty => &[],
            wit::CanalBatch::One(event) => std::slice::from_ref(event),
            wit::CanalBatch::Many(events) => events,
        }
    }

    /// Number of events in the batch.
    pub fn len(&self) -> usize {
        self.raw_events().len()
    }

    /// Whether the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.raw_events().is_empty()
    }

    /// The events in delivery order (ascending `sequence`), each knowing its
    /// batch index.
    pub fn events(&self) -> Events<'_> {
        Events {
            batch: self,
            inner: self.raw_events().iter().enumerate(),
        }
    }

    /// The event at batch index `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<EventRef<'_>> {
        self.raw_events().get(index).map(|raw| EventRef {
            batch: self,
            index: index as u32,
            raw,
        })
    }

    fn string(&self, index: u32) -> &str {
        // The host guarantees valid indexes; a bad one reads as "" rather
        // than trapping.
        self.raw
            .strings
            .get(index as usize)
            .map_or("", String::as_str)
    }
}

impl fmt::Debug for Batch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.events()).finish()
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = EventRef<'a>;
    type IntoIter = Events<'a>;

    fn into_iter(self) -> Events<'a> {
        self.events()
    }
}

/// Iterator over the events of a [`Batch`], in delivery order.
#[derive(Clone)]
pub struct Events<'a> {
    batch: &'a Batch,
    inner: std::iter::Enumerate<std::slice::Iter<'a, wit::Event>>,
}

impl<'a> Iterator for Events<'a> {
    type Item = EventRef<'a>;

    fn next(&mut self) -> Option<EventRef<'a>> {
        self.inner.next().map(|(index, raw)| EventRef {
            batch: self.batch,
            index: index as u32,
            raw,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl DoubleEndedIterator for Events<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.inner.next_back().map(|(index, raw)| EventRef {
            batch: self.batch,
            index: index as u32,
            raw,
        })
    }
}

impl ExactSizeIterator for Events<'_> {}
impl FusedIterator for Events<'_> {}

/// One event of a [`Batch`], borrowed from it.
///
/// Pass it to [`Output::emit`](crate::Output::emit) to propose an event that
/// reacts to this one.
#[derive(Clone, Copy)]
pub struct EventRef<'a> {
    batch: &'a Batch,
    index: u32,
    raw: &'a wit::Event,
}

impl<'a> EventRef<'a> {
    /// 0-based position of this event in its batch: the `source` index of
    /// proposals reacting to it, and the `event` of a [`ReactError`](crate::ReactError).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Unique id of this event.
    pub fn id(&self) -> EventId {
        self.raw.id.into()
    }

    /// Store-wide commit order (1, 2, 3, ...), strictly increasing.
    pub fn sequence(&self) -> u64 {
        self.raw.sequence
    }

    /// Position of this event in its entity's stream (1, 2, 3, ...).
    pub fn entity_sequence(&self) -> u64 {
        self.raw.entity_sequence
    }

    /// The entity (aggregate) this event belongs to, e.g. `order:42`.
    pub fn entity(&self) -> &'a str {
        self.batch.string(self.raw.entity)
    }

    /// The scope of the entity, e.g. `shop`.
    pub fn scope(&self) -> &'a str {
        self.batch.string(self.raw.scope)
    }

    /// The event kind, e.g. `order.placed`.
    pub fn kind(&self) -> &'a str {
        self.batch.string(self.raw.kind)
    }

    /// The payload bytes (UTF-8 JSON by convention). Empty if the host sent
    /// an out-of-range slice.
    pub fn payload(&self) -> &'a [u8] {
        let start = self.raw.payload_offset as usize;
        let end = start.saturating_add(self.raw.payload_len as usize);
        self.batch.raw.payloads.get(start..end).unwrap_or(&[])
    }

    /// The payload as UTF-8 text, if it is valid UTF-8.
    pub fn payload_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.payload()).ok()
    }

    /// Deserializes the JSON payload into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.payload())
    }

    /// The event that caused this one, if any.
    pub fn causation(&self) -> Option<EventId> {
        self.raw.causation.map(EventId::from)
    }

    /// The id of the first event of this event's causal chain (the event
    /// itself when it has no cause).
    pub fn correlation(&self) -> EventId {
        self.raw.correlation.into()
    }

    /// Commit time in microseconds since the Unix epoch (UTC).
    pub fn timestamp_us(&self) -> u64 {
        self.raw.timestamp_us
    }

    /// The raw WIT event record (string indexes and payload offsets).
    pub fn as_wit(&self) -> &'a wit::Event {
        self.raw
    }
}

impl fmt::Debug for EventRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventRef")
            .field("index", &self.index)
            .field("id", &self.id())
            .field("sequence", &self.sequence())
            .field("entity", &self.entity())
            .field("scope", &self.scope())
            .field("kind", &self.kind())
            .field("payload_len", &self.payload().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64, entity: u32, kind: u32, off: u32, len: u32) -> wit::Event {
        wit::Event {
            id: EventId(n as u128).into(),
            sequence: n,
            entity_sequence: 1,
            entity,
            scope: 1,
            kind,
            causation: None,
            correlation: EventId(n as u128).into(),
            timestamp_us: 0,
            payload_offset: off,
            payload_len: len,
        }
    }

    #[test]
    fn view_resolves_strings_and_payloads() {
        let batch = Batch::from_wit(wit::Batch {
            strings: vec!["order:1".into(), "shop".into(), "order.placed".into()],
            payloads: br#"{"a":1}{"b":2}"#.to_vec(),
            events: wit::CanalBatch::Many(vec![event(1, 0, 2, 0, 7), event(2, 0, 2, 7, 7)]),
        });
        assert_eq!(batch.len(), 2);
        let evs: Vec<_> = batch.events().collect();
        assert_eq!(evs[1].index(), 1);
        assert_eq!(evs[1].entity(), "order:1");
        assert_eq!(evs[1].scope(), "shop");
        assert_eq!(evs[1].kind(), "order.placed");
        assert_eq!(evs[1].payload(), br#"{"b":2}"#);
        let v: serde_json::Value = evs[0].json().unwrap();
        assert_eq!(v["a"], 1);
        let bad = event(3, 9, 9, 100, 5);
        let batch = Batch::from_wit(wit::Batch {
            strings: vec![],
            payloads: vec![],
            events: wit::CanalBatch::One(bad),
        });
        let e = batch.get(0).unwrap();
        assert_eq!((e.entity(), e.payload()), ("", &[][..]));
    }
}
