//! Collecting the events a reactor proposes, directly in the flat layout
//! `react` returns (`batpak:reactor@0.2.0`): emitting copies the names and
//! payload bytes into one growing buffer and notes a fixed-size record, so a
//! proposal costs no allocation of its own.

use crate::wit::{Causation, Coordinate, Proposal};
use crate::{host, EventId, EventRef, ReactError, Verdict};
use serde::Serialize;
use std::cell::OnceCell;

use batpak_layout::{
    write_proposal_record, write_proposals_header, ProposalRecord, CAUSATION_EVENT as CAUSE_EVENT,
    CAUSATION_NONE as CAUSE_NONE, CAUSATION_SOURCE as CAUSE_SOURCE,
    PROPOSALS_HEADER_LEN as HEADER_LEN, PROPOSAL_RECORD_LEN as RECORD_LEN,
};

/// A byte range of the output's tail buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    at: u32,
    len: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.at as usize..(self.at + self.len) as usize
    }
}

/// One proposal as laid out: names and payload point into the tail, the
/// kind is an index into the output's own kind table (turned into the
/// `emits` index when the buffer is written).
#[derive(Clone, Copy, Debug)]
struct Record {
    source: u32,
    kind: u32,
    entity: Span,
    scope: Span,
    payload: Span,
    causation: u32,
    cause: (u64, u64),
}

/// The proposals of one [`Reactor::react`](crate::Reactor::react) call, in
/// order.
///
/// Every proposal names its `source`: the batch index of the event it reacts
/// to. The host derives the new event's id from (reactor, source event,
/// position in the output), so a redelivered batch never appends twice, and
/// the new event inherits the source event's correlation id. Nothing is
/// appended until `react` returns `Ok`, and then only what the gates admit.
#[derive(Clone, Debug)]
pub struct Output {
    records: Vec<Record>,
    /// The output buffer being built: first `reserved` bytes kept for the
    /// header and the records (so the finished buffer needs no copy when
    /// they fit), then names and payloads back to back (a name equal to the
    /// previous proposal's is stored once). Spans are offsets in it.
    tail: Vec<u8>,
    /// Bytes at the start of `tail` kept for the header and records.
    reserved: usize,
    /// The distinct kinds proposed, in first-use order.
    kinds: Vec<String>,
    /// The proposals as WIT records, built on demand by
    /// [`proposals`](Output::proposals) and dropped by any change.
    materialized: OnceCell<Vec<Proposal>>,
    /// The previous proposal's entity and scope: where they are in the tail
    /// and the address of the string they were copied from.
    last_entity: Option<(Span, usize)>,
    last_scope: Option<(Span, usize)>,
    /// The address and length of the last kind string looked up, and its
    /// index in `kinds`.
    last_kind: Option<(usize, usize, u32)>,
}

impl Output {
    /// An empty output.
    pub fn new() -> Self {
        Output::with_capacity(0)
    }

    /// An empty output with room for `n` proposals (the export keeps room
    /// for one per event of the batch).
    pub fn with_capacity(n: usize) -> Self {
        let reserved = HEADER_LEN + RECORD_LEN * n;
        // Room for the records, typical names and small payloads.
        let mut tail = Vec::with_capacity(reserved + n.saturating_mul(64));
        tail.resize(reserved, 0);
        Output {
            records: Vec::with_capacity(n),
            tail,
            reserved,
            kinds: Vec::new(),
            materialized: OnceCell::new(),
            last_entity: None,
            last_scope: None,
            last_kind: None,
        }
    }

    /// Reserves room for `n` more proposals.
    pub fn reserve(&mut self, n: usize) {
        self.records.reserve(n);
    }

