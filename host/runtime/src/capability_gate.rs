//! The built-in gate every reaction passes first: a reactor may emit only
//! the kinds it declared and was granted, never a `batpak.*` system kind,
//! and names no event it could not have seen. Caller-defined gates
//! ([`batpak_store::Gate`]) run after it, in the same [`ReactionContext`].

use batpak_store::{
    is_system_kind, Coordinate, Denial, EventView, Gate, Meta, Proposal, MAX_KIND_LEN,
};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

pub use batpak_store::system::{REACTOR_STREAM_PREFIX, SYSTEM_SCOPE};
/// Name of the built-in gate.
pub const CAPABILITY_GATE: &str = "capability";

/// Who produced a reaction: recorded as lineage on every appended event and
/// handed to caller-defined gates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactorInfo {
    /// The reactor's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Digest of its code (blake3 hex of a component).
    pub digest: String,
}

impl ReactorInfo {
    /// The reactor's own stream: entity `reactor:<name>` in scope `batpak`.
    pub fn stream(&self) -> Coordinate {
        Coordinate {
            entity: format!("{REACTOR_STREAM_PREFIX}{}", self.name),
            scope: SYSTEM_SCOPE.to_string(),
        }
    }

    /// How denial records name the proposer: `reactor:<name>@<version>`.
    pub fn proposer(&self) -> String {
        format!("{REACTOR_STREAM_PREFIX}{}@{}", self.name, self.version)
    }

    /// The lineage metadata stamped on every reaction (shared: each
    /// reaction's proposal holds the same list).
    pub fn lineage(&self) -> Meta {
        Meta::from(vec![
            ("reactor".to_string(), self.name.clone()),
            ("reactor_version".to_string(), self.version.clone()),
            ("component".to_string(), self.digest.clone()),
        ])
    }
}

/// What caller-defined gates see besides the proposal itself.
#[derive(Clone, Debug)]
pub struct ReactionContext {
    /// The reactor that proposed it.
    pub reactor: Arc<ReactorInfo>,
    /// The event it reacts to (absent for a dry run outside `react`), as
    /// the view the reactor was handed ([`EventView::to_event`] for the
    /// owned event).
    pub source: Option<EventView>,
    /// True for the `check` host import: nothing will be appended.
    pub dry_run: bool,
}

/// The built-in gate: a reactor may propose only kinds it declared in
/// `emits` **and** the operator granted, never a `batpak.*` kind, and only
/// well-formed proposals.
#[derive(Clone, Debug)]
pub struct CapabilityGate {
    reactor: String,
    declared: BTreeSet<String>,
    granted: BTreeSet<String>,
    /// The operator's list as given (`None`: everything declared), for
    /// denials that must name it.
    grants: Option<Vec<String>>,
}

impl CapabilityGate {
    /// A gate for reactor `reactor` that declared `emits`; `grants` is the
    /// operator's list (`None` grants everything declared).
    pub fn new(reactor: &str, emits: &[String], grants: Option<&[String]>) -> Self {
        let declared: BTreeSet<String> = emits.iter().cloned().collect();
        let granted = match grants {
            Some(g) => g
                .iter()
                .filter(|k| declared.contains(*k))
                .cloned()
                .collect(),
            None => declared.clone(),
        };
        CapabilityGate {
            reactor: reactor.to_string(),
            declared,
            granted,
            grants: grants.map(<[String]>::to_vec),
        }
    }

    /// The kinds this reactor may actually emit.
    pub fn granted(&self) -> impl Iterator<Item = &str> {
        self.granted.iter().map(String::as_str)
    }

    /// Why declared `kind` is not granted, naming what the operator did
    /// grant and the config key that fixes it.
    fn not_granted(&self, kind: &str) -> String {
        let r = &self.reactor;
        let fix =
            format!("add {kind:?} to plugins.{r}.grant_emits in the plugin config to allow it");
        if !self.granted.is_empty() {
            return format!(
                "reactor {r} may not emit {kind:?}: the operator granted only {}; {fix}",
                list(&self.granted)
            );
        }
        // Nothing granted: say what the operator's list holds, since none
        // of it is a kind this reactor declares.
        let given = self.grants.as_deref().unwrap_or_default();
        let given = if given.is_empty() {
            "is empty".to_string()
        } else {
            format!(
                "lists only {}, none of which it declares",
                given
                    .iter()
                    .map(|k| format!("{:?}", clip(k, MAX_KIND_LEN)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            "reactor {r} may not emit {kind:?}: the operator granted it no kind (plugins.{r}.grant_emits {given}); {fix}"
        )
    }
}

impl Gate<ReactionContext> for CapabilityGate {
    fn name(&self) -> &str {
        CAPABILITY_GATE
    }

    fn evaluate(&self, _ctx: &ReactionContext, p: &Proposal) -> Result<(), Denial> {
        let kind: &str = &clip(&p.kind, MAX_KIND_LEN);
        if is_system_kind(kind) {
            return Err(Denial::new(
                CAPABILITY_GATE,
                "reserved-kind",
                format!("reactor {} proposed {kind:?}: kinds starting with \"batpak.\" are written only by the host", self.reactor),
            ));
        }
        if !self.declared.contains(kind) {
            return Err(Denial::new(
                CAPABILITY_GATE,
                "kind-not-declared",
                format!(
                    "reactor {} proposed {kind:?}, which its descriptor does not list in emits ({}); declare it in describe() to be able to ask for it",
                    self.reactor,
                    list(&self.declared)
                ),
            ));
        }
        if !self.granted.contains(kind) {
            return Err(Denial::new(
                CAPABILITY_GATE,
                "kind-not-granted",
                self.not_granted(kind),
            ));
        }
        if let Err(e) = p.validate(false) {
            return Err(Denial::new(
                CAPABILITY_GATE,
                "invalid-proposal",
                e.to_string(),
            ));
        }
        Ok(())
    }
}

/// `s` cut to at most `max` bytes (on a character boundary), marked when
/// cut; borrowed (no allocation) when it fits, as every admitted kind does.
pub(crate) fn clip(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

fn list(kinds: &BTreeSet<String>) -> String {
    if kinds.is_empty() {
        "nothing".to_string()
    } else {
        kinds
            .iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
