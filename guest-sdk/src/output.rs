//! Collecting the events a reactor proposes.

use crate::wit::{Causation, Proposal};
use crate::{host, EventId, EventRef, ReactError, Verdict};
use serde::Serialize;

/// The proposals of one [`Reactor::react`](crate::Reactor::react) call, in
/// order.
///
/// Every proposal names its `source`: the batch index of the event it reacts
/// to. The host derives the new event's id from (reactor, source event,
/// position in the output), so a redelivered batch never appends twice, and
/// the new event inherits the source event's correlation id. Nothing is
/// appended until `react` returns `Ok`, and then only what the gates admit.
#[derive(Debug, Default)]
pub struct Output {
    proposals: Vec<Proposal>,
}

impl Output {
    /// An empty output.
    pub fn new() -> Self {
        Output::default()
    }

    /// An empty output with room for `n` proposals.
    pub fn with_capacity(n: usize) -> Self {
        Output {
            proposals: Vec::with_capacity(n),
        }
    }

    /// Reserves room for `n` more proposals.
    pub fn reserve(&mut self, n: usize) {
        self.proposals.reserve(n);
    }

    /// Proposes an event of `kind` at (`entity`, `scope`) with raw `payload`
    /// bytes, reacting to (and by default caused by) `source`. The returned
    /// handle can change the causation or dry-run the gates.
    pub fn emit(
        &mut self,
        source: &EventRef<'_>,
        entity: impl Into<String>,
        scope: impl Into<String>,
        kind: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> Emitted<'_> {
        self.push(Proposal::new(source.index(), entity, scope, kind, payload))
    }

    /// Like [`emit`](Output::emit) with `payload` serialized as JSON. A
    /// serialization failure (rare: e.g. a map with non-string keys) is an
    /// error naming `source`, and nothing is proposed.
    pub fn emit_json<T: Serialize + ?Sized>(
        &mut self,
        source: &EventRef<'_>,
        entity: impl Into<String>,
        scope: impl Into<String>,
        kind: impl Into<String>,
        payload: &T,
    ) -> Result<Emitted<'_>, ReactError> {
        let bytes = serde_json::to_vec(payload)
            .map_err(|e| ReactError::at(source, format!("cannot serialize payload: {e}")))?;
        Ok(self.emit(source, entity, scope, kind, bytes))
    }

    /// Appends a ready-made proposal as is, unchecked: its `source` must be
    /// a batch index, or the host rejects it.
    pub fn push(&mut self, proposal: Proposal) -> Emitted<'_> {
        self.proposals.push(proposal);
        let proposal = self
            .proposals
            .last_mut()
            .expect("a proposal was just pushed");
        Emitted { proposal }
    }

    /// Number of proposals so far.
    pub fn len(&self) -> usize {
        self.proposals.len()
    }

    /// Whether nothing has been proposed.
    pub fn is_empty(&self) -> bool {
        self.proposals.is_empty()
    }

    /// The proposals so far, in order.
    pub fn proposals(&self) -> &[Proposal] {
        &self.proposals
    }

    /// Drops every proposal made so far.
    pub fn clear(&mut self) {
        self.proposals.clear();
    }

    /// The proposals, in order, as handed to the host.
    pub fn into_proposals(self) -> Vec<Proposal> {
        self.proposals
    }

    /// The proposals laid out as the flat proposals buffer `react` returns
    /// (`WIT.md`), each kind turned into its index in `emits` (the reactor's
    /// declared kinds). An undeclared kind gets an index past `emits`
    /// (`u32::MAX`), so the host's capability gate denies that proposal and
    /// records the denial, as it does for any undeclared kind; the SDK also
    /// logs the kind's name as a warning, since the index cannot carry it.
    pub fn to_bytes(&self, emits: &[String]) -> Vec<u8> {
        if self.proposals.is_empty() {
            return Vec::new();
        }
        let n = self.proposals.len();
        let records_end = HEADER_LEN + RECORD_LEN * n;
        let tail: usize = self
            .proposals
            .iter()
            .map(|p| p.coordinate.entity.len() + p.coordinate.scope.len() + p.payload.len())
            .sum();
        let mut buf = Vec::with_capacity(records_end + tail);
        buf.extend_from_slice(&(n as u32).to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.resize(records_end, 0);
        // Names usually repeat from one proposal to the next (same scope,
        // often the same entity): records may share bytes, so point at the
        // previous copy instead of writing another.
        let mut last_entity: (&str, u32) = ("", 0);
        let mut last_scope: (&str, u32) = ("", 0);
        let mut last_kind: (&str, u32) = ("", u32::MAX);
        let mut warned = false;
        for (k, p) in self.proposals.iter().enumerate() {
            let r = HEADER_LEN + RECORD_LEN * k;
            let kind = if !last_kind.0.is_empty() && last_kind.0 == p.kind {
                last_kind.1
            } else {
                let i = emits
                    .iter()
                    .position(|e| *e == p.kind)
                    .map_or(u32::MAX, |i| i as u32);
                if i == u32::MAX && !warned {
                    warned = true;
                    crate::log::warn(&format!(
                        "proposal {k} has kind {:?}, which describe() does not list in emits ({}); the host will deny it",
                        p.kind,
                        emits.join(", ")
                    ));
                }
                last_kind = (&p.kind, i);
                i
            };
            let entity = name_at(&mut buf, &mut last_entity, &p.coordinate.entity);
            let scope = name_at(&mut buf, &mut last_scope, &p.coordinate.scope);
            let payload_at = buf.len() as u32;
            buf.extend_from_slice(&p.payload);
            let (tag, cause) = match p.causation {
                Causation::Source => (0u32, (0u64, 0u64)),
                Causation::Event(id) => (1, (id.hi, id.lo)),
                Causation::None => (2, (0, 0)),
            };
            let rec = &mut buf[r..r + RECORD_LEN];
            rec[0..4].copy_from_slice(&p.source.to_le_bytes());
            rec[4..8].copy_from_slice(&kind.to_le_bytes());
            rec[8..12].copy_from_slice(&entity.to_le_bytes());
            rec[12..16].copy_from_slice(&(p.coordinate.entity.len() as u32).to_le_bytes());
            rec[16..20].copy_from_slice(&scope.to_le_bytes());
            rec[20..24].copy_from_slice(&(p.coordinate.scope.len() as u32).to_le_bytes());
            rec[24..28].copy_from_slice(&payload_at.to_le_bytes());
            rec[28..32].copy_from_slice(&(p.payload.len() as u32).to_le_bytes());
            rec[32..36].copy_from_slice(&tag.to_le_bytes());
            rec[40..48].copy_from_slice(&cause.0.to_le_bytes());
            rec[48..56].copy_from_slice(&cause.1.to_le_bytes());
        }
        buf
    }
}

