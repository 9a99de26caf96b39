//! The read-only functions the host offers every reactor.
//!
//! In a WebAssembly build they are imports of the component. In a native
//! build (unit tests) they talk to the mock host of the `testing` module.

#[cfg(target_arch = "wasm32")]
use crate::bindings::batpak::reactor::host as imports;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::imports;
use crate::{EventId, Proposal};

pub use crate::stored_event::{StoredEvent, READ_ENTITY_MAX};
pub use crate::verdict::{Denial, ProposalVerdict, Verdict};

/// Reads one event by id; `None` when no such event is visible.
pub fn get_event(id: EventId) -> Option<StoredEvent> {
    imports::get_event(id.into()).map(StoredEvent::from)
}

/// Reads the events of `entity` whose entity-sequence is greater than
/// `after`, oldest first, at most `max` of them (capped by the host at
/// [`READ_ENTITY_MAX`], and at 16 MiB of payload per call: a shorter list
/// is not the end, an empty one is). Only committed events are visible: not the
/// proposals of the `react` call in progress.
pub fn read_entity(entity: &str, after: u64, max: u32) -> Vec<StoredEvent> {
    imports::read_entity(entity, after, max)
        .into_iter()
        .map(StoredEvent::from)
        .collect()
}

/// Iterates over every event of `entity` after entity-sequence `after`,
/// oldest first, reading pages of [`READ_ENTITY_MAX`] events as needed.
pub fn entity_events(entity: &str, after: u64) -> EntityEvents {
    EntityEvents {
        entity: entity.to_owned(),
        after,
        page: Vec::new().into_iter(),
        done: false,
    }
}

/// Iterator returned by [`entity_events`].
#[derive(Debug)]
pub struct EntityEvents {
    entity: String,
    after: u64,
    page: std::vec::IntoIter<StoredEvent>,
    done: bool,
}

impl Iterator for EntityEvents {
    type Item = StoredEvent;

    fn next(&mut self) -> Option<StoredEvent> {
        loop {
            if let Some(event) = self.page.next() {
                self.after = event.entity_sequence;
                return Some(event);
            }
            if self.done {
                return None;
            }
            let page = read_entity(&self.entity, self.after, READ_ENTITY_MAX);
            // The host may cap pages below READ_ENTITY_MAX, so only an
            // empty page marks the end.
            if page.is_empty() {
                self.done = true;
                return None;
            }
            self.page = page.into_iter();
        }
    }
}

/// Asks the gates about `proposal` without appending anything (a dry run).
/// `proposal.source` refers to the batch of the `react` call in progress.
pub fn check(proposal: &Proposal) -> Verdict {
    imports::check(proposal)
}

/// The verdicts on the proposals returned by this reactor's previous `react`
/// call, in proposal order (empty before the first call).
pub fn last_verdicts() -> Vec<ProposalVerdict> {
    imports::last_verdicts()
        .into_iter()
        .map(ProposalVerdict::from)
        .collect()
}

/// Only the denials among [`last_verdicts`], as (proposal index, denial).
pub fn last_denials() -> Vec<(u32, Denial)> {
    imports::last_verdicts()
        .into_iter()
        .filter_map(|v| match v.verdict {
            Verdict::Denied(denial) => Some((v.proposal, denial)),
            Verdict::Allowed => None,
        })
        .collect()
}
