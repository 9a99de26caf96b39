//! Native unit testing of reactors, without a host.
//!
//! Only compiled for non-wasm targets. There the [`host`](crate::host) and
//! [`log`](crate::log) functions talk to an in-memory mock host kept per
//! thread (each `#[test]` runs on its own thread, so tests do not share it).
//! The mock store plays the part of the log:
//!
//! ```
//! use batpak_guest::testing;
//! # use batpak_guest::{Batch, Descriptor, Output, ReactError, Reactor};
//! # struct Echo;
//! # impl Reactor for Echo {
//! #     fn describe() -> Descriptor { Descriptor::new("echo", "0").emits(["echo"]) }
//! #     fn init(_: &str) -> Result<Self, String> { Ok(Echo) }
//! #     fn react(&mut self, b: &Batch, out: &mut Output) -> Result<(), ReactError> {
//! #         for e in b.events() { out.emit(&e, e.entity(), e.scope(), "echo", e.payload()); }
//! #         Ok(())
//! #     }
//! # }
//!
//! let mut reactor = Echo::init("{}").unwrap();
//! let placed = testing::append("order:1", "shop", "order.placed", br#"{"sku":"widget"}"#);
//! let batch = testing::batch(&[placed]);
//! let proposals = testing::react(&mut reactor, &batch).unwrap();
//! assert_eq!(proposals[0].kind, "echo");
//! // Append what the gates admit (all of it here), as the host would.
//! let appended = testing::commit(&batch, &proposals);
//! assert_eq!(appended.len(), 1);
//! ```

use crate::batch::{encode, RawEvent};
use crate::stored_event::{StoredEvent, READ_ENTITY_MAX};
use crate::verdict::ProposalVerdict;
use crate::wit::{self, Causation, Level, Proposal, Verdict};
use crate::{Batch, EventId, Output, ReactError, Reactor};
use std::cell::RefCell;

/// The state of the mock host of the current thread.
#[derive(Default)]
pub struct MockHost {
    /// Every event, in sequence order.
    pub events: Vec<StoredEvent>,
    /// What `host::last_verdicts` returns.
    pub last_verdicts: Vec<ProposalVerdict>,
    /// Every line logged, in order.
    pub logs: Vec<(Level, String)>,
    /// The gate used by `host::check` and [`commit`]; `None` allows all.
    #[allow(clippy::type_complexity)]
    pub gate: Option<Box<dyn Fn(&Proposal) -> Verdict>>,
}

thread_local! {
    static HOST: RefCell<MockHost> = RefCell::new(MockHost::default());
}

