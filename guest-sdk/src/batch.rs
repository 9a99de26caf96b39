//! A friendly, zero-copy view over the flat batch buffer of
//! `batpak:reactor@0.2.0` (layout in `WIT.md` and the WIT doc of `react`).

use crate::EventId;
use batpak_layout::{
    batch_field as field, u32_at, u64_at, BATCH_HEADER_LEN as HEADER_LEN,
    BATCH_RECORD_LEN as RECORD_LEN, FLAG_HAS_CAUSATION, STRING_ENTRY_LEN,
};
use serde::de::DeserializeOwned;
use std::fmt;
use std::iter::FusedIterator;

/// Why a byte buffer is not a valid batch (see [`Batch::from_bytes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchError(String);

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid batch buffer: {}", self.0)
    }
}

impl std::error::Error for BatchError {}

/// The events handed to one [`Reactor::react`](crate::Reactor::react) call.
///
/// Wraps the flat batch buffer the host sends (a header, one fixed-size
/// record per event, an interned string table and a payload area) without
/// copying anything: every accessor reads from the buffer.
pub struct Batch {
    buf: Vec<u8>,
    count: usize,
    strings_offset: usize,
    string_count: usize,
    payloads_offset: usize,
}

impl Batch {
    /// Wraps a batch buffer, checking its header, that every record fits and
    /// that every string of the table is in bounds and valid UTF-8 (record
    /// fields are checked when read: a bad string index reads as `""`, a bad
    /// payload range as empty).
    ///
    /// # Errors
    /// The buffer breaks the layout.
    pub fn from_bytes(buf: Vec<u8>) -> Result<Batch, BatchError> {
        let h = batpak_layout::check_batch(&buf).map_err(|e| BatchError(e.to_string()))?;
        Ok(Batch {
            buf,
            count: h.count as usize,
            strings_offset: h.strings_offset as usize,
            string_count: h.string_count as usize,
            payloads_offset: h.payloads_offset as usize,
        })
    }

    /// The raw batch buffer, for anyone who wants the wire shape.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Unwraps the raw batch buffer.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Number of events in the batch.
    #[inline]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the batch has no events.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The events in delivery order (ascending `sequence`), each knowing its
    /// batch index.
    #[inline]
    pub fn events(&self) -> Events<'_> {
        Events {
            batch: self,
            range: 0..self.count as u32,
        }
    }

    /// The event at batch index `index`, if there is one.
    #[inline]
    pub fn get(&self, index: usize) -> Option<EventRef<'_>> {
        (index < self.count).then_some(EventRef {
            batch: self,
            index: index as u32,
        })
    }

    #[inline]
    fn string(&self, index: u32) -> &str {
        // The host guarantees valid indexes; a bad one reads as "" rather
        // than trapping.
        let j = index as usize;
        if j >= self.string_count {
            return "";
        }
        let e = self.strings_offset + STRING_ENTRY_LEN * j;
        let start = self.strings_offset
            + STRING_ENTRY_LEN * self.string_count
            + u32_at(&self.buf, e) as usize;
        let end = start + u32_at(&self.buf, e + 4) as usize;
        let bytes = &self.buf[start..end];
        // SAFETY: `from_bytes` checked (`batpak_layout::check_batch`) that
        // every string of the table is in bounds and valid UTF-8, and the buffer is never changed after.
        // (Checking again on every access was a fifth of the SDK's cost per
        // event.)
        unsafe { std::str::from_utf8_unchecked(bytes) }
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
    range: std::ops::Range<u32>,
}