/// Bytes of the proposals header.
const HEADER_LEN: usize = 8;
/// Bytes of one proposal record.
const RECORD_LEN: usize = 56;

/// The offset of `name` in `buf`: the previous copy when it is the same
/// name, otherwise a new copy appended to `buf`.
fn name_at<'a>(buf: &mut Vec<u8>, last: &mut (&'a str, u32), name: &'a str) -> u32 {
    if last.1 != 0 && last.0 == name {
        return last.1;
    }
    let at = buf.len() as u32;
    buf.extend_from_slice(name.as_bytes());
    *last = (name, at);
    at
}

/// A proposal just added to an [`Output`]; adjust it with the builder
/// methods. Dropping the handle keeps the proposal.
#[derive(Debug)]
pub struct Emitted<'a> {
    proposal: &'a mut Proposal,
}

impl Emitted<'_> {
    /// Records the source event as the cause (the default).
    pub fn caused_by_source(self) -> Self {
        self.proposal.causation = Causation::Source;
        self
    }

    /// Records another, existing event as the cause.
    pub fn caused_by(self, id: EventId) -> Self {
        self.proposal.causation = Causation::event(id);
        self
    }

    /// Records no cause: the new event starts a new causal chain.
    pub fn uncaused(self) -> Self {
        self.proposal.causation = Causation::None;
        self
    }

    /// The proposal as it stands.
    pub fn proposal(&self) -> &Proposal {
        self.proposal
    }

    /// Asks the host's gates about this proposal without appending anything
    /// (a dry run; see [`host::check`]).
    pub fn check(&self) -> Verdict {
        host::check(self.proposal)
    }
}
