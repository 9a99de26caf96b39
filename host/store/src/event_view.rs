//! [`EventView`]: a stored event that borrows its bytes.
//!
//! A cursor reads whole frames into one buffer; a view shares that buffer
//! (an `Arc<[u8]>` per read) and records where its names and payload lie in
//! it, so handing a batch of events to a reactor copies no names or
//! payloads and allocates nothing per event. The header is decoded once,
//! when the view is made, with every field checked as the owned decode
//! checks it; the names are then sliced out of the buffer on demand.
//!
//! An event that only exists owned (read from another log, or looked up by
//! id) becomes a view over its owned parts ([`From<Event>`]): the same
//! type, the same answers.

use crate::event::{ChainLink, Event, EventHeader, EventId};
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// A range of a shared byte buffer: cheap to clone (one reference count),
/// reads as a `[u8]`.
#[derive(Clone)]
pub struct SharedBytes {
    buf: Arc<[u8]>,
    start: u32,
    end: u32,
}

impl SharedBytes {
    /// The whole of `buf`.
    pub fn new(buf: Arc<[u8]>) -> SharedBytes {
        let end = u32::try_from(buf.len()).expect("a shared buffer is under 4 GiB");
        SharedBytes { buf, start: 0, end }
    }

    fn slice(buf: &Arc<[u8]>, r: Range<usize>) -> SharedBytes {
        SharedBytes {
            buf: buf.clone(),
            start: r.start as u32,
            end: r.end as u32,
        }
    }

    /// The bytes as an owned shared slice: the same allocation when this
    /// covers all of it, a copy otherwise.
    pub fn to_arc(&self) -> Arc<[u8]> {
        if self.start == 0 && self.end as usize == self.buf.len() {
            self.buf.clone()
        } else {
            Arc::from(&**self)
        }
    }
}

impl Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.start as usize..self.end as usize]
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for SharedBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for SharedBytes {}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// An event's entity and scope, borrowed from its view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoordinateRef<'a> {
    /// The aggregate or stream name.
    pub entity: &'a str,
    /// The namespace.
    pub scope: &'a str,
}

/// Where the names live: spans of the payload's buffer (a stored event), or
/// an owned header.
#[derive(Clone)]
enum Names {
    Stored {
        header: Range<u32>,
        entity: Range<u32>,
        scope: Range<u32>,
        kind: Range<u32>,
    },
    Owned(Arc<EventHeader>),
}

/// A stored event, its names and payload borrowed from a shared buffer of
/// stored bytes (see the module comment). Answers what [`Event`] answers;
/// [`to_event`](Self::to_event) makes the owned event when one must be
/// kept or handed on.
#[derive(Clone)]
pub struct EventView {
    id: EventId,
    sequence: u64,
    entity_sequence: u64,
    causation: Option<EventId>,
    correlation: EventId,
    timestamp_us: u64,
    names: Names,
    /// Payload bytes.
    pub payload: SharedBytes,
    /// The event hash recorded when it was appended.
    pub hash: [u8; 32],
}

/// The stored header, borrowed: the same fields in the same order as
/// [`EventHeader`], so postcard decodes the same bytes the same way, but
/// names as `&str` into the buffer and the metadata checked, not kept.
#[derive(Deserialize)]
struct HeaderRef<'a> {
    id: EventId,
    sequence: u64,
    entity_sequence: u64,
    #[serde(borrow)]
    coordinate: CoordRef<'a>,
    kind: &'a str,
    causation: Option<EventId>,
    correlation: EventId,
    timestamp_us: u64,
    #[allow(dead_code)] // decoded to reach the fields after it
    prev: Option<ChainLink>,
    #[allow(dead_code)]
    idempotency_key: Option<&'a str>,
    #[allow(dead_code)]
    meta: MetaCheck,
}

#[derive(Deserialize)]
struct CoordRef<'a> {
    entity: &'a str,
    scope: &'a str,
}

/// Walks the metadata list, checking each pair decodes as two strings,
/// keeping nothing.
struct MetaCheck;

impl<'de> Deserialize<'de> for MetaCheck {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetaCheck;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of (key, value) string pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MetaCheck, A::Error> {
                while seq.next_element::<(&'de str, &'de str)>()?.is_some() {}
                Ok(MetaCheck)
            }
        }
        d.deserialize_seq(V)
    }
}

impl EventView {
    /// A view of the event whose header occupies `header` and payload
    /// `payload` in `buf`, with its recorded `hash`: decodes the header,
    /// checking it as [`EventHeader`]'s decode would.
    ///
    /// # Errors
    /// The header does not decode (the message says why).
    pub(crate) fn from_stored(
        buf: &Arc<[u8]>,
        header: Range<usize>,
        payload: Range<usize>,
        hash: [u8; 32],
    ) -> Result<EventView, String> {
        let bytes = &buf[header.clone()];
        let h: HeaderRef<'_> =
            postcard::from_bytes(bytes).map_err(|e| format!("undecodable event header: {e}"))?;
        let base = buf.as_ptr() as usize;
        let span = |s: &str| {
            let at = (s.as_ptr() as usize - base) as u32;
            at..at + s.len() as u32
        };
        Ok(EventView {
            id: h.id,
            sequence: h.sequence,
            entity_sequence: h.entity_sequence,
            causation: h.causation,
            correlation: h.correlation,
            timestamp_us: h.timestamp_us,
            names: Names::Stored {
                header: header.start as u32..header.end as u32,
                entity: span(h.coordinate.entity),
                scope: span(h.coordinate.scope),
                kind: span(h.kind),
            },
            payload: SharedBytes::slice(buf, payload),
            hash,
        })
    }

