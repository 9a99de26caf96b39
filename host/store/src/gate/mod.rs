//! Gates: caller-defined rules that decide which proposals may be appended.
//!
//! A [`Gate`] looks at a proposal in some caller-chosen context and either
//! allows it or returns a [`Denial`]. A [`GateSet`] evaluates gates in order,
//! either stopping at the first denial ([`GateSet::evaluate`]) or collecting
//! all of them ([`GateSet::evaluate_all`]). Gates run on the caller's thread
//! before the append; a gate that panics is turned into a `gate-defect`
//! denial rather than taking the caller down.
//!
//! Denials can be persisted with [`record_denial`] as `batpak.gate.denied`
//! system events on the proposer's stream, so an audit sees what was refused
//! and why.

use crate::event::{Coordinate, Proposal, Receipt};
use crate::store::{AppendOptions, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::panic_message::panic_message;
use crate::system::DENIED_KIND;

/// A gate's refusal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// Name of the gate that refused.
    pub gate: String,
    /// Stable machine-readable code (e.g. `kind-not-granted`).
    pub code: String,
    /// Human-readable explanation, naming the fix where there is one.
    pub message: String,
}

impl Denial {
    /// Builds a denial.
    pub fn new(
        gate: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Denial {
            gate: gate.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "denied by gate {:?} ({}): {}",
            self.gate, self.code, self.message
        )
    }
}

/// A caller-defined rule over proposals in context `C`.
pub trait Gate<C: ?Sized>: Send + Sync {
    /// The gate's name, recorded in denials.
    fn name(&self) -> &str;
    /// Allows the proposal (`Ok`) or refuses it with a reason.
    ///
    /// # Errors
    /// The denial.
    fn evaluate(&self, ctx: &C, proposal: &Proposal) -> Result<(), Denial>;
}

/// An ordered list of gates.
pub struct GateSet<C: ?Sized> {
    gates: Vec<Box<dyn Gate<C>>>,
}

impl<C: ?Sized> Default for GateSet<C> {
    fn default() -> Self {
        GateSet { gates: Vec::new() }
    }
}

impl<C: ?Sized> GateSet<C> {
    /// An empty set (admits everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a gate; gates run in insertion order.
    pub fn push(&mut self, gate: impl Gate<C> + 'static) -> &mut Self {
        self.gates.push(Box::new(gate));
        self
    }

    /// Builder form of [`push`](Self::push).
    pub fn with(mut self, gate: impl Gate<C> + 'static) -> Self {
        self.push(gate);
        self
    }

    /// Number of gates.
    pub fn len(&self) -> usize {
        self.gates.len()
    }

    /// True when there is no gate.
    pub fn is_empty(&self) -> bool {
        self.gates.is_empty()
    }

    /// Fail-fast: the first denial, or `Ok` when every gate allows.
    ///
    /// # Errors
    /// The first denial.
    pub fn evaluate(&self, ctx: &C, proposal: &Proposal) -> Result<(), Denial> {
        for g in &self.gates {
            run_gate(g.as_ref(), ctx, proposal)?;
        }
        Ok(())
    }

    /// Evaluate-all: every denial, in gate order (empty when allowed).
    pub fn evaluate_all(&self, ctx: &C, proposal: &Proposal) -> Vec<Denial> {
        self.gates
            .iter()
            .filter_map(|g| run_gate(g.as_ref(), ctx, proposal).err())
            .collect()
    }
}

fn run_gate<C: ?Sized>(g: &dyn Gate<C>, ctx: &C, p: &Proposal) -> Result<(), Denial> {
    match catch_unwind(AssertUnwindSafe(|| g.evaluate(ctx, p))) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic_message(panic.as_ref());
            Err(Denial::new(
                g.name(),
                "gate-defect",
                format!(
                    "the gate panicked ({msg}); the proposal is refused until the gate is fixed"
                ),
            ))
        }
    }
}

/// Payload of a `batpak.gate.denied` event (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenialRecord {
    /// The refusal.
    #[serde(flatten)]
    pub denial: Denial,
    /// Who proposed (e.g. `reactor:inventory@0.1.0`).
    pub proposer: String,
    /// The refused proposal's coordinate.
    pub entity: String,
    /// The refused proposal's scope.
    pub scope: String,
    /// The refused proposal's kind.
    pub kind: String,
    /// The refused proposal's causation.
    pub causation: Option<String>,
}

/// Builds the system event recording `denial` of `proposal` on the
/// proposer's stream `stream`. Append it with [`record_denial`] or inside a
/// larger system batch.
pub fn denial_event(
    stream: &Coordinate,
    proposer: &str,
    denial: &Denial,
    proposal: &Proposal,
) -> Proposal {
    let rec = DenialRecord {
        denial: denial.clone(),
        proposer: proposer.to_string(),
        entity: proposal.coordinate.entity.clone(),
        scope: proposal.coordinate.scope.clone(),
        kind: proposal.kind.clone(),
        causation: proposal.causation.map(|c| c.to_string()),
    };
    let mut p = Proposal::new(
        stream.clone(),
        DENIED_KIND,
        serde_json::to_vec(&rec).expect("denial encodes"),
    );
    p.causation = proposal.causation;
    p.correlation = proposal.correlation;
    p
}

/// Persists a denial as a durable `batpak.gate.denied` event on `stream`.
///
/// # Errors
/// The store's error when the append fails.
pub fn record_denial(
    store: &Store,
    stream: &Coordinate,
    proposer: &str,
    denial: &Denial,
    proposal: &Proposal,
) -> Result<Receipt, StoreError> {
    let ev = denial_event(stream, proposer, denial, proposal);
    let mut r = store.append_system(vec![ev], AppendOptions::durable())?;
    Ok(r.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct MaxPayload(usize);
    impl Gate<()> for MaxPayload {
        fn name(&self) -> &str {
            "max-payload"
        }
        fn evaluate(&self, _: &(), p: &Proposal) -> Result<(), Denial> {
            if p.payload.len() > self.0 {
                Err(Denial::new("max-payload", "too-big", "payload too big"))
            } else {
                Ok(())
            }
        }
    }
    struct Panics;
    impl Gate<()> for Panics {
        fn name(&self) -> &str {
            "panics"
        }
        fn evaluate(&self, _: &(), _: &Proposal) -> Result<(), Denial> {
            panic!("boom")
        }
    }

    #[test]
    fn fail_fast_stops_at_first_and_evaluate_all_collects() {
        let set = GateSet::new().with(MaxPayload(1)).with(Panics);
        let p = Proposal::new(Coordinate::new("e", "s").unwrap(), "k", b"xyz".to_vec());
        assert_eq!(set.evaluate(&(), &p).unwrap_err().gate, "max-payload");
        let all = set.evaluate_all(&(), &p);
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].code, "gate-defect");
        let small = Proposal::new(Coordinate::new("e", "s").unwrap(), "k", b"".to_vec());
        assert_eq!(set.evaluate(&(), &small).unwrap_err().code, "gate-defect");
        assert!(GateSet::<()>::new().evaluate(&(), &small).is_ok());
    }
}
