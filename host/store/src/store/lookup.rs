//! Lookups: which index a read starts from. A query by entity, correlation,
//! causation or id walks only that index's list of sequences (ascending,
//! binary-searched to its `after` position) instead of the whole log.

use crate::event::EventId;

/// The index a read goes through; [`Store::lookup`](crate::Store::lookup)
/// narrows its events further by a region, a position and a limit. More
/// indexes may come: match with a wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lookup {
    /// Every event, in log order (the sequence itself is the index).
    All,
    /// The events of one entity (exact name).
    Entity(String),
    /// The events carrying this correlation id.
    Correlation(EventId),
    /// The events whose causation is this event (its direct reactions).
    CausedBy(EventId),
    /// The one event with this id.
    Id(EventId),
}