impl<'a> Iterator for Events<'a> {
    type Item = EventRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<EventRef<'a>> {
        self.range.next().map(|index| EventRef {
            batch: self.batch,
            index,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.range.size_hint()
    }
}

impl DoubleEndedIterator for Events<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.range.next_back().map(|index| EventRef {
            batch: self.batch,
            index,
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
}

impl<'a> EventRef<'a> {
    #[inline]
    fn at(&self) -> usize {
        HEADER_LEN + RECORD_LEN * self.index as usize
    }

    #[inline]
    fn u32(&self, field: usize) -> u32 {
        u32_at(&self.batch.buf, self.at() + field)
    }

    #[inline]
    fn u64(&self, field: usize) -> u64 {
        u64_at(&self.batch.buf, self.at() + field)
    }

    #[inline]
    fn id_at(&self, field: usize) -> EventId {
        EventId(((self.u64(field) as u128) << 64) | self.u64(field + 8) as u128)
    }

    /// 0-based position of this event in its batch: the `source` index of
    /// proposals reacting to it, and the `event` of a [`ReactError`](crate::ReactError).
    #[inline]
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Unique id of this event.
    #[inline]
    pub fn id(&self) -> EventId {
        self.id_at(field::ID_HI)
    }

    /// Store-wide commit order (1, 2, 3, ...), strictly increasing.
    #[inline]
    pub fn sequence(&self) -> u64 {
        self.u64(field::SEQUENCE)
    }

    /// Position of this event in its entity's stream (1, 2, 3, ...).
    pub fn entity_sequence(&self) -> u64 {
        self.u64(field::ENTITY_SEQUENCE)
    }

    /// The entity (aggregate) this event belongs to, e.g. `order:42`.
    #[inline]
    pub fn entity(&self) -> &'a str {
        self.batch.string(self.u32(field::ENTITY))
    }

    /// The scope of the entity, e.g. `shop`.
    #[inline]
    pub fn scope(&self) -> &'a str {
        self.batch.string(self.u32(field::SCOPE))
    }

    /// The event kind, e.g. `order.placed`.
    #[inline]
    pub fn kind(&self) -> &'a str {
        self.batch.string(self.u32(field::KIND))
    }

    /// The payload bytes (UTF-8 JSON by convention). Empty if the host sent
    /// an out-of-range slice.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        let start = self
            .batch
            .payloads_offset
            .saturating_add(self.u32(field::PAYLOAD_OFFSET) as usize);
        let end = start.saturating_add(self.u32(field::PAYLOAD_LEN) as usize);
        self.batch.buf.get(start..end).unwrap_or(&[])
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
        (self.u32(field::FLAGS) & FLAG_HAS_CAUSATION != 0).then(|| self.id_at(field::CAUSATION_HI))
    }

    /// The id of the first event of this event's causal chain (the event
    /// itself when it has no cause).
    pub fn correlation(&self) -> EventId {
        self.id_at(field::CORRELATION_HI)
    }

    /// Commit time in microseconds since the Unix epoch (UTC).
    pub fn timestamp_us(&self) -> u64 {
        self.u64(field::TIMESTAMP_US)
    }

    /// Whether `s` points into the batch buffer, which never changes while
    /// the batch lives (so its address identifies its contents).
    #[inline]
    pub(crate) fn in_batch(&self, s: &str) -> bool {
        let range = self.batch.buf.as_ptr_range();
        range.contains(&s.as_ptr()) && s.len() <= range.end as usize - s.as_ptr() as usize
    }

    /// The event's 96-byte record in the batch buffer (string indexes and
    /// payload offsets, laid out as `WIT.md` describes).
    pub fn as_bytes(&self) -> &'a [u8] {
        &self.batch.buf[self.at()..self.at() + RECORD_LEN]
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

/// One event as [`encode`] lays it out.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) struct RawEvent<'a> {
    pub(crate) id: EventId,
    pub(crate) sequence: u64,
    pub(crate) entity_sequence: u64,
    pub(crate) entity: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) causation: Option<EventId>,
    pub(crate) correlation: EventId,
    pub(crate) timestamp_us: u64,
    pub(crate) payload: &'a [u8],
}