    /// A name checked as UTF-8 when the view was made.
    fn name(&self, r: &Range<u32>) -> &str {
        std::str::from_utf8(&self.payload.buf[r.start as usize..r.end as usize])
            .expect("names are checked when the view is made")
    }

    /// The event id.
    pub fn id(&self) -> EventId {
        self.id
    }
    /// The global sequence.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    /// Position within the entity, from 1.
    pub fn entity_sequence(&self) -> u64 {
        self.entity_sequence
    }
    /// Parent in the causal graph.
    pub fn causation(&self) -> Option<EventId> {
        self.causation
    }
    /// Conversation id.
    pub fn correlation(&self) -> EventId {
        self.correlation
    }
    /// Commit time, microseconds since the Unix epoch.
    pub fn timestamp_us(&self) -> u64 {
        self.timestamp_us
    }
    /// The entity.
    pub fn entity(&self) -> &str {
        match &self.names {
            Names::Stored { entity, .. } => self.name(entity),
            Names::Owned(h) => &h.coordinate.entity,
        }
    }
    /// The scope.
    pub fn scope(&self) -> &str {
        match &self.names {
            Names::Stored { scope, .. } => self.name(scope),
            Names::Owned(h) => &h.coordinate.scope,
        }
    }
    /// Entity and scope.
    pub fn coordinate(&self) -> CoordinateRef<'_> {
        CoordinateRef {
            entity: self.entity(),
            scope: self.scope(),
        }
    }
    /// The kind.
    pub fn kind(&self) -> &str {
        match &self.names {
            Names::Stored { kind, .. } => self.name(kind),
            Names::Owned(h) => &h.kind,
        }
    }

    /// The owned event: decodes the whole header (metadata, chain link,
    /// idempotency key) and copies the payload out of the shared buffer.
    pub fn to_event(&self) -> Event {
        let header = match &self.names {
            Names::Owned(h) => h.clone(),
            Names::Stored { header, .. } => Arc::new(
                postcard::from_bytes::<EventHeader>(
                    &self.payload.buf[header.start as usize..header.end as usize],
                )
                .expect("the header decoded when the view was made"),
            ),
        };
        Event {
            header,
            payload: self.payload.to_arc(),
            hash: self.hash,
        }
    }
}

impl From<Event> for EventView {
    fn from(e: Event) -> EventView {
        let h = &e.header;
        EventView {
            id: h.id,
            sequence: h.sequence,
            entity_sequence: h.entity_sequence,
            causation: h.causation,
            correlation: h.correlation,
            timestamp_us: h.timestamp_us,
            payload: SharedBytes::new(e.payload),
            hash: e.hash,
            names: Names::Owned(e.header),
        }
    }
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> EventView {
        EventView::from(e.clone())
    }
}

impl PartialEq for EventView {
    /// Equal when they are the same stored event: same id, position,
    /// names, payload and hash.
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
            && self.sequence == o.sequence
            && self.entity_sequence == o.entity_sequence
            && self.causation == o.causation
            && self.correlation == o.correlation
            && self.timestamp_us == o.timestamp_us
            && self.hash == o.hash
            && self.entity() == o.entity()
            && self.scope() == o.scope()
            && self.kind() == o.kind()
            && self.payload == o.payload
    }
}

impl Eq for EventView {}

impl fmt::Debug for EventView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventView")
            .field("id", &self.id)
            .field("sequence", &self.sequence)
            .field("entity", &self.entity())
            .field("scope", &self.scope())
            .field("kind", &self.kind())
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Coordinate;

    fn header(meta: Vec<(String, String)>) -> EventHeader {
        EventHeader {
            id: EventId::from_parts(1, 2),
            sequence: 7,
            entity_sequence: 3,
            coordinate: Coordinate::new("order:1", "shop").unwrap(),
            kind: "order.placed".into(),
            causation: Some(EventId(9)),
            correlation: EventId(10),
            timestamp_us: 1234,
            prev: Some(ChainLink {
                id: EventId(5),
                hash: [7; 32],
            }),
            idempotency_key: Some("k".into()),
            meta: meta.into(),
        }
    }

    #[test]
    fn a_stored_view_answers_what_the_owned_event_answers() {
        let h = header(vec![("reactor".into(), "r".into())]);
        let enc = postcard::to_stdvec(&h).unwrap();
        let mut buf = b"prefix".to_vec();
        let h0 = buf.len();
        buf.extend_from_slice(&enc);
        let p0 = buf.len();
        buf.extend_from_slice(b"{\"x\":1}");
        let buf: Arc<[u8]> = buf.into();
        let hash = h.hash(b"{\"x\":1}");
        let v = EventView::from_stored(&buf, h0..p0, p0..buf.len(), hash).unwrap();
        let owned = Event {
            header: Arc::new(h),
            payload: Arc::from(&b"{\"x\":1}"[..]),
            hash,
        };
        assert_eq!(v.to_event(), owned);
        assert_eq!(v, EventView::from(owned.clone()));
        assert_eq!(v.coordinate().entity, "order:1");
        assert_eq!(v.kind(), "order.placed");
        assert_eq!(&*v.payload, b"{\"x\":1}");
        // A header cut short is refused, not read around.
        assert!(EventView::from_stored(&buf, h0..p0 - 3, p0..buf.len(), hash).is_err());
    }
}
