//! Admission: turns a reactor's [`Reaction`]s into store proposals and runs
//! them through the gates — first the built-in [`CapabilityGate`], then the
//! caller's own [`GateSet`].
//!
//! The runner (for the real append) and the `check` host import (for the dry
//! run) share this code, so a dry run can never disagree with what the
//! append would do.

use super::capability_gate::{clip, CapabilityGate, ReactionContext, ReactorInfo, CAPABILITY_GATE};
use super::reaction::{Reaction, ReactionCause};
use batpak_log::EventLog;
use batpak_store::{denial_event, Denial, Gate, GateSet};
use batpak_store::{Coordinate, EventId, EventView, Proposal, MAX_KIND_LEN, MAX_NAME_LEN};
use std::sync::Arc;

/// Looks `cause` up, retrying a few times while the log is unavailable: a
/// transient fault must not turn into an `unknown-causation` denial.
fn lookup(
    log: &dyn EventLog,
    cause: batpak_store::EventId,
) -> Result<Option<batpak_store::Event>, batpak_log::LogError> {
    let mut tries = 0;
    loop {
        match log.get(cause) {
            Err(e) if e.is_transient() && tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10 << tries));
            }
            r => return r,
        }
    }
}

/// The whole admission pipeline of one reactor.
pub(crate) struct Admission {
    pub(crate) info: Arc<ReactorInfo>,
    capability: CapabilityGate,
    gates: Arc<GateSet<ReactionContext>>,
    stream: Coordinate,
    proposer: String,
    /// Shared by every proposal it stamps (cloning it copies nothing).
    lineage: batpak_store::Meta,
}

/// The gates' decision on one reaction, with the proposal it became.
pub(crate) enum Judged {
    Admitted(Proposal),
    Denied { denial: Denial, record: Proposal },
}

impl Admission {
    pub(crate) fn new(
        info: ReactorInfo,
        capability: CapabilityGate,
        gates: Arc<GateSet<ReactionContext>>,
    ) -> Self {
        let stream = info.stream();
        let proposer = info.proposer();
        let lineage = info.lineage();
        Admission {
            info: Arc::new(info),
            capability,
            gates,
            stream,
            proposer,
            lineage,
        }
    }

    /// Id of the `ordinal`-th reaction to `source` (counted per source event
    /// so that a batch split differently after a crash or a bisection still
    /// derives the same ids).
    pub(crate) fn reaction_id(&self, source: EventId, ordinal: u32) -> EventId {
        EventId::derive(&[
            b"reaction",
            self.info.name.as_bytes(),
            &source.0.to_be_bytes(),
            &ordinal.to_le_bytes(),
        ])
    }

    fn denial_id(&self, source: EventId, ordinal: u32) -> EventId {
        EventId::derive(&[
            b"denial",
            self.info.name.as_bytes(),
            &source.0.to_be_bytes(),
            &ordinal.to_le_bytes(),
        ])
    }

    /// The store proposal for `reaction` to `source`.
    pub(crate) fn proposal(
        &self,
        reaction: Reaction,
        source: Option<&EventView>,
        ordinal: u32,
    ) -> Proposal {
        let mut p = Proposal::new(reaction.coordinate, reaction.kind, reaction.payload);
        match reaction.causation {
            ReactionCause::Source => {
                p.causation = source.map(EventView::id);
                p.correlation = source.map(EventView::correlation);
            }
            ReactionCause::Event(id) => {
                p.causation = Some(id);
                p.correlation = source.map(EventView::correlation);
            }
            ReactionCause::None => {}
        }
        if let Some(s) = source {
            p.id = Some(self.reaction_id(s.id(), ordinal));
        }
        p.meta = self.lineage.clone();
        p
    }

    /// Runs the capability gate, checks an explicit causation exists, then
    /// the caller's gates (first denial wins).
    pub(crate) fn evaluate(
        &self,
        store: Option<&dyn EventLog>,
        ctx: &ReactionContext,
        p: &Proposal,
    ) -> Result<(), Denial> {
        self.capability.evaluate(ctx, p)?;
        if let (Some(store), Some(cause)) = (store, p.causation) {
            let is_source = ctx.source.as_ref().is_some_and(|s| s.id() == cause);
            if !is_source && !matches!(lookup(store, cause), Ok(Some(_))) {
                return Err(Denial::new(
                    CAPABILITY_GATE,
                    "unknown-causation",
                    format!("the proposal names event {cause} as its cause, but no such event is in the log"),
                ));
            }
        }
        self.gates.evaluate(ctx, p)
    }