/// Lays out `events` as the host does (used by `testing` to build batches).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn encode(events: &[RawEvent<'_>]) -> Vec<u8> {
    fn intern<'a>(s: &'a str, strings: &mut Vec<&'a str>) -> u32 {
        match strings.iter().position(|x| *x == s) {
            Some(i) => i as u32,
            None => {
                strings.push(s);
                strings.len() as u32 - 1
            }
        }
    }
    let mut strings: Vec<&str> = Vec::new();
    let mut buf = vec![0u8; HEADER_LEN + RECORD_LEN * events.len()];
    let halves = |id: EventId| ((id.0 >> 64) as u64, id.0 as u64);
    let mut payload_at = 0u32;
    for (i, e) in events.iter().enumerate() {
        let r = HEADER_LEN + RECORD_LEN * i;
        let record = batpak_layout::EventRecord {
            id: halves(e.id),
            sequence: e.sequence,
            entity_sequence: e.entity_sequence,
            correlation: halves(e.correlation),
            causation: e.causation.map(halves),
            timestamp_us: e.timestamp_us,
            entity: intern(e.entity, &mut strings),
            scope: intern(e.scope, &mut strings),
            kind: intern(e.kind, &mut strings),
            payload_offset: payload_at,
            payload_len: e.payload.len() as u32,
        };
        batpak_layout::write_event_record(&mut buf[r..r + RECORD_LEN], &record);
        payload_at += e.payload.len() as u32;
    }
    let strings_offset = buf.len();
    let mut at = 0u32;
    for s in &strings {
        batpak_layout::write_string_entry(&mut buf, at, s.len() as u32);
        at += s.len() as u32;
    }
    for s in &strings {
        buf.extend_from_slice(s.as_bytes());
    }
    let payloads_offset = buf.len();
    for e in events {
        buf.extend_from_slice(e.payload);
    }
    let header = batpak_layout::BatchHeader {
        count: events.len() as u32,
        string_count: strings.len() as u32,
        strings_offset: strings_offset as u32,
        payloads_offset: payloads_offset as u32,
    };
    batpak_layout::write_batch_header(&mut buf, &header);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<'a>(n: u64, entity: &'a str, kind: &'a str, payload: &'a [u8]) -> RawEvent<'a> {
        RawEvent {
            id: EventId((n as u128) << 64 | 0xff),
            sequence: n,
            entity_sequence: n + 1,
            entity,
            scope: "shop",
            kind,
            causation: (n == 2).then_some(EventId(77)),
            correlation: EventId(n as u128 + 100),
            timestamp_us: 5 + n,
            payload,
        }
    }

    #[test]
    fn view_resolves_strings_and_payloads() {
        let batch = Batch::from_bytes(encode(&[
            raw(1, "order:1", "order.placed", br#"{"a":1}"#),
            raw(2, "order:1", "order.placed", br#"{"b":2}"#),
        ]))
        .unwrap();
        assert_eq!(batch.len(), 2);
        let evs: Vec<_> = batch.events().collect();
        assert_eq!(evs[1].index(), 1);
        assert_eq!(evs[1].entity(), "order:1");
        assert_eq!(evs[1].scope(), "shop");
        assert_eq!(evs[1].kind(), "order.placed");
        assert_eq!(evs[1].payload(), br#"{"b":2}"#);
        assert_eq!(evs[1].id(), EventId((2u128 << 64) | 0xff));
        assert_eq!(evs[1].sequence(), 2);
        assert_eq!(evs[1].entity_sequence(), 3);
        assert_eq!(evs[1].causation(), Some(EventId(77)));
        assert_eq!(evs[0].causation(), None);
        assert_eq!(evs[1].correlation(), EventId(102));
        assert_eq!(evs[1].timestamp_us(), 7);
        let v: serde_json::Value = evs[0].json().unwrap();
        assert_eq!(v["a"], 1);
        assert_eq!(batch.events().next_back().unwrap().index(), 1);
        // A record with bad indexes reads as empty rather than trapping.
        let mut bytes = encode(&[raw(3, "x", "k", b"p")]);
        bytes[16 + 72..16 + 76].copy_from_slice(&99u32.to_le_bytes());
        bytes[16 + 88..16 + 92].copy_from_slice(&1000u32.to_le_bytes());
        let batch = Batch::from_bytes(bytes).unwrap();
        let e = batch.get(0).unwrap();
        assert_eq!((e.entity(), e.payload()), ("", &[][..]));
        assert!(batch.get(1).is_none());
    }

    #[test]
    fn broken_buffers_are_refused() {
        assert!(Batch::from_bytes(vec![0; 15]).is_err());
        let mut b = encode(&[raw(1, "x", "k", b"p")]);
        b[0] = 2;
        assert!(Batch::from_bytes(b).is_err());
        let mut b = encode(&[raw(1, "x", "k", b"p")]);
        let names = 16 + 96 + 8 * 3;
        b[names] = 0xff;
        assert!(Batch::from_bytes(b)
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));
    }
}
