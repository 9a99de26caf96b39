//! What a reactor proposes ([`Reaction`], [`ReactionCause`]) and what the
//! gates answered about it ([`ReactionVerdict`]). A leaf module: shared by
//! the reactor trait, admission, the WIT conversions and the runner.

use batpak_store::{Coordinate, Denial, EventId};

/// Which event a reaction names as its cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReactionCause {
    /// The source event (the usual choice).
    Source,
    /// Another, existing event.
    Event(EventId),
    /// None: the reaction starts a new causal chain (and correlation).
    None,
}

/// An event a reactor proposes (the WIT `proposal`). Nothing is validated
/// yet: the runner checks the source index and the gates judge the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaction {
    /// Index, in the batch handed to `react`, of the event this reacts to.
    pub source: u32,
    /// Where the new event goes (not validated yet).
    pub coordinate: Coordinate,
    /// Its kind.
    pub kind: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its cause.
    pub causation: ReactionCause,
}

impl Reaction {
    /// A reaction to batch event `source`, caused by it.
    pub fn new(
        source: u32,
        entity: &str,
        scope: &str,
        kind: &str,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        Reaction {
            source,
            coordinate: Coordinate {
                entity: entity.to_string(),
                scope: scope.to_string(),
            },
            kind: kind.to_string(),
            payload: payload.into(),
            causation: ReactionCause::Source,
        }
    }
}

/// The gates' answer about one reaction of the previous `react` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReactionVerdict {
    /// Index of the reaction in the list `react` returned.
    pub reaction: u32,
    /// `None` when admitted, the denial otherwise.
    pub denial: Option<Denial>,
    /// Id of the appended event when admitted.
    pub appended: Option<EventId>,
}