    /// Builds, judges and (when denied) records one reaction.
    pub(crate) fn judge(
        &self,
        store: &dyn EventLog,
        reaction: Reaction,
        source: &EventView,
        ordinal: u32,
    ) -> Judged {
        let p = self.proposal(reaction, Some(source), ordinal);
        let ctx = ReactionContext {
            reactor: self.info.clone(),
            source: Some(source.clone()),
            dry_run: false,
        };
        match self.evaluate(Some(store), &ctx, &p) {
            Ok(()) => Judged::Admitted(p),
            Err(denial) => {
                // The record must always be appendable: names clipped (a
                // refused proposal may carry megabytes of "entity"), and
                // caused by the source event, which exists (the proposal's
                // own causation may not).
                let mut shown = Proposal::new(
                    Coordinate {
                        entity: clip(&p.coordinate.entity, MAX_NAME_LEN).into_owned(),
                        scope: clip(&p.coordinate.scope, MAX_NAME_LEN).into_owned(),
                    },
                    clip(&p.kind, MAX_KIND_LEN).into_owned(),
                    Vec::new(),
                );
                shown.causation = p.causation;
                let mut record = denial_event(&self.stream, &self.proposer, &denial, &shown);
                record.causation = Some(source.id());
                record.correlation = Some(source.correlation());
                record.id = Some(self.denial_id(source.id(), ordinal));
                record.meta = self.lineage.clone();
                Judged::Denied { denial, record }
            }
        }
    }

    /// The `check` host import: the same decision, nothing appended. Takes
    /// the reaction by value: what a guest passes may be large (up to
    /// `MAX_LIFT_BYTES`), so it is not copied again.
    pub(crate) fn dry_run(
        &self,
        store: &dyn EventLog,
        reaction: Reaction,
        source: Option<&EventView>,
    ) -> Option<Denial> {
        let p = self.proposal(reaction, source, 0);
        let ctx = ReactionContext {
            reactor: self.info.clone(),
            source: source.cloned(),
            dry_run: true,
        };
        self.evaluate(Some(store), &ctx, &p).err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ReactionContext {
        ReactionContext {
            reactor: Arc::new(ReactorInfo {
                name: "r".into(),
                version: "1".into(),
                digest: "d".into(),
            }),
            source: None,
            dry_run: true,
        }
    }

    #[test]
    fn capability_gate_codes() {
        let emits = vec!["a.x".to_string(), "a.y".to_string()];
        let g = CapabilityGate::new("r", &emits, Some(&["a.x".to_string(), "zzz".to_string()]));
        let c = Coordinate::new("e", "s").unwrap();
        let p = |k: &str| Proposal::new(c.clone(), k, b"{}".to_vec());
        assert!(g.evaluate(&ctx(), &p("a.x")).is_ok());
        assert_eq!(
            g.evaluate(&ctx(), &p("a.y")).unwrap_err().code,
            "kind-not-granted"
        );
        assert_eq!(
            g.evaluate(&ctx(), &p("zzz")).unwrap_err().code,
            "kind-not-declared"
        );
        assert_eq!(
            g.evaluate(&ctx(), &p("batpak.x")).unwrap_err().code,
            "reserved-kind"
        );
        let mut bad = p("a.x");
        bad.coordinate.entity = String::new();
        assert_eq!(
            g.evaluate(&ctx(), &bad).unwrap_err().code,
            "invalid-proposal"
        );
        assert_eq!(g.granted().collect::<Vec<_>>(), vec!["a.x"]);
    }

    /// A grant list naming only kinds the reactor does not declare (seen
    /// with `grant_emits = ["bench.other"]`) used to be rendered as "the
    /// operator granted only nothing".
    #[test]
    fn a_denial_names_what_the_operator_granted_even_when_nothing_applies() {
        let emits = vec!["a.x".to_string(), "a.y".to_string()];
        let c = Coordinate::new("e", "s").unwrap();
        let p = |k: &str| Proposal::new(c.clone(), k, b"{}".to_vec());
        let other = CapabilityGate::new("r", &emits, Some(&["bench.other".to_string()]));
        let d = other.evaluate(&ctx(), &p("a.x")).unwrap_err();
        assert_eq!(d.code, "kind-not-granted");
        assert_eq!(
            d.message,
            "reactor r may not emit \"a.x\": the operator granted it no kind (plugins.r.grant_emits lists only \"bench.other\", none of which it declares); add \"a.x\" to plugins.r.grant_emits in the plugin config to allow it"
        );
        let none = CapabilityGate::new("r", &emits, Some(&[]));
        let d = none.evaluate(&ctx(), &p("a.y")).unwrap_err();
        assert!(
            d.message
                .contains("granted it no kind (plugins.r.grant_emits is empty)"),
            "{}",
            d.message
        );
        let some = CapabilityGate::new("r", &emits, Some(&["a.x".to_string()]));
        let d = some.evaluate(&ctx(), &p("a.y")).unwrap_err();
        assert!(
            d.message.contains(
                "the operator granted only \"a.x\"; add \"a.y\" to plugins.r.grant_emits"
            ),
            "{}",
            d.message
        );
        for g in [&other, &none, &some] {
            let m = g.evaluate(&ctx(), &p("a.y")).unwrap_err().message;
            assert!(!m.contains("nothing"), "{m}");
        }
    }
}