/// Runs `f` on the mock host of the current thread.
pub fn with_host<T>(f: impl FnOnce(&mut MockHost) -> T) -> T {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

/// Clears the mock host of the current thread.
pub fn reset() {
    with_host(|h| *h = MockHost::default());
}

/// Installs the gate `commit` and `host::check` use.
pub fn set_gate(gate: impl Fn(&Proposal) -> Verdict + 'static) {
    with_host(|h| h.gate = Some(Box::new(gate)));
}

/// The lines logged so far.
pub fn logs() -> Vec<(Level, String)> {
    with_host(|h| h.logs.clone())
}

fn append_event(
    h: &mut MockHost,
    entity: &str,
    scope: &str,
    kind: &str,
    payload: Vec<u8>,
    causation: Option<EventId>,
    correlation: Option<EventId>,
) -> StoredEvent {
    let sequence = h.events.len() as u64 + 1;
    let entity_sequence = h.events.iter().filter(|e| e.entity == entity).count() as u64 + 1;
    let id = EventId(0x0bad_cafe_u128 << 64 | sequence as u128);
    let event = StoredEvent {
        id,
        sequence,
        entity_sequence,
        entity: entity.to_owned(),
        scope: scope.to_owned(),
        kind: kind.to_owned(),
        causation,
        correlation: correlation.unwrap_or(id),
        timestamp_us: 1_700_000_000_000_000 + sequence,
        payload,
    };
    h.events.push(event.clone());
    event
}

/// Appends an event with no cause to the mock store and returns it.
pub fn append(entity: &str, scope: &str, kind: &str, payload: impl Into<Vec<u8>>) -> StoredEvent {
    with_host(|h| append_event(h, entity, scope, kind, payload.into(), None, None))
}

/// Builds a batch, as the host would deliver it, from stored events.
pub fn batch(events: &[StoredEvent]) -> Batch {
    let raw: Vec<RawEvent<'_>> = events
        .iter()
        .map(|e| RawEvent {
            id: e.id,
            sequence: e.sequence,
            entity_sequence: e.entity_sequence,
            entity: &e.entity,
            scope: &e.scope,
            kind: &e.kind,
            causation: e.causation,
            correlation: e.correlation,
            timestamp_us: e.timestamp_us,
            payload: &e.payload,
        })
        .collect();
    Batch::from_bytes(encode(&raw)).expect("the encoder writes a valid batch")
}

/// Calls `reactor.react` on `batch` and returns its proposals.
pub fn react<R: Reactor>(reactor: &mut R, batch: &Batch) -> Result<Vec<Proposal>, ReactError> {
    let mut out = Output::with_capacity(batch.len());
    reactor.react(batch, &mut out)?;
    Ok(out.into_proposals())
}

/// Does what the host does after a successful `react`: runs every proposal
/// through the gate (see [`set_gate`]), appends the admitted ones to the
/// mock store and records the verdicts for `host::last_verdicts`. Returns
/// the appended events.
///
/// # Panics
/// When a proposal's `source` is not an index of `batch`.
pub fn commit(batch: &Batch, proposals: &[Proposal]) -> Vec<StoredEvent> {
    with_host(|h| {
        let mut appended = Vec::new();
        let mut verdicts = Vec::with_capacity(proposals.len());
        for (i, p) in proposals.iter().enumerate() {
            let source = batch.get(p.source as usize).unwrap_or_else(|| {
                panic!("proposal {i} names source {} outside the batch", p.source)
            });
            let verdict = h.gate.as_ref().map_or(Verdict::Allowed, |gate| gate(p));
            let mut id = None;
            if verdict.is_allowed() {
                let causation = match p.causation {
                    Causation::Source => Some(source.id()),
                    Causation::Event(id) => Some(id.into()),
                    Causation::None => None,
                };
                let event = append_event(
                    h,
                    &p.coordinate.entity,
                    &p.coordinate.scope,
                    &p.kind,
                    p.payload.clone(),
                    causation,
                    Some(source.correlation()),
                );
                id = Some(event.id);
                appended.push(event);
            }
            verdicts.push(ProposalVerdict {
                proposal: i as u32,
                verdict,
                appended: id,
            });
        }
        h.last_verdicts = verdicts;
        appended
    })
}

/// The mock implementations of the host imports.
pub(crate) mod imports {
    use super::*;

    pub fn log(level: Level, message: &str) {
        with_host(|h| h.logs.push((level, message.to_owned())));
    }

    pub fn get_event(id: wit::EventId) -> Option<wit::StoredEvent> {
        let id = EventId::from(id);
        with_host(|h| {
            h.events
                .iter()
                .find(|e| e.id == id)
                .cloned()
                .map(Into::into)
        })
    }

    pub fn read_entity(entity: &str, after: u64, max: u32) -> Vec<wit::StoredEvent> {
        with_host(|h| {
            h.events
                .iter()
                .filter(|e| e.entity == entity && e.entity_sequence > after)
                .take(max.min(READ_ENTITY_MAX) as usize)
                .cloned()
                .map(Into::into)
                .collect()
        })
    }

    pub fn check(proposal: &Proposal) -> Verdict {
        with_host(|h| {
            h.gate
                .as_ref()
                .map_or(Verdict::Allowed, |gate| gate(proposal))
        })
    }

    pub fn last_verdicts() -> Vec<wit::ProposalVerdict> {
        with_host(|h| {
            h.last_verdicts
                .iter()
                .map(|v| wit::ProposalVerdict {
                    proposal: v.proposal,
                    verdict: v.verdict.clone(),
                    appended: v.appended.map(Into::into),
                })
                .collect()
        })
    }
}
