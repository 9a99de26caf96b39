//! Committing: a handled part of a batch — reactions, denial records and
//! the checkpoint past it — in one atomic append; and parking an event that
//! keeps failing, with its checkpoint.

use super::error::RunnerError;
use super::outcome::Outcome;
use super::retry::one_line;
use super::worker::{describe_span, durability, Worker};
use crate::failure::ReactFailure;
use crate::log::LogLevel;
use crate::parking::{park_proposal, ParkedEvent};
use batpak_log::Commit;
use batpak_store::EventView;
use std::time::Instant;

impl Worker {
    /// Appends a handled part of a batch: its reactions and denial records
    /// with the checkpoint past its last event, in one atomic write.
    pub(super) fn commit(&mut self, events: &[EventView], o: Outcome) -> Result<(), RunnerError> {
        let last = events.last().expect("non-empty batch");
        let cp = self.checkpoint_at(last.sequence(), last.id());
        if o.proposals.is_empty() {
            if cp.is_some() {
                self.unsaved = Some((last.sequence(), last.id()));
            }
        } else {
            let mode = durability(&self.settings);
            let mut c = Commit::records(o.proposals).durability(mode);
            c.checkpoint = cp;
            let done = self.land(c, || {
                format!("appending the reactions to {}", describe_span(events))
            })?;
            self.unsaved = None;
            self.unsaved_batches = 0;
            self.last_commit = Instant::now();
            if mode == batpak_log::Durability::Accepted {
                self.track_in_flight(done.upto)?;
            }
        }
        self.status.add_out(o.reactions);
        self.status.add_denials(o.denials);
        self.reactor.verdicts(o.verdicts);
        Ok(())
    }

    pub(super) fn park(
        &mut self,
        event: &EventView,
        failure: &ReactFailure,
        attempts: u32,
    ) -> Result<(), RunnerError> {
        self.park_with(event, failure, attempts, None)
    }

    pub(super) fn park_with(
        &mut self,
        event: &EventView,
        failure: &ReactFailure,
        attempts: u32,
        replaces: Option<&ParkedEvent>,
    ) -> Result<(), RunnerError> {
        // Cold path: the parked record keeps the whole event.
        let record = park_proposal(
            &self.admission.info,
            &event.to_event(),
            failure,
            attempts,
            replaces.map(|p| p.parked),
        );
        let mut c = Commit::records(vec![record]);
        // A replayed event sits behind the cursor: parking it again must not
        // move the checkpoint.
        if replaces.is_none() {
            c.checkpoint = self.checkpoint_at(event.sequence(), event.id());
        }
        let id = event.id();
        self.land(c, || format!("parking event {id}"))?;
        // Durable, and written after every commit in flight.
        self.in_flight.clear();
        if replaces.is_none() {
            self.unsaved = None;
            self.unsaved_batches = 0;
            self.last_commit = Instant::now();
        }
        self.status.add_parked();
        // One line per parked event, the guest's own message first; the
        // detail (trap, backtrace, stderr) is in the parked record.
        let name = self.name();
        self.log(
            LogLevel::Warn,
            &format!(
                "parked event {} ({}, {}): {} — {} after {attempts} failed call(s); details: `batpak-host parked --plugin {name}`, retry: `batpak-host parked replay --plugin {name}`",
                event.sequence(),
                event.kind(),
                event.coordinate().entity,
                one_line(&failure.message),
                failure.kind.as_str(),
            ),
        );
        Ok(())
    }
}