    /// Proposes an event of `kind` at (`entity`, `scope`) with raw `payload`
    /// bytes, reacting to (and by default caused by) `source`. The returned
    /// handle can change the causation or dry-run the gates. Names and
    /// payload are copied into the output; nothing is allocated per
    /// proposal.
    #[inline]
    pub fn emit(
        &mut self,
        source: &EventRef<'_>,
        entity: impl AsRef<str>,
        scope: impl AsRef<str>,
        kind: impl AsRef<str>,
        payload: impl AsRef<[u8]>,
    ) -> Emitted<'_> {
        let (entity, scope) = (entity.as_ref(), scope.as_ref());
        let frozen = (source.in_batch(entity), source.in_batch(scope));
        let names = self.names(entity, scope, frozen);
        let payload = payload.as_ref();
        let at = self.tail.len();
        grow(&mut self.tail, payload.len());
        self.tail.extend_from_slice(payload);
        self.finish(source.index(), names, kind.as_ref(), at)
    }

    /// Like [`emit`](Output::emit) with `payload` serialized as JSON. A
    /// serialization failure (rare: e.g. a map with non-string keys) is an
    /// error naming `source`, and nothing is proposed.
    pub fn emit_json<T: Serialize + ?Sized>(
        &mut self,
        source: &EventRef<'_>,
        entity: impl AsRef<str>,
        scope: impl AsRef<str>,
        kind: impl AsRef<str>,
        payload: &T,
    ) -> Result<Emitted<'_>, ReactError> {
        let (entity, scope) = (entity.as_ref(), scope.as_ref());
        let frozen = (source.in_batch(entity), source.in_batch(scope));
        let names = self.names(entity, scope, frozen);
        // Serialized straight into the output: no intermediate buffer.
        let at = self.tail.len();
        if let Err(e) = serde_json::to_writer(&mut self.tail, payload) {
            self.tail.truncate(at);
            return Err(ReactError::at(
                source,
                format!("cannot serialize payload: {e}"),
            ));
        }
        Ok(self.finish(source.index(), names, kind.as_ref(), at))
    }

    /// Appends a ready-made proposal as is, unchecked: its `source` must be
    /// a batch index, or the host rejects it.
    pub fn push(&mut self, proposal: Proposal) -> Emitted<'_> {
        let names = self.names(
            &proposal.coordinate.entity,
            &proposal.coordinate.scope,
            (false, false),
        );
        let at = self.tail.len();
        grow(&mut self.tail, proposal.payload.len());
        self.tail.extend_from_slice(&proposal.payload);
        let emitted = self.finish(proposal.source, names, &proposal.kind, at);
        match proposal.causation {
            Causation::Source => emitted,
            Causation::Event(id) => emitted.caused_by(id.into()),
            Causation::None => emitted.uncaused(),
        }
    }

    /// Stores entity and scope (names first, so a large payload written
    /// after them is the last growth of the buffer). `frozen` says whether
    /// they point into the batch buffer (immutable, so an equal address
    /// means equal bytes).
    #[inline]
    fn names(&mut self, entity: &str, scope: &str, frozen: (bool, bool)) -> (Span, Span) {
        let (entity, entity_ptr) = self.name(entity, self.last_entity, frozen.0);
        let (scope, scope_ptr) = self.name(scope, self.last_scope, frozen.1);
        self.last_entity = Some((entity, entity_ptr));
        self.last_scope = Some((scope, scope_ptr));
        (entity, scope)
    }

    /// Records a proposal whose names are `names` and whose payload was
    /// just written to the tail from `payload_at` on.
    #[inline]
    fn finish(
        &mut self,
        source: u32,
        (entity, scope): (Span, Span),
        kind: &str,
        payload_at: usize,
    ) -> Emitted<'_> {
        let payload = Span {
            at: payload_at as u32,
            len: (self.tail.len() - payload_at) as u32,
        };
        let kind = self.kind_index(kind);
        self.records.push(Record {
            source,
            kind,
            entity,
            scope,
            payload,
            causation: CAUSE_SOURCE,
            cause: (0, 0),
        });
        self.materialized.take();
        let index = self.records.len() - 1;
        Emitted {
            output: self,
            index,
            proposal: OnceCell::new(),
        }
    }

    /// Where `name` is in the tail: the previous proposal's copy when it is
    /// the very same string (the same address, as when names come from the
    /// batch, whose names are interned, and the same bytes), otherwise a new
    /// copy. Different addresses are not compared byte by byte: an equal name
    /// from elsewhere is simply stored again, which the layout allows.
    #[inline]
    fn name(&mut self, name: &str, previous: Option<(Span, usize)>, frozen: bool) -> (Span, usize) {
        if let Some((span, ptr)) = previous {
            // Outside the batch the address alone is not enough: a
            // temporary `String` may reuse the previous one's memory with
            // other contents.
            if ptr == name.as_ptr() as usize
                && span.len as usize == name.len()
                && (frozen || same(&self.tail[span.range()], name.as_bytes()))
            {
                return (span, ptr);
            }
        }
        let at = self.tail.len();
        grow(&mut self.tail, name.len());
        self.tail.extend_from_slice(name.as_bytes());
        (
            Span {
                at: at as u32,
                len: name.len() as u32,
            },
            name.as_ptr() as usize,
        )
    }

    /// Index of `kind` in the output's kind table, adding it when new.
    #[inline]
    fn kind_index(&mut self, kind: &str) -> u32 {
        // Kinds are usually the same constant string every time: compare
        // addresses before bytes.
        if let Some((ptr, len, i)) = self.last_kind {
            if ptr == kind.as_ptr() as usize
                && len == kind.len()
                && same(self.kinds[i as usize].as_bytes(), kind.as_bytes())
            {
                return i;
            }
        }
        let i = match self.kinds.iter().position(|k| k == kind) {
            Some(i) => i as u32,
            None => {
                self.kinds.push(kind.to_string());
                self.kinds.len() as u32 - 1
            }
        };
        self.last_kind = Some((kind.as_ptr() as usize, kind.len(), i));
        i
    }

    /// Number of proposals so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing has been proposed.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The proposals so far, in order, as WIT records (built when first
    /// asked for after a change).
    pub fn proposals(&self) -> &[Proposal] {
        self.materialized
            .get_or_init(|| (0..self.records.len()).map(|k| self.proposal(k)).collect())
    }

    /// Proposal `k` as a WIT record.
    fn proposal(&self, k: usize) -> Proposal {
        let r = &self.records[k];
        let text = |s: Span| String::from_utf8_lossy(&self.tail[s.range()]).into_owned();
        Proposal {
            source: r.source,
            coordinate: Coordinate {
                entity: text(r.entity),
                scope: text(r.scope),
            },
            kind: self.kinds[r.kind as usize].clone(),
            payload: self.tail[r.payload.range()].to_vec(),
            causation: match r.causation {
                CAUSE_EVENT => Causation::event(EventId::from_parts(r.cause.0, r.cause.1)),
                CAUSE_NONE => Causation::None,
                _ => Causation::Source,
            },
        }
    }

    /// Drops every proposal made so far.
    pub fn clear(&mut self) {
        self.records.clear();
        self.tail.truncate(self.reserved);
        self.kinds.clear();
        self.materialized.take();
        self.last_entity = None;
        self.last_scope = None;
        self.last_kind = None;
    }

    /// The proposals, in order, as WIT records.
    pub fn into_proposals(mut self) -> Vec<Proposal> {
        match self.materialized.take() {
            Some(p) => p,
            None => (0..self.records.len()).map(|k| self.proposal(k)).collect(),
        }
    }

    /// The proposals laid out as the flat proposals buffer `react` returns
    /// (`WIT.md`), each kind turned into its index in `emits` (the reactor's
    /// declared kinds). An undeclared kind gets an index past `emits`
    /// (`u32::MAX`), so the host's capability gate denies that proposal and
    /// records the denial, as it does for any undeclared kind; the SDK also
    /// logs the kind's name as a warning, since the index cannot carry it.
    /// When the records fit the room kept for them (see
    /// [`with_capacity`](Output::with_capacity)) the buffer is the output's
    /// own, finished in place, with no copy.
    pub fn into_bytes(mut self, emits: &[String]) -> Vec<u8> {
        let n = self.records.len();
        if n == 0 {
            return Vec::new();
        }
        let kind_index: Vec<u32> = self
            .kinds
            .iter()
            .map(|kind| match emits.iter().position(|e| e == kind) {
                Some(i) => i as u32,
                None => {
                    crate::log::warn(&format!(
                        "proposed kind {kind:?}, which describe() does not list in emits ({}); the host will deny those proposals",
                        emits.join(", ")
                    ));
                    u32::MAX
                }
            })
            .collect();
        let needed = HEADER_LEN + RECORD_LEN * n;
        // Where the records go, and how far the tail's spans move.
        let (mut buf, shift) = if needed <= self.reserved {
            (std::mem::take(&mut self.tail), 0u32)
        } else {
            let mut buf = Vec::with_capacity(needed + self.tail.len() - self.reserved);
            buf.resize(needed, 0);
            buf.extend_from_slice(&self.tail[self.reserved..]);
            (buf, (needed - self.reserved) as u32)
        };
        write_proposals_header(&mut buf, n as u32);
        for (k, r) in self.records.iter().enumerate() {
            let rec = &mut buf[HEADER_LEN + RECORD_LEN * k..HEADER_LEN + RECORD_LEN * (k + 1)];
            let moved = |s: Span| (shift + s.at, s.len);
            let record = ProposalRecord {
                source: r.source,
                kind: kind_index[r.kind as usize],
                entity: moved(r.entity),
                scope: moved(r.scope),
                payload: moved(r.payload),
                causation: r.causation,
                cause: r.cause,
            };
            write_proposal_record(rec, &record);
        }
        buf
    }

    /// Like [`into_bytes`](Output::into_bytes), keeping the output (a copy).
    pub fn to_bytes(&self, emits: &[String]) -> Vec<u8> {
        self.clone().into_bytes(emits)
    }
}

