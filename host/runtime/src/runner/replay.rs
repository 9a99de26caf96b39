//! Replaying parked events whose replay was requested, one by one, before
//! the first pull.

use super::error::RunnerError;
use super::worker::{Flow, Worker};
use crate::failure::FailureKind;
use crate::log::LogLevel;
use crate::parking::{parked_events, unparked_proposal, ParkedEvent};
use batpak_log::Commit;

impl Worker {
    /// Re-delivers parked events whose replay was requested, one by one.
    pub(super) fn replay_parked(&mut self) -> Result<Flow, RunnerError> {
        let name = self.name().to_string();
        let pending: Vec<ParkedEvent> = self
            .read_retrying(
                || "listing parked events".into(),
                |log| parked_events(log, Some(&name)),
            )?
            .into_iter()
            .filter(|p| p.replay_requested)
            .collect();
        for p in pending {
            if self.stopping() {
                return Ok(Flow::Stopped);
            }
            let found = match p.event_id() {
                Some(id) => {
                    self.read_retrying(|| format!("reading parked event {id}"), |log| log.get(id))?
                }
                None => None,
            };
            let Some(event) = found.map(batpak_store::EventView::from) else {
                self.log(
                    LogLevel::Warn,
                    &format!(
                        "cannot replay parked event {}: it is not in the log",
                        p.record.event
                    ),
                );
                continue;
            };
            self.status.add_in(1);
            let events = std::slice::from_ref(&event);
            let mut attempts = 0u32;
            let mut instantiate_failures = 0u32;
            loop {
                match self.attempt(events) {
                    Ok(mut o) => {
                        o.proposals.push(unparked_proposal(
                            &self.admission.info,
                            &p,
                            o.reactions,
                            o.denials,
                        ));
                        let id = event.id();
                        self.land(Commit::records(std::mem::take(&mut o.proposals)), || {
                            format!("appending the replay of event {id}")
                        })?;
                        self.status.add_out(o.reactions);
                        self.status.add_denials(o.denials);
                        self.status.add_unparked();
                        self.reactor.verdicts(o.verdicts);
                        self.log(
                            LogLevel::Info,
                            &format!("replayed parked event {}", event.id()),
                        );
                        break;
                    }
                    Err(f) if f.kind == FailureKind::Instantiate => {
                        instantiate_failures += 1;
                        if let Flow::Stopped = self.instance_failed(instantiate_failures, f)? {
                            return Ok(Flow::Stopped);
                        }
                    }
                    Err(f) => {
                        attempts += 1;
                        self.status.add_failure();
                        if attempts >= self.settings.policy.attempts.max(1) {
                            self.park_with(&event, &f, attempts, Some(&p))?;
                            break;
                        }
                        if let Flow::Stopped = self.backoff(attempts) {
                            return Ok(Flow::Stopped);
                        }
                    }
                }
            }
        }
        Ok(Flow::Continue)
    }
}
