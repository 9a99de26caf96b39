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