/// Whether two short byte strings are equal, compared eight bytes at a time
/// inline (a `memcmp` call costs more than the comparison for names this
/// short, especially in wasm).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let mut i = 0;
    while i + 8 <= a.len() {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    a[i..].iter().zip(&b[i..]).all(|(x, y)| x == y)
}

/// Makes room for `extra` more bytes: doubling while the buffer is small,
/// but by at most 16 MiB beyond what is needed once it is large, so one big
/// payload does not double a reactor's memory (the instance has a budget).
#[inline]
fn grow(buf: &mut Vec<u8>, extra: usize) {
    if buf.capacity() - buf.len() < extra {
        buf.reserve_exact(extra.max(buf.len().min(16 << 20)));
    }
}

impl Default for Output {
    fn default() -> Self {
        Output::new()
    }
}

/// A proposal just added to an [`Output`]; adjust it with the builder
/// methods. Dropping the handle keeps the proposal.
#[derive(Debug)]
pub struct Emitted<'a> {
    output: &'a mut Output,
    index: usize,
    proposal: OnceCell<Proposal>,
}

impl Emitted<'_> {
    fn set_cause(self, causation: u32, cause: (u64, u64)) -> Self {
        let r = &mut self.output.records[self.index];
        r.causation = causation;
        r.cause = cause;
        self.output.materialized.take();
        Emitted {
            output: self.output,
            index: self.index,
            proposal: OnceCell::new(),
        }
    }

    /// Records the source event as the cause (the default).
    pub fn caused_by_source(self) -> Self {
        self.set_cause(CAUSE_SOURCE, (0, 0))
    }

    /// Records another, existing event as the cause.
    pub fn caused_by(self, id: EventId) -> Self {
        self.set_cause(CAUSE_EVENT, ((id.0 >> 64) as u64, id.0 as u64))
    }

    /// Records no cause: the new event starts a new causal chain.
    pub fn uncaused(self) -> Self {
        self.set_cause(CAUSE_NONE, (0, 0))
    }

    /// The proposal as it stands.
    pub fn proposal(&self) -> &Proposal {
        self.proposal
            .get_or_init(|| self.output.proposal(self.index))
    }

    /// Asks the host's gates about this proposal without appending anything
    /// (a dry run; see [`host::check`]).
    pub fn check(&self) -> Verdict {
        host::check(self.proposal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use batpak_layout::{u32_at, u64_at};
    fn range(b: &[u8], rec: usize, at: usize) -> &[u8] {
        let (o, l) = (
            u32_at(b, rec + at) as usize,
            u32_at(b, rec + at + 4) as usize,
        );
        &b[o..o + l]
    }

    #[test]
    fn proposals_are_laid_out_as_the_contract_says() {
        testing::reset();
        let a = testing::append("order:1", "shop", "in", &b"{}"[..]);
        let b = testing::append("order:2", "shop", "in", &b"{}"[..]);
        let batch = testing::batch(&[a, b]);
        let (e0, e1) = (batch.get(0).unwrap(), batch.get(1).unwrap());
        let emits = vec!["x.one".to_string(), "x.two".to_string()];
        let mut out = Output::new();
        let (shop, order9) = (e0.scope(), String::from("order:9"));
        out.emit(&e0, "order:1", shop, "x.two", &b"p0"[..]);
        out.emit(&e1, &order9, shop, "x.one", &b"p1"[..])
            .caused_by(EventId((7u128 << 64) | 8));
        out.emit(&e1, &order9, "other", "x.undeclared", &b""[..])
            .uncaused();

        let buf = out.to_bytes(&emits);
        assert_eq!(u32_at(&buf, 0), 3);
        assert_eq!(u32_at(&buf, 4), 0);
        let rec = |k: usize| 8 + 56 * k;
        // source, kind index, names, payload, causation, reserved, cause
        assert_eq!((u32_at(&buf, rec(0)), u32_at(&buf, rec(0) + 4)), (0, 1));
        assert_eq!(range(&buf, rec(0), 8), b"order:1");
        assert_eq!(range(&buf, rec(0), 16), b"shop");
        assert_eq!(range(&buf, rec(0), 24), b"p0");
        assert_eq!(u32_at(&buf, rec(0) + 32), 0);
        assert_eq!((u32_at(&buf, rec(1)), u32_at(&buf, rec(1) + 4)), (1, 0));
        assert_eq!(range(&buf, rec(1), 8), b"order:9");
        assert_eq!(range(&buf, rec(1), 24), b"p1");
        assert_eq!(u32_at(&buf, rec(1) + 32), 1);
        assert_eq!(
            (u64_at(&buf, rec(1) + 40), u64_at(&buf, rec(1) + 48)),
            (7, 8)
        );
        // Repeated names share bytes.
        assert_eq!(u32_at(&buf, rec(1) + 16), u32_at(&buf, rec(0) + 16));
        assert_eq!(u32_at(&buf, rec(2) + 8), u32_at(&buf, rec(1) + 8));
        // An undeclared kind: an index past emits, and a warning naming it.
        assert_eq!(u32_at(&buf, rec(2) + 4), u32::MAX);
        assert_eq!(range(&buf, rec(2), 16), b"other");
        assert_eq!(u32_at(&buf, rec(2) + 28), 0);
        assert_eq!(u32_at(&buf, rec(2) + 32), 2);
        for k in 0..3 {
            assert_eq!(u32_at(&buf, rec(k) + 36), 0, "reserved");
        }
        assert!(testing::logs()
            .iter()
            .any(|(_, m)| m.contains("\"x.undeclared\"") && m.contains("x.one, x.two")));
        assert!(Output::new().to_bytes(&emits).is_empty());
    }

    #[test]
    fn a_name_at_the_previous_address_with_other_bytes_is_not_shared() {
        testing::reset();
        let a = testing::append("order:1", "shop", "in", &b"{}"[..]);
        let batch = testing::batch(&[a]);
        let e = batch.get(0).unwrap();
        let mut out = Output::new();
        let mut name = String::from("order:7");
        out.emit(&e, &name, "s", "k", &b""[..]);
        // Same allocation, same length, other contents.
        name.replace_range(6..7, "8");
        out.emit(&e, &name, "s", "k", &b""[..]);
        let p = out.proposals();
        assert_eq!(p[0].coordinate.entity, "order:7");
        assert_eq!(p[1].coordinate.entity, "order:8");
    }

    /// The proposals of a buffer, resolved: (source, kind, entity, scope,
    /// payload, causation, cause).
    #[allow(clippy::type_complexity)]
    fn resolve(b: &[u8]) -> Vec<(u32, u32, Vec<u8>, Vec<u8>, Vec<u8>, u32, u64, u64)> {
        (0..u32_at(b, 0) as usize)
            .map(|k| {
                let r = 8 + 56 * k;
                (
                    u32_at(b, r),
                    u32_at(b, r + 4),
                    range(b, r, 8).to_vec(),
                    range(b, r, 16).to_vec(),
                    range(b, r, 24).to_vec(),
                    u32_at(b, r + 32),
                    u64_at(b, r + 40),
                    u64_at(b, r + 48),
                )
            })
            .collect()
    }

    #[test]
    fn records_finished_in_place_or_moved_read_the_same() {
        testing::reset();
        let evs: Vec<_> = (0..5)
            .map(|i| testing::append(&format!("e:{i}"), "s", "in", format!("{{\"i\":{i}}}")))
            .collect();
        let batch = testing::batch(&evs);
        let emits = vec!["out".to_string()];
        let fill = |out: &mut Output| {
            for e in batch.events() {
                out.emit(&e, e.entity(), e.scope(), "out", e.payload());
            }
        };
        // Room for all five (in place), for two (moved), for none.
        let mut bufs = Vec::new();
        for room in [5, 2, 0] {
            let mut out = Output::with_capacity(room);
            fill(&mut out);
            bufs.push(out.into_bytes(&emits));
        }
        assert_eq!(resolve(&bufs[0]).len(), 5);
        assert_eq!(resolve(&bufs[0]), resolve(&bufs[1]));
        assert_eq!(resolve(&bufs[0]), resolve(&bufs[2]));
        assert_eq!(resolve(&bufs[0])[3].4, br#"{"i":3}"#);
    }
}
